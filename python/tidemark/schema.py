"""Schemas: `class S(pw.Schema): word: str = pw.column_definition(primary_key=True)`."""
from __future__ import annotations

import typing
from typing import Any, Optional

from ._types import to_engine_type, to_python_type

_NO_DEFAULT = object()


class ColumnDefinition:
    def __init__(self, primary_key=False, default_value=_NO_DEFAULT, dtype=None, name=None):
        self.primary_key = primary_key
        self.default_value = default_value
        self.dtype = dtype
        self.name = name


def column_definition(*, primary_key: bool = False, default_value: Any = _NO_DEFAULT, dtype: Any = None,
                      name: Optional[str] = None, description: Optional[str] = None, example: Any = None):
    return ColumnDefinition(primary_key, default_value, dtype, name)


class SchemaMeta(type):
    def __init__(cls, name, bases, ns, **kwargs):
        super().__init__(name, bases, ns)
        cols: dict = {}
        for base in reversed(cls.__mro__[1:]):
            cols.update(getattr(base, "__columns__", {}))
        try:
            hints = typing.get_type_hints(cls)
        except Exception:
            hints = dict(ns.get("__annotations__", {}))
        for attr in ns.get("__annotations__", {}):
            tp = hints.get(attr, Any)
            d = ns.get(attr, None)
            cd = d if isinstance(d, ColumnDefinition) else ColumnDefinition(
                default_value=_NO_DEFAULT if attr not in ns else d)
            if cd.dtype is not None:
                tp = cd.dtype
            cols[cd.name or attr] = (tp, cd)
        cls.__columns__ = cols

    def column_names(cls):
        return list(cls.__columns__)

    def primary_key_columns(cls):
        return [n for n, (_, cd) in cls.__columns__.items() if cd.primary_key] or None

    def typehints(cls):
        return {n: tp for n, (tp, _) in cls.__columns__.items()}

    def _engine_schema(cls):
        out = []
        for n, (tp, _) in cls.__columns__.items():
            d, o = to_engine_type(tp)
            out.append((n, d, o))
        return out

    def __repr__(cls):
        return f"<pw.Schema {cls.__name__} {cls.typehints()}>"

    def __or__(cls, other):
        return schema_from_types(**cls.typehints(), **other.typehints())


class Schema(metaclass=SchemaMeta):
    """Base class of table schemas."""


def schema_from_types(_name: str = "Schema", **kwargs) -> type:
    return SchemaMeta(_name, (Schema,), {"__annotations__": dict(kwargs)})


def schema_builder(columns: dict, *, name: str = "Schema") -> type:
    ann = {}
    ns = {}
    for n, cd in columns.items():
        ann[n] = cd.dtype if cd.dtype is not None else Any
        ns[n] = cd
    ns["__annotations__"] = ann
    return SchemaMeta(name, (Schema,), ns)


def schema_from_engine(cols) -> type:
    return schema_from_types(**{n: to_python_type(d, o) for n, d, o in cols})
