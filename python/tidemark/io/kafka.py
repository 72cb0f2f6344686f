"""pw.io.kafka: read a topic and write changes to one, with the reference's argument names.

Offsets are kept in Tidemark's persistence (not consumer-group commits), so a restart resumes
exactly after the last committed message of every partition. With persistence the output is
exactly-once for consumers reading with isolation.level=read_committed (docs/kafka.md)."""
from __future__ import annotations

from typing import Optional

from ._utils import schema_columns, unique_name

_OURS = ("bootstrap.servers",)


def _split_settings(rdkafka_settings: dict, what: str):
    if not isinstance(rdkafka_settings, dict) or "bootstrap.servers" not in rdkafka_settings:
        raise ValueError(f"pw.io.kafka.{what}: rdkafka_settings must be a dict with 'bootstrap.servers'")
    bootstrap = str(rdkafka_settings["bootstrap.servers"])
    # group.id and the like are accepted (a reference program passes them) but offsets are ours.
    extra = [(str(k), str(v)) for k, v in rdkafka_settings.items()
             if k not in _OURS and k not in ("group.id", "auto.offset.reset", "enable.auto.commit")]
    return bootstrap, extra


def read(rdkafka_settings: dict, topic: Optional[str] = None, *, schema=None, format: str = "raw",
         autocommit_duration_ms: Optional[int] = 1500, name: Optional[str] = None,
         persistent_id: Optional[str] = None, start_from: str = "earliest",
         start_from_timestamp_ms: Optional[int] = None, skip_bad_rows: bool = False,
         with_metadata: bool = False, **kwargs):
    """A table of the messages of `topic`: `data` (raw: bytes, plaintext: str) or the schema's
    columns (json, csv). with_metadata=True adds `_key` and `_headers` columns."""
    from .. import _engine, _graph
    from ..table import Table
    if topic is None:
        topic = kwargs.pop("topic_names", [None])[0]
    if not topic:
        raise ValueError("pw.io.kafka.read: give topic=")
    fmt = {"raw": "raw", "plaintext": "plaintext", "json": "json", "csv": "csv"}.get(format)
    if fmt is None:
        raise ValueError(f"pw.io.kafka.read: unknown format '{format}' (raw, plaintext, json or csv)")
    if fmt in ("json", "csv") and schema is None:
        raise ValueError(f"pw.io.kafka.read: format '{format}' needs schema=")
    cols, _pk = schema_columns(schema) if fmt in ("json", "csv") else ([], [])
    bootstrap, extra = _split_settings(rdkafka_settings, "read")
    if start_from_timestamp_ms is not None:
        start_from = "timestamp"
    st = _graph.current()
    cpp = _engine.kafka_read(st.cpp, bootstrap, topic, fmt, cols, unique_name(name, persistent_id) or "",
                             int(autocommit_duration_ms or 1500), extra, start_from,
                             int(start_from_timestamp_ms or 0), bool(skip_bad_rows),
                             "_key" if with_metadata else "", "_headers" if with_metadata else "")
    return Table(cpp, st)


def write(table, rdkafka_settings: dict, topic_name: Optional[str] = None, *, format: str = "json",
          key=None, name: Optional[str] = None, persistent_id: Optional[str] = None, **kwargs) -> None:
    """Every change of `table` as one message (json: the columns plus "time" and "diff";
    csv: the columns then time, diff). key: a column (e.g. table.word or "word") whose value is
    the message key."""
    from .. import _engine
    topic = topic_name or kwargs.pop("topic", None)
    if not topic:
        raise ValueError("pw.io.kafka.write: give topic_name=")
    if format not in ("json", "csv"):
        raise ValueError(f"pw.io.kafka.write: unknown format '{format}' (json or csv)")
    key_column = ""
    if key is not None:
        key_column = key if isinstance(key, str) else getattr(key, "name", None) or getattr(key, "_name", None)
        if not key_column:
            raise ValueError("pw.io.kafka.write: key= must be a column of the table or its name")
    bootstrap, extra = _split_settings(rdkafka_settings, "write")
    _engine.kafka_write(table._cpp, bootstrap, topic, format, key_column, unique_name(name, persistent_id) or "",
                        extra)
    table._state.has_sinks = True
