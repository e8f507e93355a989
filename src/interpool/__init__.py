"""interpool: run Python functions in parallel in CPython subinterpreters.

Every worker is an OS thread that owns one isolated interpreter with its own
GIL; tasks and results travel between interpreters as raw memory.

Names are loaded on first use, because every worker interpreter imports this
package too and should not pay for the caller-side API.
"""

# Not `from typing import TYPE_CHECKING`: importing typing costs every
# worker ~9 ms at start-up.  Type checkers treat this name the same way.
TYPE_CHECKING = False

__version__ = "0.1.0"

_EXPORTS = {
    "Pool": "._pool",
    "Runner": "._runner",
    "InterpreterPoolExecutor": "._executor",
    "InterpreterThreadPoolExecutor": "._hybrid",
    "interpreter": "._hybrid",
    "Queue": "._queue",
    "SharedBuffer": "._core",
    "Shared": "._core",
    "BrokenPool": "._errors",
    "PoolShutdownError": "._errors",
    "RemoteError": "._errors",
    "RemoteTraceback": "._errors",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from ._errors import BrokenPool, PoolShutdownError, RemoteError, RemoteTraceback
    from ._executor import InterpreterPoolExecutor
    from ._hybrid import InterpreterThreadPoolExecutor, interpreter
    from ._core import Shared, SharedBuffer
    from ._pool import Pool
    from ._queue import Queue
    from ._runner import Runner


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'interpool' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
