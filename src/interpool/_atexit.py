"""Pools and the end of the program.

Worker threads must leave their interpreters before CPython finalizes
subinterpreters (a running one would hang it, the rest would be reported as
"remaining subinterpreters").  So a hook that runs before non-daemon threads
are joined (threading's at-exit hook) stops every pool this interpreter
made, including pools no object refers to any more, and waits until every
worker thread has exited:

- A normal exit finishes queued and running work, as the stdlib executors
  do (nothing is lost); running coroutines are cancelled.
- An exit caused by Ctrl-C (KeyboardInterrupt), or a Ctrl-C during that
  wait, cancels queued work and stops running tasks at their next bytecode.
  Tasks stuck in a C call (a stop lands only when it returns) get GRACE
  seconds; then, or at a second Ctrl-C, the process leaves at once
  (os._exit(130), after flushing stdout and stderr).

os.fork() while workers run is reported: CPython cannot fork a process
that has live subinterpreters (the child crashes, gh-139759).
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from typing import Any

from . import _completions, _core

_pools: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()
_installed = False


def _stop_all(interrupt: bool) -> None:
    with _lock:
        pools = list(_pools)
    for pool in pools:  # closes their result threads too
        pool._state.stop(interrupt, True, interrupt, exiting=True)
    _core.stop_all_pools(interrupt, True, interrupt)  # and the pools nobody holds


GRACE = 2.0   # seconds stopped tasks get to leave before the process does


def join_or_leave(grace: float = GRACE) -> None:
    """Wait up to `grace` seconds for every worker thread; if some are still
    running (stuck in a C call), or Ctrl-C comes again, end the process."""
    try:
        if _core.join_all_workers(grace):
            return
    except KeyboardInterrupt:
        pass
    print(
        "interpool: leaving while tasks still run in C code "
        "(a stop lands only when that call returns)",
        file=sys.stderr,
    )
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(130)


def _keep_sigint_exit() -> None:
    """CPython 3.13: make a program that Ctrl-C ended still end by SIGINT.

    CPython remembers "the main module ended with KeyboardInterrupt" in one
    process-wide flag, which every exec() or eval() of a string clears, in any
    thread or interpreter (3.14 fixed this).  Stopped tasks do such things in
    their workers (their first exception imports traceback, whose namedtuples
    are made by eval), so the process would exit with status 1.  A string
    exec() that ends with KeyboardInterrupt sets that flag again."""
    if sys.version_info[:2] != (3, 13) or sys.flags.interactive or hasattr(sys, "ps1"):
        return
    import _interpreters

    if _interpreters.get_current()[0] != 0:   # the flag is the main interpreter's matter
        return
    try:
        exec("raise KeyboardInterrupt")
    except KeyboardInterrupt:
        pass


def _at_exit() -> None:
    interrupted = isinstance(getattr(sys, "last_exc", None), KeyboardInterrupt)
    _stop_all(interrupt=interrupted)
    if interrupted:
        join_or_leave()
        _completions.abandon_all()
        _keep_sigint_exit()
        return
    try:
        _core.join_all_workers()   # a normal exit finishes the work...
    except KeyboardInterrupt:      # ...unless Ctrl-C says otherwise
        _stop_all(interrupt=True)
        join_or_leave()
    _completions.abandon_all()     # the workers are gone: nothing more will arrive


def _before_fork() -> None:
    if _core.live_counts()["workers"]:
        import warnings

        warnings.warn(
            "os.fork() while interpool worker interpreters run: CPython cannot fork a "
            "process with live subinterpreters, and the child will crash "
            "(gh-139759). Shut the pools down before forking, or use the 'spawn' or "
            "'forkserver' start method of multiprocessing.",
            RuntimeWarning,
            stacklevel=2,
        )


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
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(before=_before_fork)
            _installed = True
        _pools.add(pool)
