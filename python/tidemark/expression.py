"""Column expressions: Python operators build a tree that becomes an engine expression when
the operator using it is added to the graph (pw.this / pw.left / pw.right resolve there)."""
from __future__ import annotations

from typing import Any, Callable, Optional

from . import _engine
from ._types import to_engine_type


class _Ctx:
    """Where an expression is used: one table, or a join of two."""

    def __init__(self, table=None, left=None, right=None, remap=None):
        self.table = table
        self.left = left
        self.right = right
        self.remap = remap  # {(id(table), column): alias column in `table` (None: the id)}

    @property
    def is_join(self):
        return self.left is not None


def _wrap(v: Any) -> "ColumnExpression":
    if isinstance(v, ColumnExpression):
        return v
    if isinstance(v, (_ThisMarker,)):
        raise TypeError("pw.this needs a column: pw.this.name")
    return Literal(v)


class ColumnExpression:
    __slots__ = ()

    def _build(self, ctx: _Ctx):  # -> _engine.Expr
        raise NotImplementedError

    def _tables(self):
        return []

    def _children(self):
        return ()

    def _walk(self):
        yield self
        for c in self._children():
            yield from c._walk()

    # arithmetic
    def __add__(self, o): return BinOp("+", self, _wrap(o))
    def __radd__(self, o): return BinOp("+", _wrap(o), self)
    def __sub__(self, o): return BinOp("-", self, _wrap(o))
    def __rsub__(self, o): return BinOp("-", _wrap(o), self)
    def __mul__(self, o): return BinOp("*", self, _wrap(o))
    def __rmul__(self, o): return BinOp("*", _wrap(o), self)
    def __truediv__(self, o): return BinOp("/", self, _wrap(o))
    def __rtruediv__(self, o): return BinOp("/", _wrap(o), self)
    def __floordiv__(self, o): return BinOp("//", self, _wrap(o))
    def __rfloordiv__(self, o): return BinOp("//", _wrap(o), self)
    def __mod__(self, o): return BinOp("%", self, _wrap(o))
    def __rmod__(self, o): return BinOp("%", _wrap(o), self)
    def __neg__(self): return Unary("neg", self)
    # comparisons
    def __eq__(self, o): return BinOp("==", self, _wrap(o))  # type: ignore[override]
    def __ne__(self, o): return BinOp("!=", self, _wrap(o))  # type: ignore[override]
    def __lt__(self, o): return BinOp("<", self, _wrap(o))
    def __le__(self, o): return BinOp("<=", self, _wrap(o))
    def __gt__(self, o): return BinOp(">", self, _wrap(o))
    def __ge__(self, o): return BinOp(">=", self, _wrap(o))
    # boolean logic
    def __and__(self, o): return BinOp("&", self, _wrap(o))
    def __rand__(self, o): return BinOp("&", _wrap(o), self)
    def __or__(self, o): return BinOp("|", self, _wrap(o))
    def __ror__(self, o): return BinOp("|", _wrap(o), self)
    def __invert__(self): return Unary("not", self)

    def __hash__(self):
        return id(self)

    def __bool__(self):
        raise TypeError("a column expression has no truth value; use & | ~ instead of and/or/not")

    def __getitem__(self, index):
        return Call(_engine.get, [self, _wrap(index)])

    def get(self, index, default=None):
        e = Call(_engine.get, [self, _wrap(index)])
        return e if default is None else coalesce(e, default)

    def is_none(self): return Unary("is_none", self)
    def is_not_none(self): return Unary("is_not_none", self)

    @property
    def str(self): return _StrNamespace(self)

    @property
    def dt(self): return _DtNamespace(self)

    def to_string(self): return cast(str, self)


class Literal(ColumnExpression):
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def _build(self, ctx):
        return _engine.lit(self.value)

    def __repr__(self):
        return repr(self.value)


