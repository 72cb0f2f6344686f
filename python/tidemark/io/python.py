"""pw.io.python: sources fed by the program (ConnectorSubject)."""
from __future__ import annotations

import json
import threading
from typing import Any, Optional

from ._utils import unique_name


class ConnectorSubject:
    """Subclass and implement run(), calling self.next(**values) and self.commit().

    run() is called in its own thread when pw.run starts (not before); when it returns the
    source is closed."""

    def __init__(self, datasource_name: str = "python", **kwargs):
        self._cpp = None
        self._columns: list[str] = []
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None

    def run(self) -> None:
        raise NotImplementedError

    def on_stop(self) -> None:
        pass

    def _bind(self, cpp, columns):
        if self._cpp is not None:
            raise ValueError("a ConnectorSubject can feed one table only")
        self._cpp = cpp
        self._columns = columns

    def next(self, **kwargs) -> None:
        missing = [c for c in self._columns if c not in kwargs]
        extra = [k for k in kwargs if k not in self._columns]
        if missing or extra:
            raise ValueError(f"ConnectorSubject.next: the schema has columns {self._columns}; "
                             f"missing {missing}, unknown {extra}")
        self._cpp.next([kwargs[c] for c in self._columns])

    def next_json(self, message: dict) -> None:
        self.next(**{c: message.get(c) for c in self._columns})

    def next_str(self, message: str) -> None:
        self.next(data=message)

    def next_bytes(self, message: bytes) -> None:
        self.next(data=message)

    def commit(self) -> None:
        self._cpp.commit()

    def close(self) -> None:
        self._cpp.close()

    def _start(self):
        def body():
            try:
                self.run()
            except BaseException as e:  # reported after the run
                self._error = e
            finally:
                try:
                    self.close()
                finally:
                    self.on_stop()

        self._thread = threading.Thread(target=body, name=f"tidemark-subject-{type(self).__name__}", daemon=True)
        self._thread.start()


def read(subject: ConnectorSubject, *, schema, autocommit_duration_ms: Optional[int] = 1500,
         name: Optional[str] = None, persistent_id: Optional[str] = None, format=None, **kwargs):
    from .. import _engine, _graph
    from ..table import Table
    from ._utils import schema_columns
    name = unique_name(name, persistent_id)
    cols, pk = schema_columns(schema)
    st = _graph.current()
    cpp_subject = _engine.Subject()
    subject._bind(cpp_subject, [c[0] for c in cols])
    t = _engine.read_subject(st.cpp, cpp_subject, cols, name or "", pk)
    st.subjects.append(subject)
    return Table(t, st)
