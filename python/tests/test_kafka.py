"""pw.io.kafka against the real broker scripts/test.sh starts (TIDEMARK_KAFKA_BOOTSTRAP): a
round trip (pw.io.kafka.write's json messages read back with pw.io.kafka.read) and a reader
that resumes from its stored offsets across restarts."""
import collections
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

import tidemark as pw
from conftest import read_changes_csv

BOOTSTRAP = os.environ.get("TIDEMARK_KAFKA_BOOTSTRAP")
pytestmark = pytest.mark.skipif(not BOOTSTRAP, reason="needs the test Kafka broker (scripts/test.sh starts it)")

READER = r'''
import sys
import tidemark as pw

class Msg(pw.Schema):
    data: str

bootstrap, topic, out, state = sys.argv[1:5]
msgs = pw.io.kafka.read({"bootstrap.servers": bootstrap, "group.id": "ignored"}, topic, schema=Msg,
                        format="json", autocommit_duration_ms=20, name="words")
words = msgs.select(word=pw.this.data.str.split()).flatten(pw.this.word)
counts = words.groupby(pw.this.word).reduce(pw.this.word, count=pw.reducers.count())
pw.io.csv.write(counts, out, name="counts")
pw.run(persistence_config=pw.persistence.Config(pw.persistence.Backend.filesystem(state)))
'''


def produce(topic, lines):
    """One json message {"data": word, "time": t, "diff": 1} per line, by pw.io.kafka.write."""
    t = pw.debug.table_from_markdown("data\n" + "\n".join(lines))
    pw.io.kafka.write(t, {"bootstrap.servers": BOOTSTRAP}, topic, format="json")
    pw.run()


def final_counts(path):
    live = {}
    for word, count, _t, diff in read_changes_csv(path):
        if int(diff) > 0:
            live[word] = int(count)
        elif live.get(word) == int(count):
            del live[word]
    return live


def run_reader(tmp_path, topic, out, state, want):
    prog = tmp_path / "reader.py"
    prog.write_text(READER)
    p = subprocess.Popen([sys.executable, str(prog), BOOTSTRAP, topic, out, state],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while final_counts(out) != want and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.02)  # polls the output file for the expected counts (bounded)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert final_counts(out) == want, err


def test_round_trip_and_restart_resumes_from_stored_offsets(tmp_path):
    from tidemark import _engine
    topic = "pytest-" + uuid.uuid4().hex[:8]
    _engine._create_kafka_topic(BOOTSTRAP, topic, 2)
    out, state = str(tmp_path / "out.csv"), str(tmp_path / "state")
    produce(topic, ["a", "b", "b", "c"])  # one word per message (markdown cells hold no spaces)
    run_reader(tmp_path, topic, out, state, {"a": 1, "b": 2, "c": 1})
    before = len(read_changes_csv(out))
    produce(topic, ["c", "d"])
    run_reader(tmp_path, topic, out, state, {"a": 1, "b": 2, "c": 2, "d": 1})
    new = collections.Counter((w, int(c), int(d)) for w, c, _t, d in read_changes_csv(out)[before:])
    # only the new message's changes: nothing of the topic was read twice
    assert new == collections.Counter({("c", 1, -1): 1, ("c", 2, 1): 1, ("d", 1, 1): 1})


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="bootstrap.servers"):
        pw.io.kafka.read({}, "t")
    with pytest.raises(ValueError, match="needs schema"):
        pw.io.kafka.read({"bootstrap.servers": BOOTSTRAP}, "t", format="json")
    with pytest.raises(ValueError, match="unknown format"):
        pw.io.kafka.read({"bootstrap.servers": BOOTSTRAP}, "t", format="avro")
