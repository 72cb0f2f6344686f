import os
import sys

import pytest

import tidemark as pw

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAMS = os.path.join(HERE, "programs")


@pytest.fixture(autouse=True)
def fresh_graph():
    pw.clear_graph()
    yield
    pw.clear_graph()


def write_file(path, text):
    """Writes atomically (hidden temporary + rename), as streaming readers expect."""
    d, base = os.path.split(path)
    tmp = os.path.join(d, "." + base + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read_changes_csv(path):
    """[(values..., time, diff)] of a pw.io.csv.write output (header skipped)."""
    import csv
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return [tuple(r) for r in rows[1:]] if rows else []
