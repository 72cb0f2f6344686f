"""Exceptions raised by Tidemark."""


class EngineError(RuntimeError):
    """A run failed: the message names the operator, source or file (and, for a failing user
    function, its arguments). When a Python callback raised, that exception is the __cause__."""


class GraphChangedError(EngineError):
    pass
