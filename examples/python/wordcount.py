"""Word count with persistence on disk.

    python examples/python/wordcount.py INPUT_DIR OUTPUT.csv [STATE_DIR]

Streaming: new, modified and deleted files are picked up until Ctrl-C. Run it again after a
stop (or a kill -9): it resumes, and OUTPUT.csv as a whole holds every change exactly once."""
import sys

import tidemark as pw

inp, out = sys.argv[1], sys.argv[2]
state = sys.argv[3] if len(sys.argv) > 3 else "./state"

lines = pw.io.plaintext.read(inp, mode="streaming", name="lines")
words = lines.select(word=pw.this.data.str.lower().str.split()).flatten(pw.this.word)
counts = words.groupby(pw.this.word).reduce(pw.this.word, count=pw.reducers.count())
pw.io.csv.write(counts, out, name="counts")

pw.run(persistence_config=pw.persistence.Config(
    pw.persistence.Backend.filesystem(state), snapshot_interval_ms=1000))