class ColumnReference(ColumnExpression):
    """`t.col`, `t["col"]`: a column of a given table."""

    __slots__ = ("_table", "_name")

    def __init__(self, table, name: str):
        self._table = table
        self._name = name

    @property
    def name(self):
        return self._name

    @property
    def table(self):
        return self._table

    def _tables(self):
        return [self._table]

    def _build(self, ctx):
        n = self._name
        if ctx.is_join:
            if self._table is ctx.left:
                return _engine.left_id() if n == "id" else _engine.left(n)
            if self._table is ctx.right:
                return _engine.right_id() if n == "id" else _engine.right(n)
            raise ValueError(f"column '{n}' belongs to a table that is not a side of this join; "
                             "use pw.left / pw.right or the joined tables' columns")
        remap = getattr(ctx, "remap", None)
        if remap and (id(self._table), n) in remap:
            alias = remap[(id(self._table), n)]
            return _engine.id() if alias is None else _engine.col(alias)
        if ctx.table is not None and self._table is not ctx.table and \
                not any(a is self._table for a in getattr(ctx.table, "_row_subset_of", ())):
            # The engine resolves columns by name in the table being operated on, so a column of
            # another table (even one with the same keys) cannot be read here: refuse rather
            # than silently read this table's column of that name.
            raise ValueError(f"column '{n}' belongs to another table; an operator reads its own table's "
                             "columns (pw.this.x or t.x of that table): join or ix the other table first")
        return _engine.id() if n == "id" else _engine.col(n)

    def __repr__(self):
        return f"<table>.{self._name}"


class ThisColumn(ColumnExpression):
    """pw.this.col / pw.left.col / pw.right.col."""

    __slots__ = ("_side", "_name")

    def __init__(self, side: str, name: str):
        self._side = side
        self._name = name

    @property
    def name(self):
        return self._name

    def _build(self, ctx):
        n = self._name
        if self._side == "left":
            return _engine.left_id() if n == "id" else _engine.left(n)
        if self._side == "right":
            return _engine.right_id() if n == "id" else _engine.right(n)
        return _engine.id() if n == "id" else _engine.col(n)

    def __repr__(self):
        return f"pw.{self._side}.{self._name}"


class BinOp(ColumnExpression):
    __slots__ = ("op", "a", "b")

    def __init__(self, op, a, b):
        self.op, self.a, self.b = op, a, b

    def _tables(self):
        return self.a._tables() + self.b._tables()

    def _children(self):
        return (self.a, self.b)

    def _build(self, ctx):
        return _engine.binop(self.op, self.a._build(ctx), self.b._build(ctx))

    def __repr__(self):
        return f"({self.a!r} {self.op} {self.b!r})"


class Unary(ColumnExpression):
    __slots__ = ("op", "a")

    def __init__(self, op, a):
        self.op, self.a = op, a

    def _tables(self):
        return self.a._tables()

    def _children(self):
        return (self.a,)

    def _build(self, ctx):
        e = self.a._build(ctx)
        return {"neg": _engine.neg, "not": _engine.not_, "is_none": _engine.is_none,
                "is_not_none": _engine.is_not_none}[self.op](e)


class Call(ColumnExpression):
    """An engine function over sub-expressions (fn(*built_args, *extra))."""

    __slots__ = ("fn", "args", "extra", "list_arg")

    def __init__(self, fn, args, extra=(), list_arg=False):
        self.fn, self.args, self.extra, self.list_arg = fn, [_wrap(a) for a in args], tuple(extra), list_arg

    def _tables(self):
        return [t for a in self.args for t in a._tables()]

    def _children(self):
        return tuple(self.args)

    def _build(self, ctx):
        built = [a._build(ctx) for a in self.args]
        if self.list_arg:
            return self.fn(built, *self.extra)
        return self.fn(*built, *self.extra)


class Reducer(ColumnExpression):
    __slots__ = ("rname", "arg")

    def __init__(self, rname, arg=None):
        self.rname, self.arg = rname, (None if arg is None else _wrap(arg))

    def _tables(self):
        return [] if self.arg is None else self.arg._tables()

    def _children(self):
        return () if self.arg is None else (self.arg,)

    def _build(self, ctx):
        return _engine.reducer(self.rname, None if self.arg is None else self.arg._build(ctx))


