"""InterpreterPoolExecutor: a drop-in for the stdlib class of that name."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from ._pool import Pool, cpu_count
from ._unwrap import unwrap_context_run

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["InterpreterPoolExecutor"]


class InterpreterPoolExecutor(ThreadPoolExecutor):
    """``concurrent.futures.InterpreterPoolExecutor``, on interpool's C pool.

    Same constructor and ``submit``/``map``/``shutdown`` semantics as the
    stdlib class; a failing initializer breaks the pool with ``BrokenPool``
    (a ``BrokenInterpreterPool``).  It subclasses ``ThreadPoolExecutor``
    like the stdlib class does, so ``loop.set_default_executor`` accepts it,
    but it runs no Python threads: every call runs in a worker interpreter.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        # Not ThreadPoolExecutor.__init__: no thread pool behind this one.
        if max_workers is None:
            max_workers = min(32, cpu_count() + 4)  # the stdlib's default
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._max_workers = max_workers
        self._thread_name_prefix = thread_name_prefix or f"InterpreterPoolExecutor-{id(self):x}"
        self._initializer = initializer
        self._initargs = initargs
        self._pool = Pool(
            max_workers,
            initializer=initializer,
            initargs=initargs,
            name=self._thread_name_prefix,
        )

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        if isinstance(fn, (str, bytes)):
            raise TypeError("scripts not supported")
        fn, args, kwargs = unwrap_context_run(fn, args, kwargs)
        return self._pool.submit(fn, *args, **kwargs)

    submit.__doc__ = ThreadPoolExecutor.submit.__doc__

    def map(
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[R]:
        return self._pool.map(
            fn, *iterables, timeout=timeout, chunksize=chunksize, buffersize=buffersize
        )

    map.__doc__ = Pool.map.__doc__

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait, cancel_futures=cancel_futures)

    shutdown.__doc__ = ThreadPoolExecutor.shutdown.__doc__

    @property
    def _broken(self) -> str | bool:
        # The stdlib executors' attribute: why the pool broke, or False.
        return self._pool._core.broken or False

    @property
    def pool(self) -> Pool:
        """The interpool.Pool behind this executor (for its asyncio API)."""
        return self._pool
