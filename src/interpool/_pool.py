"""Pool: the sync front door (stdlib Executor semantics) over the C core."""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, ParamSpec, TypeVar

from . import _core, _support
from ._aio import AsyncPoolMethods
from ._callables import describe
from ._errors import BrokenPool

__all__ = ["Pool"]

P = ParamSpec("P")
R = TypeVar("R")

_pool_counter = itertools.count(1)


class _TaskFuture(Future):
    """A Future whose cancel() pulls the task out of the C queue.

    As with the stdlib executors, cancel() succeeds only while no worker has
    started the task.
    """

    _handle: Any = None

    def cancel(self) -> bool:
        if self.done():
            return self.cancelled()
        handle = self._handle
        if handle is None or not handle.cancel():
            return False
        _cancel_future(self)
        return True

    def running(self) -> bool:
        handle = self._handle
        return handle is not None and handle.running and not self.done()


def _cancel_future(future: Future) -> None:
    # Future.cancel, then the notification as_completed()/wait() listen for.
    if Future.cancel(future):
        future.set_running_or_notify_cancel()


def _dispatch(sink: Any) -> None:
    """Resolve sync futures in batches until the sink closes and empties."""
    while True:
        sink.wait()
        sink.resolve()
        if sink.closed and sink.outstanding == 0:
            return


# ---------------------------------------------------------------- exit hook
# Worker threads must leave their interpreters before CPython finalizes
# subinterpreters (which would hang on a running one and warn about the
# rest), so every started core is stopped and joined from threading's
# at-exit hook, which runs before non-daemon threads are joined.
_live_cores: set[Any] = set()
_live_lock = threading.Lock()
_hook_installed = False


def _stop_all_at_exit() -> None:
    with _live_lock:
        cores = list(_live_cores)
    for core in cores:
        core.stop()
    for core in cores:
        core.join()
    with _live_lock:
        _live_cores.difference_update(cores)


def _track(core: Any) -> None:
    global _hook_installed
    with _live_lock:
        if not _hook_installed:
            register = getattr(threading, "_register_atexit", None)
            try:
                if register is None:
                    raise RuntimeError
                register(_stop_all_at_exit)
            except RuntimeError:
                import atexit

                atexit.register(_stop_all_at_exit)
            _hook_installed = True
        _live_cores.add(core)


def _untrack(core: Any) -> None:
    with _live_lock:
        _live_cores.discard(core)


def _default_workers() -> int:
    count = getattr(os, "process_cpu_count", os.cpu_count)()
    return count or 1


