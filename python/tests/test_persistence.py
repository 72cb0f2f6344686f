"""The seed's persistence scenarios through the Python API. Expected outputs come from a plain
Python word count over the files on disk at each run."""
import collections
import os
import subprocess
import sys

import pytest

import tidemark as pw
from conftest import PROGRAMS, read_changes_csv, write_file

Mode = pw.PersistenceMode
Access = pw.persistence.SnapshotAccess


def counts_in(d):
    c = collections.Counter()
    for root, _, files in os.walk(d):
        for f in files:
            if not f.startswith("."):
                with open(os.path.join(root, f)) as fh:
                    c.update(fh.read().split())
    return c


def expected_changes(prev, cur):
    out = collections.Counter()
    for w in set(prev) | set(cur):
        if prev[w] != cur[w]:
            if prev[w]:
                out[(w, prev[w], -1)] += 1
            if cur[w]:
                out[(w, cur[w], 1)] += 1
    return out


def apply_changes(state, changes):
    """Applies (word, count, diff) changes in order, checking that every retraction removes
    the row present and every insertion adds a word absent (no duplicated change)."""
    for w, c, d in changes:
        if d > 0:
            assert w not in state, f"insertion of {w}={c} while {w}={state.get(w)} is present"
            state[w] = c
        else:
            assert state.get(w) == c, f"retraction of {w}={c} while {w}={state.get(w)} is present"
            del state[w]
    return state


def build_wordcount(inp, sink_changes=None, out_csv=None, name="lines", sub_name="sub"):
    lines = pw.io.plaintext.read(inp, mode="static", name=name)
    words = lines.select(word=pw.this.data.str.split()).flatten(pw.this.word)
    counts = words.groupby(pw.this.word).reduce(pw.this.word, count=pw.reducers.count())
    if out_csv is not None:
        pw.io.csv.write(counts, out_csv, name="counts")
    if sink_changes is not None:
        pw.io.subscribe(counts, on_change=lambda key, row, time, is_addition: sink_changes.append(
            (row["word"], row["count"], 1 if is_addition else -1)), name=sub_name)
    return counts


def config(state, mode=Mode.PERSISTING, access=Access.FULL, **kw):
    return pw.persistence.Config(pw.persistence.Backend.filesystem(state), persistence_mode=mode,
                                 snapshot_access=access, **kw)


def run_csv(inp, out, state, **kw):
    before = len(read_changes_csv(out))
    build_wordcount(inp, out_csv=out)
    pw.run(persistence_config=config(state, **kw))
    rows = read_changes_csv(out)[before:]
    return collections.Counter((w, int(c), int(d)) for w, c, _t, d in rows)


def test_three_runs_emit_exactly_each_runs_changes(tmp_path):
    inp, out, state = tmp_path / "in", str(tmp_path / "out.csv"), str(tmp_path / "state")
    inp.mkdir()
    write_file(str(inp / "1.txt"), "a b a\nc\n")
    prev = collections.Counter()
    # run 1: everything is new; run 2: one more file; run 3: nothing new
    for step in range(3):
        if step == 1:
            write_file(str(inp / "2.txt"), "b d d\n")
        cur = counts_in(inp)
        got = run_csv(str(inp), out, state)
        assert got == expected_changes(prev, cur), f"run {step + 1}"
        pw.clear_graph()
        prev = cur
    # the file as a whole is one uninterrupted change stream
    final = apply_changes({}, [(w, int(c), int(d)) for w, c, _t, d in read_changes_csv(out)])
    assert final == dict(counts_in(inp))


def test_modified_and_deleted_files_between_runs(tmp_path):
    inp, out, state = tmp_path / "in", str(tmp_path / "out.csv"), str(tmp_path / "state")
    inp.mkdir()
    write_file(str(inp / "a.txt"), "x y z\n")
    write_file(str(inp / "b.txt"), "y y\n")
    write_file(str(inp / "c.txt"), "w\n")
    first = counts_in(inp)
    assert run_csv(str(inp), out, state) == expected_changes(collections.Counter(), first)
    pw.clear_graph()
    write_file(str(inp / "a.txt"), "x q\n")  # modified
    os.remove(inp / "b.txt")                 # deleted
    second = counts_in(inp)
    assert run_csv(str(inp), out, state) == expected_changes(first, second)


