"""Sync futures: concurrent.futures.Future objects resolved in batches.

Each pool has one Resolver: a Completions sink plus a thread that sleeps
until workers deliver results and then resolves every finished future from
C in one batch.  Done-callbacks run on that thread, as they run on a worker
thread with the stdlib executors; a callback may even wait for another
future of the same pool (the resolver then keeps resolving while it waits).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

from . import _core

_local = threading.local()


def cancel_future(future: Future) -> None:
    """Cancel and notify the waiters that as_completed()/wait() use."""
    if Future.cancel(future):
        future.set_running_or_notify_cancel()


class Resolver:
    """The sink that sync futures of one pool resolve through, and its thread."""

    def __init__(self, name: str) -> None:
        self.sink = _core.Completions(on_cancelled=cancel_future)
        self._lock = threading.RLock()
        # Not a daemon: CPython forbids daemon threads in isolated
        # subinterpreters, and the exit hook closes the sink first anyway.
        self.thread = threading.Thread(target=self._run, name=f"{name}-results")
        self.thread.start()

    def _run(self) -> None:
        sink = self.sink
        while True:
            sink.wait()
            self.resolve()
            if sink.closed and sink.outstanding == 0:
                return

    def resolve(self) -> None:
        """Resolve whatever has finished (any thread; batches never overlap)."""
        with self._lock:
            outer = getattr(_local, "resolver", None)
            _local.resolver = self
            try:
                self.sink.resolve()
            finally:
                _local.resolver = outer

    def close(self) -> None:
        """No more submissions: the thread exits once every result is in."""
        self.sink.close()

    def pump_until(self, future: Future, timeout: float | None) -> None:
        """Called by a done-callback on this resolver's thread that waits for
        another future: keep resolving here until that one is done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not future.done():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            self.sink.wait(remaining)
            self.resolve()


class TaskFuture(Future):
    """A Future for a pool task.

    As with the stdlib executors, cancel() succeeds only while no worker has
    started the task; it then never runs.
    """

    _handle: Any = None
    _resolver: Resolver | None = None

    def cancel(self) -> bool:
        if self.done():
            return self.cancelled()
        handle = self._handle
        if handle is None or not handle.cancel():
            return False
        cancel_future(self)
        return True

    def running(self) -> bool:
        handle = self._handle
        return handle is not None and handle.running and not self.done()

    def _pump(self, timeout: float | None) -> None:
        resolver = self._resolver
        if resolver is not None and not self.done() and getattr(_local, "resolver", None) is resolver:
            resolver.pump_until(self, timeout)
            if not self.done():
                raise TimeoutError()

    def result(self, timeout: float | None = None) -> Any:
        self._pump(timeout)
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._pump(timeout)
        return super().exception(timeout)
