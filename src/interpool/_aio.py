"""The asyncio front door of Pool: run, wrap, amap, as_completed, async with.

Each event loop that uses a pool gets one Completions sink whose eventfd is
registered with ``loop.add_reader``: workers write the fd once per batch and
the loop resolves every finished future from C in one callback, instead of
one ``call_soon_threadsafe`` per result.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, ParamSpec, TypeVar

from . import _core

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class _TaskFuture(asyncio.Future):
    """An asyncio future whose cancel() also pulls its task out of the queue.

    A task that has not started never runs; a running coroutine gets
    CancelledError at its current await in the worker; a running sync
    function finishes and its result is discarded on arrival.
    """

    _handle: Any = None

    def cancel(self, msg: Any = None) -> bool:
        handle = self._handle
        if handle is not None and not self.done():
            handle.cancel(True)  # queued: dropped; a running coroutine: cancelled
        return super().cancel(msg)


class _LoopDelivery:
    """One event loop's sink: its eventfd is watched by the loop, and each
    wake-up resolves every finished future of that loop in one C call."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sink = _core.Completions(eventfd=True)
        self.fd = self.sink.fileno()
        self.retiring = False
        loop.add_reader(self.fd, self.on_ready)

    def on_ready(self) -> None:
        self.sink.resolve()
        if self.retiring and self.sink.outstanding == 0:
            self._unwatch()

    def retire(self) -> None:
        self.retiring = True
        self.on_ready()

    def _unwatch(self) -> None:
        self.loop.remove_reader(self.fd)
        self.sink.detach()


