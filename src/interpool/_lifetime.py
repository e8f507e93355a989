"""Pools and interpreter exit.

Worker threads must leave their interpreters before CPython finalizes
subinterpreters (a running one would hang it, the rest would be reported as
"remaining subinterpreters").  So a hook that runs before non-daemon threads
are joined (threading's at-exit hook) stops every live pool, and then waits
until every worker thread of the process has exited, including those of
pools that were dropped without shutdown().
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from . import _core

_pools: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()
_installed = False


def _at_exit() -> None:
    with _lock:
        pools = list(_pools)
    for pool in pools:
        pool._stop_for_exit()
    _core.join_all_workers()


def track(pool: Any) -> None:
    """Stop `pool` (if still alive) when the interpreter exits."""
    global _installed
    with _lock:
        if not _installed:
            register = getattr(threading, "_register_atexit", None)
            try:
                if register is None:
                    raise RuntimeError("no threading._register_atexit")
                register(_at_exit)
            except RuntimeError:  # already shutting down, or an older CPython
                import atexit

                atexit.register(_at_exit)
            _installed = True
        _pools.add(pool)