class Pool(AsyncPoolMethods):
    """A pool of worker threads, each running Python in its own subinterpreter.

    ``Pool(workers=None, *, initializer=None, initargs=(), name=None)``

    Functions travel by reference (module and qualified name) and run in
    parallel, one per worker at a time.  Arguments and results travel through
    interpool's C codec (pickle only for types it does not know).  Use it
    like a ``concurrent.futures`` executor (``submit``, ``map``,
    ``shutdown``, ``with``) or from asyncio (``await pool.run(...)``,
    ``pool.wrap``, ``pool.amap``, ``pool.as_completed``, ``async with``).
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[object] = (),
        name: str | None = None,
    ) -> None:
        if workers is None:
            workers = _default_workers()
        elif isinstance(workers, bool) or not isinstance(workers, int):
            raise TypeError(f"workers must be an int, not {type(workers).__name__}")
        elif workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if _support.loading_main:
            raise RuntimeError(
                "a Pool was created while a worker interpreter was loading your "
                "script to find a function defined in it: the script's top-level "
                "code runs in every worker. Put the code that creates pools (and "
                "runs the program) under `if __name__ == \"__main__\":`."
            )
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable or None")
        initargs = tuple(initargs)
        self._workers = workers
        self._name = name or f"interpool-{next(_pool_counter)}"
        self._lock = threading.Lock()
        self._shutdown = False
        self._fn_ids: dict[Any, int] = {}
        self._ref_ids: dict[tuple, int] = {}
        self._futures_sink: Any = None
        self._dispatcher: threading.Thread | None = None
        self._loop_sinks = {}
        self._loop_lock = threading.Lock()
        self._core = _core.PoolCore(workers, [p for p in sys.path if isinstance(p, str)])
        if "__main__" in sys.modules:
            # Results naming classes of the script (run as __mp_main__ in
            # workers) unpickle here, as with multiprocessing.
            sys.modules.setdefault("__mp_main__", sys.modules["__main__"])
        if initializer is not None:
            self._core.set_initializer(self._fn_id(initializer), initargs)
        _track(self._core)
        self._core.start()
        weakref.finalize(self, _finalize_core, self._core)

    # ------------------------------------------------------------ properties

    @property
    def workers(self) -> int:
        """How many worker interpreters the pool runs."""
        return self._workers

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        state = "broken" if self._core.broken else "shut down" if self._shutdown else "running"
        return f"<interpool.Pool {self._name!r} workers={self._workers} {state}>"

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until every worker has its interpreter and ran the initializer.

        Return False on timeout; raise BrokenPool if the pool broke.
        """
        ready = self._core.wait_ready(timeout)
        broken = self._core.broken
        if broken is not None:
            raise BrokenPool(broken)
        return ready

    def share(self, value: object) -> _core.Shared:
        """Send `value` to each worker at most once; return a handle.

        Pass the handle as a task argument (at top level or inside
        containers): the worker receives its own cached copy of the value.
        ``handle.release()`` (or dropping the last reference to the handle)
        frees it in every worker; passing a released handle raises
        ValueError.  Any codec value can be shared.
        """
        self._check_open()
        return _core.Shared(value, self._core.wake)

    # ------------------------------------------------------------ internals

    def _fn_id(self, fn: Callable[..., object]) -> int:
        try:
            return self._fn_ids[fn]
        except KeyError:
            cacheable = True
        except TypeError:  # unhashable callable object
            cacheable = False
        ref = describe(fn)
        fn_id = self._ref_ids.get(ref)
        if fn_id is None:
            fn_id = self._ref_ids[ref] = self._core.register(ref)
        if cacheable:
            self._fn_ids[fn] = fn_id
        return fn_id

    def _check_open(self) -> None:
        if self._core.broken is not None:
            raise BrokenPool(self._core.broken)
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def _sync_sink(self) -> Any:
        sink = self._futures_sink
        if sink is not None:
            return sink
        with self._lock:
            if self._futures_sink is None:
                sink = _core.Completions(on_cancelled=_cancel_future)
                thread = threading.Thread(
                    target=_dispatch, args=(sink,), name=f"{self._name}-results", daemon=True
                )
                thread.start()
                self._dispatcher = thread
                self._futures_sink = sink
            return self._futures_sink

    # ------------------------------------------------------------ Executor API

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Schedule ``fn(*args, **kwargs)`` in a worker; return a Future."""
        if self._shutdown:
            self._check_open()
        fn_id = self._fn_id(fn)
        future: _TaskFuture = _TaskFuture()
        future._handle = self._core.submit(fn_id, args, kwargs or None, self._sync_sink(), future)
        return future

    def map(
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[R]:
        """Like ``concurrent.futures.Executor.map``: results in order.

        Each chunk of ``chunksize`` items travels as one task.  With
        ``buffersize``, at most that many tasks are in flight ahead of the
        results consumed (lazy input); otherwise every item is submitted now.
        """
        if isinstance(chunksize, bool) or not isinstance(chunksize, int):
            raise TypeError("chunksize must be an int")
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if buffersize is not None:
            if isinstance(buffersize, bool) or not isinstance(buffersize, int):
                raise TypeError("buffersize must be an integer or None")
            if buffersize < 1:
                raise ValueError("buffersize must be None or > 0")
        self._check_open()
        end_time = None if timeout is None else timeout + time.monotonic()
        fn_id = self._fn_id(fn)
        args: Iterator[Any] = zip(*iterables)
        chunked = chunksize > 1
        tasks: Iterator[Any] = (
            (list(c) for c in itertools.batched(args, chunksize)) if chunked else args
        )
        sink = _core.Completions()
        if buffersize is None:
            items = list(tasks)
            self._core.submit_many(fn_id, items, sink, 0, chunked)
            return self._results(sink, fn_id, None, len(items), chunked, end_time)
        first = list(itertools.islice(tasks, buffersize))
        self._core.submit_many(fn_id, first, sink, 0, chunked)
        return self._results(sink, fn_id, tasks, len(first), chunked, end_time)

    def _results(
        self,
        sink: Any,
        fn_id: int,
        feed: Iterator[Any] | None,
        submitted: int,
        chunked: bool,
        end_time: float | None,
    ) -> Iterator[Any]:
        arrived: dict[int, tuple[bool, Any]] = {}
        index = 0
        try:
            while index < submitted:
                while index not in arrived:
                    remaining = None if end_time is None else end_time - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError()
                    if sink.wait(remaining):
                        for i, ok, value in sink.drain():
                            arrived[i] = (ok, value)
                ok, value = arrived.pop(index)
                index += 1
                if feed is not None:
                    nxt = next(feed, _END)
                    if nxt is _END:
                        feed = None
                    else:
                        self._core.submit_many(fn_id, [nxt], sink, submitted, chunked)
                        submitted += 1
                if not ok:
                    raise value
                if chunked:
                    yield from value
                else:
                    yield value
        finally:
            if index < submitted:
                self._core.cancel_queued(sink)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting tasks; finish (or with cancel_futures, cancel) the queued
        ones.  With wait=True, return once every worker has exited."""
        with self._lock:
            self._shutdown = True
            self._core.stop(cancel_futures)
            sink = self._futures_sink
            if sink is not None:
                sink.close()
        if wait:
            self._core.join()
            _untrack(self._core)
            self._release_closed_loops()
            if self._dispatcher is not None:
                self._dispatcher.join()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown(wait=True)


class _End:
    pass


_END = _End()


def _finalize_core(core: Any) -> None:
    # A pool dropped without shutdown(): workers finish the queue, then exit;
    # the exit hook joins them.
    core.stop()