def _fail_orphans(sink: Any) -> None:
    """Fail the futures of a loop that closed with tasks still in flight
    (or of a pool shut down with results still due there)."""
    from ._errors import PoolShutdownError

    for future in sink.detach():
        if not future.done():
            try:
                future.set_exception(
                    PoolShutdownError("the event loop closed before this task finished")
                )
            except RuntimeError:  # the loop is closed: callbacks cannot be scheduled
                pass


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class AsyncPoolMethods:
    """Mixed into Pool: the awaitable API.  Needs _core, _target, _check_open."""

    _core: Any
    _workers: int
    _loop_sinks: dict[asyncio.AbstractEventLoop, Any]
    _loop_lock: threading.Lock

    def _target(self, fn: Callable[..., object]) -> tuple[int, tuple[Any, ...]]:
        raise NotImplementedError  # provided by Pool

    def _check_open(self) -> None:
        raise NotImplementedError  # provided by Pool

    def _loop_sink(self, loop: asyncio.AbstractEventLoop) -> Any:
        with self._loop_lock:
            self._check_open()
            for old in [lp for lp in self._loop_sinks if lp.is_closed()]:
                _fail_orphans(self._loop_sinks.pop(old).sink)
            delivery = self._loop_sinks.get(loop)
            if delivery is None:
                delivery = self._loop_sinks[loop] = _LoopDelivery(loop)
        return delivery.sink

    def _retire_loop_sinks(self) -> None:
        """At shutdown: each loop stops watching its sink once its last
        result is in (on its own thread); closed loops fail what is left."""
        with self._loop_lock:
            deliveries = list(self._loop_sinks.items())
            self._loop_sinks.clear()
        for loop, delivery in deliveries:
            if loop.is_closed():
                _fail_orphans(delivery.sink)
                continue
            try:
                loop.call_soon_threadsafe(delivery.retire)
            except RuntimeError:  # closed meanwhile
                _fail_orphans(delivery.sink)

    def run(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> asyncio.Future[R]:
        """Run ``fn(*args, **kwargs)`` in a worker; ``await`` the result.

        Must be called with an event loop running in this thread.  The task
        is queued at once (like ``loop.run_in_executor``).  Cancelling the
        await (or an ``asyncio.timeout`` expiring) removes a task that has
        not started; a running one finishes and its result is discarded.
        """
        loop = asyncio.get_running_loop()
        delivery = self._loop_sinks.get(loop)
        sink = delivery.sink if delivery is not None else self._loop_sink(loop)
        fn_id, prefix = self._target(fn)
        future = _TaskFuture(loop=loop)
        future._handle = self._core.submit(
            fn_id, prefix + args if prefix else args, kwargs or None, sink, future
        )
        return future

    def wrap(self, fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
        """Return an ``async def`` version of fn that runs it in this pool."""
        self._target(fn)  # refuse unsendable callables now, not at the first await

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return await self.run(fn, *args, **kwargs)

        return wrapper

    async def amap(
        self,
        fn: Callable[[T], R],
        iterable: Iterable[T] | AsyncIterable[T],
        *,
        ordered: bool = True,
        window: int | None = None,
    ) -> AsyncIterator[R]:
        """``fn(item)`` for each item, as an async iterator of results.

        Accepts sync and async iterables and pulls at most ``window`` items
        ahead of the results consumed (default: 4 per worker).  With
        ``ordered=False`` results come in completion order.  An exception
        from ``fn`` is raised when its result is reached; leaving the loop
        early cancels the tasks not yet started.
        """
        if window is None:
            window = 4 * self._workers
        elif isinstance(window, bool) or not isinstance(window, int):
            raise TypeError("window must be an int or None")
        elif window < 1:
            raise ValueError("window must be at least 1")
        self._check_open()
        fn_id, prefix = self._target(fn)
        loop = asyncio.get_running_loop()
        sink = _core.Completions(eventfd=True)
        waiter: list[asyncio.Future[None] | None] = [None]
        arrived: dict[int, tuple[bool, Any]] = {}

        def wake() -> None:
            # drain (which also clears the eventfd) so the loop never spins
            for index, ok, value in sink.drain():
                arrived[index] = (ok, value)
            w = waiter[0]
            if w is not None and not w.done():
                w.set_result(None)

        if isinstance(iterable, AsyncIterable):
            source: Any = aiter(iterable)
            is_async = True
        else:
            source = iter(iterable)
            is_async = False

        loop.add_reader(sink.fileno(), wake)
        submitted = consumed = 0
        exhausted = False
        try:
            while True:
                batch = []
                while not exhausted and submitted + len(batch) - consumed < window:
                    try:
                        item = await anext(source) if is_async else next(source)
                    except (StopIteration, StopAsyncIteration):
                        exhausted = True
                        break
                    batch.append(prefix + (item,) if prefix else (item,))
                if batch:
                    self._core.submit_many(fn_id, batch, sink, submitted)
                    submitted += len(batch)
                if consumed == submitted and exhausted:
                    return
                for index, ok, value in sink.drain():
                    arrived[index] = (ok, value)
                if ordered:
                    ready = []
                    while consumed + len(ready) in arrived:
                        ready.append(arrived.pop(consumed + len(ready)))
                else:
                    ready = list(arrived.values())
                    arrived.clear()
                if not ready:
                    waiter[0] = loop.create_future()
                    await waiter[0]
                    waiter[0] = None
                    continue
                for ok, value in ready:
                    consumed += 1
                    if not ok:
                        raise value
                    yield value
        finally:
            loop.remove_reader(sink.fileno())
            if consumed < submitted:
                self._core.cancel_queued(sink)

    async def as_completed(
        self, items: Iterable[Awaitable[Any] | tuple[Any, ...]]
    ) -> AsyncIterator[asyncio.Future[Any]]:
        """Yield futures as they complete (like ``asyncio.as_completed``).

        Each item is an awaitable (e.g. ``pool.run(...)``) or a call given as
        a tuple ``(fn, *args)``, which is run in this pool.
        """
        futures = []
        for item in items:
            if isinstance(item, tuple):
                if not item or not callable(item[0]):
                    raise TypeError("a call must be a tuple (fn, *args) with a callable first")
                futures.append(self.run(item[0], *item[1:]))
            else:
                futures.append(asyncio.ensure_future(item))
        async for future in asyncio.as_completed(futures):
            yield future

    async def ashutdown(self, *, cancel_futures: bool = False) -> None:
        """``shutdown(wait=True)`` without blocking the event loop."""
        shutdown: Any = getattr(self, "shutdown")
        shutdown(wait=False, cancel_futures=cancel_futures)
        # Join on a plain thread: the loop's default executor may be busy,
        # or be an interpool executor itself.
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def join() -> None:
            try:
                shutdown(True)
            finally:
                loop.call_soon_threadsafe(_set_done, done)

        threading.Thread(target=join, name="interpool-shutdown", daemon=True).start()
        await done

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.ashutdown()
