"""pw.temporal: windows for Table.windowby."""
from __future__ import annotations

from typing import Any


class Window:
    def __init__(self, kind, duration=None, hop=None, origin=None, max_gap=None):
        self.kind, self.duration, self.hop, self.origin, self.max_gap = kind, duration, hop, origin, max_gap

    def __repr__(self):
        return f"pw.temporal.{self.kind}(...)"


def tumbling(duration: Any, origin: Any = None) -> Window:
    return Window("tumbling", duration=duration, origin=origin)


def sliding(hop: Any, duration: Any = None, ratio: int | None = None, origin: Any = None) -> Window:
    if duration is None:
        if ratio is None:
            raise ValueError("sliding(): give duration or ratio")
        duration = hop * ratio
    return Window("sliding", duration=duration, hop=hop, origin=origin)


def session(*, max_gap: Any = None, predicate=None) -> Window:
    if max_gap is None:
        raise NotImplementedError("session windows with a predicate are not supported; give max_gap")
    return Window("session", max_gap=max_gap)
