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
- A stopped call stuck in C (a stop lands only when it returns) is taken
  over after a short grace and its worker set aside (runtime/pool.c, "the
  watch"); set-aside threads still in their C call get GRACE seconds, counted
  from the first Ctrl-C (one grace, however many `with Pool()` blocks and
  hooks wait), or from the end of the work at a normal exit.  Then, or at a
  second Ctrl-C, the process leaves at once: os._exit after flushing stdout
  and stderr, with status 130 after Ctrl-C, else 1 if the program ended
  with an uncaught exception, else 0.

os.fork() while workers run is reported: CPython cannot fork a process
that has live subinterpreters (the child crashes, gh-139759).
"""

from __future__ import annotations

import os
import sys
import threading
import time
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

# One Ctrl-C "episode": from the first Ctrl-C that stops work until every
# worker thread (set-aside ones included) is gone.
_leave_at: float | None = None   # the grace ends then
_leave_now = False               # Ctrl-C came again while we waited


def _remaining() -> float:
    """Seconds left of the grace of the current episode (which starts now
    if there is none)."""
    global _leave_at
    now = time.monotonic()
    if _leave_at is None:
        _leave_at = now + GRACE
    return max(0.0, _leave_at - now)


def _episode_over() -> None:
    global _leave_at, _leave_now
    _leave_at, _leave_now = None, False


def wait_after_interrupt(core: Any) -> None:
    """A KeyboardInterrupt leaves a ``with Pool()`` block whose work was
    stopped: give its workers what is left of the grace (not a grace of
    their own).  A second Ctrl-C ends the wait at once, and the exit of the
    program will not wait either."""
    global _leave_now
    try:
        if core.join(_remaining(), True) and _core.join_all_workers(0, True):
            _episode_over()
    except KeyboardInterrupt:
        _leave_now = True
        raise


def leave(status: int) -> None:
    """End the process now (worker threads still run in C calls, which
    finalizing their interpreters would wait for or crash on)."""
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
    os._exit(status)


def _stop_status(exc: BaseException) -> int:
    """The exit status of a stop that `exc` asked for while the exit waited
    (Ctrl-C, or a signal handler's exception: SIGTERM's SystemExit...);
    anything else than those two is reported here, once."""
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, SystemExit):
        code = exc.code
        return code if isinstance(code, int) else 0 if code is None else 1
    sys.excepthook(type(exc), exc, exc.__traceback__)
    return 1


def join_or_leave(status: int = 130) -> None:
    """After Ctrl-C (or another stop: `status` is what the process then
    leaves with): wait for every worker thread (set aside or not) until the
    grace ends; if some still run (stuck in a C call), or a stop comes
    again, end the process."""
    try:
        if _core.join_all_workers(0 if _leave_now else _remaining(), True):
            _episode_over()
            return
    except BaseException as exc:   # Ctrl-C again, a SIGTERM handler's SystemExit...
        status = _stop_status(exc)
    leave(status)


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
    except BaseException as exc:   # ...unless Ctrl-C (or a SIGTERM handler) says otherwise
        status = _stop_status(exc)
        _stop_all(interrupt=True)
        join_or_leave(status)
    else:
        # Workers set aside (a stopped call stuck in C) have nothing left
        # to deliver: they get the grace to end, no more.
        try:
            gone = _core.join_all_workers(GRACE, True)
        except BaseException as exc:
            leave(_stop_status(exc))
        if not gone:
            leave(0 if getattr(sys, "last_exc", None) is None else 1)
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
