from __future__ import annotations

import os
import warnings
from typing import Optional


def unique_name(name: Optional[str], persistent_id: Optional[str]) -> Optional[str]:
    if name is not None and persistent_id is not None:
        raise ValueError("give either name= or persistent_id= (deprecated), not both")
    if persistent_id is not None:
        warnings.warn("persistent_id= is deprecated; use name=", DeprecationWarning, stacklevel=3)
        return persistent_id
    return name


def schema_columns(schema):
    if schema is None:
        return [], []
    cols = schema._engine_schema()
    pk = schema.primary_key_columns() or []
    return cols, pk


class CsvParserSettings:
    def __init__(self, delimiter: str = ",", quote: str = '"', escape=None, enable_double_quote_escapes=True,
                 enable_quoting=True, comment_character=None):
        self.delimiter = delimiter


def fs_read(path, format, *, schema=None, mode="streaming", csv_settings=None, autocommit_duration_ms=1500,
            name=None, persistent_id=None, skip_bad_rows=False, s3_settings=None):
    from .. import _engine, _graph
    from ..table import Table
    name = unique_name(name, persistent_id)
    if format in ("plaintext", "binary", "plaintext_by_file"):
        cols, pk = [], []
        if format == "plaintext_by_file":
            format = "binary"
    elif format in ("csv", "json", "jsonlines"):
        if schema is None:
            raise ValueError(f"pw.io: format '{format}' needs schema=")
        cols, pk = schema_columns(schema)
    else:
        raise ValueError(f"unknown format '{format}' (csv, json, plaintext or binary)")
    delim = csv_settings.delimiter if csv_settings is not None else ","
    st = _graph.current()
    path = os.fspath(path)
    if s3_settings is not None:
        cpp = _engine.s3_read(st.cpp, path, format, cols, mode, name or "", pk, int(autocommit_duration_ms or 1500),
                              skip_bad_rows, delim, s3_settings)
    else:
        cpp = _engine.fs_read(st.cpp, path, format, cols, mode, name or "", pk, int(autocommit_duration_ms or 1500),
                              skip_bad_rows, delim)
    return Table(cpp, st)


def fs_write(table, filename, format, name=None, persistent_id=None):
    from .. import _engine
    name = unique_name(name, persistent_id)
    _engine.fs_write(table._cpp, os.fspath(filename), format, name or "")
    table._state.has_sinks = True
