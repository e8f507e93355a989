"""The concurrent.futures executors built on Pool.

- InterpreterPoolExecutor: a drop-in for the stdlib class of that name;
  every call runs in a worker interpreter.
- InterpreterThreadPoolExecutor + interpreter(fn): calls marked with
  ``interpreter(fn)`` run in worker interpreters (true parallelism for
  CPU-bound Python); every other call runs on a thread as with
  ThreadPoolExecutor (I/O, C extensions that do not load in
  subinterpreters), keeping its contextvars.  Made the event loop's default
  executor, it lets ``asyncio.to_thread`` pick per call.

Both subclass ThreadPoolExecutor (as the stdlib class does), so
``loop.set_default_executor`` accepts them.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, Literal, ParamSpec, TypeVar, overload

from . import _loading
from ._callables import check_sendable, unwrap_context_run
from ._errors import stop_error
from ._pool import Pool, cpu_count

P = ParamSpec("P")
R = TypeVar("R")
T1 = TypeVar("T1")
T2 = TypeVar("T2")

__all__ = ["InterpreterPoolExecutor", "InterpreterThreadPoolExecutor", "interpreter"]


def _interpreter_pool(
    workers: int, name: str, initializer: Any, initargs: tuple[Any, ...], **options: Any
) -> Pool:
    """The Pool behind an executor (its initializer runs once per interpreter)."""
    return Pool(workers, initializer=initializer, initargs=initargs, name=name, **options)


class _StdlibPool(Pool):
    """The Pool behind the drop-in executor.  It sends what the stdlib's
    executor sends, and fails the rest as the stdlib does, through the
    future: a closure, a local class or a callable that cannot be pickled
    fails with NotShareableError (an initializer too: the pool breaks at
    first use); a task's exception has the stdlib's ExecutionFailed as its
    cause."""

    _send_closures = False
    _flavor = "stdlib"

    def _target(self, fn: Callable[..., object]) -> tuple[int, tuple[Any, ...]]:
        try:
            return super()._target(fn)
        except TypeError as exc:  # how fn would travel: it cannot
            return self._register(_loading.fail_unsendable), (str(exc),)


def _not_shareable(exc: BaseException) -> Future[Any]:
    """A future failed as the stdlib's executor fails a call whose arguments
    it cannot send."""
    try:  # the class concurrent.interpreters exports (3.14), also on 3.13
        from _interpreters import NotShareableError
    except ImportError:  # pragma: no cover - CPython without subinterpreters
        error: BaseException = exc
    else:
        error = NotShareableError(f"args not shareable: {exc}")
        error.__cause__ = exc
    future: Future[Any] = Future()
    future.set_exception(error)
    return future


class InterpreterPoolExecutor(ThreadPoolExecutor):
    """``concurrent.futures.InterpreterPoolExecutor``, on interpool's C pool.

    Same constructor and ``submit``/``map``/``shutdown`` semantics as the
    stdlib class; a failing initializer breaks the pool with ``BrokenPool``
    (a ``BrokenInterpreterPool``).  It runs no Python threads: every call
    runs in a worker interpreter.  Beyond the stdlib: ``task_timeout``,
    ``max_tasks_per_worker`` and ``fallback`` (see ``Pool``),
    ``shutdown(interrupt=True)`` and ``future.cancel(interrupt=True)``.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        task_timeout: float | None = None,
        max_tasks_per_worker: int | None = None,
        fallback: Literal["processes", "threads"] | None = None,
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
        self._pool = _StdlibPool(
            max_workers, initializer=initializer, initargs=initargs,
            name=self._thread_name_prefix, task_timeout=task_timeout,
            max_tasks_per_worker=max_tasks_per_worker, fallback=fallback,
        )

    # An async def fn runs on its worker's event loop: the future gets the
    # value its coroutine returns (hence the overrides ThreadPoolExecutor's
    # types do not foresee).
    @overload
    def submit(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[R]: ...
    @overload
    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]: ...

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if isinstance(fn, (str, bytes)):
            raise TypeError("scripts not supported")
        fn, args, kwargs = unwrap_context_run(fn, args, kwargs)
        try:
            return self._pool.submit(fn, *args, **kwargs)
        except TypeError as exc:  # an argument the codec cannot send: as the stdlib, via the future
            return _not_shareable(exc)

    submit.__doc__ = ThreadPoolExecutor.submit.__doc__

    # As Pool.map: typed for one and two iterables, loosely for more (the
    # stdlib's types also allow fn= by keyword and no iterable at all).
    @overload  # type: ignore[override]
    def map(
        self, fn: Callable[[T1], Coroutine[Any, Any, R]], iterable: Iterable[T1], /, *,
        timeout: float | None = None, chunksize: int = 1, buffersize: int | None = None,
        ordered: bool = True,
    ) -> Iterator[R]: ...
    @overload
    def map(
        self, fn: Callable[[T1], R], iterable: Iterable[T1], /, *,
        timeout: float | None = None, chunksize: int = 1, buffersize: int | None = None,
        ordered: bool = True,
    ) -> Iterator[R]: ...
    @overload
    def map(
        self, fn: Callable[[T1, T2], Coroutine[Any, Any, R]], iterable1: Iterable[T1],
        iterable2: Iterable[T2], /, *,
        timeout: float | None = None, chunksize: int = 1, buffersize: int | None = None,
        ordered: bool = True,
    ) -> Iterator[R]: ...
    @overload
    def map(
        self, fn: Callable[[T1, T2], R], iterable1: Iterable[T1], iterable2: Iterable[T2], /, *,
        timeout: float | None = None, chunksize: int = 1, buffersize: int | None = None,
        ordered: bool = True,
    ) -> Iterator[R]: ...
    @overload
    def map(
        self, fn: Callable[..., Coroutine[Any, Any, R]], iterable1: Iterable[Any],
        iterable2: Iterable[Any], iterable3: Iterable[Any], /, *iterables: Iterable[Any],
        timeout: float | None = None, chunksize: int = 1, buffersize: int | None = None,
        ordered: bool = True,
    ) -> Iterator[R]: ...
    @overload
    def map(
        self, fn: Callable[..., R], iterable1: Iterable[Any], iterable2: Iterable[Any],
        iterable3: Iterable[Any], /, *iterables: Iterable[Any],
        timeout: float | None = None, chunksize: int = 1, buffersize: int | None = None,
        ordered: bool = True,
    ) -> Iterator[R]: ...

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], **options: Any) -> Iterator[Any]:
        return self._pool.map(fn, *iterables, **options)

    map.__doc__ = Pool.map.__doc__

    def shutdown(
        self, wait: bool = True, *, cancel_futures: bool = False, interrupt: bool = False
    ) -> None:
        self._pool.shutdown(wait, cancel_futures=cancel_futures, interrupt=interrupt)

    shutdown.__doc__ = Pool.shutdown.__doc__

    @property
    def _broken(self) -> str | bool:  # type: ignore[override]  # (typeshed says bool; it holds a reason)
        # The stdlib executors' attribute: why the pool broke, or False.
        return self._pool._core.broken or False

    @property
    def pool(self) -> Pool:
        """The interpool.Pool behind this executor (for its asyncio API)."""
        return self._pool


class interpreter(Generic[P, R]):
    """Mark fn to run in a worker interpreter when an
    InterpreterThreadPoolExecutor runs it.

    Called directly, the marked function just runs here.  fn travels as
    any task function does (by reference, or by value for the functions of
    the script); it can be used as a decorator.
    """

    def __init__(self, fn: Callable[P, R]) -> None:
        if isinstance(fn, interpreter):
            fn = fn.fn
        check_sendable(fn)  # the full check runs at the call: fn may not be bound yet
        self.fn: Callable[P, R] = fn
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
                    raise stop_error("refused")
                if self._interp_pool is None:
                    self._interp_pool = _interpreter_pool(
                        min(self._max_workers, cpu_count()),
                        f"{self._thread_name_prefix}-interp",
                        *self._interp_init,
                    )
                pool = self._interp_pool
        return pool

    # interpreter(fn) of an async def fn runs on a worker's event loop: the
    # future gets the value its coroutine returns.
    @overload
    def submit(
        self, fn: interpreter[P, Coroutine[Any, Any, R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[R]: ...
    @overload
    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]: ...

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
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
