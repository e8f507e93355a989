"""Runner: the seed design's asyncio API (aiointerpreters), on the C pool."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, Literal, ParamSpec, Self, TypeVar, overload

from ._futures import AsyncTaskFuture
from ._pool import Pool

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["Runner"]


class Runner:
    """Worker interpreters for an asyncio program.

    ``with Runner(workers=5).start() as runner:`` creates the workers eagerly
    (``start()`` returns once all are ready); then ``await runner.run(fn,
    *args, **kwargs)`` or ``runner.wrap(fn)``.  Leaving the block shuts the
    workers down; a later ``with runner.start():`` starts fresh ones, as
    the seed design's Runner does.  ``with runner:`` and ``async with
    runner:`` start it too.

    The keywords are :class:`Pool`'s (checked when ``start()`` makes the
    workers): ``concurrency`` coroutines of ``async def`` tasks run at
    once on each worker's own event loop (made by ``loop_factory``),
    ``task_timeout`` stops every call still running that long after it
    started, ``max_tasks_per_worker`` recycles a worker's interpreter, and
    ``forward_output``/``forward_logging`` say where workers' output and
    log records go.
    ``fallback="processes"`` or ``"threads"``: where functions that
    cannot load in a subinterpreter run (see ``Pool``).
    """

    def __init__(
        self,
        *,
        workers: int | None = None,
        max_workers: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[object, ...] = (),
        name: str | None = None,
        concurrency: int = 1,
        loop_factory: Callable[[], object] | None = None,
        task_timeout: float | None = None,
        max_tasks_per_worker: int | None = None,
        forward_output: bool = True,
        forward_logging: bool = True,
        fallback: Literal["processes", "threads"] | None = None,
    ) -> None:
        self._options: dict[str, Any] = dict(
            workers=workers, max_workers=max_workers, initializer=initializer,
            initargs=initargs, name=name, concurrency=concurrency, loop_factory=loop_factory,
            task_timeout=task_timeout, max_tasks_per_worker=max_tasks_per_worker,
            forward_output=forward_output, forward_logging=forward_logging,
            fallback=fallback,
        )
        self._pool: Pool | None = None   # the current (or last) workers
        self._running = False

    @property
    def pool(self) -> Pool:
        """The underlying Pool: the current one, or the last one once closed
        (RuntimeError before the first start())."""
        if self._pool is None:
            raise RuntimeError("the Runner is not started: call start() or use `with`")
        return self._pool

    def _running_pool(self) -> Pool:
        if not self._running or self._pool is None:
            raise RuntimeError("the Runner is not started: call start() or use `with`")
        return self._pool

    def start(self) -> Self:
        """Create the worker interpreters and wait until they are ready (a
        no-op while started).  Returns the Runner, a context manager that
        closes it."""
        if not self._running:
            pool = Pool(**self._options)
            try:
                pool.wait_ready()
            except BaseException:
                pool.shutdown(wait=False)
                raise
            self._pool, self._running = pool, True
        return self

    def close(self) -> None:
        """Shut the workers down (waits for running tasks); start() may
        start fresh ones afterwards."""
        if self._running and self._pool is not None:
            self._running = False
            self._pool.shutdown(wait=True)

    @overload
    def run(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> AsyncTaskFuture[R]: ...
    @overload
    def run(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> AsyncTaskFuture[R]: ...

    def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> AsyncTaskFuture[Any]:
        """Run fn in a worker interpreter; ``await`` the result (see Pool.run)."""
        return self._running_pool().run(fn, *args, **kwargs)

    @overload
    def wrap(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...
    @overload
    def wrap(self, fn: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]: ...

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
        """Return an ``async def`` version of fn that runs it in a worker of
        this Runner: of the workers started when it is called, so a wrapped
        function outlives one ``with runner.start():`` block."""
        self._running_pool().wrap(fn)   # refuse unsendable callables now

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            return await self.run(fn, *args, **kwargs)

        return wrapper

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        if self._running and self._pool is not None:
            self._running = False
            await self._pool.ashutdown()
