#!/usr/bin/env bash
# Configures and builds Tidemark into build/ (executables in build/bin/).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
# Paths relative to the repo in ccache's keys, so the Python package build (build-py/, same
# compiler and flags) reuses these objects.
export CCACHE_BASEDIR=$(pwd) CCACHE_NOHASHDIR=1
cmake -S . -B build -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} >/dev/null
cmake --build build -j"$JOBS"
