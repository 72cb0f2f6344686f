#!/usr/bin/env bash
# Sanitizer runs (not part of the CI test command: too slow):
#
#   scripts/sanitize.sh [asan|tsan|tsan-workers|all]   (default all)
#
# asan: the whole project built with AddressSanitizer + UndefinedBehaviorSanitizer into
#       build-asan/ (-fno-omit-frame-pointer, no recovery, leak checking), whole ctest suite.
# tsan: ThreadSanitizer build into build-tsan/, the persistence and storage tests (parallel
#       uploads, the background merger, the object-store backends), then the worker threads:
#       every engine, persistence and connector test at 2 workers (TIDEMARK_THREADS=2; the
#       property tests also run at 3) and the connectors' Workers.* tests (file source shards,
#       wordcount --workers 2, persistence rescaling 1 -> 2 -> 3 -> 1).
# tsan-workers: only that last part (no test servers needed).
# Both start the S3 (Ceph RGW) and Azure (Azurite) test servers on their own ports (asan also
# Kafka, for the Kafka tests in the suite), as
# scripts/test.sh does, so the object-store tests run instead of skipping. Executables are
# built without jemalloc (-DTIDEMARK_JEMALLOC=OFF): the sanitizers bring their own allocator.
# Exit status 1 if a build or any test fails; logs are in build-{asan,tsan}/sanitize.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WHAT=${1:-all}
JOBS=${JOBS:-$(nproc)}
TEST_JOBS=${TEST_JOBS:-2}
S3_PORT=${TIDEMARK_SANITIZE_S3_PORT:-7490}
AZURE_PORT=${TIDEMARK_SANITIZE_AZURE_PORT:-10020}
KAFKA_PORT=${TIDEMARK_SANITIZE_KAFKA_PORT:-19392}
bash scripts/install-deps.sh >/dev/null

failed=()
configure() {  # DIR FLAGS
  cmake -S . -B "$1" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTIDEMARK_JEMALLOC=OFF \
    -DCMAKE_CXX_FLAGS="$2" -DCMAKE_EXE_LINKER_FLAGS="$2" >/dev/null
}

# The worker threads under ThreadSanitizer (build-tsan/sanitize-workers.log).
tsan_workers() {
  configure build-tsan "-fsanitize=thread -fno-omit-frame-pointer"
  if cmake --build build-tsan -j"$JOBS" --target test_engine test_connectors test_persistence cli_wordcount cli_tidemark \
       >build-tsan/build-workers.log 2>&1; then
    echo "== tsan: engine, persistence and connector tests at 2 workers, connectors Workers.*"
    # The *_w2 entries run with TIDEMARK_THREADS=2 (CMakeLists.txt); the object-store tests
    # skip here (no servers in this part).
    if (cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:history_size=4 TIDEMARK_THREADS=2 \
        TIDEMARK_S3_OPTIONAL=1 TIDEMARK_AZURE_OPTIONAL=1 TIDEMARK_KAFKA_OPTIONAL=1 \
        ctest --output-on-failure -j"$TEST_JOBS" --timeout 1800 \
          -R '^(engine\.|engine_w2\.|persistence_w2\.|connectors_w2\.|connectors\.Workers\.)') \
        >build-tsan/sanitize-workers.log 2>&1; then
      echo "tsan workers: clean ($(grep -o '100% tests passed.*' build-tsan/sanitize-workers.log | tail -1))"
    else
      failed+=(tsan-workers); grep -E 'tests passed|FAILED|Failed|WARNING: ThreadSanitizer' build-tsan/sanitize-workers.log | head -40
    fi
  else
    failed+=(tsan-workers-build); tail -n 30 build-tsan/build-workers.log
  fi
}

if [[ $WHAT == tsan-workers ]]; then
  tsan_workers
  if ((${#failed[@]})); then echo "sanitize.sh: failed: ${failed[*]} (logs: build-tsan/)" >&2; exit 1; fi
  echo "sanitize.sh: clean"
  exit 0
fi

servers=$(mktemp -d /tmp/tidemark-sanitize-servers.XXXXXX)
stop_servers() {
  bash "$ROOT/scripts/s3-server.sh" stop "$servers/rgw" >/dev/null 2>&1 || true
  bash "$ROOT/scripts/azure-server.sh" stop "$servers/azurite" >/dev/null 2>&1 || true
  bash "$ROOT/scripts/kafka-server.sh" stop "$servers/kafka" >/dev/null 2>&1 || true
  rm -rf "$servers"
}
trap stop_servers EXIT
bash scripts/s3-server.sh start "$servers/rgw" "$S3_PORT" >&2
bash scripts/azure-server.sh start "$servers/azurite" "$AZURE_PORT" >&2
export TIDEMARK_S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
export TIDEMARK_AZURE_ENDPOINT="http://127.0.0.1:$AZURE_PORT/devstoreaccount1"
if [[ $WHAT == asan || $WHAT == all ]]; then  # the whole suite includes the Kafka tests
  bash scripts/kafka-server.sh start "$servers/kafka" "$KAFKA_PORT" >&2
  export TIDEMARK_KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
  export TIDEMARK_KAFKA_SERVER_DIR="$servers/kafka"
fi

if [[ $WHAT == asan || $WHAT == all ]]; then
  flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
  configure build-asan "$flags"
  if cmake --build build-asan -j"$JOBS" >build-asan/build.log 2>&1; then
    echo "== asan+ubsan: whole suite"
    if (cd build-asan &&
        ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1 \
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        ctest --output-on-failure -j"$TEST_JOBS" --timeout 1800) >build-asan/sanitize.log 2>&1; then
      echo "asan+ubsan: clean ($(grep -o '[0-9]* tests passed\|100% tests passed.*' build-asan/sanitize.log | tail -1))"
    else
      failed+=(asan); grep -E 'tests passed|FAILED|Failed|ERROR: AddressSanitizer|runtime error|LeakSanitizer' build-asan/sanitize.log | head -40
    fi
  else
    failed+=(asan-build); tail -n 30 build-asan/build.log
  fi
fi

if [[ $WHAT == tsan || $WHAT == all ]]; then
  configure build-tsan "-fsanitize=thread -fno-omit-frame-pointer"
  if cmake --build build-tsan -j"$JOBS" --target test_persistence test_storage test_storage_s3 test_storage_azure \
       cli_wordcount cli_tidemark >build-tsan/build.log 2>&1; then
    echo "== tsan: persistence and storage tests"
    if (cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:history_size=4 \
        ctest --output-on-failure -j"$TEST_JOBS" --timeout 1800 -R '^(persistence|storage|storage_s3|storage_azure)\.') \
        >build-tsan/sanitize.log 2>&1; then
      echo "tsan: clean ($(grep -o '100% tests passed.*' build-tsan/sanitize.log | tail -1))"
    else
      failed+=(tsan); grep -E 'tests passed|FAILED|Failed|WARNING: ThreadSanitizer' build-tsan/sanitize.log | head -40
    fi
  else
    failed+=(tsan-build); tail -n 30 build-tsan/build.log
  fi
  tsan_workers
fi

if ((${#failed[@]})); then echo "sanitize.sh: failed: ${failed[*]} (logs: build-asan/, build-tsan/)" >&2; exit 1; fi
echo "sanitize.sh: clean"
