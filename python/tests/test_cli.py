"""tidemark spawn --record / tidemark replay, and the reference's PATHWAY_* variables."""
import collections
import os
import shutil
import subprocess
import sys

import pytest

from conftest import PROGRAMS, read_changes_csv, write_file

PROG = os.path.join(PROGRAMS, "wordcount_plain.py")


def final(path):
    state = {}
    for w, c, _t, d in read_changes_csv(path):
        if int(d) > 0:
            state[w] = int(c)
        elif state.get(w) == int(c):
            del state[w]
    return state


def tidemark(*args, env=None):
    r = subprocess.run([sys.executable, "-m", "tidemark.cli", *args], capture_output=True, text=True, timeout=120,
                       env=env)
    assert r.returncode == 0, r.stderr
    return r


def test_console_script_is_installed():
    exe = os.path.join(os.path.dirname(sys.executable), "tidemark")
    assert os.access(exe, os.X_OK)


def test_spawn_record_then_replay_without_the_input(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    write_file(str(inp / "1.txt"), "to be or not to be\n")
    want = dict(collections.Counter("to be or not to be".split()))
    rec = str(tmp_path / "rec")
    tidemark("spawn", "--record", "--record-path", rec, PROG, str(inp), str(tmp_path / "o1.csv"))
    assert final(str(tmp_path / "o1.csv")) == want
    shutil.rmtree(inp)
    inp.mkdir()  # the recording, not the files, is replayed
    tidemark("replay", "--mode", "batch", "--record-path", rec, PROG, str(inp), str(tmp_path / "o2.csv"))
    assert final(str(tmp_path / "o2.csv")) == want
    tidemark("replay", "--mode", "speedrun", "--record-path", rec, PROG, str(inp), str(tmp_path / "o3.csv"))
    assert final(str(tmp_path / "o3.csv")) == want


def test_pathway_variables_are_aliases(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    write_file(str(inp / "1.txt"), "x y x\n")
    env = dict(os.environ, PATHWAY_REPLAY_STORAGE=str(tmp_path / "rec"), PATHWAY_SNAPSHOT_ACCESS="record")
    env.pop("TIDEMARK_REPLAY_STORAGE", None)
    r = subprocess.run([sys.executable, PROG, str(inp), str(tmp_path / "o1.csv")], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert os.path.isdir(tmp_path / "rec") and os.listdir(tmp_path / "rec")
    os.remove(inp / "1.txt")
    env.update(PATHWAY_SNAPSHOT_ACCESS="replay", PATHWAY_PERSISTENCE_MODE="batch",
               PATHWAY_CONTINUE_AFTER_REPLAY="false")
    r = subprocess.run([sys.executable, PROG, str(inp), str(tmp_path / "o2.csv")], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert final(str(tmp_path / "o2.csv")) == {"x": 2, "y": 1}


def test_replay_into_a_csv_file_sink(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    write_file(str(inp / "1.txt"), "a b a\n")
    rec = str(tmp_path / "rec")
    tidemark("spawn", "--record", "--record-path", rec, PROG, str(inp), str(tmp_path / "o1.csv"), "csv")
    tidemark("replay", "--record-path", rec, PROG, str(inp), str(tmp_path / "o2.csv"), "csv")
    assert final(str(tmp_path / "o2.csv")) == {"a": 2, "b": 1}


def test_persistence_inspect_and_verify(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    write_file(str(inp / "1.txt"), "a b\n")
    rec = str(tmp_path / "rec")
    tidemark("spawn", "--record", "--record-path", rec, PROG, str(inp), str(tmp_path / "o1.csv"))
    r = tidemark("persistence", "verify", rec)
    assert r.stdout.strip() or r.stderr.strip()
    r = tidemark("persistence", "inspect", rec)
    assert "lines" in r.stdout
