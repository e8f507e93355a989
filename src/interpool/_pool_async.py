"""The asyncio front door of Pool: run, wrap, amap, as_completed, async with.

Each event loop that uses a pool gets one LoopCompletions whose eventfd is
registered with ``loop.add_reader``: workers write the fd once per batch and
the loop resolves every finished future from C in one callback, instead of
one ``call_soon_threadsafe`` per result.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import (
    AsyncGenerator, AsyncIterable, Awaitable, Callable, Coroutine, Iterable,
)
from typing import TYPE_CHECKING, Any, ParamSpec, Self, TypeVar, overload

from . import _core
from ._completions import LoopCompletions
from ._futures import AsyncTaskFuture

if TYPE_CHECKING:   # imported only by pools with a fallback
    from ._fallback import Fallback

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def _set_done(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


class AsyncPoolMethods:
    """Mixed into Pool: the awaitable API.  Needs _core, _target, _check_open."""

    _core: Any
    _workers: int
    _fallback: Fallback | None
    _loop_completions: dict[asyncio.AbstractEventLoop, LoopCompletions]
    _loop_lock: threading.Lock

    def _target(self, fn: Callable[..., object]) -> tuple[int, tuple[Any, ...]]:
        raise NotImplementedError  # provided by Pool

    def _check_open(self) -> None:
        raise NotImplementedError  # provided by Pool

    def _completions_for(self, loop: asyncio.AbstractEventLoop) -> LoopCompletions:
        with self._loop_lock:
            self._check_open()
            for old in [lp for lp in self._loop_completions if lp.is_closed()]:
                self._loop_completions.pop(old).fail_orphans()
            completions = self._loop_completions.get(loop)
            if completions is None:
                completions = self._loop_completions[loop] = LoopCompletions(loop)
        return completions

    def _retire_loop_completions(self) -> None:
        """At shutdown: each loop stops watching its completions once its
        last result is in (on its own thread); closed loops fail what is left."""
        with self._loop_lock:
            retiring = list(self._loop_completions.items())
            self._loop_completions.clear()
        for loop, completions in retiring:
            if loop.is_closed():
                completions.fail_orphans()
                continue
            try:
                loop.call_soon_threadsafe(completions.retire)
            except RuntimeError:  # closed meanwhile
                completions.fail_orphans()

    @overload
    def run(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> AsyncTaskFuture[R]: ...
    @overload
    def run(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> AsyncTaskFuture[R]: ...

    def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> AsyncTaskFuture[Any]:
        """Run ``fn(*args, **kwargs)`` in a worker; ``await`` the result.

        Must be called with an event loop running in this thread.  The task
        is queued at once (like ``loop.run_in_executor``).  Cancelling the
        await (or an ``asyncio.timeout`` expiring) removes a task that has
        not started and stops a running one (``TaskInterrupted`` in sync
        code, ``CancelledError`` in a coroutine).

        The result is an asyncio future that is also a coroutine: await it,
        gather it, or hand it to ``asyncio.create_task``,
        ``TaskGroup.create_task`` or an anyio task group.  For an
        ``async def`` fn its result is the value the coroutine returns.
        """
        loop = asyncio.get_running_loop()
        fallback = self._fallback
        if fallback is not None and fallback.diverts(fn):
            self._check_open()
            return fallback.run(loop, fn, args, kwargs)
        completions = self._loop_completions.get(loop) or self._completions_for(loop)
        fn_id, prefix = self._target(fn)
        # (with a fallback, a call the interpreters refuse runs again there)
        future = (AsyncTaskFuture(loop=loop) if fallback is None
                  else fallback.watched_async(loop, fn, args, kwargs))
        future._handle = self._core.submit(
            fn_id, prefix + args if prefix else args, kwargs or None, completions.core, future
        )
        return future

    @overload
    def wrap(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...
    @overload
    def wrap(self, fn: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]: ...

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
        """Return an ``async def`` version of fn that runs it in this pool."""
        self._target(fn)  # refuse unsendable callables now, not at the first await

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            return await self.run(fn, *args, **kwargs)

        return wrapper

    @overload
    def amap(
        self,
        fn: Callable[[T], Coroutine[Any, Any, R]],
        iterable: Iterable[T] | AsyncIterable[T],
        *,
        ordered: bool = True,
        window: int | None = None,
    ) -> AsyncGenerator[R, None]: ...
    @overload
    def amap(
        self,
        fn: Callable[[T], R],
        iterable: Iterable[T] | AsyncIterable[T],
        *,
        ordered: bool = True,
        window: int | None = None,
    ) -> AsyncGenerator[R, None]: ...

    async def amap(
        self,
        fn: Callable[[Any], Any],
        iterable: Iterable[Any] | AsyncIterable[Any],
        *,
        ordered: bool = True,
        window: int | None = None,
    ) -> AsyncGenerator[Any, None]:
        """``fn(item)`` for each item, as an async iterator of results.

        Accepts sync and async iterables and pulls at most ``window`` items
        ahead of the results consumed (default: 4 per worker).  An async
        iterable is read by a task of its own, each item queued as it
        comes: results are yielded while the source waits for more.  With
        ``ordered=False`` results come in completion order.  An exception
        from ``fn`` is raised when its result is reached, one from the
        source once the results of the items before it are yielded;
        leaving the loop early cancels the tasks not yet started (and
        stops reading an async source).
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
        completions = _core.Completions(eventfd=True)
        core = self._core
        waiter: list[asyncio.Future[None] | None] = [None]   # the consumer sleeps on it
        room: list[asyncio.Future[None] | None] = [None]     # the reader sleeps on it
        arrived: dict[int, tuple[bool, Any]] = {}
        submitted = consumed = 0
        exhausted = False
        failure: list[BaseException] = []   # what ended the reading of an async source

        def deliver(index: int, ok: bool, value: Any) -> None:
            arrived[index] = (ok, value)
            _set_done(waiter[0])

        detour = None if self._fallback is None else self._fallback.map_detour(
            fn, len(prefix), False, core, fn_id, completions, deliver)

        def drain() -> list[tuple[int, bool, Any]]:
            drained = completions.drain()
            return drained if detour is None else detour.sift(drained)

        def send(batch: list[tuple[Any, ...]]) -> None:
            if detour is None:
                core.submit_many(fn_id, batch, completions, submitted)
            else:   # (the interpreters, or the fallback once fn is diverted)
                detour.send(batch, submitted)

        def wake() -> None:
            # drain (which also clears the eventfd) so the loop never spins
            for index, ok, value in drain():
                deliver(index, ok, value)

        async def read(source: Any) -> None:
            """Queue each item of an async source as it comes, while fewer
            than `window` are ahead of the consumer."""
            nonlocal submitted, exhausted
            try:
                while True:
                    while submitted - consumed >= window:
                        waiting = room[0] = loop.create_future()
                        await waiting
                    try:
                        item = await anext(source)
                    except StopAsyncIteration:
                        return
                    send([prefix + (item,) if prefix else (item,)])
                    submitted += 1
            except Exception as exc:   # raised to the consumer at its place
                failure.append(exc)
            finally:
                exhausted = True
                _set_done(waiter[0])

        reader: asyncio.Task[None] | None = None
        source: Any = None
        if isinstance(iterable, AsyncIterable):
            reader = loop.create_task(read(aiter(iterable)))
        else:
            source = iter(iterable)

        # A sync source is read a quarter window at a time (one submit per
        # few results, while the workers still have most of the window), or
        # into any free slot when fewer tasks are unfinished than the workers
        # run at once: one would idle, or the awaited task may wait for a
        # later item.
        refill = max(1, window // 4)
        slots = self._workers * self._concurrency
        loop.add_reader(completions.fileno(), wake)
        try:
            while True:
                if completions.ready:   # (the reader callback drained what woke us)
                    for index, ok, value in drain():
                        arrived[index] = (ok, value)
                free = window - (submitted - consumed)
                if source is not None and not exhausted and (
                        free >= refill or (free > 0 and window - free - len(arrived) < slots)):
                    batch: list[tuple[Any, ...]] = []
                    while len(batch) < free:
                        try:
                            item = next(source)
                        except StopIteration:
                            exhausted = True
                            break
                        batch.append(prefix + (item,) if prefix else (item,))
                    if batch:
                        send(batch)
                        submitted += len(batch)
                if ordered:
                    ready: list[tuple[bool, Any]] = []
                    while consumed + len(ready) in arrived:
                        ready.append(arrived.pop(consumed + len(ready)))
                else:
                    ready = list(arrived.values())
                    arrived.clear()
                if not ready:
                    if exhausted and consumed == submitted:
                        if failure:
                            raise failure[0]
                        return
                    waiting = waiter[0] = loop.create_future()
                    await waiting
                    waiter[0] = None
                    continue
                for ok, value in ready:
                    consumed += 1
                    _set_done(room[0])
                    if not ok:
                        raise value
                    yield value
        finally:
            loop.remove_reader(completions.fileno())
            if reader is not None and not reader.done():
                reader.cancel()   # stops reading the source (at its current await)
            if consumed < submitted:
                core.cancel_queued(completions, True)  # and stop the running ones
                if detour is not None:
                    detour.close(interrupt=True)

    @overload
    def as_completed(self, items: Iterable[Awaitable[T]]) -> AsyncGenerator[asyncio.Future[T], None]: ...
    @overload
    def as_completed(
        self, items: Iterable[Awaitable[Any] | tuple[Any, ...]]
    ) -> AsyncGenerator[asyncio.Future[Any], None]: ...

    async def as_completed(
        self, items: Iterable[Awaitable[Any] | tuple[Any, ...]]
    ) -> AsyncGenerator[asyncio.Future[Any], None]:
        """Yield futures as they complete (like ``asyncio.as_completed``).

        Each item is an awaitable (e.g. ``pool.run(...)``) or a call given as
        a tuple ``(fn, *args)``, which is run in this pool.
        """
        futures: list[asyncio.Future[Any]] = []
        for item in items:
            if isinstance(item, tuple):
                if not item or not callable(item[0]):
                    raise TypeError("a call must be a tuple (fn, *args) with a callable first")
                futures.append(self.run(item[0], *item[1:]))
            else:
                futures.append(asyncio.ensure_future(item))
        async for future in asyncio.as_completed(futures):
            yield future

    async def ashutdown(self, *, cancel_futures: bool = False, interrupt: bool = False) -> None:
        """``shutdown(wait=True)`` without blocking the event loop."""
        shutdown: Any = getattr(self, "shutdown")
        shutdown(wait=False, cancel_futures=cancel_futures, interrupt=interrupt)
        # Join on a plain thread: the loop's default executor may be busy,
        # or be an interpool executor itself.  Not a daemon: worker
        # interpreters forbid daemon threads, and the exit hook stops the
        # pool before non-daemon threads are joined anyway.
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def join() -> None:
            try:
                shutdown(True)
            finally:
                try:
                    loop.call_soon_threadsafe(_set_done, done)
                except RuntimeError:  # the loop closed meanwhile
                    pass

        threading.Thread(target=join, name="interpool-shutdown").start()
        await done

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        # Ctrl-C or a cancelled block: stop what runs instead of waiting for it.
        interrupted = exc_type is not None and issubclass(
            exc_type, (KeyboardInterrupt, asyncio.CancelledError)
        )
        await self.ashutdown(interrupt=interrupted)
