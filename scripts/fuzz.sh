#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang, ASan + UBSan) into build-fuzz/, makes seed corpora
# from real storages (scripts/fuzz-seeds.sh), runs every target for SECONDS (default 60) and
# prints the executions per target. Exit status 1 if any target crashed (or leaked, hit UB,
# ran out of memory or time); the crashing inputs are left in build-fuzz/crashes/<target>/.
#
#   scripts/fuzz.sh [SECONDS]            # FUZZ_TARGETS="chunk lock" to run only some
#   build-fuzz/bin/fuzz_<target> CRASH   # reproduces one crash
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
JOBS=${JOBS:-$(nproc)}
CXX_FUZZ=${CXX_FUZZ:-$(command -v clang++-14 || command -v clang++ || true)}
[[ -n $CXX_FUZZ ]] || { echo "fuzz.sh: clang++ not found (scripts/install-deps.sh installs clang-14)" >&2; exit 1; }
[[ -x build/bin/wordcount ]] || bash scripts/build.sh  # the seed workload runs the real program

start=$(date +%s)
cmake -S fuzz -B build-fuzz -DCMAKE_CXX_COMPILER="$CXX_FUZZ" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j"$JOBS" >build-fuzz/build.log 2>&1 || { tail -n 40 build-fuzz/build.log >&2; exit 1; }
built=$(date +%s)
bash scripts/fuzz-seeds.sh build-fuzz/seeds build-fuzz/bin/seed_tool >/dev/null

ALL_TARGETS=$(cd fuzz && ls fuzz_*.cc | sed 's/^fuzz_//; s/\.cc$//')
TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
failed=()
printf '%-16s %12s %10s %8s %s\n' target executions exec/s corpus result
for t in $TARGETS; do
  corpus=build-fuzz/corpus/$t crashes=build-fuzz/crashes/$t log=build-fuzz/logs/$t.log
  rm -rf "$crashes"  # crashes of an earlier run are stale (reproduce them before re-running)
  mkdir -p "$corpus" "$crashes" build-fuzz/logs
  seeds=build-fuzz/seeds/$t; [[ -d $seeds ]] || seeds=""
  rc=0
  # -malloc_limit_mb: one allocation above 256 MiB from inputs of a few KiB is a bug (an
  # unbounded length); -timeout: one input taking 10 s is a hang.
  build-fuzz/bin/fuzz_"$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=256 -max_len=65536 -print_final_stats=1 -artifact_prefix="$crashes/" \
    "$corpus" $seeds >"$log" 2>&1 || rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  if [[ -z $execs ]]; then  # a crash ends the run before the final stats: take the last status line
    execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#' || true)
  fi
  result=ok
  if ((rc != 0)) || compgen -G "$crashes/*" >/dev/null; then
    result="CRASH (rc $rc): $(ls "$crashes" | head -3 | tr '\n' ' ')log $log"
    failed+=("$t")
  fi
  printf '%-16s %12s %10s %8s %s\n' "$t" "${execs:-?}" "${rate:-?}" "$(ls "$corpus" | wc -l)" "$result"
done
end=$(date +%s)
echo "fuzz.sh: build $((built - start)) s, seeds + fuzzing $((end - built)) s, ${SECONDS_PER_TARGET} s per target"
if ((${#failed[@]})); then
  echo "fuzz.sh: crashes in: ${failed[*]} (inputs in build-fuzz/crashes/<target>/; reproduce with build-fuzz/bin/fuzz_<target> FILE)" >&2
  for t in "${failed[@]}"; do grep -m1 -A12 -E 'ERROR|runtime error|fuzz check|unexpected status|deadly' "build-fuzz/logs/$t.log" >&2 || true; done
  exit 1
fi