def test_subscriber_after_restart_sees_only_new_rows(tmp_path):
    inp, state = tmp_path / "in", str(tmp_path / "state")
    inp.mkdir()
    write_file(str(inp / "1.txt"), "red green red\n")
    seen1 = []
    build_wordcount(str(inp), sink_changes=seen1)
    pw.run(persistence_config=config(state))
    first = counts_in(inp)
    assert collections.Counter(seen1) == expected_changes(collections.Counter(), first)
    write_file(str(inp / "2.txt"), "blue green\n")
    seen2 = []
    build_wordcount(str(inp), sink_changes=seen2)
    pw.run(persistence_config=config(state))
    assert collections.Counter(seen2) == expected_changes(first, counts_in(inp))
    assert not any(w == "red" for w, _, _ in seen2)


def _matrix_expectation(mode, access):
    """What run 2 (after one more file) emits, where the docs define it."""
    if access == Access.FULL:
        if mode in (Mode.PERSISTING, Mode.SELECTIVE_PERSISTING, Mode.OPERATOR_PERSISTING):
            return "delta"
        if mode in (Mode.BATCH, Mode.SPEEDRUN_REPLAY, Mode.REALTIME_REPLAY):
            return "everything"
        if mode == Mode.UDF_CACHING:
            return "new-file-only"
    if access == Access.RECORD:
        return "everything-or-delta"
    return None


@pytest.mark.parametrize("mode", list(Mode), ids=lambda m: m.value)
@pytest.mark.parametrize("access", list(Access), ids=lambda a: a.value)
def test_every_mode_and_access(tmp_path, mode, access):
    inp, state = tmp_path / "in", str(tmp_path / "state")
    inp.mkdir()
    write_file(str(inp / "1.txt"), "a b a\n")
    first = counts_in(inp)
    runs = []
    for step in range(2):
        if step == 1:
            write_file(str(inp / "2.txt"), "b c\n")
        seen = []
        build_wordcount(str(inp), sink_changes=seen)
        try:
            pw.run(persistence_config=config(state, mode, access))
        except pw.EngineError as e:  # a combination the engine refuses must say why
            print("REFUSED", mode, access, e)
            assert str(e).strip()
            return
        runs.append(seen)
    both = counts_in(inp)
    state_after_1 = apply_changes({}, runs[0])
    exp = _matrix_expectation(mode, access)
    if exp == "delta":
        assert state_after_1 == dict(first)
        assert collections.Counter(runs[1]) == expected_changes(first, both)
    elif exp == "everything":
        assert apply_changes({}, runs[1]) == dict(both)
    elif exp == "new-file-only":
        assert apply_changes({}, runs[1]) == dict(collections.Counter("b c".split()))
    elif exp == "everything-or-delta":
        s = apply_changes({}, runs[1]) if runs[1] and all(d > 0 for *_, d in runs[1]) else None
        if s is None:
            s = apply_changes(dict(state_after_1), runs[1])
        assert s == dict(both)
    else:
        # replay-only accesses: whatever is emitted is a consistent change stream
        apply_changes({}, runs[1]) if all(d > 0 for *_, d in runs[1]) else apply_changes(dict(state_after_1), runs[1])


def test_operator_persisting_nondeterministic_udf_replayed_on_retraction(tmp_path):
    class S(pw.Schema):
        k: int = pw.column_definition(primary_key=True)
        word: str

    inp, state = tmp_path / "in", str(tmp_path / "state")
    inp.mkdir()
    calls = {"nd": [], "det": []}
    run_no = {"n": 0}

    def program(seen):
        @pw.udf(deterministic=False)
        def tag(w: str) -> str:
            calls["nd"].append((run_no["n"], w))
            return f"{w}@run{run_no['n']}"

        @pw.udf(deterministic=True)
        def upper(w: str) -> str:
            calls["det"].append((run_no["n"], w))
            return w.upper()

        t = pw.io.csv.read(str(inp), schema=S, mode="static", name="words")
        # separate operators: a select with a non-deterministic UDF memoizes its whole rows
        r = t.select(pw.this.word, tag=tag(pw.this.word))
        d = t.select(pw.this.word, up=upper(pw.this.word))
        j = r.join(d, r.word == d.word).select(r.word, r.tag, d.up)
        pw.io.subscribe(j, on_change=lambda key, row, time, is_addition: seen.append(
            (row["word"], row["tag"], row["up"], is_addition)), name="sub")

    write_file(str(inp / "a.csv"), "k,word\n1,x\n2,y\n")
    run_no["n"] = 1
    seen1 = []
    program(seen1)
    pw.run(persistence_config=config(state, Mode.OPERATOR_PERSISTING))
    assert sorted(seen1) == [("x", "x@run1", "X", True), ("y", "y@run1", "Y", True)]

    write_file(str(inp / "a.csv"), "k,word\n2,y\n")  # row 1 (x) is retracted
    run_no["n"] = 2
    seen2 = []
    program(seen2)
    pw.run(persistence_config=config(state, Mode.OPERATOR_PERSISTING))
    # the retraction carries the value emitted in run 1: the stored result, not a new call
    assert seen2 == [("x", "x@run1", "X", False)]
    assert (2, "x") not in calls["nd"]
    # the deterministic UDF is recomputed for the retracted row
    assert (2, "x") in calls["det"]


