"""Tidemark: incremental stream processing with persistence, Pathway's Python API on a C++20
engine. `import tidemark as pw`.

Importing starts no thread (programs may fork); threads exist only while pw.run runs."""
from __future__ import annotations

from . import _engine
from ._errors import EngineError
from ._types import DateTimeNaive, DateTimeUtc, Duration, Json, Pointer
from .expression import (ColumnExpression, ColumnReference, apply, apply_with_type, cast, coalesce,
                         declare_type, if_else, left, make_tuple, right, this, unwrap)
from .schema import Schema, column_definition, schema_builder, schema_from_types
from .table import GroupedTable, JoinMode, JoinResult, Table, WindowedTable
from .udfs import UDF, udf
from . import debug, io, persistence, reducers, temporal, udfs
from .persistence import PersistenceMode, SnapshotAccess
from ._run import run, run_all
from . import _graph

GraphError = _engine.GraphError


def clear_graph() -> None:
    """Forgets every table built so far (pw.run does this after running)."""
    _graph.reset()


class MonitoringLevel:
    NONE = "none"
    IN_OUT = "in_out"
    ALL = "all"
    AUTO = "auto"


__all__ = [
    "ColumnExpression", "ColumnReference", "DateTimeNaive", "DateTimeUtc", "Duration", "EngineError", "GraphError",
    "GroupedTable", "JoinMode", "JoinResult", "Json", "MonitoringLevel", "PersistenceMode", "Pointer", "Schema",
    "SnapshotAccess", "Table", "UDF", "WindowedTable", "apply", "apply_with_type", "cast", "clear_graph",
    "coalesce", "column_definition", "debug", "declare_type", "if_else", "io", "left", "make_tuple",
    "persistence", "reducers", "right", "run", "run_all", "schema_builder", "schema_from_types", "temporal",
    "this", "udf", "udfs", "unwrap",
]
__version__ = "0.1.0"
