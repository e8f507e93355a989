"""Exceptions of interpool's public API."""

try:  # so `except BrokenInterpreterPool` catches it, as with the stdlib executor
    from concurrent.futures.interpreter import BrokenInterpreterPool as _BrokenBase
except ImportError:  # pragma: no cover - CPython built without subinterpreters
    from concurrent.futures import BrokenExecutor as _BrokenBase

__all__ = ["BrokenPool", "PoolShutdownError", "RemoteError", "RemoteTraceback"]


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

    def __reduce__(self):
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
    ``shutdown(cancel_futures=True)``), or while this coroutine was running."""
