#!/usr/bin/env bash
# The main job from nothing: installs what is missing, builds, generates a small input and runs
# build/bin/wordcount on it (static mode, then again with persistence to show a resumed run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
work=$(mktemp -d /tmp/tidemark-demo.XXXXXX)
mkdir -p "$work/input"
awk -v dir="$work/input" 'BEGIN {
  srand(7); n = split("the a stream of rows state restart commit crash replay offset", w, " ")
  for (f = 0; f < 4; f++) { fn = dir "/part-" f ".txt"
    for (l = 0; l < 2500; l++) { line = w[int(rand() * n) + 1]
      for (i = 1; i < 8; i++) line = line " " w[int(rand() * n) + 1]
      print line > fn }
    close(fn) } }'
echo "== wordcount over $(cat "$work"/input/* | wc -w) words in $work/input"
build/bin/wordcount --input "$work/input" --output "$work/counts.csv"
echo "== final counts (from $work/counts.csv):"
awk -F, 'NR>1 {c[$1]+=$2*$4} END {for (w in c) if (c[w]) print "  " w, c[w]}' "$work/counts.csv" | sort
echo "== with persistence: first run, then a run that resumes after one more file"
build/bin/wordcount --input "$work/input" --output "$work/persisted.csv" --persistent-storage "$work/state"
echo "restart commit crash" > "$work/input/part-9.txt"
build/bin/wordcount --input "$work/input" --output "$work/persisted.csv" --persistent-storage "$work/state"
echo "== changes emitted by the resumed run (only what the new file changed):"
awk -F, 'NR>1' "$work/persisted.csv" | tail -n 6
echo "== the same word count in Python (import tidemark as pw), installed into build/venv"
PYTHON_BIN=$(bash scripts/python-package.sh)
"$PYTHON_BIN" - "$work/input" "$work/py-counts.csv" <<'PY'
import sys
import tidemark as pw
lines = pw.io.plaintext.read(sys.argv[1], mode="static")
words = lines.select(word=pw.this.data.str.split()).flatten(pw.this.word)
counts = words.groupby(pw.this.word).reduce(pw.this.word, count=pw.reducers.count())
pw.io.csv.write(counts, sys.argv[2])
pw.run()
PY
awk -F, 'NR>1 {c[$1]+=$2*$4} END {for (w in c) if (c[w]) print "  " w, c[w]}' "$work/py-counts.csv" | sort
echo "demo files are in $work"
