"""The futures a pool hands out: a concurrent.futures.Future for the sync
API and an asyncio.Future for the asyncio API, each able to pull its task
out of the queue when cancelled.

A sync future is resolved by whoever needs it first: the thread that calls
``result()`` (or ``exception()``, or ``done()``) takes the finished task
from its worker itself, with no thread in between (two thread hops per
round trip, as with ThreadPoolExecutor).  A resolver thread starts only
when something must happen without a caller waiting: a done-callback, or
``concurrent.futures.wait``/``as_completed``.  Done-callbacks run on the
pool's callback thread, never inside another thread's result() or submit().
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future
# (the states concurrent.futures' wait() and as_completed() read directly)
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, NoReturn

_CANCELLED = (CANCELLED, CANCELLED_AND_NOTIFIED)


def cancel_future(future: Future[Any]) -> None:
    """Cancel and notify the waiters that as_completed()/wait() use."""
    if Future.cancel(future):
        future.set_running_or_notify_cancel()


class _Waiters(list[Any]):
    """A future's waiter list (concurrent.futures.wait and as_completed
    append to it): the first waiter starts the resolver thread.  It refers
    to the future's completions, not to the future: no reference cycle
    keeps a dropped future (and its result) alive until the cyclic GC."""

    __slots__ = ("completions",)
    completions: Any   # the ThreadCompletions

    def append(self, waiter: Any) -> None:
        super().append(waiter)
        self.completions.need_thread()


class TaskFuture(Future):
    """A Future for a pool task.

    As with the stdlib executors, ``cancel()`` succeeds only while no worker
    has started the task; it then never runs.  ``cancel(interrupt=True)``
    also stops a running task: ``TaskInterrupted`` is raised in it at its
    next bytecode (a coroutine gets ``CancelledError``), and the future is
    cancelled at once.
    """

    # A lean future: no Condition, waiter list or callback list until one
    # is needed (Future.__init__ is not called).  The common life, submit()
    # then result() or done(), never needs them: the caller waits on the
    # task itself, and the batch that resolves it (completions_type.c)
    # stores the outcome with no Python call while nobody made the
    # condition.  Whatever blocks on the condition, installs waiters
    # (wait(), as_completed()) or adds a done-callback goes through
    # `_condition`, which makes them all, and the future is then set the
    # stdlib's way, under it.
    _state = PENDING
    _result: Any = None
    _exception: BaseException | None = None
    _waiters: Any = ()
    _done_callbacks: Any = ()
    _handle: Any = None
    _detour: Any = None        # a pool's fallback may run a refused call again (_fallback._Call)
    _external = False          # resolved by the pool's fallback, not through its completions

    def __init__(self, completions: Any) -> None:
        self._completions = completions   # the ThreadCompletions it is resolved through

    @property
    def _condition(self) -> threading.Condition:
        made = self.__dict__
        condition = made.get("_cond")
        if condition is None:
            # (setdefault: two threads may get here at once; one of each wins)
            waiters = _Waiters()
            waiters.completions = self._completions
            made.setdefault("_waiters", waiters)
            made.setdefault("_done_callbacks", [])
            # Published last: a batch that sees no `_cond` sets the state
            # without it, and whoever made it then finds the state set.
            condition = made.setdefault("_cond", threading.Condition())
        return condition

    def _invoke_callbacks(self) -> None:
        # Set by a batch of results: the callbacks run on the callback
        # thread, once the batch is done, with no lock of interpool held.
        if self._done_callbacks:
            # (From the fallback's threads too: they must not run user code.)
            if self._external or self._completions.resolving_here():
                self._completions.call_soon(self)
            else:
                Future._invoke_callbacks(self)  # type: ignore[attr-defined]

    def _take(self, timeout: float | None) -> float | None:
        """Wait (GIL released) for this task to finish and resolve it in this
        thread.  Return what is left of `timeout`."""
        handle, completions = self._handle, self._completions
        if handle is None or self._external or self._state in _CANCELLED:
            # (Future.result waits for the fallback to set it, or raises
            # CancelledError at once: not once the cancelled task lets go
            # of its worker, nor after another thread's batch)
            return timeout
        if timeout is None:
            handle.wait()
            completions.resolve()   # this task and whatever else finished with it
            return None
        deadline = time.monotonic() + timeout
        if not handle.wait(timeout):
            return 0.0
        completions.resolve(max(0.0, deadline - time.monotonic()))
        return max(0.0, deadline - time.monotonic())

    def done(self) -> bool:
        if not settled(self):
            handle = self._handle
            if handle is not None and handle.finished:
                self._completions.resolve(0)   # unless another thread is at it
        return settled(self)

    def cancelled(self) -> bool:
        return self._state in _CANCELLED

    def result(self, timeout: float | None = None) -> Any:
        if self._state != FINISHED:
            timeout = self._take(timeout)
            if self._state != FINISHED:   # cancelled, timed out, or set elsewhere
                return Future.result(self, timeout)
        if self._exception is not None:
            try:
                raise self._exception
            finally:
                self = None  # type: ignore[assignment]  # (no cycle through the traceback)
        return self._result

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state != FINISHED:
            timeout = self._take(timeout)
            if self._state != FINISHED:
                return Future.exception(self, timeout)
        return self._exception

    def set_exception(self, exception: BaseException | None) -> None:
        detour = self._detour
        if detour is not None:
            self._detour = None
            if detour.rerun(self, exception):
                return   # it runs again in the pool's fallback, which resolves it
        super().set_exception(exception)

    def add_done_callback(self, fn: Any) -> None:
        if not settled(self):   # (not done(), which may resolve: no callback runs here)
            self._completions.need_thread()  # it must run even if nobody waits
        super().add_done_callback(fn)

    def cancel(self, interrupt: bool = False) -> bool:
        """Cancel the task; with ``interrupt=True`` even while it runs.
        Return True if the future is cancelled (False once it has a result)."""
        if self.done():
            return self.cancelled()
        handle = self._handle
        if handle is None or not handle.cancel(bool(interrupt)):
            return False
        cancel_future(self)   # a thread in result() is woken by the C core (forget)
        return True

    def running(self) -> bool:
        if self._detour is not None:
            self.done()   # a call the interpreters refused moves to the fallback when resolved
        handle = self._handle
        return handle is not None and handle.running and not settled(self)


def settled(future: Future[Any]) -> bool:
    """Is the future done (its state read without its lock: a batch asks
    before it sets it)?"""
    return future._state == FINISHED or future._state in _CANCELLED  # type: ignore[attr-defined]


class AsyncTaskFuture[T](asyncio.Future[T], Coroutine[Any, Any, T]):
    """The asyncio future of a pool task (what ``Pool.run`` returns); also a
    coroutine, so ``asyncio.create_task``, ``TaskGroup.create_task`` and
    anyio's task groups accept it as well as ``await``, ``gather``,
    ``wait_for``, ``shield`` and ``ensure_future`` (which take it as the
    future it is, with no Task around it).

    The task is queued when the future is made.  cancel() also pulls it out
    of the queue: a task that has not started never runs; a running
    coroutine gets CancelledError at its current await in the worker; a
    running sync function gets TaskInterrupted at its next bytecode.  A task
    wrapping this coroutine cancels it when the task is cancelled, as with
    any future it awaits; ``close()`` or ``throw()`` (the coroutine being
    given up) cancel it too.

    Like every coroutine, it is refused by ``asyncio.wait`` ("use tasks
    explicitly"): pass ``asyncio.create_task(pool.run(...))`` there.
    """

    __slots__ = ("_handle", "_detour")

    # Read by asyncio's repr of a Task running this "coroutine".
    __name__ = "interpool.Pool.run"

    _handle: Any
    _detour: Any   # as TaskFuture's (set only by a pool with a fallback)

    def set_exception(self, exception: type[BaseException] | BaseException, /) -> None:
        detour = getattr(self, "_detour", None)
        if detour is not None:
            self._detour = None
            if detour.rerun(self, exception):
                return   # it runs again in the pool's fallback, which resolves it
        super().set_exception(exception)

    def cancel(self, msg: Any = None) -> bool:
        handle = getattr(self, "_handle", None)
        if handle is not None and not self.done() and not handle.cancel():
            # Running: its worker is told once this loop iteration ends, so
            # that a batch of cancels (gather, TaskGroup, a timeout) removes
            # every queued task before a running one stops and frees its
            # worker to start the next.
            try:
                self.get_loop().call_soon(handle.cancel, True)
            except RuntimeError:  # the loop is closed: nothing will run it
                handle.cancel(True)
        return super().cancel(msg)

    # ------------------------------------------------ the coroutine protocol
    # What the generator of ``Future.__await__`` does, without the
    # generator: a Task calls send(None), gets this future back (blocking),
    # waits for it, then calls send(None) again for the result.

    def send(self, value: object, /) -> Any:
        """Step the coroutine: this future while pending, else its result
        (as StopIteration) or its exception."""
        if not self.done():
            self._asyncio_future_blocking = True
            return self
        raise StopIteration(self.result())

    def throw(
        self,
        typ: type[BaseException] | BaseException,
        val: object = None,
        tb: TracebackType | None = None,
        /,
    ) -> NoReturn:
        """Raise the exception given, cancelling the task if it is still
        pending (whoever throws into a coroutine gives it up)."""
        if isinstance(typ, BaseException):
            exc = typ
        elif isinstance(val, BaseException):
            exc = val
        else:
            exc = typ() if val is None else typ(val)
        if tb is not None:
            exc = exc.with_traceback(tb)
        if not self.done():
            self.cancel()
        raise exc

    def close(self) -> None:
        """Give the coroutine up: cancel the task if it is still pending."""
        if not self.done():
            self.cancel()
