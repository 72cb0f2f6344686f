#!/usr/bin/env bash
# Builds and installs the Python package `tidemark` into the venv build/venv (created on first
# use; pinned build and test tools from PyPI), then prints the venv's python.
#
#   bash scripts/python-package.sh        # pip install . (incremental: build dir build-pkg/)
#
# ccache is shared with the C++ build: same compiler, generator and flags, and a base dir, so
# the library objects the C++ build compiled are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${TIDEMARK_VENV:-$ROOT/build/venv}
PY=${PYTHON:-python3}
if [[ ! -x $VENV/bin/python ]]; then
  echo "[python] creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
# Pinned: the build backend, the binding library and the test runner.
if ! "$VENV/bin/python" -c "import nanobind, scikit_build_core, pytest" 2>/dev/null ||
   [[ $("$VENV/bin/python" -c "import nanobind, scikit_build_core, pytest; print(nanobind.__version__, scikit_build_core.__version__, pytest.__version__)") != "2.9.2 0.11.6 8.3.5" ]]; then
  "$VENV/bin/pip" install -q --disable-pip-version-check "nanobind==2.9.2" "scikit-build-core==0.11.6" "pytest==8.3.5" >&2
fi
export CCACHE_BASEDIR=$ROOT CCACHE_NOHASHDIR=1
export CMAKE_GENERATOR="Unix Makefiles"
export CXX=${CXX:-c++}
export CMAKE_BUILD_PARALLEL_LEVEL=${JOBS:-$(nproc)}
"$VENV/bin/pip" install -q --disable-pip-version-check --no-build-isolation \
  --config-settings=build-dir="${TIDEMARK_PKG_BUILD_DIR:-build-pkg}" "$ROOT" >&2
echo "$VENV/bin/python"
