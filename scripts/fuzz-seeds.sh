#!/usr/bin/env bash
# Seed corpora for the fuzz targets, from REAL storages: runs build/bin/wordcount with
# --persistent-storage in persisting and operator_persisting modes (files added, modified and
# deleted between runs, plaintext and jsonlines), captures a live lock object from a streaming
# run, and copies every stored object into the seed directory of the target that decodes it.
# Operator state entries and source offsets come from fuzz/seed_tool (real pipelines, real
# manifests). CSV / JSON-lines seeds are hand-made.
#
#   scripts/fuzz-seeds.sh OUTDIR [SEED_TOOL]     # OUTDIR/<target>/ per fuzz target
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:?usage: $0 OUTDIR [SEED_TOOL]}")
SEED_TOOL=${2:-build-fuzz/bin/seed_tool}
WC=build/bin/wordcount
[[ -x $WC ]] || { echo "fuzz-seeds: $WC is missing (run scripts/build.sh)" >&2; exit 1; }
rm -rf "$OUT"
for t in chunk manifest input_chunk state_chunk operator_state fs_offset lock csv jsonlines; do mkdir -p "$OUT/$t"; done
work=$(mktemp -d /tmp/tidemark-fuzz-seeds.XXXXXX)
streaming_pid=""
cleanup() {
  [[ -n $streaming_pid ]] && kill "$streaming_pid" 2>/dev/null && wait "$streaming_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# copy FILE TARGET...: FILE into each target's seed dir under a name derived from its path.
copy() {
  local f=$1 name; shift
  name=$(echo "${f#"$work"/}" | tr '/' '_')
  for t in "$@"; do cp "$f" "$OUT/$t/$name"; done
}

run_workload() {  # MODE FORMAT: four runs over one storage, input changed between them
  local mode=$1 format=$2 dir="$work/$1-$2" ext=txt
  mkdir -p "$dir/in"
  [[ $format == jsonlines ]] && ext=jsonl
  word() { if [[ $format == jsonlines ]]; then printf '{"word": "%s"}\n' "$1"; else printf '%s\n' "$1"; fi; }
  for i in 1 2 3; do for w in alpha beta gamma "delta$i" alpha; do word "$w"; done > "$dir/in/f$i.$ext"; done
  local args=(--input "$dir/in" --output "$dir/out.csv" --format "$format" --persistent-storage "$dir/state"
              --persistence-mode "$mode")
  snap() { $WC "${args[@]}" >/dev/null 2>&1; cp -r "$dir/state" "$dir/state-$1"; }  # keep each run's objects
  snap 1
  word "epsilon" >> "$dir/in/f1.$ext"; for w in zeta eta; do word "$w"; done > "$dir/in/f4.$ext"
  snap 2
  rm "$dir/in/f2.$ext"
  snap 3
  for w in theta theta alpha; do word "$w"; done > "$dir/in/f3.$ext"
  snap 4
}
for mode in persisting operator_persisting; do
  for format in plaintext jsonlines; do run_workload "$mode" "$format"; done
done

# A lock object exists only while a run holds the storage: start a streaming run, wait (by
# polling, bounded) until its lock object appears, copy it, stop the run.
mkdir -p "$work/live/in"; echo "one two" > "$work/live/in/a.txt"
$WC --input "$work/live/in" --output "$work/live/out.csv" --mode streaming --autocommit-ms 50 \
    --persistent-storage "$work/live/state" >/dev/null 2>&1 &
streaming_pid=$!
for _ in $(seq 1 200); do [[ -s $work/live/state/lock ]] && break; sleep 0.05; done
[[ -s $work/live/state/lock ]] && cp "$work/live/state/lock" "$OUT/lock/live"
kill -INT "$streaming_pid" 2>/dev/null || true; wait "$streaming_pid" 2>/dev/null || true; streaming_pid=""

while IFS= read -r -d '' f; do
  case "$f" in
    */manifests/*) copy "$f" manifest chunk ;;
    */streams/*) copy "$f" input_chunk chunk ;;
    */operators/*|*/contents/*) copy "$f" state_chunk chunk ;;
    */lock) copy "$f" lock ;;
  esac
done < <(find "$work" -path '*/state*/*' -type f ! -name '.lock' -print0)

mapfile -t manifests < <(find "$work" -path '*/state*/manifests/*' -type f)
"$SEED_TOOL" offsets "$OUT/fs_offset" "${manifests[@]}"
"$SEED_TOOL" entries "$OUT/operator_state"
"$SEED_TOOL" lock "$OUT/lock"

# Hand-made text inputs. The first byte is the targets' flag byte (fuzz/fuzz_csv.cc,
# fuzz/fuzz_jsonlines.cc); the schemas are a,i,f,b,s,j (csv) and a,i,f,b,s,j,t (jsonlines).
printf '\x04a,i,f,b,s,j\n1,2,3.5,true,x,{"k":1}\n"q""uoted",,1e3,False,"multi\nline",[1,2]\r\nz,-9223372036854775808,nan,1,"",null\n' > "$OUT/csv/typed"
printf '\x00a,i,f,b,s,j\n1,2,3,true,x,1\n1,2\n"unterminated\n' > "$OUT/csv/errors"
printf '\x0bs;a;i;f;b;j\nk;1;2;0.5;no;"{""a"":[1,{""b"":null}]}"\n' > "$OUT/csv/semicolon"
printf '\x00{"a": 1, "i": 2, "f": 1.5, "b": true, "s": "x", "j": {"k": [1, 2]}, "t": "aGk="}\n{"s": "y", "i": -3}\n\n{"a": [1, "x", null], "f": 1e308}\r\n' > "$OUT/jsonlines/typed"
printf '\x01{"i": "not an int"}\n[1, 2]\n{"s": "\\u00e9\\ud83d\\ude00"}\n{bad json\n{"i": 18446744073709551615, "f": 12345678901234567890}\n' > "$OUT/jsonlines/errors"
printf '\x02{"s": "k", "i": 1}\n{"s": "k", "i": 1}\n' > "$OUT/jsonlines/primary_key"

for t in "$OUT"/*/; do echo "fuzz-seeds: $(basename "$t"): $(ls "$t" | wc -l) seeds"; done
