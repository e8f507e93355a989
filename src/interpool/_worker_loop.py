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

from ._errors import stop_error

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


async def _within(awaitable: Any, timeout: float | None) -> Any:
    """Await it, raising TimeoutError if it runs past `timeout` seconds."""
    if timeout is None:
        return await awaitable
    async with asyncio.timeout(timeout):
        return await awaitable


def run_coroutine(ctx: Any, wt: Any, coro: Any) -> Any:
    """C loop (concurrency=1): run one coroutine to completion on the
    worker's loop, within the task's timeout; its awaiter's cancel request
    cancels it."""
    try:
        loop = worker_loop(ctx)
    except BaseException:
        coro.close()  # it will never run: no "never awaited" warning
        raise
    if ctx is not None and ctx.cancel_running:
        coro.close()  # the pool is stopping: coroutines no longer start
        raise stop_error("running")
    task = loop.create_task(_within(coro, wt.timeout if wt is not None else None))
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
            raise stop_error("running") from None
        raise
    finally:
        if fd >= 0:
            loop.remove_reader(fd)


async def _run_chunk(wt: Any, fn: Any, arglist: list[tuple]) -> list[Any]:
    out = []
    for args in arglist:
        result = wt.call_guarded(fn, args, None)
        if inspect.isawaitable(result):
            result = await _within(result, wt.timeout)
        out.append(result)
    return out


def serve(ctx: Any) -> None:
    """concurrency > 1: run the worker's loop until the pool stops."""
    worker_loop(ctx).run_until_complete(_serve(ctx))


async def _serve(ctx: Any) -> None:
    """`concurrency` slot coroutines, each running one task at a time.

    A slot takes its next task in the same step that finishes the previous
    one, so the new task reaches its first await at once; with one task per
    asyncio.Task, replacements would start only after every callback that
    was ready in that loop iteration ran (tasks then move in lock-step).
    """
    loop = asyncio.get_running_loop()
    work = asyncio.Event()          # set when the queue may have tasks (or stop)
    current: dict[asyncio.Task[None], Any] = {}   # slot -> WorkerTask it runs

    def on_fd() -> None:
        ctx.clear()
        stopping = ctx.cancel_running
        for slot, wt in list(current.items()):
            if stopping or wt.cancel_requested:
                slot.cancel()
        work.set()

    async def run_one(wt: Any) -> None:
        if wt.cancel_requested:  # cancelled between take() and now: never starts
            wt.set_exception(asyncio.CancelledError())
            return
        try:
            fn, args, kwargs = wt.call()
            if wt.chunked:
                result = _run_chunk(wt, fn, args)
            else:
                result = wt.call_guarded(fn, args, kwargs)
                if inspect.isawaitable(result) and wt.timeout is not None:
                    result = _within(result, wt.timeout)
        except BaseException as exc:
            wt.set_exception(exc)
            return
        if not inspect.isawaitable(result):
            wt.set_result(result)
            return
        if ctx.cancel_running:  # stopping: queued coroutines no longer start
            if inspect.iscoroutine(result):
                result.close()
            wt.set_exception(stop_error("running"))
            return
        me = asyncio.current_task()
        assert me is not None
        current[me] = wt
        try:
            value = await result
        except asyncio.CancelledError:
            me.uncancel()  # the slot lives on; only this task was cancelled
            wt.set_exception(stop_error("running") if ctx.cancel_running else asyncio.CancelledError())
        except BaseException as exc:
            wt.set_exception(exc)
        else:
            wt.set_result(value)
        finally:
            current.pop(me, None)

    async def slot() -> None:
        while True:
            taken = ctx.take(1)  # also drops copies of released shared values
            if taken:
                await run_one(taken[0])
                continue
            if ctx.stopping:
                return
            work.clear()
            taken = ctx.take(1)  # take() armed the eventfd: nothing is missed
            if taken:
                await run_one(taken[0])
                continue
            await work.wait()

    fd = ctx.fileno()
    loop.add_reader(fd, on_fd)
    try:
        slots = [loop.create_task(slot()) for _ in range(ctx.concurrency)]
        await asyncio.gather(*slots)
    finally:
        loop.remove_reader(fd)
