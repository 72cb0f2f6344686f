"""The `tidemark` command for Python users (as the reference's `pathway` command):

    tidemark spawn [-t THREADS] [--record] [--record-path DIR] PROGRAM [ARGS...]
    tidemark replay [--mode batch|speedrun] [--continue] [--record-path DIR] PROGRAM [ARGS...]
    tidemark persistence inspect|verify ...   (the C++ tool, build/bin/tidemark)

spawn --record runs PROGRAM recording its input to DIR (TIDEMARK_REPLAY_STORAGE and
TIDEMARK_SNAPSHOT_ACCESS=record); replay runs it again from the recording. PROGRAM is a
Python file (run with this interpreter) or an executable (e.g. build/bin/wordcount): both read
the TIDEMARK_* variables when they set no persistence config of their own."""
from __future__ import annotations

import argparse
import os
import shutil
import sys


def _exec_program(program: str, args: list[str], env: dict) -> int:
    if program.endswith(".py") or not os.access(program, os.X_OK):
        cmd = [sys.executable, program, *args]
    else:
        cmd = [program, *args]
    os.execvpe(cmd[0], cmd, env)
    return 127  # not reached


def _cpp_tool() -> str | None:
    cand = os.environ.get("TIDEMARK_CLI")
    if cand:
        return cand
    here = os.path.dirname(os.path.abspath(__file__))
    for p in (os.path.join(here, "bin", "tidemark"),):
        if os.access(p, os.X_OK):
            return p
    found = shutil.which("tidemark-cpp")
    return found


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="tidemark")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("spawn", help="run a program (optionally recording its input)")
    sp.add_argument("-t", "--threads", type=int, default=1)
    sp.add_argument("-n", "--processes", type=int, default=1)
    sp.add_argument("--record", action="store_true")
    sp.add_argument("--record-path", default="record")
    sp.add_argument("program")
    sp.add_argument("arguments", nargs=argparse.REMAINDER)
    rp = sub.add_parser("replay", help="run a program from a recording")
    rp.add_argument("-t", "--threads", type=int, default=1)
    rp.add_argument("--record-path", default="record")
    rp.add_argument("--mode", choices=["batch", "speedrun"], default="batch")
    rp.add_argument("--continue", dest="cont", action="store_true")
    rp.add_argument("program")
    rp.add_argument("arguments", nargs=argparse.REMAINDER)
    pp = sub.add_parser("persistence", help="inspect or verify a storage (the C++ tool)")
    pp.add_argument("rest", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    env = dict(os.environ)
    env["TIDEMARK_THREADS"] = str(getattr(a, "threads", 1))
    if a.cmd == "spawn":
        if a.record:
            env["TIDEMARK_REPLAY_STORAGE"] = a.record_path
            env["TIDEMARK_SNAPSHOT_ACCESS"] = "record"
            env["TIDEMARK_CONTINUE_AFTER_REPLAY"] = "true"
        return _exec_program(a.program, a.arguments, env)
    if a.cmd == "replay":
        env["TIDEMARK_REPLAY_STORAGE"] = a.record_path
        env["TIDEMARK_SNAPSHOT_ACCESS"] = "replay"
        env["TIDEMARK_PERSISTENCE_MODE"] = "batch" if a.mode == "batch" else "speedrun_replay"
        env["TIDEMARK_CONTINUE_AFTER_REPLAY"] = "true" if a.cont else "false"
        return _exec_program(a.program, a.arguments, env)
    tool = _cpp_tool()
    if tool is None:
        print("tidemark persistence: the C++ tool was not found; set TIDEMARK_CLI=build/bin/tidemark", file=sys.stderr)
        return 2
    os.execv(tool, [tool, "persistence", *a.rest])
    return 127


if __name__ == "__main__":
    sys.exit(main())
