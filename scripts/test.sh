#!/usr/bin/env bash
# The whole test suite from nothing: installs what is missing, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
cd build
ctest --output-on-failure -j"${TEST_JOBS:-2}" --timeout 900
