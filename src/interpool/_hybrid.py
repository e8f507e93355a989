"""InterpreterThreadPoolExecutor + interpreter(fn): one executor, two places.

Calls marked with ``interpreter(fn)`` run in worker interpreters (true
parallelism for CPU-bound Python); every other call runs on a thread as with
``ThreadPoolExecutor`` (I/O, C extensions that do not load in
subinterpreters), keeping its contextvars.  Made the event loop's default
executor, it lets ``asyncio.to_thread`` pick per call.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, ParamSpec, TypeVar

from ._callables import check_sendable
from ._pool import Pool, cpu_count
from ._unwrap import unwrap_context_run

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["InterpreterThreadPoolExecutor", "interpreter"]


class interpreter(Generic[P, R]):
    """Mark fn to run in a worker interpreter when an
    InterpreterThreadPoolExecutor runs it.

    Called directly, the marked function just runs here.  fn must be
    importable by workers (module-level); it can be used as a decorator.
    """

    def __init__(self, fn: Callable[P, R]) -> None:
        if isinstance(fn, interpreter):
            fn = fn.fn
        check_sendable(fn)  # the full check runs at the call: fn may not be bound yet
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"interpreter({self.fn!r})"


class InterpreterThreadPoolExecutor(ThreadPoolExecutor):
    """A ThreadPoolExecutor that runs ``interpreter(fn)`` calls in worker
    interpreters.  Same constructor as ThreadPoolExecutor; the initializer
    runs once in each thread and once in each interpreter, where each needs
    it.  The interpreters start on the first marked call.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        super().__init__(max_workers, thread_name_prefix, initializer, initargs)
        self._interp_init = (initializer, tuple(initargs))
        self._interp_pool: Pool | None = None
        self._interp_lock = threading.Lock()

    def _interpreters(self) -> Pool:
        pool = self._interp_pool
        if pool is None:
            with self._interp_lock:
                if self._shutdown:
                    raise RuntimeError("cannot schedule new futures after shutdown")
                if self._interp_pool is None:
                    self._interp_pool = Pool(
                        min(self._max_workers, cpu_count()),
                        initializer=self._interp_init[0],
                        initargs=self._interp_init[1],
                        name=f"{self._thread_name_prefix}-interp",
                    )
                pool = self._interp_pool
        return pool

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        target, targs, tkwargs = unwrap_context_run(fn, args, kwargs)
        if isinstance(target, interpreter):
            return self._interpreters().submit(target.fn, *targs, **tkwargs)
        return super().submit(fn, *args, **kwargs)

    submit.__doc__ = ThreadPoolExecutor.submit.__doc__

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait, cancel_futures=cancel_futures)
        with self._interp_lock:
            pool = self._interp_pool
        if pool is not None:
            pool.shutdown(wait, cancel_futures=cancel_futures)

    def set_as_event_loop_default(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Make this the default executor of `loop` (default: the running loop),
        so ``asyncio.to_thread(interpreter(fn), ...)`` runs in an interpreter."""
        if loop is None:
            loop = asyncio.get_running_loop()
        loop.set_default_executor(self)
