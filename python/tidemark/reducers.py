"""pw.reducers: aggregations for groupby(...).reduce(...), windowby(...).reduce(...), reduce()."""
from .expression import Reducer


def count(*args):
    return Reducer("count")


def sum(expr):  # noqa: A001
    return Reducer("sum", expr)


def min(expr):  # noqa: A001
    return Reducer("min", expr)


def max(expr):  # noqa: A001
    return Reducer("max", expr)


def avg(expr):
    return Reducer("avg", expr)


def count_distinct(expr):
    return Reducer("count_distinct", expr)


def any(expr):  # noqa: A001
    return Reducer("any", expr)


def earliest(expr):
    return Reducer("earliest", expr)


def latest(expr):
    return Reducer("latest", expr)


def tuple(expr, *, skip_nones=False):  # noqa: A001
    return Reducer("tuple", expr)


def sorted_tuple(expr, *, skip_nones=False):
    return Reducer("sorted_tuple", expr)


unique = any
