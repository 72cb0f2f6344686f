"""Tables, expressions, reducers, joins, UDFs and connectors through the Python API; expected
results are computed independently in plain Python."""
import collections
import datetime
import os
import subprocess
import sys
import threading
from typing import Optional

import pytest

import tidemark as pw
from conftest import read_changes_csv, write_file

PEOPLE = """
   | name  | age | city
 1 | alice | 30  | paris
 2 | bob   | 25  | rome
 3 | carol | 30  | rome
 4 | dave  | 41  | oslo
"""
PEOPLE_ROWS = [("alice", 30, "paris"), ("bob", 25, "rome"), ("carol", 30, "rome"), ("dave", 41, "oslo")]


def rows_of(table):
    keys, cols = pw.debug.table_to_dicts(table)
    names = list(cols)
    return sorted((tuple(cols[n][k] for n in names) for k in keys),
                  key=lambda r: [(x is None, type(x).__name__, x if x is not None else 0) for x in r])


def test_import_starts_no_threads():
    code = "import os, threading, tidemark; print(len(os.listdir('/proc/self/task')), threading.active_count())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "1"]


def test_select_arithmetic_and_filter():
    t = pw.debug.table_from_markdown(PEOPLE)
    r = t.filter(pw.this.age >= 30).select(pw.this.name, a2=t.age * 2 + 1, half=pw.this.age / 4,
                                            fl=pw.this.age // 7, md=pw.this.age % 7, neg=-pw.this.age)
    want = sorted((n, a * 2 + 1, a / 4, a // 7, a % 7, -a) for n, a, _ in PEOPLE_ROWS if a >= 30)
    assert rows_of(r) == want


def test_boolean_logic_and_conditionals():
    t = pw.debug.table_from_markdown(PEOPLE)
    r = t.select(pw.this.name,
                 both=(pw.this.age > 26) & (pw.this.city == "rome"),
                 either=(pw.this.age < 26) | ~(pw.this.city != "oslo"),
                 label=pw.if_else(pw.this.age > 29, "old", "young"),
                 up=pw.this.name.str.upper(), n=pw.this.name.str.len(),
                 s=pw.this.name.str.startswith("c"), tup=pw.make_tuple(pw.this.name, pw.this.age),
                 txt=pw.cast(str, pw.this.age))
    want = sorted((n, a > 26 and c == "rome", a < 26 or not c != "oslo", "old" if a > 29 else "young",
                   n.upper(), len(n), n.startswith("c"), (n, a), str(a)) for n, a, c in PEOPLE_ROWS)
    assert rows_of(r) == want


def test_groupby_every_reducer():
    t = pw.debug.table_from_markdown(PEOPLE)
    r = t.groupby(pw.this.city).reduce(
        pw.this.city, n=pw.reducers.count(), total=pw.reducers.sum(pw.this.age),
        lo=pw.reducers.min(pw.this.age), hi=pw.reducers.max(pw.this.age), mean=pw.reducers.avg(pw.this.age),
        distinct=pw.reducers.count_distinct(pw.this.age), names=pw.reducers.sorted_tuple(pw.this.name))
    by = collections.defaultdict(list)
    for n, a, c in PEOPLE_ROWS:
        by[c].append((n, a))
    want = sorted((c, len(v), sum(a for _, a in v), min(a for _, a in v), max(a for _, a in v),
                   sum(a for _, a in v) / len(v), len({a for _, a in v}), tuple(sorted(n for n, _ in v)))
                  for c, v in by.items())
    assert rows_of(r) == want


def test_reduce_whole_table():
    t = pw.debug.table_from_markdown(PEOPLE)
    r = t.reduce(n=pw.reducers.count(), total=pw.reducers.sum(pw.this.age))
    assert rows_of(r) == [(len(PEOPLE_ROWS), sum(a for _, a, _ in PEOPLE_ROWS))]


CITIES = """
   | city  | country
 1 | paris | fr
 2 | rome  | it
 3 | lima  | pe
"""


@pytest.mark.parametrize("how", ["inner", "left", "right", "outer"])
def test_join_modes(how):
    people = pw.debug.table_from_markdown(PEOPLE)
    cities = pw.debug.table_from_markdown(CITIES)
    method = {"inner": people.join, "left": people.join_left, "right": people.join_right,
              "outer": people.join_outer}[how]
    r = method(cities, people.city == cities.city).select(name=pw.left.name, country=pw.right.country,
                                                          c=cities.city)
    cmap = {"paris": "fr", "rome": "it", "lima": "pe"}
    want = []
    for n, a, c in PEOPLE_ROWS:
        if c in cmap:
            want.append((n, cmap[c], c))
        elif how in ("left", "outer"):
            want.append((n, None, None))
    if how in ("right", "outer"):
        used = {c for _, _, c in PEOPLE_ROWS}
        want += [(None, cmap[c], c) for c in cmap if c not in used]
    assert sorted(rows_of(r), key=repr) == sorted(want, key=repr)


def test_set_operations_and_updates():
    a = pw.debug.table_from_markdown("""
       | v
     1 | 10
     2 | 20
     3 | 30
    """)
    b = pw.debug.table_from_markdown("""
       | v
     2 | 200
     4 | 400
    """)
    union = a.difference(b).concat(b)
    upd = a.update_rows(b)
    cells = a.update_cells(a.intersect(b).select(v=pw.this.v * 0 + 7))
    inter = a.intersect(b)
    sub = pw.debug.table_to_dicts
    assert rows_of(union) == [(10,), (30,), (200,), (400,)]
    pw.clear_graph()


def test_update_rows_replaces_by_key():
    a = pw.debug.table_from_markdown("""
       | v
     1 | 10
     2 | 20
    """)
    b = pw.debug.table_from_markdown("""
       | v
     2 | 200
     3 | 300
    """)
    assert rows_of(a.update_rows(b)) == [(10,), (200,), (300,)]


def test_flatten_and_word_count():
    t = pw.debug.table_from_markdown("""
       | data
     1 | a_b_a
     2 | c_b
    """)
    w = t.select(word=pw.this.data.str.split("_")).flatten(pw.this.word)
    r = w.groupby(pw.this.word).reduce(pw.this.word, count=pw.reducers.count())
    assert rows_of(r) == sorted(collections.Counter("a b a c b".split()).items())


def test_windowby_tumbling():
    t = pw.debug.table_from_markdown("""
       | t  | v
     1 | 1  | 1
     2 | 4  | 2
     3 | 11 | 3
     4 | 12 | 4
    """)
    r = t.windowby(pw.this.t, window=pw.temporal.tumbling(duration=10)).reduce(
        start=pw.this._pw_window_start, total=pw.reducers.sum(pw.this.v))
    assert rows_of(r) == [(0, 3), (10, 7)]


def test_udf_and_apply():
    @pw.udf
    def shout(s: str) -> str:
        return s.upper() + "!"

    @pw.udf(deterministic=True)
    def add(a: int, b: int) -> int:
        return a + b

    t = pw.debug.table_from_markdown(PEOPLE)
    r = t.select(s=shout(pw.this.name), x=add(pw.this.age, 1), y=pw.apply(lambda a: a * 3, pw.this.age),
                 z=pw.apply_with_type(lambda n, a: f"{n}:{a}", str, pw.this.name, pw.this.age))
    want = sorted((n.upper() + "!", a + 1, a * 3, f"{n}:{a}") for n, a, _ in PEOPLE_ROWS)
    assert rows_of(r) == want


def test_udf_exception_names_operator_and_row():
    def boom(age):
        if age == 25:
            raise ZeroDivisionError("no 25s")
        return age

    t = pw.debug.table_from_markdown(PEOPLE)
    r = t.select(v=pw.apply_with_type(boom, int, pw.this.age))
    with pytest.raises(pw.EngineError) as info:
        pw.debug.table_to_dicts(r)
    msg = str(info.value)
    assert "select" in msg and "ZeroDivisionError" in msg and "no 25s" in msg and "(25)" in msg, msg
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_udf_exception_in_pw_run(tmp_path):
    write_file(str(tmp_path / "in.txt"), "x\ny\n")

    @pw.udf
    def fail(s: str) -> str:
        raise KeyError(s)

    t = pw.io.plaintext.read(str(tmp_path / "in.txt"), mode="static")
    pw.io.csv.write(t.select(v=fail(pw.this.data)), str(tmp_path / "out.csv"))
    with pytest.raises(pw.EngineError) as info:
        pw.run()
    assert "udf 'test_udf_exception_in_pw_run.<locals>.fail'" in str(info.value)
    assert isinstance(info.value.__cause__, KeyError)


def test_schema_types_roundtrip(tmp_path):
    class S(pw.Schema):
        k: int = pw.column_definition(primary_key=True)
        f: float
        s: str
        b: bool
        o: Optional[int]

    p = tmp_path / "in.csv"
    p.write_text("k,f,s,b,o\n1,1.5,x,true,\n2,-2.25,\"y,z\",false,7\n")
    t = pw.io.csv.read(str(p), schema=S, mode="static")
    assert t.schema.typehints() == {"k": int, "f": float, "s": str, "b": bool, "o": Optional[int]}
    assert rows_of(t) == [(1, 1.5, "x", True, None), (2, -2.25, "y,z", False, 7)]


def test_python_values_roundtrip():
    from tidemark import _engine
    vals = [None, True, 3, -2**63, 2.5, "żółw", b"\x00\xff", (1, ("a", None)),
            datetime.datetime(2024, 5, 6, 7, 8, 9, 123456),
            datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc),
            datetime.timedelta(days=-1, microseconds=5), pw.Json({"a": [1, 2]})]
    for v in vals:
        assert _engine._roundtrip(v) == v, v
    with pytest.raises(ValueError):
        _engine._roundtrip(2**70)


def test_subscribe_and_jsonlines(tmp_path):
    class S(pw.Schema):
        name: str
        n: int

    p = tmp_path / "in.jsonl"
    p.write_text('{"name": "a", "n": 1}\n{"name": "b", "n": 2}\n{"name": "a", "n": 5}\n')
    t = pw.io.jsonlines.read(str(p), schema=S, mode="static")
    r = t.groupby(pw.this.name).reduce(pw.this.name, total=pw.reducers.sum(pw.this.n))
    seen = []
    ends = []
    pw.io.subscribe(r, on_change=lambda key, row, time, is_addition: seen.append((row, is_addition)),
                    on_end=lambda: ends.append(True))
    pw.io.jsonlines.write(r, str(tmp_path / "out.jsonl"))
    pw.run()
    assert sorted((d["name"], d["total"]) for d, add in seen if add) == [("a", 6), ("b", 2)]
    assert ends == [True]
    import json
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted((o["name"], o["total"], o["diff"]) for o in out) == [("a", 6, 1), ("b", 2, 1)]


def test_connector_subject():
    class Numbers(pw.io.python.ConnectorSubject):
        def run(self):
            for i in range(10):
                self.next(n=i, parity=i % 2)
                if i % 3 == 0:
                    self.commit()

    class S(pw.Schema):
        n: int
        parity: int

    t = pw.io.python.read(Numbers(), schema=S)
    r = t.groupby(pw.this.parity).reduce(pw.this.parity, total=pw.reducers.sum(pw.this.n))
    final = {}
    pw.io.subscribe(r, on_change=lambda key, row, time, is_addition: final.__setitem__(row["parity"], row["total"])
                    if is_addition else None)
    pw.run()
    assert final == {0: sum(range(0, 10, 2)), 1: sum(range(1, 10, 2))}


def test_deduplicate_with_python_acceptor():
    t = pw.debug.table_from_markdown("""
       | v  | __time__
     1 | 5  | 2
     2 | 3  | 4
     3 | 9  | 6
     4 | 7  | 8
    """)
    calls = []

    def acceptor(new, old):
        calls.append((new, old))
        return new > old

    r = t.deduplicate(value=pw.this.v, acceptor=acceptor)
    assert rows_of(r.select(pw.this.v)) == [(9,)]
    assert calls, "the Python acceptor was called"


def test_duplicate_names_raise_value_error(tmp_path):
    write_file(str(tmp_path / "a.txt"), "x\n")
    t = pw.io.plaintext.read(str(tmp_path / "a.txt"), mode="static", name="src")
    with pytest.raises(ValueError, match="src"):
        pw.io.plaintext.read(str(tmp_path / "a.txt"), mode="static", name="src")
    pw.io.csv.write(t, str(tmp_path / "o1.csv"), name="out")
    with pytest.raises(ValueError, match="out"):
        pw.io.csv.write(t, str(tmp_path / "o2.csv"), name="out")


def test_unknown_column_is_a_clear_error():
    t = pw.debug.table_from_markdown(PEOPLE)
    with pytest.raises(AttributeError, match="nope"):
        t.nope
    with pytest.raises(ValueError, match="nope"):
        t.select(x=pw.this.nope)


def test_table_from_graph_that_ran_is_refused():
    t = pw.debug.table_from_markdown(PEOPLE)
    pw.debug.table_to_dicts(t)
    with pytest.raises(ValueError, match="already been run"):
        t.select(pw.this.name)


def test_run_releases_the_gil_and_callbacks_take_it():
    """The subject's thread waits for the engine to report the first batch (a subscribe
    callback) before pushing the second: possible only while the engine runs without the GIL."""
    first_done = threading.Event()
    got = []

    class Two(pw.io.python.ConnectorSubject):
        def run(self):
            self.next(v=1)
            self.commit()
            assert first_done.wait(30), "the engine did not deliver the first batch"
            self.next(v=2)
            self.commit()

    class S(pw.Schema):
        v: int

    t = pw.io.python.read(Two(), schema=S)

    def on_change(key, row, time, is_addition):
        got.append(row["v"])
        first_done.set()

    pw.io.subscribe(t, on_change=on_change)
    pw.run()
    assert got == [1, 2]


def test_star_rename_without_with_columns_getitem():
    t = pw.debug.table_from_markdown(PEOPLE)
    r = t.select(*pw.this, next_age=pw.this.age + 1).without(pw.this.city).rename(years=pw.this.age)
    assert r.column_names() == ["name", "years", "next_age"]
    r = r.with_columns(next_age=pw.this.next_age * 10)
    sub = t[["name", "city"]]
    assert sub.column_names() == ["name", "city"]
    assert rows_of(r) == sorted((n, a, (a + 1) * 10) for n, a, _ in PEOPLE_ROWS)


def test_sort_and_ix():
    t = pw.debug.table_from_markdown(PEOPLE)
    s = t.sort(key=pw.this.age)
    nxt = t.ix(s.next, optional=True)  # for every row: the row after it in age order
    keys, names = pw.debug.table_to_dicts(t.select(pw.this.name))
    pw.clear_graph()
    t = pw.debug.table_from_markdown(PEOPLE)
    s = t.sort(key=pw.this.age)
    nkeys, nxt_names = pw.debug.table_to_dicts(t.ix(s.next, optional=True).select(pw.this.name))
    got = {names["name"][k]: nxt_names["name"][k] for k in keys}
    ages = {n: a for n, a, _ in PEOPLE_ROWS}
    # following "next" from the one row nobody points to visits everyone, in age order
    first = [n for n in got if n not in got.values()]
    assert len(first) == 1
    walk = [first[0]]
    while got[walk[-1]] is not None:
        walk.append(got[walk[-1]])
    assert sorted(walk) == sorted(ages) and [ages[w] for w in walk] == sorted(ages.values())


def test_windowby_sliding_and_session():
    t = pw.debug.table_from_markdown("""
       | t  | v
     1 | 1  | 1
     2 | 2  | 2
     3 | 10 | 3
     4 | 11 | 4
    """)
    ses = t.windowby(pw.this.t, window=pw.temporal.session(max_gap=3)).reduce(
        total=pw.reducers.sum(pw.this.v), n=pw.reducers.count())
    assert rows_of(ses) == [(3, 2), (7, 2)]
    pw.clear_graph()
    t = pw.debug.table_from_markdown("""
       | t  | v
     1 | 1  | 1
     2 | 6  | 2
    """)
    sl = t.windowby(pw.this.t, window=pw.temporal.sliding(hop=5, duration=10)).reduce(
        start=pw.this._pw_window_start, total=pw.reducers.sum(pw.this.v))
    want = collections.Counter()
    for ts, v in [(1, 1), (6, 2)]:
        for start in range(-10, 10, 5):
            if start <= ts < start + 10:
                want[start] += v
    assert rows_of(sl) == sorted(want.items())


def test_columns_of_a_table_with_the_same_keys():
    t = pw.debug.table_from_markdown(PEOPLE)
    t2 = t.select(age=pw.this.age + 100)
    r = t2.select(pw.this.age, orig=t.age, name=t.name, s=t2.age + t.age)  # t.age, not t2's age column
    assert rows_of(r) == sorted((a + 100, a, n, 2 * a + 100) for n, a, _ in PEOPLE_ROWS)
    pw.clear_graph()
    t = pw.debug.table_from_markdown(PEOPLE)
    t2 = t.select(age=pw.this.age + 100)
    w = t2.with_columns(city=t.city).filter(t.age > 26)
    assert w.column_names() == ["age", "city"]
    assert rows_of(w) == sorted((a + 100, c) for n, a, c in PEOPLE_ROWS if a > 26)


def test_ix_result_columns_in_select():
    users = pw.debug.table_from_markdown("""
       | user | country
     1 | ann  | fr
     2 | bob  | it
    """).with_id_from(pw.this.user)
    orders = pw.debug.table_from_markdown("""
       | user | amount
     7 | ann  | 3
     8 | bob  | 4
     9 | cid  | 5
    """)
    ptr = orders.select(p=orders.pointer_from(orders.user))
    r = orders.select(orders.user, pw.this.amount, country=users.ix(ptr.p, optional=True).country)
    assert rows_of(r) == [("ann", 3, "fr"), ("bob", 4, "it"), ("cid", 5, None)]


def test_failing_subscriber_stops_the_run(tmp_path):
    write_file(str(tmp_path / "a.txt"), "x\n")
    t = pw.io.plaintext.read(str(tmp_path / "a.txt"), mode="static")

    def on_change(key, row, time, is_addition):
        raise RuntimeError("subscriber broke")

    pw.io.subscribe(t, on_change=on_change)
    with pytest.raises(pw.EngineError, match="subscriber broke") as info:
        pw.run()
    assert isinstance(info.value.__cause__, RuntimeError)


def test_with_id_from_and_pointer_from_agree():
    users = pw.debug.table_from_markdown("""
       | user | country
     1 | ann  | fr
     2 | bob  | it
    """)
    orders = pw.debug.table_from_markdown("""
       | user | amount
     7 | ann  | 3
     8 | bob  | 4
     9 | ann  | 5
    """)
    by_name = users.with_id_from(users.user)
    looked_up = by_name.ix(orders.select(p=orders.pointer_from(orders.user)).p)
    keys, cols = pw.debug.table_to_dicts(looked_up.select(pw.this.user, pw.this.country))
    assert sorted((cols["user"][k], cols["country"][k]) for k in keys) == [("ann", "fr"), ("ann", "fr"),
                                                                            ("bob", "it")]
