"""No Python code runs per row unless the pipeline asks for it: a word count built from the
package's operators calls no Python function while the engine runs, whatever the input size;
a Python UDF is called once per row. Counted with a profile hook (deterministic, not timed; the
timing comparison with the C++ binary is bench/python/wordcount_vs_cpp.py)."""
import os
import sys
import threading

import pytest

import tidemark as pw


def write_words(d, lines, words_per_line=10):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "part-0.txt"), "w") as f:
        for i in range(lines):
            f.write(" ".join(f"w{(i * words_per_line + j) % 997}" for j in range(words_per_line)) + "\n")


def python_calls_during_run(inp, out, udf):
    lines = pw.io.plaintext.read(inp, mode="static")
    words = lines.select(word=pw.this.data.str.split()).flatten(pw.this.word)
    if udf:
        @pw.udf(deterministic=True)
        def ident(w: str) -> str:
            return w
        words = words.select(word=ident(pw.this.word))
    counts = words.groupby(pw.this.word).reduce(pw.this.word, count=pw.reducers.count())
    pw.io.csv.write(counts, out)
    calls = {"n": 0, "udf": 0}
    engine_threads = set()

    def hook(frame, event, arg):
        if event == "call":
            calls["n"] += 1
            engine_threads.add(threading.get_ident())
            if frame.f_code.co_name == "ident":
                calls["udf"] += 1

    # The hook sees calls made from this thread (where pw.run runs the engine) and from threads
    # Python starts; the engine's own threads never enter Python without a UDF.
    sys.setprofile(hook)
    threading.setprofile(hook)
    try:
        pw.run()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    return calls


@pytest.fixture(autouse=True)
def one_worker(monkeypatch):
    # The hook sees the calling thread (the engine's with 1 worker); other workers are threads
    # the engine starts, which a profile hook does not follow.
    monkeypatch.setenv("TIDEMARK_THREADS", "1")


def test_word_count_calls_no_python_per_row(tmp_path):
    seen = []
    for lines in (1_000, 20_000):
        pw.clear_graph()
        write_words(str(tmp_path / f"in{lines}"), lines)
        seen.append(python_calls_during_run(str(tmp_path / f"in{lines}"), str(tmp_path / f"out{lines}.csv"), udf=False))
    # What runs is set-up and tear-down (connectors, the run wrapper): the same few calls for
    # 10,000 and 200,000 words.
    assert seen[0]["udf"] == seen[1]["udf"] == 0
    assert seen[0]["n"] == seen[1]["n"] < 200, seen


def test_udf_is_called_per_row_and_is_seen(tmp_path):
    # The counterpart that shows the hook sees the engine's calls into Python.
    write_words(str(tmp_path / "in"), 1_000)
    calls = python_calls_during_run(str(tmp_path / "in"), str(tmp_path / "out.csv"), udf=True)
    assert calls["udf"] == 10_000
    assert calls["n"] >= 10_000