class Apply(ColumnExpression):
    """A Python function applied per row (pw.apply, pw.udf)."""

    __slots__ = ("fn", "args", "kwargs", "return_type", "deterministic", "cache_name", "cache_size", "label", "_built")

    def __init__(self, fn, args, kwargs, return_type, deterministic, cache_name=None, cache_size=1 << 30, label=None):
        self.fn = fn
        self.args = [_wrap(a) for a in args]
        self.kwargs = {k: _wrap(v) for k, v in (kwargs or {}).items()}
        self.return_type = return_type
        self.deterministic = deterministic
        self.cache_name = cache_name
        self.cache_size = cache_size
        self.label = label or f"function '{getattr(fn, '__qualname__', repr(fn))}'"
        self._built = None

    def _tables(self):
        return [t for a in list(self.args) + list(self.kwargs.values()) for t in a._tables()]

    def _children(self):
        return tuple(self.args) + tuple(self.kwargs.values())

    def _build(self, ctx):
        args = [a._build(ctx) for a in self.args]
        fn = self.fn
        if self.kwargs:
            names = list(self.kwargs)
            n = len(self.args)
            args += [self.kwargs[k]._build(ctx) for k in names]
            inner = fn

            def fn(*vals, _inner=inner, _n=n, _names=names):
                return _inner(*vals[:_n], **dict(zip(_names, vals[_n:])))

        dtype, optional = to_engine_type(self.return_type)
        if self.cache_name is not None:
            return _engine.apply_cached(fn, args, dtype, optional, self.cache_name, self.cache_size, self.label)
        return _engine.apply(fn, args, dtype, optional, self.deterministic, self.label)


class _Star:
    """`*pw.this` / `*pw.left`: every column of the context table."""

    def __init__(self, side):
        self.side = side


class _ThisMarker:
    def __init__(self, side):
        object.__setattr__(self, "_side", side)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return ThisColumn(self._side, name)

    def __getitem__(self, name):
        if isinstance(name, (list, tuple)):
            return [ThisColumn(self._side, n) for n in name]
        return ThisColumn(self._side, name)

    def __iter__(self):
        yield _Star(self._side)

    def without(self, *cols):
        s = _Star(self._side)
        s.without = [c if isinstance(c, str) else c.name for c in cols]
        return [s]

    def __repr__(self):
        return f"pw.{self._side}"


this = _ThisMarker("this")
left = _ThisMarker("left")
right = _ThisMarker("right")


class _StrNamespace:
    def __init__(self, e):
        self._e = e

    def lower(self): return Call(_engine.str_lower, [self._e])
    def upper(self): return Call(_engine.str_upper, [self._e])
    def len(self): return Call(_engine.str_len, [self._e])
    def strip(self): return Call(_engine.str_strip, [self._e])
    def contains(self, s): return Call(_engine.str_contains, [self._e, s])
    def startswith(self, s): return Call(_engine.str_startswith, [self._e, s])
    def endswith(self, s): return Call(_engine.str_endswith, [self._e, s])
    def replace(self, old, new): return Call(_engine.str_replace, [self._e, old, new])

    def split(self, sep=None):
        if sep is None:
            return Call(lambda s: _engine.str_split(s, None), [self._e])
        return Call(_engine.str_split, [self._e, sep])

    def slice(self, start, end): return Call(_engine.str_slice, [self._e, start, end])


class _DtNamespace:
    """Date-time helpers: the engine has none yet beyond arithmetic and comparisons."""

    def __init__(self, e):
        self._e = e


# ----- free functions


def if_else(if_clause, then_clause, else_clause) -> ColumnExpression:
    return Call(_engine.if_else, [if_clause, then_clause, else_clause])


def coalesce(*args) -> ColumnExpression:
    return Call(_engine.coalesce, list(args), list_arg=True)


def make_tuple(*args) -> ColumnExpression:
    return Call(_engine.make_tuple, list(args), list_arg=True)


def cast(target_type, col) -> ColumnExpression:
    dtype, _ = to_engine_type(target_type)
    return Call(_engine.cast, [col], extra=(dtype,))


def declare_type(target_type, col) -> ColumnExpression:
    return _wrap(col)


def unwrap(col) -> ColumnExpression:
    return _wrap(col)


def apply(fun: Callable, *args, **kwargs) -> ColumnExpression:
    """fun applied to the values of args per row; result type Any."""
    return Apply(fun, args, kwargs, Any, deterministic=False)


def apply_with_type(fun: Callable, ret_type, *args, **kwargs) -> ColumnExpression:
    return Apply(fun, args, kwargs, ret_type, deterministic=False)


def build(expr, ctx: _Ctx):
    return _wrap(expr)._build(ctx)
