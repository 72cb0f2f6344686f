"""pw.run / pw.run_all."""
from __future__ import annotations

import os
from typing import Optional

from . import _engine, _graph
from ._errors import EngineError

# The reference's environment variables are aliases of ours.
_ENV_ALIASES = {
    "PATHWAY_REPLAY_STORAGE": "TIDEMARK_REPLAY_STORAGE",
    "PATHWAY_SNAPSHOT_ACCESS": "TIDEMARK_SNAPSHOT_ACCESS",
    "PATHWAY_PERSISTENCE_MODE": "TIDEMARK_PERSISTENCE_MODE",
    "PATHWAY_REPLAY_MODE": "TIDEMARK_PERSISTENCE_MODE",
    "PATHWAY_CONTINUE_AFTER_REPLAY": "TIDEMARK_CONTINUE_AFTER_REPLAY",
}


def _apply_env_aliases():
    for ref, ours in _ENV_ALIASES.items():
        if ref in os.environ and ours not in os.environ:
            os.environ[ours] = os.environ[ref]


def _raise_run_error(code: str, message: str):
    cause = _engine._take_pending_error()
    err = EngineError(f"{message}" if code in ("InvalidArgument",) else f"{code}: {message}")
    if cause is not None:
        raise err from cause
    raise err


def run(*, debug: bool = False, monitoring_level=None, with_http_server: bool = False, default_logging: bool = True,
        persistence_config=None, runtime_typechecking=None, license_key=None, terminate_on_error: bool = True,
        handle_signals: bool = True, **kwargs) -> None:
    """Runs every output of the program until the static inputs are exhausted or the run is
    stopped (SIGINT / SIGTERM: outputs are flushed and the state committed). The engine runs
    with the GIL released; Python callbacks take it."""
    state = _graph.current()
    _graph.reset()  # a graph runs once; the next program starts a new one
    cfg = persistence_config._cpp() if persistence_config is not None else None
    if cfg is None:
        _apply_env_aliases()
    for s in state.subjects:
        s._start()
    res = _engine.run(state.cpp, cfg, handle_signals)
    for s in state.subjects:
        if s._thread is not None:
            s._thread.join(timeout=0.5)
    if not res.ok:
        _raise_run_error(res.code, res.message)
    for s in state.subjects:
        if s._error is not None:
            raise EngineError(f"ConnectorSubject {type(s).__name__}.run() raised {s._error!r}") from s._error


def run_all(**kwargs) -> None:
    run(**kwargs)