@pytest.mark.parametrize("mode", [Mode.UDF_CACHING, Mode.PERSISTING])
def test_udf_cache_across_runs(tmp_path, mode):
    inp, state = tmp_path / "in", str(tmp_path / "state")
    inp.mkdir()
    calls = []

    def program(seen):
        @pw.udf(deterministic=True, cache_strategy=pw.udfs.DiskCache(name="slow_len"))
        def slow_len(w: str) -> int:
            calls.append(w)
            return len(w)

        lines = pw.io.plaintext.read(str(inp), mode="static")
        words = lines.select(word=pw.this.data.str.split()).flatten(pw.this.word)
        r = words.select(pw.this.word, n=slow_len(pw.this.word))
        pw.io.subscribe(r, on_change=lambda key, row, time, is_addition: seen.append((row["word"], row["n"])))

    write_file(str(inp / "1.txt"), "alpha beta\n")
    seen = []
    program(seen)
    pw.run(persistence_config=config(state, mode))
    assert sorted(calls) == ["alpha", "beta"] and sorted(seen) == [("alpha", 5), ("beta", 4)]
    calls.clear()
    write_file(str(inp / "2.txt"), "gamma alpha\n")
    seen = []
    program(seen)
    pw.run(persistence_config=config(state, mode))
    # only the argument never seen before is computed; alpha comes from the stored cache
    assert calls == ["gamma"]


def test_deduplicate_with_python_acceptor_across_restarts(tmp_path):
    class S(pw.Schema):
        v: int

    inp, state = tmp_path / "in", str(tmp_path / "state")
    inp.mkdir()
    calls = []

    def program(seen):
        def acceptor(new, old):
            calls.append((new, old))
            return new > old

        t = pw.io.csv.read(str(inp), schema=S, mode="static", name="vals")
        d = t.deduplicate(value=pw.this.v, acceptor=acceptor, name="dedup")
        pw.io.subscribe(d, on_change=lambda key, row, time, is_addition: seen.append((row["v"], is_addition)),
                        name="sub")

    write_file(str(inp / "1.csv"), "v\n5\n")
    seen = []
    program(seen)
    pw.run(persistence_config=config(state))
    assert seen == [(5, True)]
    write_file(str(inp / "2.csv"), "v\n4\n")
    seen = []
    program(seen)
    pw.run(persistence_config=config(state))
    assert seen == [] and (4, 5) in calls  # compared with the stored 5, refused
    write_file(str(inp / "3.csv"), "v\n9\n")
    seen = []
    program(seen)
    pw.run(persistence_config=config(state))
    assert sorted(seen) == [(5, False), (9, True)]


