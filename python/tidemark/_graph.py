"""The program's graph: operators are added to the current graph as they are built; pw.run
runs it and starts a new one (so a process may build and run several programs)."""
from __future__ import annotations

from . import _engine


class GraphState:
    def __init__(self):
        self.cpp = _engine.Graph()
        self.subjects = []  # (ConnectorSubject, engine Subject)
        self.has_sinks = False


_current = GraphState()


def current() -> GraphState:
    return _current


def reset() -> GraphState:
    """Drops the current graph (tables built so far can no longer be used)."""
    global _current
    _current = GraphState()
    return _current
