"""Python types <-> engine types (dtype name, optional)."""
from __future__ import annotations

import datetime
import json as _json
import types
import typing
from typing import Any, Optional

from . import _engine

Pointer = _engine.Pointer


class DateTimeNaive(datetime.datetime):
    """A date-time without a time zone (schema type; values are datetime.datetime)."""


class DateTimeUtc(datetime.datetime):
    """A date-time in UTC (schema type; values are aware datetime.datetime)."""


class Duration(datetime.timedelta):
    """A duration (schema type; values are datetime.timedelta)."""


class Json:
    """A JSON value: `pw.Json({"a": 1})`; `.value` is the parsed Python value."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Json) and self.value == other.value

    def __hash__(self):
        return hash(_json.dumps(self.value, sort_keys=True))

    def __repr__(self):
        return f"pw.Json({self.value!r})"

    def __str__(self):
        return _json.dumps(self.value)

    NULL: "Json"


Json.NULL = Json(None)
_engine._set_classes(Json)

_BASE = {
    int: "int",
    float: "float",
    str: "str",
    bool: "bool",
    bytes: "bytes",
    Pointer: "pointer",
    tuple: "tuple",
    list: "tuple",
    DateTimeNaive: "datetime_naive",
    datetime.datetime: "datetime_naive",
    DateTimeUtc: "datetime_utc",
    Duration: "duration",
    datetime.timedelta: "duration",
    Json: "json",
    dict: "json",
    type(None): "none",
}


def to_engine_type(tp: Any) -> tuple[str, bool]:
    """(dtype name, optional) for a Python annotation."""
    if tp is None or tp is type(None):
        return ("none", True)
    if tp is Any or tp is typing.Any or tp is object:
        return ("any", True)
    if isinstance(tp, str):
        names = {"int": int, "float": float, "str": str, "bool": bool, "bytes": bytes}
        if tp in names:
            return to_engine_type(names[tp])
        raise TypeError(f"unknown type {tp!r}")
    origin = typing.get_origin(tp)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) != len(typing.get_args(tp))
        if len(args) == 1:
            base, opt = to_engine_type(args[0])
            return (base, opt or optional)
        return ("any", True)
    if origin in (tuple, list):
        return ("tuple", False)
    if origin is dict:
        return ("json", False)
    if tp in _BASE:
        return (_BASE[tp], tp is type(None))
    if isinstance(tp, type):
        for k, v in _BASE.items():
            if issubclass(tp, k) and k is not bool:
                return (v, False)
    raise TypeError(f"type {tp!r} is not supported by Tidemark")


_PY = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "bytes": bytes,
    "pointer": Pointer,
    "tuple": tuple,
    "datetime_naive": DateTimeNaive,
    "datetime_utc": DateTimeUtc,
    "duration": Duration,
    "json": Json,
    "any": Any,
    "none": type(None),
}


def to_python_type(dtype: str, optional: bool) -> Any:
    t = _PY.get(dtype, Any)
    if optional and t is not Any:
        return Optional[t]
    return t
