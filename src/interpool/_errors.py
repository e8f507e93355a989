"""Exceptions of interpool's public API, and the one place each is made."""

from __future__ import annotations

import sys

TYPE_CHECKING = False   # not from typing: see __init__.py
if TYPE_CHECKING:   # one base for type checkers, by version, as at run time
    if sys.version_info >= (3, 14):
        from concurrent.futures.interpreter import BrokenInterpreterPool as _BrokenBase
    else:
        from concurrent.futures import BrokenExecutor as _BrokenBase
else:
    try:  # so `except BrokenInterpreterPool` catches it, as with the stdlib executor
        from concurrent.futures.interpreter import BrokenInterpreterPool as _BrokenBase
    except ImportError:  # CPython 3.13, or built without subinterpreters
        from concurrent.futures import BrokenExecutor as _BrokenBase

__all__ = ["BrokenPool", "PoolShutdownError", "RemoteError", "RemoteTraceback", "TaskInterrupted"]

from ._core import TaskInterrupted  # defined in C: every interpreter has its own

# What submitting to a pool that was shut down raises (RuntimeError, as with
# the stdlib executors).  The C core raises it through stop_error() too.
SHUTDOWN_MESSAGE = "cannot schedule new futures after shutdown"


class RemoteError(Exception):
    """A worker raised an exception that could not be rebuilt here.

    Raised in place of an exception whose type cannot be unpickled in the
    calling interpreter; it keeps the type's name, the message and the
    worker-side traceback text.
    """

    def __init__(self, type_name: str, message: str, traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message
        self.traceback = traceback

    def __reduce__(self) -> tuple[type[RemoteError], tuple[str, str, str]]:
        return type(self), (self.type_name, self.message, self.traceback)


class RemoteTraceback(Exception):
    """The worker-side traceback, attached as ``__cause__`` of a task's exception."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'


class BrokenPool(_BrokenBase):
    """The pool can no longer run tasks (its initializer raised, or a worker
    could not start).  Every pending and later task fails with it.

    A subclass of ``concurrent.futures.BrokenExecutor`` (through the stdlib's
    ``BrokenInterpreterPool``)."""


class PoolShutdownError(RuntimeError):
    """The pool shut down before this task started (queued work dropped by
    ``shutdown(cancel_futures=True)``), or stopped it while it ran (a
    running coroutine at shutdown, or any task with ``interrupt=True``)."""


_SHUTDOWN_REASONS = {
    None: "the pool was shut down before this task started",
    "running": "the pool shut down while this coroutine was running",
    "interrupted": "the pool shut down and stopped this task while it ran",
    "loop closed": "the event loop closed before this task finished",
}


def stop_error(why: str | None = None) -> BaseException:
    """The exception of work that was stopped, by `why`: a shutdown (None:
    before it started; "running": a coroutine; "interrupted": sync code),
    a closed event loop ("loop closed"), its deadline ("timeout"), or a
    submission after shutdown ("refused")."""
    if why == "refused":
        return RuntimeError(SHUTDOWN_MESSAGE)
    if why == "timeout":
        return TimeoutError("the task ran past its timeout and was stopped")
    return PoolShutdownError(_SHUTDOWN_REASONS[why])


_logged_breaks: set[str] = set()


def broken_error(message: str) -> BrokenPool:
    """The BrokenPool for `message` (logged once, the first time it is made)."""
    _log_break(message)
    return BrokenPool(message)


def _log_break(message: str) -> None:
    """Log why a pool broke, once, like the stdlib executors log a failing
    initializer ('Exception in initializer:' on concurrent.futures)."""
    if message in _logged_breaks:
        return
    _logged_breaks.add(message)
    import logging

    what = "Exception in initializer:" if "initializer" in message else "interpool pool broke:"
    logging.getLogger("concurrent.futures").critical("%s\n%s", what, message)
