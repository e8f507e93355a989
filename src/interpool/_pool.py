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

from . import _core, _lifetime, _support
from ._aio import AsyncPoolMethods
from ._callables import describe
from ._futures import Resolver, TaskFuture

__all__ = ["Pool"]

P = ParamSpec("P")
R = TypeVar("R")

_pool_counter = itertools.count(1)
_NO_PREFIX: tuple[()] = ()
_MAP_BATCH = 64  # results a map consumer waits for per wake-up


def cpu_count() -> int:
    """CPUs this process may use (the default worker count)."""
    return os.process_cpu_count() or 1


def _main_path() -> str | None:
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    return os.path.abspath(path) if isinstance(path, str) else None


class _State:
    """What must be stopped when the Pool object goes away (no cycle to it)."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.resolver: Resolver | None = None

    def stop(self, cancel: bool = False, cancel_running: bool = False) -> Resolver | None:
        """Stop the workers (they finish the queue unless `cancel`; running
        coroutines are cancelled with `cancel_running`) and close the
        resolver, which exits once every result is in.  The exit hook and
        shutdown(wait=True) wait for the workers."""
        self.core.stop(cancel, cancel_running)
        resolver = self.resolver
        if resolver is not None:
            resolver.close()
        return resolver


class Pool(AsyncPoolMethods):
    """A pool of worker threads, each running Python in its own subinterpreter.

    ``Pool(workers=None, *, initializer=None, initargs=(), name=None,
    concurrency=1, loop_factory=None)``

    Functions travel by reference (module and qualified name) and run in
    parallel, one per worker at a time.  ``async def`` functions run on the
    worker's own event loop (made by ``loop_factory``, default asyncio's),
    up to ``concurrency`` coroutines per worker at once; a sync task holds
    its worker while it runs.  The initializer may be ``async def`` too.
    Arguments and results travel through interpool's C codec (pickle only
    for types it does not know).  Use it like a ``concurrent.futures``
    executor (``submit``, ``map``, ``shutdown``, ``with``) or from asyncio
    (``await pool.run(...)``, ``pool.wrap``, ``pool.amap``,
    ``pool.as_completed``, ``async with``).
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[object] = (),
        name: str | None = None,
        concurrency: int = 1,
        loop_factory: Callable[[], object] | None = None,
    ) -> None:
        if workers is None:
            workers = cpu_count()
        elif isinstance(workers, bool) or not isinstance(workers, int):
            raise TypeError(f"workers must be an int, not {type(workers).__name__}")
        elif workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if _support.loading_main:
            raise RuntimeError(
                "a Pool was created while a worker interpreter was loading your "
                "script to find a function defined in it: the script's top-level "
                "code runs in every worker. Put the code that creates pools (and "
                'runs the program) under `if __name__ == "__main__":`.'
            )
        if isinstance(concurrency, bool) or not isinstance(concurrency, int):
            raise TypeError(f"concurrency must be an int, not {type(concurrency).__name__}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if loop_factory is not None and not callable(loop_factory):
            raise TypeError("loop_factory must be a callable or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable or None")
        initargs = tuple(initargs)
        self._workers = workers
        self._concurrency = concurrency
        self._name = name or f"interpool-{next(_pool_counter)}"
        self._lock = threading.Lock()
        self._shutdown = False
        self._fn_ids: dict[Any, int] = {}
        self._loop_sinks = {}
        self._loop_lock = threading.Lock()
        self._core = _core.PoolCore(workers, [p for p in sys.path if isinstance(p, str)])
        self._state = _State(self._core)
        if "__main__" in sys.modules:
            # Results naming classes of the script (run as __mp_main__ in
            # workers) unpickle here, as with multiprocessing.
            sys.modules.setdefault("__mp_main__", sys.modules["__main__"])
        self._core.set_setup({"main_path": _main_path(), "name": self._name})
        if initializer is not None:
            init_id, prefix = self._target(initializer)
            self._core.set_initializer(init_id, prefix + initargs)
        factory_id = -1
        if loop_factory is not None:
            factory_id, prefix = self._target(loop_factory)
            if prefix:
                raise TypeError("loop_factory must be importable by module and name")
        self._core.configure(concurrency, factory_id)
        _lifetime.track(self)
        self._core.start()
        weakref.finalize(self, _State.stop, self._state)

    # ------------------------------------------------------------ properties

    @property
    def workers(self) -> int:
        """How many worker interpreters the pool runs."""
        return self._workers

    @property
    def concurrency(self) -> int:
        """How many coroutines one worker runs at once."""
        return self._concurrency

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
            raise _support.broken_error(broken)
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
        return _core.Shared(value)

    # ------------------------------------------------------------ internals

    def _target(self, fn: Callable[..., object]) -> tuple[int, tuple[Any, ...]]:
        """(fn id, leading args) for a call of fn.

        Importable callables are registered once and cached per worker.  A
        callable that travels pickled (a bound method, a partial, a callable
        object) is pickled anew at every call, through a trampoline, so its
        current state is what runs and nothing is kept alive.
        """
        try:
            return self._fn_ids[fn], _NO_PREFIX
        except (KeyError, TypeError):
            pass
        ref = describe(fn)
        if ref[0] == "pickle":
            return self._register(_support.call_pickled), (ref[1],)
        fn_id = self._core.register(ref)
        try:
            self._fn_ids[fn] = fn_id
        except TypeError:  # unhashable
            pass
        return fn_id, _NO_PREFIX

    def _register(self, fn: Callable[..., object]) -> int:
        fn_id = self._fn_ids.get(fn)
        if fn_id is None:
            fn_id = self._fn_ids[fn] = self._core.register(describe(fn))
        return fn_id

    def _check_open(self) -> None:
        broken = self._core.broken
        if broken is not None:
            raise _support.broken_error(broken)
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def _resolver(self) -> Resolver:
        resolver = self._state.resolver
        if resolver is None:
            with self._lock:
                self._check_open()
                if self._state.resolver is None:
                    self._state.resolver = Resolver(self._name)
                resolver = self._state.resolver
        return resolver

    def _stop_for_exit(self) -> None:
        # Queued work still runs; running coroutines are cancelled.
        self._state.stop(cancel_running=True)

    # ------------------------------------------------------------ Executor API

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Schedule ``fn(*args, **kwargs)`` in a worker; return a Future."""
        if self._shutdown:
            self._check_open()
        fn_id, prefix = self._target(fn)
        resolver = self._resolver()
        future = TaskFuture()
        future._resolver = resolver
        future._handle = self._core.submit(
            fn_id, prefix + args if prefix else args, kwargs or None, resolver.sink, future
        )
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
        fn_id, prefix = self._target(fn)
        args: Iterator[Any] = zip(*iterables)
        if prefix:
            args = (prefix + a for a in args)
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
                    # Wake per batch, not per result: the workers keep the cores.
                    batch = 1 if feed is not None else _MAP_BATCH
                    if sink.wait(remaining if remaining is None or remaining > 0 else 0, batch):
                        for i, ok, value in sink.drain():
                            arrived[i] = (ok, value)
                    elif remaining is not None and remaining <= 0:
                        raise TimeoutError()
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
            resolver = self._state.stop(cancel_futures, cancel_futures)
        if resolver is not None and cancel_futures:
            resolver.resolve()  # the dropped futures are cancelled before we return
        self._retire_loop_sinks()
        if wait:
            self._core.join()
            if resolver is not None and resolver.thread is not threading.current_thread():
                resolver.thread.join()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown(wait=True)


class _End:
    pass


_END = _End()
