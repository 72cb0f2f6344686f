"""pw.io: connectors."""
from __future__ import annotations

from typing import Callable, Optional

from . import csv, fs, jsonlines, kafka, plaintext, python, s3, null  # noqa: F401
from ._utils import CsvParserSettings  # noqa: F401


class OnChangeCallback:
    pass


def subscribe(table, on_change: Optional[Callable] = None, on_end: Optional[Callable] = None,
              on_time_end: Optional[Callable] = None, *, name: Optional[str] = None, skip_persisted_batch=True,
              **kwargs) -> None:
    """on_change(key, row: dict, time: int, is_addition: bool) for every change;
    on_time_end(time) after every logical time; on_end() when the run ends."""
    from .. import _engine
    names = table.column_names()
    cb = None
    if on_change is not None:
        def cb(key, values, time, is_addition, _f=on_change, _n=names):
            _f(key=key, row=dict(zip(_n, values)), time=time, is_addition=is_addition)
    _engine.subscribe(table._cpp, cb, on_time_end, on_end, name or "")
    table._state.has_sinks = True