def test_storage_path_that_is_a_file(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    write_file(str(inp / "1.txt"), "a\n")
    f = tmp_path / "not-a-dir"
    f.write_text("x")
    build_wordcount(str(inp), sink_changes=[])
    with pytest.raises(pw.EngineError, match="not-a-dir"):
        pw.run(persistence_config=config(str(f)))


def test_config_api_as_the_seed(tmp_path):
    b = pw.persistence.Backend.filesystem(tmp_path / "s")
    c = pw.persistence.Config.simple_config(b, snapshot_interval_ms=250,
                                            snapshot_access=Access.RECORD, persistence_mode=Mode.BATCH,
                                            continue_after_replay=False)
    assert (c.snapshot_interval_ms, c.snapshot_access, c.persistence_mode, c.continue_after_replay) == \
        (250, Access.RECORD, Mode.BATCH, False)
    c2 = pw.persistence.Config(metadata_storage=b, snapshot_storage=b, snapshot_interval_ms=0,
                               snapshot_access=Access.FULL, persistence_mode=Mode.PERSISTING,
                               continue_after_replay=True)
    assert c2.metadata_storage is b and c2.snapshot_storage is b
    s3 = pw.io.s3.AwsS3Settings(bucket_name="b", access_key="k", secret_access_key="s", with_path_style=True,
                                region="us-east-1", endpoint="http://127.0.0.1:1", session_token="t")
    assert "s3" in repr(pw.persistence.Backend.s3("root", s3)).lower()
    assert pw.persistence.Backend.azure("root", "acct", "key", "cont")
    assert [m.name for m in Mode] == ["BATCH", "SPEEDRUN_REPLAY", "REALTIME_REPLAY", "PERSISTING",
                                      "SELECTIVE_PERSISTING", "UDF_CACHING", "OPERATOR_PERSISTING"]
    assert {a.name for a in Access} == {"FULL", "RECORD", "REPLAY", "OFFSETS_ONLY", "OFFLINE_REPLAY"}
    with pytest.raises(ValueError):
        pw.persistence.Config()


def test_mock_backend_replays_events(tmp_path):
    from tidemark import _engine
    ev = pw.persistence.SnapshotEvent
    events = {"lines": [ev.insert(_engine.key_from_values(["k1"]), ["p q p"]), ev.advance_time(2),
                        ev.insert(_engine.key_from_values(["k2"]), ["q"]), ev.advance_time(4), ev.finished()]}
    inp = tmp_path / "in"
    inp.mkdir()
    seen = []
    build_wordcount(str(inp), sink_changes=seen)
    pw.run(persistence_config=pw.persistence.Config(pw.persistence.Backend.mock(events),
                                                    persistence_mode=Mode.BATCH, continue_after_replay=False))
    assert apply_changes({}, seen) == {"p": 2, "q": 2}


def _start(args, **kw):
    return subprocess.Popen([sys.executable, os.path.join(PROGRAMS, "wordcount.py"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _wait_for_time(proc):
    """Blocks until the program reports a finished logical time (its output is committed)."""
    for line in proc.stdout:
        if line.startswith("time"):
            return
    raise AssertionError("program ended before its first time: " + proc.stderr.read())


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_stops_a_streaming_run_cleanly(tmp_path, sig):
    import signal
    inp, out, state = tmp_path / "in", str(tmp_path / "out.csv"), str(tmp_path / "state")
    inp.mkdir()
    write_file(str(inp / "1.txt"), "one two two\n")
    p = _start([str(inp), out, state, "streaming"])
    _wait_for_time(p)
    p.send_signal(getattr(signal, sig))
    rest, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert "done" in rest
    first = counts_in(inp)
    rows = [(w, int(c), int(d)) for w, c, _t, d in read_changes_csv(out)]
    assert apply_changes({}, rows) == dict(first)
    # the state was committed: a resumed run emits only the new file's changes
    write_file(str(inp / "2.txt"), "two three\n")
    r = subprocess.run([sys.executable, os.path.join(PROGRAMS, "wordcount.py"), str(inp), out, state, "static"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    new = collections.Counter((w, int(c), int(d)) for w, c, _t, d in read_changes_csv(out)[len(rows):])
    assert new == expected_changes(first, counts_in(inp))


def test_second_program_on_a_storage_in_use_is_refused(tmp_path):
    inp, out, state = tmp_path / "in", str(tmp_path / "out.csv"), str(tmp_path / "state")
    inp.mkdir()
    write_file(str(inp / "1.txt"), "one two two\n")
    p = _start([str(inp), out, state, "streaming"])
    try:
        _wait_for_time(p)
        r = subprocess.run([sys.executable, os.path.join(PROGRAMS, "wordcount.py"), str(inp),
                            str(tmp_path / "other.csv"), state, "static"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode != 0
        assert "is in use by pid %d" % p.pid in r.stderr, r.stderr
    finally:
        p.terminate()
        p.communicate(timeout=60)
    assert p.returncode == 0
    with pytest.raises(ValueError, match="lock_lease_ms"):
        pw.persistence.Config(pw.persistence.Backend.filesystem(state), lock_lease_ms=10)
    assert pw.persistence.Config(pw.persistence.Backend.filesystem(state), lock_lease_ms=5000).lock_lease_ms == 5000


@pytest.mark.parametrize("pmode", ["persisting", "operator_persisting"])
def test_sigkill_at_random_moments_equals_a_clean_run(tmp_path, pmode):
    import random
    import signal
    import time
    rnd = random.Random(int(os.environ.get("TIDEMARK_CRASH_SEED", "12")))
    inp, out, state = tmp_path / "in", str(tmp_path / "out.csv"), str(tmp_path / "state")
    inp.mkdir()
    vocab = "alpha beta gamma delta eps zeta eta theta".split()
    n_files = 0
    for attempt in range(int(os.environ.get("TIDEMARK_CRASH_RUNS", "5"))):
        p = _start([str(inp), out, state, "streaming", pmode])
        for _ in range(3):
            n_files += 1
            write_file(str(inp / f"{n_files:03}.txt"), " ".join(rnd.choice(vocab) for _ in range(50)) + "\n")
        _wait_for_time(p)
        time.sleep(rnd.uniform(0, 0.3))  # a random moment to crash at (not a synchronization)
        p.send_signal(signal.SIGKILL)
        p.communicate()
    r = subprocess.run([sys.executable, os.path.join(PROGRAMS, "wordcount.py"), str(inp), out, state, "static",
                        pmode], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [(w, int(c), int(d)) for w, c, _t, d in read_changes_csv(out)]
    # no duplicated or lost change, and the final state is the clean word count
    assert apply_changes({}, rows) == dict(counts_in(inp))


@pytest.mark.skipif(not os.environ.get("TIDEMARK_S3_ENDPOINT"),
                    reason="needs the test RGW (scripts/test.sh starts it and sets TIDEMARK_S3_ENDPOINT)")
def test_state_on_s3(tmp_path):
    import uuid
    settings = pw.io.s3.AwsS3Settings(bucket_name="tidemark-test", access_key="TESTACCESSKEY",
                                      secret_access_key="TESTSECRETKEY", with_path_style=True,
                                      region="us-east-1", endpoint=os.environ["TIDEMARK_S3_ENDPOINT"])
    root = f"pytest/{uuid.uuid4().hex}"
    inp = tmp_path / "in"
    inp.mkdir()
    write_file(str(inp / "1.txt"), "s3 state s3\n")
    prev = collections.Counter()
    for step in range(2):
        if step == 1:
            write_file(str(inp / "2.txt"), "state more\n")
        seen = []
        build_wordcount(str(inp), sink_changes=seen)
        pw.run(persistence_config=pw.persistence.Config(pw.persistence.Backend.s3(root, settings)))
        cur = counts_in(inp)
        assert collections.Counter(seen) == expected_changes(prev, cur), f"run {step + 1}"
        prev = cur


AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@pytest.mark.skipif(not os.environ.get("TIDEMARK_AZURE_ENDPOINT"),
                    reason="needs Azurite (scripts/test.sh starts it and sets TIDEMARK_AZURE_ENDPOINT)")
def test_state_on_azure(tmp_path):
    import uuid
    from tidemark import _engine
    endpoint = os.environ["TIDEMARK_AZURE_ENDPOINT"]
    _engine._create_azure_container("devstoreaccount1", AZURITE_KEY, "tidemark-py", endpoint)
    backend = pw.persistence.Backend.azure(f"pytest/{uuid.uuid4().hex}", "devstoreaccount1", AZURITE_KEY,
                                           "tidemark-py", endpoint)
    inp = tmp_path / "in"
    inp.mkdir()
    write_file(str(inp / "1.txt"), "blob state blob\n")
    prev = collections.Counter()
    for step in range(2):
        if step == 1:
            write_file(str(inp / "2.txt"), "state more\n")
        seen = []
        build_wordcount(str(inp), sink_changes=seen)
        pw.run(persistence_config=pw.persistence.Config(backend))
        cur = counts_in(inp)
        assert collections.Counter(seen) == expected_changes(prev, cur), f"run {step + 1}"
        prev = cur


@pytest.mark.skipif(not os.environ.get("TIDEMARK_S3_ENDPOINT"), reason="needs the test RGW")
def test_s3_read_connector(tmp_path):
    import shutil
    import uuid
    if not shutil.which("curl"):
        pytest.skip("needs curl to upload test objects")
    endpoint = os.environ["TIDEMARK_S3_ENDPOINT"]
    prefix = f"pytest-read/{uuid.uuid4().hex}"

    def put(key, body):
        src = tmp_path / "body"
        src.write_text(body)
        subprocess.run(["curl", "-sf", "-X", "PUT", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user",
                        "TESTACCESSKEY:TESTSECRETKEY", "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                        "--data-binary", f"@{src}", f"{endpoint}/tidemark-test/{prefix}/{key}"], check=True)

    put("a.txt", "up down up\n")
    put("b.txt", "down\n")
    settings = pw.io.s3.AwsS3Settings(bucket_name="tidemark-test", access_key="TESTACCESSKEY",
                                      secret_access_key="TESTSECRETKEY", with_path_style=True,
                                      region="us-east-1", endpoint=endpoint)
    lines = pw.io.s3.read(f"s3://tidemark-test/{prefix}", format="plaintext", aws_s3_settings=settings,
                          mode="static")
    words = lines.select(word=pw.this.data.str.split()).flatten(pw.this.word)
    counts = words.groupby(pw.this.word).reduce(pw.this.word, count=pw.reducers.count())
    keys, cols = pw.debug.table_to_dicts(counts)
    assert {cols["word"][k]: cols["count"][k] for k in keys} == {"up": 2, "down": 2}
