"""The Python word count against build/bin/wordcount on the same input, and with a trivial
Python UDF per row. Prints one line per figure (and writes them as JSON with --json FILE);
exits 1 when the three programs disagree on the counts, and, only when --max-ratio R is given,
when the Python pipeline (no Python code on the data path) is slower than R x the C++ one.
That no Python runs per row is tested deterministically (python/tests/test_data_path.py).

    python bench/python/wordcount_vs_cpp.py [--words N] [--repeat K] [--max-ratio R] [--json FILE] [--bin build/bin]
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

PROGRAM = r'''
import sys, time
import tidemark as pw
inp, out, udf = sys.argv[1], sys.argv[2], sys.argv[3] == "udf"
lines = pw.io.plaintext.read(inp, mode="static")
words = lines.select(word=pw.this.data.str.split()).flatten(pw.this.word)
if udf:
    @pw.udf(deterministic=True)
    def ident(w: str) -> str:
        return w
    words = words.select(word=ident(pw.this.word))
counts = words.groupby(pw.this.word).reduce(pw.this.word, count=pw.reducers.count())
pw.io.csv.write(counts, out)
t0 = time.perf_counter()
pw.run()
print("engine_seconds", time.perf_counter() - t0)
'''


def make_input(d, n_words, seed=7):
    rnd = random.Random(seed)
    vocab = [f"w{i}" for i in range(5000)]
    per_file = 1_000_000
    written = 0
    f_no = 0
    while written < n_words:
        n = min(per_file, n_words - written)
        words = rnd.choices(vocab, k=n)
        with open(os.path.join(d, f"part-{f_no:04}.txt"), "w") as f:
            for i in range(0, n, 10):
                f.write(" ".join(words[i:i + 10]) + "\n")
        written += n
        f_no += 1


def timed(cmd):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {r.stderr[-2000:]}")
    return dt, r.stdout


def final_counts(path):
    import csv
    c = {}
    with open(path, newline="") as f:
        rows = list(csv.reader(f))[1:]
    for w, n, _t, d in rows:
        if int(d) > 0:
            c[w] = int(n)
        elif c.get(w) == int(n):
            del c[w]
    return c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--words", type=int, default=10_000_000)
    ap.add_argument("--max-ratio", type=float, default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin"))
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tidemark-pybench.")
    try:
        inp = os.path.join(work, "in")
        os.mkdir(inp)
        make_input(inp, a.words)
        prog = os.path.join(work, "wc.py")
        with open(prog, "w") as f:
            f.write(PROGRAM)
        cpp, py, pyudf = [], [], []
        for _ in range(a.repeat):  # interleaved, best of N: the machine is shared
            cpp.append(timed([os.path.join(a.bin, "wordcount"), "--input", inp, "--output",
                              os.path.join(work, "cpp.csv")])[0])
            py.append(timed([sys.executable, prog, inp, os.path.join(work, "py.csv"), "plain"])[0])
        pyudf.append(timed([sys.executable, prog, inp, os.path.join(work, "udf.csv"), "udf"])[0])
        same = final_counts(os.path.join(work, "cpp.csv")) == final_counts(os.path.join(work, "py.csv")) == \
            final_counts(os.path.join(work, "udf.csv"))
        c, p, u = min(cpp), min(py), min(pyudf)
        print(f"words={a.words} cpp_wordcount_s={c:.3f} python_wordcount_s={p:.3f} ratio={p / c:.3f} "
              f"python_udf_s={u:.3f} udf_rows_per_s={a.words / u:,.0f} same_counts={same}")
        if a.json:
            import json
            with open(a.json, "w") as f:
                json.dump({"python_wordcount": {"seconds": p, "baseline_seconds": c, "ratio": p / c, "words": a.words},
                           "python_udf": {"seconds": u, "baseline_seconds": c, "ratio": u / c,
                                          "rows_per_second": a.words / u}}, f, indent=1)
        if not same:
            sys.exit("the three programs disagree on the counts")
        if a.max_ratio is not None and p / c > a.max_ratio:
            sys.exit(f"the Python word count is {p / c:.2f}x the C++ one (limit {a.max_ratio}x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
