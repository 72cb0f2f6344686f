"""cmake --install gives a CMake package: examples/cpp builds against it with find_package."""
import os
import shutil
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("TIDEMARK_BUILD_DIR", os.path.join(REPO, "build"))


@pytest.mark.skipif(not os.path.exists(os.path.join(BUILD, "CMakeCache.txt")) or not shutil.which("cmake"),
                    reason="needs the C++ build (scripts/build.sh)")
def test_find_package_consumer(tmp_path):
    prefix = tmp_path / "prefix"
    subprocess.run(["cmake", "--install", BUILD, "--prefix", str(prefix)], check=True, capture_output=True)
    assert (prefix / "include" / "tidemark" / "tidemark.h").exists()
    cfg = list(prefix.glob("lib*/cmake/Tidemark/TidemarkConfig.cmake"))
    assert cfg, "package config installed"
    b = tmp_path / "b"
    env = dict(os.environ, CCACHE_BASEDIR=str(tmp_path))
    subprocess.run(["cmake", "-S", os.path.join(REPO, "examples", "cpp"), "-B", str(b),
                    f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_BUILD_TYPE=Release"], check=True, capture_output=True,
                   env=env)
    r = subprocess.run(["cmake", "--build", str(b), "-j2"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    out = subprocess.run([str(b / "consumer"), "a_b_a", "c_a"], check=True, capture_output=True, text=True).stdout
    rows = [line.split("|") for line in out.strip().splitlines()[1:]]
    got = {w.strip(): int(c) for w, c in rows}
    assert got == {"a": 3, "b": 1, "c": 1}
