"""pw.Table and friends, on the engine's operators."""
from __future__ import annotations

import enum
from typing import Any, Optional

from . import _engine
from . import _graph
from .expression import (ColumnExpression, ColumnReference, ThisColumn, _Ctx, _Star, _wrap, Apply,
                         _ThisMarker)
from .schema import schema_from_engine


class JoinMode(enum.Enum):
    INNER = "inner"
    LEFT = "left"
    RIGHT = "right"
    OUTER = "outer"


def _name_of(e) -> str:
    if isinstance(e, str):
        return e
    if isinstance(e, (ColumnReference, ThisColumn)):
        return e.name
    raise ValueError(f"expected a column (pw.this.x, t.x or 'x'), got {e!r}")


class Table:
    """A collection of rows with unique keys, changing over time."""

    def __init__(self, cpp, state: "_graph.GraphState"):
        object.__setattr__(self, "_cpp", cpp)
        object.__setattr__(self, "_state", state)
        object.__setattr__(self, "_cols", None)
        # Tables whose rows this one holds unchanged (a filter's input, ...): their columns may
        # be referenced in this table's operators (t.filter(...).select(t.x)).
        object.__setattr__(self, "_row_subset_of", ())

    # ----- columns
    def _columns(self):
        if self._cols is None:
            object.__setattr__(self, "_cols", self._cpp.schema())
        return self._cols

    def column_names(self) -> list[str]:
        return [c[0] for c in self._columns()]

    def keys(self):
        return self.column_names()

    @property
    def schema(self):
        return schema_from_engine(self._columns())

    def typehints(self):
        return self.schema.typehints()

    def __getattr__(self, name) -> ColumnReference:
        if name.startswith("_"):
            if name == "_pw_window_start" or name == "_pw_window_end" or name == "_pw_instance":
                return ColumnReference(self, name)
            raise AttributeError(name)
        if name == "id" or name in self.column_names():
            return ColumnReference(self, name)
        raise AttributeError(f"table has no column '{name}' (columns: {', '.join(self.column_names())})")

    def __getitem__(self, name):
        if isinstance(name, (list, tuple)):
            return self.select(*[ColumnReference(self, _name_of(n)) for n in name])
        if isinstance(name, ColumnExpression):
            name = _name_of(name)
        if name != "id" and name not in self.column_names():
            raise KeyError(f"table has no column '{name}' (columns: {', '.join(self.column_names())})")
        return ColumnReference(self, name)

    def __iter__(self):
        return iter([ColumnReference(self, n) for n in self.column_names()])

    def __repr__(self):
        return f"<pw.Table schema={self.schema.typehints()}>"

    def _new(self, cpp) -> "Table":
        return Table(cpp, self._state)

    def _subset(self, cpp) -> "Table":
        t = Table(cpp, self._state)
        object.__setattr__(t, "_row_subset_of", (self, *self._row_subset_of))
        return t

    def _ctx(self):
        return _Ctx(table=self)

    def _outputs(self, args, kwargs, ctx, columns_for_star):
        out = []
        for a in args:
            if isinstance(a, _ThisMarker):
                a = _Star(a._side)
            if isinstance(a, _Star):
                skip = set(getattr(a, "without", []))
                for n in columns_for_star(a.side):
                    if n not in skip:
                        out.append((n, _engine.col(n) if not ctx.is_join else
                                    (_engine.left(n) if a.side == "left" else _engine.right(n) if a.side == "right"
                                     else _engine.col(n))))
                continue
            if isinstance(a, list):
                for x in a:
                    if isinstance(x, _Star):
                        out.extend(self._outputs([x], {}, ctx, columns_for_star))
                    else:
                        out.append((_name_of(x), _wrap(x)._build(ctx)))
                continue
            out.append((_name_of(a), _wrap(a)._build(ctx)))
        for k, v in kwargs.items():
            out.append((k, _wrap(v)._build(ctx)))
        # later definitions of a name replace earlier ones (t.select(*pw.this, a=...))
        seen = {}
        for n, e in out:
            seen[n] = e
        return list(seen.items())

    # ----- columns of other tables with the same keys (t.select(x=u.y), u.ix(...).y)
    def _foreign(self, exprs):
        groups = {}
        for e in exprs:
            if not isinstance(e, ColumnExpression):
                continue
            for node in e._walk():
                if isinstance(node, ColumnReference) and node.table is not self and \
                        not any(a is node.table for a in self._row_subset_of):
                    groups.setdefault(id(node.table), (node.table, []))
                    if node.name not in groups[id(node.table)][1]:
                        groups[id(node.table)][1].append(node.name)
        return list(groups.values())

    def _attach(self, foreign):
        """This table with the referenced columns of other tables (same keys: the reference's
        same-universe rule) attached as hidden columns; keys missing there read None."""
        cpp = self._cpp
        remap = {}
        aliases = []
        none_any = _engine.get(_engine.make_tuple([_engine.lit(None)]), _engine.lit(1))  # None, type Any
        for i, (u, cols) in enumerate(foreign):
            if u._state is not self._state:
                raise ValueError("a column of a table from another (already run) graph")
            pairs = []
            for c in cols:
                if c == "id":
                    remap[(id(u), c)] = None
                    continue
                alias = f"_pw_ref{len(aliases)}_{c}"
                aliases.append(alias)
                remap[(id(u), c)] = alias
                pairs.append((c, alias))
            if pairs:
                cpp = cpp.with_columns([(a, none_any) for _, a in pairs])
                cpp = cpp.update_cells(u._cpp.select([(a, _engine.col(c)) for c, a in pairs]))
        ext = Table(cpp, self._state)
        object.__setattr__(ext, "_row_subset_of", (self, *self._row_subset_of))
        return ext, _Ctx(table=ext, remap=remap), aliases

    def _prepared(self, exprs):
        foreign = self._foreign(exprs)
        if not foreign:
            return self, self._ctx(), []
        return self._attach(foreign)

    # ----- operators
    def select(self, *args, **kwargs) -> "Table":
        base, ctx, _ = self._prepared(list(args) + list(kwargs.values()))
        return self._new(base._cpp.select(self._outputs(args, kwargs, ctx, lambda s: self.column_names())))

    def with_columns(self, *args, **kwargs) -> "Table":
        base, ctx, aliases = self._prepared(list(args) + list(kwargs.values()))
        cpp = base._cpp.with_columns(self._outputs(args, kwargs, ctx, lambda s: self.column_names()))
        return self._new(cpp.without(aliases) if aliases else cpp)

    def without(self, *columns) -> "Table":
        return self._new(self._cpp.without([_name_of(c) for c in columns]))

    def rename(self, names_mapping: Optional[dict] = None, **kwargs) -> "Table":
        pairs = []
        if names_mapping:
            pairs += [(_name_of(k), _name_of(v)) for k, v in names_mapping.items()]
        pairs += [(_name_of(v), k) for k, v in kwargs.items()]
        return self._new(self._cpp.rename(pairs))

    rename_columns = rename

    def rename_by_dict(self, names_mapping: dict) -> "Table":
        return self.rename(names_mapping)

    def filter(self, filter_expression) -> "Table":
        base, ctx, aliases = self._prepared([filter_expression])
        cpp = base._cpp.filter(_wrap(filter_expression)._build(ctx))
        return self._subset(cpp.without(aliases) if aliases else cpp)

    def groupby(self, *args, id=None, sort_by=None, instance=None, **kwargs) -> "GroupedTable":
        cols = [_name_of(a) for a in args]
        if instance is not None:
            cols.append(_name_of(instance))
        return GroupedTable(self, cols)

    def reduce(self, *args, **kwargs) -> "Table":
        return self._new(self._cpp.reduce(self._outputs(args, kwargs, self._ctx(), lambda s: [])))

    def join(self, other: "Table", *on, id=None, how: JoinMode = JoinMode.INNER, **kwargs) -> "JoinResult":
        return JoinResult(self, other, on, how)

    def join_inner(self, other, *on, **kw):
        return JoinResult(self, other, on, JoinMode.INNER)

    def join_left(self, other, *on, **kw):
        return JoinResult(self, other, on, JoinMode.LEFT)

    def join_right(self, other, *on, **kw):
        return JoinResult(self, other, on, JoinMode.RIGHT)

    def join_outer(self, other, *on, **kw):
        return JoinResult(self, other, on, JoinMode.OUTER)

    def concat(self, *others: "Table") -> "Table":
        t = self
        for o in others:
            t = t._new(t._cpp.concat(o._cpp))
        return t

    def update_rows(self, other: "Table") -> "Table":
        return self._new(self._cpp.update_rows(other._cpp))

    def update_cells(self, other: "Table", **kw) -> "Table":
        return self._new(self._cpp.update_cells(other._cpp))

    __lshift__ = update_cells

    def difference(self, other: "Table") -> "Table":
        return self._subset(self._cpp.difference(other._cpp))

    def intersect(self, *tables: "Table") -> "Table":
        t = self
        for o in tables:
            t = t._subset(t._cpp.intersect(o._cpp))
        return t

    def restrict(self, other: "Table") -> "Table":
        return self._subset(self._cpp.restrict(other._cpp))

    def deduplicate(self, *, value, instance=None, acceptor=None, name: Optional[str] = None,
                    persistent_id: Optional[str] = None) -> "Table":
        from .io._utils import unique_name
        name = unique_name(name, persistent_id)
        ctx = self._ctx()
        return self._new(self._cpp.deduplicate(_wrap(value)._build(ctx), acceptor,
                                               None if instance is None else _wrap(instance)._build(ctx),
                                               name or ""))

    def flatten(self, to_flatten, *, origin_id=None) -> "Table":
        return self._new(self._cpp.flatten(_name_of(to_flatten)))

    def sort(self, key, instance=None) -> "Table":
        ctx = self._ctx()
        return self._new(self._cpp.sort(_wrap(key)._build(ctx), None if instance is None else _wrap(instance)._build(ctx)))

    def ix(self, expression, *, optional: bool = False, context=None, allow_misses=False) -> "Table":
        expr = _wrap(expression)
        tables = [t for t in expr._tables() if isinstance(t, Table)]
        source = context if context is not None else (tables[0] if tables else None)
        if source is None:
            raise ValueError("ix(): the pointer expression must reference a table (other.ptr), or pass context=")
        return self._new(self._cpp.ix(source._cpp, expr._build(_Ctx(table=source)), optional or allow_misses))

    def ix_ref(self, *args, optional=False, context=None, instance=None) -> "Table":
        from .expression import Call
        ptr = pointer_from(*args)
        return self.ix(ptr, optional=optional, context=context)

    def windowby(self, time_expr, *, window, instance=None, behavior=None, **kw) -> "WindowedTable":
        return WindowedTable(self, time_expr, window, instance)

    def pointer_from(self, *args, optional=False, instance=None):
        return pointer_from(*args)

    def with_id_from(self, *args, instance=None) -> "Table":
        """Rows re-keyed by the values of args (must be unique per row)."""
        cols = [_name_of(a) for a in args]
        from . import reducers
        rest = {n: reducers.any(ColumnReference(self, n)) for n in self.column_names()}
        return self.groupby(*cols).reduce(**rest)

    def named(self, name: str) -> "Table":
        """Names the operator that produced this table (its persistent id in operator persisting)."""
        return self._new(self._cpp.named(name))

    def copy(self) -> "Table":
        return self.select(*self)

    # universe promises are checked by the engine at run time
    def promise_universe_is_subset_of(self, other): return self
    def promise_universe_is_equal_to(self, other): return self
    def promise_universes_are_disjoint(self, other): return self

    @staticmethod
    def empty(**kwargs) -> "Table":
        raise NotImplementedError("Table.empty is not supported yet")


