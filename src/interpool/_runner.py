"""Runner: the seed design's asyncio API (aiointerpreters), on the C pool."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from ._pool import Pool

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["Runner"]


class Runner:
    """Worker interpreters for an asyncio program.

    ``with Runner(workers=5).start() as runner:`` creates the workers eagerly
    (``start()`` returns once all are ready); then ``await runner.run(fn,
    *args, **kwargs)`` or ``runner.wrap(fn)``.  Leaving the block shuts the
    workers down.
    """

    def __init__(
        self,
        *,
        workers: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[object, ...] = (),
    ) -> None:
        self._options = dict(workers=workers, initializer=initializer, initargs=initargs)
        self._pool: Pool | None = None

    @property
    def pool(self) -> Pool:
        """The underlying Pool (RuntimeError before start())."""
        if self._pool is None:
            raise RuntimeError("the Runner is not started: call start() or use `with`")
        return self._pool

    def start(self) -> Runner:
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

    def run(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> asyncio.Future[R]:
        """Run fn in a worker interpreter; ``await`` the result."""
        return self.pool.run(fn, *args, **kwargs)

    def wrap(self, fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
        """Return an ``async def`` version of fn that runs it in a worker."""
        return self.pool.wrap(fn)

    def __enter__(self) -> Runner:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Runner:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            await self._pool.ashutdown()
