"""User-defined functions: @pw.udf and cache strategies (pw.udfs.DiskCache, InMemoryCache)."""
from __future__ import annotations

import functools
import inspect
import typing
from typing import Any, Callable, Optional

from .expression import Apply


class CacheStrategy:
    pass


class DiskCache(CacheStrategy):
    """Results cached by argument values; with persistence the cache is stored with the other
    persisted state and reused by later runs (like the reference's DiskCache)."""

    def __init__(self, name: Optional[str] = None, size_limit: int = 1 << 30):
        self.name = name
        self.size_limit = size_limit


class InMemoryCache(DiskCache):
    """As DiskCache (the engine's cache is persisted whenever persistence is on)."""


class UDF:
    def __init__(self, fn: Callable, *, return_type: Any = None, deterministic: bool = False,
                 cache_strategy: Optional[CacheStrategy] = None, propagate_none: bool = False,
                 executor=None, max_batch_size=None):
        functools.update_wrapper(self, fn)
        self.func = fn
        if return_type is None:
            try:
                hints = typing.get_type_hints(fn)
            except Exception:
                hints = getattr(fn, "__annotations__", {})
            return_type = hints.get("return", Any)
        self.return_type = return_type
        self.deterministic = deterministic
        self.cache_strategy = cache_strategy
        self.propagate_none = propagate_none
        if inspect.iscoroutinefunction(fn):
            raise NotImplementedError("async UDFs are not supported yet")

    def __call__(self, *args, **kwargs):
        fn = self.func
        if self.propagate_none:
            inner = fn

            def fn(*a, **k):
                if any(v is None for v in a) or any(v is None for v in k.values()):
                    return None
                return inner(*a, **k)

        cache_name = None
        size = 1 << 30
        deterministic = self.deterministic
        if self.cache_strategy is not None:
            cache_name = self.cache_strategy.name or f"{self.func.__module__}.{self.func.__qualname__}"
            size = self.cache_strategy.size_limit
            deterministic = True
        return Apply(fn, args, kwargs, self.return_type, deterministic, cache_name, size,
                     label=f"udf '{self.func.__qualname__}'")


def udf(fun: Optional[Callable] = None, /, *, return_type: Any = None, deterministic: bool = False,
        propagate_none: bool = False, cache_strategy: Optional[CacheStrategy] = None, executor=None,
        max_batch_size=None):
    """`@pw.udf` or `@pw.udf(deterministic=True, cache_strategy=pw.udfs.DiskCache())`."""
    def wrap(f):
        return UDF(f, return_type=return_type, deterministic=deterministic, cache_strategy=cache_strategy,
                   propagate_none=propagate_none)

    if fun is not None:
        return wrap(fun)
    return wrap
