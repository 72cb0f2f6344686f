"""Word count with no persistence config of its own (for tidemark spawn / replay and the
TIDEMARK_* / PATHWAY_* variables).   python wordcount_plain.py INPUT_DIR OUTPUT_CSV [csv|subscribe]

`subscribe` writes the same word,count,time,diff lines from a Python subscriber."""
import sys

import tidemark as pw

lines = pw.io.plaintext.read(sys.argv[1], mode="static", name="lines")
words = lines.select(word=pw.this.data.str.split()).flatten(pw.this.word)
counts = words.groupby(pw.this.word).reduce(pw.this.word, count=pw.reducers.count())
if (sys.argv[3] if len(sys.argv) > 3 else "subscribe") == "csv":
    pw.io.csv.write(counts, sys.argv[2])
else:
    out = open(sys.argv[2], "w")
    out.write("word,count,time,diff\n")
    pw.io.subscribe(counts, on_change=lambda key, row, time, is_addition: out.write(
        f"{row['word']},{row['count']},{time},{1 if is_addition else -1}\n"), on_end=out.close)
pw.run()
