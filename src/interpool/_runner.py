"""Runner: the seed design's asyncio API (aiointerpreters), on the C pool."""

from __future__ import annotations

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
    workers down.  ``fallback="processes"`` or ``"threads"``: where
    functions that cannot load in a subinterpreter run (see ``Pool``).
    """

    def __init__(
        self,
        *,
        workers: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[object, ...] = (),
        fallback: Literal["processes", "threads"] | None = None,
    ) -> None:
        self._options = dict(workers=workers, initializer=initializer, initargs=initargs,
                             fallback=fallback)
        self._pool: Pool | None = None

    @property
    def pool(self) -> Pool:
        """The underlying Pool (RuntimeError before start())."""
        if self._pool is None:
            raise RuntimeError("the Runner is not started: call start() or use `with`")
        return self._pool

    def start(self) -> Self:
        """Create the worker interpreters and wait until they are ready."""
        if self._pool is None:
            pool = Pool(**self._options)  # type: ignore[arg-type]
            try:
                pool.wait_ready()
            except BaseException:
                pool.shutdown(wait=False)
                raise
            self._pool = pool
        return self

    def close(self) -> None:
        """Shut the workers down (waits for running tasks)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    @overload
    def run(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> AsyncTaskFuture[R]: ...
    @overload
    def run(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> AsyncTaskFuture[R]: ...

    def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> AsyncTaskFuture[Any]:
        """Run fn in a worker interpreter; ``await`` the result (see Pool.run)."""
        return self.pool.run(fn, *args, **kwargs)

    @overload
    def wrap(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...
    @overload
    def wrap(self, fn: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]: ...

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
        """Return an ``async def`` version of fn that runs it in a worker."""
        return self.pool.wrap(fn)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            await self._pool.ashutdown()