def pointer_from(*args):
    """A pointer (row key) derived from values, like the engine's keys from primary keys."""
    return Apply(lambda *a: _engine.key_from_values(list(a)), args, None, _engine.Pointer, deterministic=True,
                 label="pointer_from")


class GroupedTable:
    def __init__(self, table: Table, by: list[str]):
        self._table = table
        self._by = by

    def reduce(self, *args, **kwargs) -> Table:
        t = self._table
        out = t._outputs(args, kwargs, t._ctx(), lambda s: list(self._by))
        return t._new(t._cpp.groupby_reduce(self._by, out))


class JoinResult:
    def __init__(self, left: Table, right: Table, on, how: JoinMode):
        self._left = left
        self._right = right
        self._how = how if isinstance(how, JoinMode) else JoinMode(how)
        self._on = []
        for cond in on:
            from .expression import BinOp
            if not isinstance(cond, BinOp) or cond.op != "==":
                raise ValueError(f"join conditions are equalities between columns (left.a == right.b), got {cond!r}")
            a, b = cond.a, cond.b
            if self._side(a) == "right" or self._side(b) == "left":
                a, b = b, a
            self._on.append((_name_of(a), _name_of(b)))

    def _side(self, e):
        if isinstance(e, ThisColumn):
            return e._side
        if isinstance(e, ColumnReference):
            if e.table is self._left:
                return "left"
            if e.table is self._right:
                return "right"
        return "?"

    def select(self, *args, **kwargs) -> Table:
        ctx = _Ctx(left=self._left, right=self._right)

        def cols(side):
            if side == "left":
                return self._left.column_names()
            if side == "right":
                return self._right.column_names()
            l = self._left.column_names()
            return l + [c for c in self._right.column_names() if c not in l]

        def build_star(side, n):
            return n

        out = []
        for a in args:
            if isinstance(a, _ThisMarker):
                a = _Star(a._side)
            if isinstance(a, _Star):
                skip = set(getattr(a, "without", []))
                lcols = self._left.column_names()
                for n in cols(a.side):
                    if n in skip:
                        continue
                    if a.side == "left" or (a.side == "this" and n in lcols):
                        out.append((n, _engine.left(n)))
                    else:
                        out.append((n, _engine.right(n)))
                continue
            if isinstance(a, Table):
                for n in a.column_names():
                    out.append((n, ColumnReference(a, n)._build(ctx)))
                continue
            out.append((_name_of(a), _wrap(a)._build(ctx)))
        for k, v in kwargs.items():
            out.append((k, _wrap(v)._build(ctx)))
        seen = {}
        for n, e in out:
            seen[n] = e
        return self._left._new(self._left._cpp.join_select(self._right._cpp, self._on, self._how.value,
                                                           list(seen.items())))


class WindowedTable:
    def __init__(self, table: Table, time_expr, window, instance):
        self._table = table
        self._time = time_expr
        self._window = window
        self._instance = instance

    def reduce(self, *args, **kwargs) -> Table:
        t = self._table
        ctx = t._ctx()
        w = self._window
        out = t._outputs(args, kwargs, ctx, lambda s: [])
        inst = None if self._instance is None else _wrap(self._instance)._build(ctx)
        return t._new(t._cpp.windowby_reduce(_wrap(self._time)._build(ctx), w.kind, w.duration, w.hop, w.origin,
                                             w.max_gap, inst, out))
