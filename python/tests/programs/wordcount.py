"""Word count with persistence: the program the restart and signal tests drive.

    python wordcount.py INPUT_DIR OUTPUT_CSV STATE_DIR [static|streaming] [mode] [access]
Prints "ready" once the run has started (streaming), "done" after a clean end."""
import sys

import tidemark as pw

inp, out, state = sys.argv[1:4]
mode = sys.argv[4] if len(sys.argv) > 4 else "static"
pmode = sys.argv[5] if len(sys.argv) > 5 else "persisting"
access = sys.argv[6] if len(sys.argv) > 6 else "full"

lines = pw.io.plaintext.read(inp, mode=mode, name="lines", autocommit_duration_ms=50)
words = lines.select(word=pw.this.data.str.split()).flatten(pw.this.word)
counts = words.groupby(pw.this.word).reduce(pw.this.word, count=pw.reducers.count())
pw.io.csv.write(counts, out, name="counts")


def on_time_end(time):
    print("time", time, flush=True)


pw.io.subscribe(counts, on_change=None, on_time_end=on_time_end, name="progress")
cfg = pw.persistence.Config(
    pw.persistence.Backend.filesystem(state),
    snapshot_interval_ms=0,
    persistence_mode=pw.PersistenceMode(pmode),
    snapshot_access=pw.persistence.SnapshotAccess(access),
)
print("ready", flush=True)
pw.run(persistence_config=cfg)
print("done", flush=True)
