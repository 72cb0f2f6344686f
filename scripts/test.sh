#!/usr/bin/env bash
# The whole test suite from nothing: installs what is missing, builds, starts the object-store
# servers the tests use (Ceph RGW for S3, Azurite for Azure, Apache Kafka in KRaft mode; on
# 127.0.0.1 only), runs every test, and stops the servers again. Then the Python package and its
# tests, and a short fuzzing pass (scripts/fuzz.sh, about 3 s per target; TIDEMARK_FUZZ_SECONDS=N
# to change, 0 to skip) that fails the command on any crash.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
bash scripts/install-deps.sh
bash scripts/build.sh

servers=$(mktemp -d /tmp/tidemark-servers.XXXXXX)
stop_servers() {
  bash "$ROOT/scripts/s3-server.sh" stop "$servers/rgw" >/dev/null 2>&1 || true
  bash "$ROOT/scripts/azure-server.sh" stop "$servers/azurite" >/dev/null 2>&1 || true
  bash "$ROOT/scripts/kafka-server.sh" stop "$servers/kafka" >/dev/null 2>&1 || true
  rm -rf "$servers"
}
trap stop_servers EXIT
S3_PORT=${TIDEMARK_TEST_S3_PORT:-7480}
AZURE_PORT=${TIDEMARK_TEST_AZURE_PORT:-10000}
KAFKA_PORT=${TIDEMARK_TEST_KAFKA_PORT:-19092}
bash scripts/s3-server.sh start "$servers/rgw" "$S3_PORT" >&2
bash scripts/azure-server.sh start "$servers/azurite" "$AZURE_PORT" >&2
bash scripts/kafka-server.sh start "$servers/kafka" "$KAFKA_PORT" >&2
export TIDEMARK_S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
export TIDEMARK_AZURE_ENDPOINT="http://127.0.0.1:$AZURE_PORT/devstoreaccount1"
export TIDEMARK_KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
# The Kafka tests restart the broker once (crash test): they call this script with this dir.
export TIDEMARK_KAFKA_SERVER_DIR="$servers/kafka"

(cd build && ctest --output-on-failure -j"${TEST_JOBS:-2}" --timeout 900)

# The Python package: pip install . into build/venv, then its pytest suite.
PYTHON_BIN=$(bash scripts/python-package.sh)
"$PYTHON_BIN" -m pytest -q -p no:cacheprovider python/tests
# Python word count vs build/bin/wordcount (no Python code on the data path), and with a Python
# UDF per row: figures only. Timing is not a pass/fail criterion on a shared machine; that no
# Python runs per row is checked deterministically by python/tests/test_data_path.py, and the
# counts of the three programs must agree. TIDEMARK_PY_BENCH_MAX_RATIO=R adds a ratio gate.
"$PYTHON_BIN" bench/python/wordcount_vs_cpp.py --words "${TIDEMARK_PY_BENCH_WORDS:-5000000}" --repeat 2 \
  ${TIDEMARK_PY_BENCH_MAX_RATIO:+--max-ratio "$TIDEMARK_PY_BENCH_MAX_RATIO"}
# Fuzzing: a few seconds per decoder harness (scripts/fuzz.sh; fails on any crash).
if [[ ${TIDEMARK_FUZZ_SECONDS:-3} != 0 ]]; then
  bash scripts/fuzz.sh "${TIDEMARK_FUZZ_SECONDS:-3}"
fi
