"""examples/python run: each streaming program is stopped with SIGTERM once its output holds
the expected result (waiting on that condition, with a deadline), then must exit cleanly."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import read_changes_csv, write_file

EX = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python"))


def final(rows, key_cols):
    state = {}
    for r in rows:
        k, d = tuple(r[:key_cols]), int(r[-1])
        if d > 0:
            state[k] = tuple(r[key_cols:-2])
        elif state.get(k) == tuple(r[key_cols:-2]):
            del state[k]
    return state


def run_until(cmd, done, env=None, deadline_s=60):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    end = time.monotonic() + deadline_s
    try:
        while not done():
            assert p.poll() is None, p.communicate()[1]
            assert time.monotonic() < end, "no result before the deadline"
            time.sleep(0.05)
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return out


def test_wordcount_example(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    write_file(str(inp / "a.txt"), "Hello hello world\n")
    out = str(tmp_path / "out.csv")
    want = {("hello",): ("2",), ("world",): ("1",)}
    run_until([sys.executable, os.path.join(EX, "wordcount.py"), str(inp), out, str(tmp_path / "state")],
              lambda: final(read_changes_csv(out), 1) == want)


def test_udf_operator_persisting_example(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    write_file(str(inp / "r.csv"), "review_id,text\n1,good film\n2,bad bad plot\n")
    out = str(tmp_path / "out.csv")

    def done():
        rows = read_changes_csv(out)
        return bool(rows) and rows[-1][0] == "2" and rows[-1][2] == "5"

    run_until([sys.executable, os.path.join(EX, "udf_operator_persisting.py"), str(inp), out,
               str(tmp_path / "state")], done)


@pytest.mark.skipif(not os.environ.get("TIDEMARK_S3_ENDPOINT"), reason="needs the test RGW")
def test_streaming_join_s3_example(tmp_path):
    import json
    import uuid
    orders, users = tmp_path / "orders", tmp_path / "users"
    orders.mkdir()
    users.mkdir()
    write_file(str(orders / "o.csv"), "order_id,user,amount\n1,ann,2.5\n2,bob,1.0\n3,ann,1.5\n")
    write_file(str(users / "u.csv"), "user,country\nann,fr\n")
    out = str(tmp_path / "out.jsonl")
    env = dict(os.environ, AWS_ENDPOINT_URL=os.environ["TIDEMARK_S3_ENDPOINT"], AWS_ACCESS_KEY_ID="TESTACCESSKEY",
               AWS_SECRET_ACCESS_KEY="TESTSECRETKEY", AWS_REGION="us-east-1")

    def done():
        if not os.path.exists(out):
            return False
        state = {}
        for line in open(out).read().splitlines():
            o = json.loads(line)
            if o["diff"] > 0:
                state[o["country"]] = (o["total"], o["n"])
            elif state.get(o["country"]) == (o["total"], o["n"]):
                del state[o["country"]]
        return state == {"fr": (4.0, 2), "unknown": (1.0, 1)}

    run_until([sys.executable, os.path.join(EX, "streaming_join_s3.py"), str(orders), str(users), out,
               f"s3://tidemark-test/examples/{uuid.uuid4().hex}"], done, env=env)
