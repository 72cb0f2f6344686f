"""pw.debug: tables from markdown literals, printing and collecting results."""
from __future__ import annotations

from typing import Any, Optional

from . import _engine, _graph
from .table import Table


def table_from_markdown(table_def: str, id_from=None, unsafe_trusted_ids=False, schema=None,
                        _stacklevel=1) -> Table:
    """
        | name  | age
      1 | alice | 30
      2 | bob   | 25

    Optional leading id column; __time__ and __diff__ columns make updates over time."""
    st = _graph.current()
    t = Table(_engine.table_from_markdown(st.cpp, table_def), st)
    if schema is not None:
        from .expression import cast
        from ._types import to_engine_type
        cols = {}
        for n, tp in schema.typehints().items():
            d, _ = to_engine_type(tp)
            cur = dict((c[0], c[1]) for c in t._columns()).get(n)
            cols[n] = cast(tp, t[n]) if cur is not None and cur != d and d not in ("any",) else t[n]
        t = t.select(**cols)
    return t


table_from_pandas_markdown = table_from_markdown


def _changes(table: Table):
    _graph.reset()
    return _engine.compute_changes(table._cpp)


def _final_state(table: Table):
    state = {}
    for key, row, time, diff in _changes(table):
        if diff > 0:
            state[key] = row
        elif state.get(key) == row:
            del state[key]
    return state


def table_to_dicts(table: Table, **kwargs):
    """(keys, {column: {key: value}}) of the table's final contents."""
    names = table.column_names()
    state = _final_state(table)
    keys = list(state)
    cols = {n: {k: state[k][i] for k in keys} for i, n in enumerate(names)}
    return keys, cols


def table_to_pandas(table: Table, *, include_id: bool = True):
    import pandas as pd  # optional dependency
    keys, cols = table_to_dicts(table)
    df = pd.DataFrame({n: [cols[n][k] for k in keys] for n in table.column_names()}, index=keys if include_id else None)
    return df


def _sort_key(row):
    return tuple((type(v).__name__, repr(v)) if not isinstance(v, (int, float, str)) or isinstance(v, bool)
                 else ("", v if not isinstance(v, str) else v) for v in row)


def _fmt(v) -> str:
    if v is None:
        return ""
    return str(v)


def table_to_string(table: Table, include_id: bool = False) -> str:
    names = table.column_names()
    state = _final_state(table)
    rows = sorted(state.items(), key=lambda kv: [repr(x) for x in kv[1]])
    header = (["id"] if include_id else []) + names
    body = [([str(k)] if include_id else []) + [_fmt(v) for v in row] for k, row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(header)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    for r in body:
        lines.append(" | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def compute_and_print(*tables: Table, include_id: bool = True, short_pointers: bool = True,
                      n_rows: Optional[int] = None, **kwargs) -> None:
    for t in tables:
        print(table_to_string(t, include_id=False))


def compute_and_print_update_stream(table: Table, **kwargs) -> None:
    names = table.column_names()
    print(" | ".join(names + ["__time__", "__diff__"]))
    for key, row, time, diff in _changes(table):
        print(" | ".join([_fmt(v) for v in row] + [str(time), str(diff)]))


def table_to_changes(table: Table):
    """[(key, row dict, time, diff), ...] in time order."""
    names = table.column_names()
    return [(k, dict(zip(names, row)), t, d) for k, row, t, d in _changes(table)]
