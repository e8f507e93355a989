"""interpool: run Python functions in parallel in CPython subinterpreters.

Every worker is an OS thread that owns one isolated interpreter with its own
GIL; tasks and results travel between interpreters as raw memory.

Names are loaded on first use, because every worker interpreter imports this
package too and should not pay for the caller-side API.  Type checkers see
the plain imports below instead (explicit re-exports, no module
``__getattr__``), so a misspelt name is an error for them too.
"""

# Not `from typing import TYPE_CHECKING`: importing typing costs every
# worker ~9 ms at start-up.  Type checkers treat this name the same way.
TYPE_CHECKING = False

__version__ = "0.1.0"

__all__ = [
    "BrokenPool",
    "ImportCheck",
    "InterpreterPoolExecutor",
    "InterpreterThreadPoolExecutor",
    "Pool",
    "PoolShutdownError",
    "Queue",
    "RemoteError",
    "RemoteTraceback",
    "Runner",
    "Shared",
    "SharedBuffer",
    "SubinterpreterImportError",
    "TaskInterrupted",
    "check_import",
    "interpreter",
]

if TYPE_CHECKING:
    from ._core import Shared as Shared
    from ._core import SharedBuffer as SharedBuffer
    from ._core import TaskInterrupted as TaskInterrupted
    from ._check import ImportCheck as ImportCheck
    from ._check import check_import as check_import
    from ._errors import BrokenPool as BrokenPool
    from ._errors import PoolShutdownError as PoolShutdownError
    from ._errors import RemoteError as RemoteError
    from ._errors import RemoteTraceback as RemoteTraceback
    from ._executors import InterpreterPoolExecutor as InterpreterPoolExecutor
    from ._executors import InterpreterThreadPoolExecutor as InterpreterThreadPoolExecutor
    from ._executors import interpreter as interpreter
    from ._pool import Pool as Pool
    from ._queue import Queue as Queue
    from ._refusal import SubinterpreterImportError as SubinterpreterImportError
    from ._runner import Runner as Runner
else:
    # At run time: each name is imported from its module on first use.
    _EXPORTS = {
        "Pool": "._pool",
        "Runner": "._runner",
        "InterpreterPoolExecutor": "._executors",
        "InterpreterThreadPoolExecutor": "._executors",
        "interpreter": "._executors",
        "Queue": "._queue",
        "SharedBuffer": "._core",
        "Shared": "._core",
        "BrokenPool": "._errors",
        "PoolShutdownError": "._errors",
        "RemoteError": "._errors",
        "RemoteTraceback": "._errors",
        "TaskInterrupted": "._core",
        "SubinterpreterImportError": "._refusal",
        "check_import": "._check",
        "ImportCheck": "._check",
    }

    def __getattr__(name):
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'interpool' has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value

    def __dir__():
        return sorted(set(globals()) | set(_EXPORTS))
