"""Worker side: the event loop each worker interpreter keeps for coroutines.

A worker's loop lives as long as the worker, so connections opened by an
(async) initializer or by earlier tasks can be reused by later ones.  With
``concurrency > 1`` the loop pulls up to that many tasks from the pool's C
queue and runs them at once; the rest stay queued for other workers.  Sync
functions run inline and hold the loop while they run.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

_loop: asyncio.AbstractEventLoop | None = None


def worker_loop(ctx: Any) -> asyncio.AbstractEventLoop:
    """This worker's event loop, made on first use with the pool's loop_factory."""
    global _loop
    if _loop is None:
        factory = None
        try:
            factory = ctx.loop_factory if ctx is not None else None
            loop = asyncio.new_event_loop() if factory is None else factory()
        except Exception as exc:
            raise RuntimeError(
                f"the pool's loop_factory {factory or '(could not be loaded)'} failed "
                f"in a worker interpreter ({type(exc).__name__}: {exc})"
            ) from exc
        asyncio.set_event_loop(loop)
        _loop = loop
    return _loop


def close_loop() -> None:
    global _loop
    loop, _loop = _loop, None
    if loop is None or loop.is_closed():
        return
    try:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _shutdown_error() -> BaseException:
    from ._errors import PoolShutdownError

    return PoolShutdownError("the pool shut down while this coroutine was running")


def run_coroutine(ctx: Any, wt: Any, coro: Any) -> Any:
    """C loop (concurrency=1): run one coroutine to completion on the
    worker's loop; its awaiter's cancel request cancels it."""
    try:
        loop = worker_loop(ctx)
    except BaseException:
        coro.close()  # it will never run: no "never awaited" warning
        raise
    if ctx is not None and ctx.cancel_running:
        coro.close()  # the pool is stopping: coroutines no longer start
        raise _shutdown_error()
    task = loop.create_task(coro)
    fd = -1
    if ctx is not None and wt is not None:

        def on_wake() -> None:
            ctx.clear()
            if wt.cancel_requested or ctx.cancel_running:
                task.cancel()

        fd = ctx.fileno()
        loop.add_reader(fd, on_wake)
        on_wake()  # a cancel that came before the reader was there
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError:
        if ctx is not None and ctx.cancel_running:
            raise _shutdown_error() from None
        raise
    finally:
        if fd >= 0:
            loop.remove_reader(fd)


async def _run_chunk(fn: Any, arglist: list[tuple]) -> list[Any]:
    out = []
    for args in arglist:
        result = fn(*args)
        if inspect.isawaitable(result):
            result = await result
        out.append(result)
    return out


def serve(ctx: Any) -> None:
    """concurrency > 1: run the worker's loop until the pool stops."""
    worker_loop(ctx).run_until_complete(_serve(ctx))


async def _serve(ctx: Any) -> None:
    loop = asyncio.get_running_loop()
    concurrency = ctx.concurrency
    running: dict[asyncio.Task[None], Any] = {}
    waiter: list[asyncio.Future[None] | None] = [None]

    def wake(*_: object) -> None:
        w = waiter[0]
        if w is not None and not w.done():
            w.set_result(None)

    def on_fd() -> None:
        ctx.clear()
        wake()

    async def finish(wt: Any, awaitable: Any) -> None:
        try:
            result = await awaitable
        except asyncio.CancelledError:
            wt.set_exception(_shutdown_error() if ctx.cancel_running else asyncio.CancelledError())
        except BaseException as exc:
            wt.set_exception(exc)
        else:
            wt.set_result(result)

    def start(wt: Any) -> None:
        try:
            fn, args, kwargs = wt.call()
            if wt.chunked:
                result: Any = _run_chunk(fn, args)
            else:
                result = fn(*args, **(kwargs or {}))
        except BaseException as exc:
            wt.set_exception(exc)
            return
        if not inspect.isawaitable(result):
            wt.set_result(result)
            return
        if ctx.cancel_running:  # stopping: queued coroutines no longer start
            if inspect.iscoroutine(result):
                result.close()
            wt.set_exception(_shutdown_error())
            return
        task = loop.create_task(finish(wt, result))
        running[task] = wt
        task.add_done_callback(lambda t: (running.pop(t, None), wake()))

    fd = ctx.fileno()
    loop.add_reader(fd, on_fd)
    try:
        while True:
            cancel_all = ctx.cancel_running
            for task, wt in list(running.items()):
                if cancel_all or wt.cancel_requested:
                    task.cancel()
            free = concurrency - len(running)
            # take() also drops copies of released shared values, so call it
            # on every wake-up, even with no room for a task.  When stopping
            # it drains the queue: sync tasks still run, coroutines fail.
            for wt in ctx.take(max(free, 1) if cancel_all else max(free, 0)):
                start(wt)
            if cancel_all and not ctx.stopping:
                continue  # more queued: keep draining
            if ctx.stopping and not running:
                return
            waiter[0] = loop.create_future()
            await waiter[0]
            waiter[0] = None
    finally:
        loop.remove_reader(fd)
