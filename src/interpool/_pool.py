"""Pool: the sync front door (stdlib Executor semantics) over the C core."""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
import weakref
from types import FunctionType
from collections.abc import Callable, Coroutine, Iterable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Self, TypeVar, overload

from . import _atexit, _core, _forwarding, _loading
from ._callables import describe_main, plan
from ._completions import ThreadCompletions
from ._errors import broken_error, stop_error
from ._futures import TaskFuture
from ._map import MapFeeder, MapRun
from ._pool_async import AsyncPoolMethods

if TYPE_CHECKING:   # imported when a pool has a fallback (subprocess, pickle...: not for every pool)
    from ._fallback import Fallback

__all__ = ["Pool"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
T1 = TypeVar("T1")
T2 = TypeVar("T2")

_pool_counter = itertools.count(1)
_NO_PREFIX: tuple[()] = ()
_VALUE_IDS_MAX = 256
# A map's consumer sleeps until the result it must yield next is there, or
# this many are (then it drains them all in one batch).
_MAP_BATCH = 64


def cpu_count() -> int:
    """CPUs this process may use (the default worker count)."""
    return os.process_cpu_count() or 1


def _check_timeout(timeout: object, name: str = "timeout") -> None:
    """None or a non-negative number of seconds (the C core checks the rest:
    NaN, too large); a clear error at the call."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, not {type(timeout).__name__}")
    if timeout != timeout:
        raise ValueError(f"{name} must not be NaN")
    if timeout < 0:
        raise ValueError(f"{name} must be a non-negative number")
    if timeout > threading.TIMEOUT_MAX:  # as the stdlib's waits say it
        raise OverflowError(f"{name} value is too large")


class _State:
    """What must be stopped when the Pool object goes away (no cycle to it)."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.completions: ThreadCompletions | None = None
        self.feeder: MapFeeder | None = None
        self.fallback: Fallback | None = None

    def stop(
        self, cancel: bool = False, cancel_running: bool = False, interrupt: bool = False,
        exiting: bool = False,
    ) -> ThreadCompletions | None:
        """Stop the workers (they finish the queue unless `cancel`; running
        coroutines are cancelled with `cancel_running`, running sync code is
        stopped with `interrupt`) and close the sync completions, whose
        thread exits once every result is in.  The input maps have not
        queued yet is queued first (or dropped with `cancel`).  The exit
        hook and shutdown(wait=True) wait for the workers."""
        try:
            if self.feeder is not None:
                self.feeder.finish(cancel)
        finally:   # (even after a Ctrl-C while the input was encoded)
            self.core.stop(cancel, cancel_running, interrupt)
        if self.fallback is not None:
            self.fallback.stop(cancel, interrupt)
        completions = self.completions
        if completions is not None:
            # (at exit too with a fallback: a refused call still has to run there)
            completions.close(resolve_later=not exiting or self.fallback is not None)
        return completions


class Pool(AsyncPoolMethods):
    """A pool of worker threads, each running Python in its own subinterpreter.

    ``Pool(workers=None, *, max_workers=None, initializer=None, initargs=(),
    name=None, concurrency=1, loop_factory=None, task_timeout=None,
    max_tasks_per_worker=None, forward_output=True, forward_logging=True,
    fallback=None)``

    ``workers`` (default: one per CPU this process may use) is the number
    of worker interpreters; ``max_workers`` is the same, as
    ``concurrent.futures`` spells it (give one of the two).

    Functions of importable modules travel by reference (module and
    qualified name); those of ``__main__`` (a script, ``python -c``, a
    notebook), lambdas and closures travel by value (their code and the
    globals they read; the script never runs in a worker).  Tasks run in parallel, one per
    worker at a time.  ``async def`` functions run on the
    worker's own event loop (made by ``loop_factory``, default asyncio's),
    up to ``concurrency`` coroutines per worker at once; a sync task holds
    its worker while it runs.  The initializer may be ``async def`` too.
    Arguments and results travel through interpool's C codec (pickle only
    for types it does not know).  Use it like a ``concurrent.futures``
    executor (``submit``, ``map``, ``shutdown``, ``with``) or from asyncio
    (``await pool.run(...)``, ``pool.wrap``, ``pool.amap``,
    ``pool.as_completed``, ``async with``).

    ``task_timeout`` (seconds) stops every call still running that long
    after it started: its future fails with ``TimeoutError``.
    ``max_tasks_per_worker`` replaces a worker's interpreter with a fresh one
    (initializer included) after that many tasks, as
    ``ProcessPoolExecutor(max_tasks_per_child=...)`` does.

    ``forward_output`` (default True): a worker's ``sys.stdout`` and
    ``sys.stderr`` write, whole lines at a time, to this interpreter's
    ``sys.stdout``/``sys.stderr`` as they are when the line arrives (so
    ``redirect_stdout`` and test capture see it); what a task prints is
    written before its result is delivered.  ``forward_logging`` (default
    True): a worker's log records are handled by this interpreter's logging
    configuration, with the worker's name as ``record.threadName``.  With
    False, workers write to the process's file descriptors and log on
    their own.

    ``fallback``: where a function runs whose module (or argument, or an
    import it makes) cannot load in a subinterpreter (numpy, pydantic...).
    None (the default): its call fails with ``SubinterpreterImportError``,
    which names the module and the fixes.  ``"processes"``: it runs in
    worker processes this pool owns (started on first need, at most
    ``workers``); ``"threads"``: in threads of this interpreter.  Decided
    once per function, on its first refused call (which runs again there),
    with one RuntimeWarning.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        max_workers: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[object] = (),
        name: str | None = None,
        concurrency: int = 1,
        loop_factory: Callable[[], object] | None = None,
        task_timeout: float | None = None,
        max_tasks_per_worker: int | None = None,
        forward_output: bool = True,
        forward_logging: bool = True,
        fallback: Literal["processes", "threads"] | None = None,
    ) -> None:
        if max_workers is not None:   # concurrent.futures' spelling
            if workers is not None:
                raise TypeError("Pool() takes workers or max_workers (the same thing), not both")
            workers = max_workers
        if workers is None:
            workers = cpu_count()
        elif isinstance(workers, bool) or not isinstance(workers, int):
            raise TypeError(f"workers must be an int, not {type(workers).__name__}")
        elif workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if _loading.loading_main:
            raise RuntimeError(
                "a Pool was created while a worker interpreter was loading your "
                "module (run with `python -m`) to find a function defined in it: "
                "its top-level code runs in every worker. Put the code that creates "
                'pools (and runs the program) under `if __name__ == "__main__":`.'
            )
        if isinstance(concurrency, bool) or not isinstance(concurrency, int):
            raise TypeError(f"concurrency must be an int, not {type(concurrency).__name__}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if loop_factory is not None and not callable(loop_factory):
            raise TypeError("loop_factory must be a callable or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable or None")
        _check_timeout(task_timeout, "task_timeout")
        if fallback is not None:
            from ._fallback import check_fallback

            check_fallback(fallback)
        if max_tasks_per_worker is not None:
            if isinstance(max_tasks_per_worker, bool) or not isinstance(max_tasks_per_worker, int):
                raise TypeError("max_tasks_per_worker must be an int or None")
            if max_tasks_per_worker < 1:
                raise ValueError(f"max_tasks_per_worker must be at least 1, got {max_tasks_per_worker}")
        initargs = tuple(initargs)
        self._workers = workers
        self._concurrency = concurrency
        self._name = name or f"interpool-{next(_pool_counter)}"
        self._lock = threading.Lock()
        self._shutdown = False
        self._fn_ids: dict[Any, int] = {}
        # Functions sent by value with nothing per call: fn -> (id, its code,
        # the check that the globals it read were not rebound, or None); see
        # _target.  Bounded: a lambda made anew per call is a new key.
        self._value_ids: dict[Callable[..., object],
                              tuple[int, object, Callable[[], bool] | None]] = {}
        self._loop_completions = {}
        self._loop_lock = threading.Lock()
        self._core = _core.PoolCore(workers, [p for p in sys.path if isinstance(p, str)])
        self._state = _State(self._core)
        # (A pool made in a worker passes on what its own workers were given.)
        main = _loading._main_info if _loading.in_worker else describe_main()
        if main is not None:
            # python -m: results naming classes of __main__ (run as
            # __mp_main__ in workers) unpickle here, as with multiprocessing.
            sys.modules.setdefault("__mp_main__", sys.modules["__main__"])
        # Workers' print() and logging records go to this interpreter's
        # sys.stdout/sys.stderr and logging (not from a worker's own pools).
        forward = (forward_output or forward_logging) and not _loading.in_worker
        setup = {
            "main": main, "name": self._name, "flavor": self._flavor,
            "forward_output": bool(forward_output), "forward_logging": bool(forward_logging),
        }
        self._core.set_setup({**setup, "output": _forwarding.channel() if forward else None})
        self._fallback: Fallback | None = None
        if fallback is not None:
            from ._fallback import Fallback

            self._fallback = self._state.fallback = Fallback(
                fallback, workers, self._name, initializer=initializer, initargs=initargs,
                task_timeout=task_timeout, max_tasks=max_tasks_per_worker or 0,
                setup={**setup, "forward": forward}, closures=self._send_closures,
            )
        if initializer is not None:
            init_id, prefix = self._target(initializer)
            self._core.set_initializer(init_id, prefix + initargs)
        factory_id = -1
        if loop_factory is not None:
            factory_id, prefix = self._target(loop_factory)
            if prefix:
                raise TypeError(
                    "loop_factory must be a function without captured values or "
                    "defaults (e.g. defined at module level), or a class")
        self._core.configure(concurrency, factory_id, task_timeout, max_tasks_per_worker or 0)
        _atexit.track(self)
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

    @property
    def fallback(self) -> Literal["processes", "threads"] | None:
        """Where functions that cannot load in a subinterpreter run (or None)."""
        return None if self._fallback is None else self._fallback.kind

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
            raise broken_error(broken)
        return ready

    def share(self, value: T) -> T:
        """Send `value` to each worker at most once; return a handle.

        Pass the handle as a task argument (at top level or inside
        containers): the worker receives its own cached copy of the value.
        ``handle.release()`` (or dropping the last reference to the handle)
        frees it in every worker; passing a released handle raises
        ValueError.  Any codec value can be shared.

        Typing: the handle stands for the value, so share() is typed as
        returning the value's type: ``pool.submit(fn, pool.share(table))``
        type-checks where fn takes a table.  At run time the handle is an
        ``interpool.Shared``; use it only as a task argument, and release it
        in typed code with ``interpool.Shared.release(handle)`` (or drop it).
        """
        self._check_open()
        return _core.Shared(value)  # type: ignore[return-value]

    # ------------------------------------------------------------ internals

    # How callables travel (the drop-in executor's pool follows the stdlib:
    # closures refused, failures reported as the stdlib reports them).
    _send_closures = True
    _flavor = "pool"

    def _target(self, fn: Callable[..., object]) -> tuple[int, tuple[Any, ...]]:
        """(fn id, leading args) for a call of fn.

        Callables of importable modules are registered once and cached per
        worker; other functions (those of ``__main__``, lambdas, closures)
        travel by value, their definition registered once (per code object)
        and their defaults, captured values and the globals that must
        travel again sent with each call.  A callable that travels pickled (a bound method, a partial, a
        callable object) is pickled anew at every call, through a
        trampoline, so its current state is what runs and nothing is kept
        alive.
        """
        try:
            fn_id = self._fn_ids.get(fn)
        except TypeError:  # unhashable
            fn_id = None
        if fn_id is not None:
            return fn_id, _NO_PREFIX
        if type(fn) is FunctionType:
            # A __main__ function called again: no plan() while the travel
            # registered for it still holds (see Travel.holds).
            hit = self._value_ids.get(fn)
            if (hit is not None and hit[1] is fn.__code__ and fn.__defaults__ is None
                    and fn.__kwdefaults__ is None and (hit[2] is None or hit[2]())):
                return hit[0], _NO_PREFIX
        travel = plan(fn, self._send_closures, self._flavor == "stdlib")
        key = travel.key
        if key is None:
            return self._register(_loading.call_pickled), (travel.ref[1],)
        try:
            fn_id = self._fn_ids.get(key)
        except TypeError:  # unhashable
            fn_id, key = None, None
        if fn_id is None:
            fn_id = self._core.register(travel.make_ref())
            if key is not None:
                self._fn_ids[key] = fn_id
        if travel.state is None and travel.holds(fn):
            if len(self._value_ids) >= _VALUE_IDS_MAX:
                self._value_ids.clear()
            self._value_ids[fn] = (fn_id, fn.__code__, travel.freshness())
        return fn_id, _NO_PREFIX if travel.state is None else (travel.state,)

    def _register(self, fn: Callable[..., object]) -> int:
        """The id of a module-level function of interpool's own."""
        fn_id = self._fn_ids.get(fn)
        if fn_id is None:
            fn_id = self._fn_ids[fn] = self._core.register(plan(fn).make_ref())
        return fn_id

    def _check_open(self) -> None:
        broken = self._core.broken
        if broken is not None:
            raise broken_error(broken)
        if self._shutdown:
            raise stop_error("refused")

    def _thread_completions(self) -> ThreadCompletions:
        completions = self._state.completions
        if completions is None:
            completions = self._state_part("completions", lambda: ThreadCompletions(self._name))
        return completions

    def _state_part(self, name: str, make: Callable[[], T]) -> T:
        """_State's `name`, made by `make` the first time (a pool still open)."""
        with self._lock:
            self._check_open()
            part: T | None = getattr(self._state, name)
            if part is None:
                part = make()
                setattr(self._state, name, part)
            return part

    # ------------------------------------------------------------ Executor API

    @overload
    def submit(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[R]: ...
    @overload
    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]: ...

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)`` in a worker; return a Future
        (of the value an ``async def`` fn's coroutine returns)."""
        return self._submit(fn, args, kwargs, None)

    @overload
    def schedule(
        self,
        fn: Callable[..., Coroutine[Any, Any, R]],
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Future[R]: ...
    @overload
    def schedule(
        self,
        fn: Callable[..., R],
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Future[R]: ...

    def schedule(
        self,
        fn: Callable[..., Any],
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)`` with a deadline (pebble's
        ``schedule``): if it still runs ``timeout`` seconds after it started,
        it is stopped (``TaskInterrupted`` is raised in it) and the future
        fails with ``TimeoutError``.  ``timeout=None``: the pool's
        ``task_timeout``."""
        _check_timeout(timeout)
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TypeError(f"kwargs must be a dict or None, not {type(kwargs).__name__}")
        return self._submit(fn, tuple(args), kwargs or {}, timeout)

    def _submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
        timeout: float | None, route: Any = None,
    ) -> Future[Any]:
        if self._shutdown:
            self._check_open()
        fallback = self._fallback
        if fallback is not None and fallback.diverts(fn, route):
            return fallback.submit(self._thread_completions(), fn, args, kwargs, timeout)
        fn_id, prefix = self._target(fn)
        completions = self._thread_completions()
        completions.resolve_ready()   # earlier results nobody waited for
        # (with a fallback, a call the interpreters refuse runs again there)
        future = (TaskFuture(completions) if fallback is None
                  else fallback.watched(completions, fn, args, kwargs, timeout, route))
        call = (fn_id, prefix + args if prefix else args, kwargs or None, completions.core, future)
        future._handle = self._core.submit(*call) if timeout is None else self._core.submit(*call, timeout)
        return future

    # Typed for one and two iterables (the result of an async def fn is the
    # value its coroutine returns); three or more are checked loosely.
    @overload
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

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        ordered: bool = True,
    ) -> Iterator[Any]:
        """Like ``concurrent.futures.Executor.map``: results in order, each
        yielded as soon as it and every earlier one are done.

        Each chunk of ``chunksize`` items travels as one task.  The whole
        input is taken now and every item runs, whether or not the results
        are read (as with the stdlib): only the encoding of the arguments
        goes a bounded window at a time, the pool queueing more as workers
        take tasks; a shutdown first queues what is left.  With
        ``buffersize`` the input is read lazily: that many tasks are
        submitted now and one more per result consumed.  With
        ``ordered=False`` results come in the order they finish
        (multiprocessing's ``imap_unordered``).  A task's exception is
        raised when its result is reached; leaving the loop early cancels
        the tasks not yet started.  An iterator dropped before its first
        result frees the results as they arrive.
        """
        _check_timeout(timeout)
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
        if buffersize is None:
            run = MapRun(self._core, fn_id, chunked, list(tasks), None)   # the input, read now
        else:
            run = MapRun(self._core, fn_id, chunked, tasks, buffersize)
        if self._fallback is not None:
            run.detour = self._fallback.map_detour(fn, len(prefix), chunked, self._core, fn_id,
                                                   run.completions)
        if buffersize is None:
            self._map_feeder().start(run)   # the first window now, the rest as workers take tasks
        else:
            run.read_more()   # the first tasks are queued now, as the stdlib's map does
        results = self._results(run, end_time, bool(ordered))
        run.watch(results)
        return results

    def _map_feeder(self) -> MapFeeder:
        feeder = self._state.feeder
        if feeder is None:
            # Its marker task is int(): the cheapest call a worker can make.
            marker_id = self._register(int)
            feeder = self._state_part(
                "feeder", lambda: MapFeeder(self._core, marker_id, self._name, self._workers))
        return feeder

    def _results(self, run: MapRun, end_time: float | None, ordered: bool) -> Iterator[Any]:
        completions = run.completions
        arrived: dict[int, tuple[bool, Any]] = {}
        if run.detour is not None:
            run.detour.started = True
        try:
            while run.more():
                want = run.consumed if ordered else -1   # the index to yield next
                while want not in arrived if ordered else not arrived:
                    run.check_error()
                    remaining = None if end_time is None else end_time - time.monotonic()
                    if run.detour is not None and run.detour.collect(arrived, want, ordered, remaining):
                        continue   # results from the fallback
                    # Sleep until the result we need is there (or a batch of
                    # others): never later, and not once per other result.
                    if completions.wait(
                        remaining if remaining is None or remaining > 0 else 0,
                        _MAP_BATCH if ordered else 1, want,
                    ):
                        drained = completions.drain()
                        if run.detour is not None:   # refused ones run again in the fallback
                            drained = run.detour.sift(drained)
                        for i, ok, value in drained:
                            arrived[i] = (ok, value)
                    elif remaining is not None and remaining <= 0:
                        raise TimeoutError()
                ready = [arrived.pop(want)] if ordered else list(arrived.values())
                if not ordered:
                    arrived.clear()
                for ok, value in ready:
                    run.consumed += 1
                    if run.lazy is not None:
                        run.read_more()   # one more in, as each result comes out
                    if not ok:
                        raise value
                    if run.chunked:
                        yield from value
                    else:
                        yield value
        finally:
            if run.consumed < (run.total if run.total is not None else run.submitted):
                run.stop()
                if run.detour is not None:
                    run.detour.close()

    def shutdown(
        self, wait: bool = True, *, cancel_futures: bool = False, interrupt: bool = False
    ) -> None:
        """Stop accepting tasks; finish (or with cancel_futures, cancel) the queued
        ones; cancel_futures also cancels running coroutines (``async def``
        tasks).  With interrupt=True, also cancel the queued ones and stop the
        running ones (``TaskInterrupted`` is raised in sync code, coroutines
        are cancelled); their futures fail with ``PoolShutdownError``.  With
        wait=True, return once every worker has exited (Ctrl-C ends the wait);
        a worker set aside (its stopped call stuck in a C call) is waited for
        two seconds at most."""
        cancel = cancel_futures or interrupt
        with self._lock:
            self._shutdown = True
            feeder = self._state.feeder
        try:
            if wait and not cancel and feeder is not None:
                feeder.wait_fed()   # every map's input, a window at a time
        finally:
            with self._lock:
                completions = self._state.stop(cancel, cancel, interrupt)
        if completions is not None and cancel:
            completions.resolve()  # the dropped futures are cancelled before we return
        self._retire_loop_completions()
        if wait:
            self._core.join()
            # Workers set aside (a stopped call stuck in C, its future already
            # failed) get the grace to run their finally blocks and end.
            self._core.join(_atexit.GRACE, True)
            if completions is not None:
                completions.resolve()  # every future is done when shutdown returns
                completions.join()
            if feeder is not None:
                feeder.join()
            if self._fallback is not None:
                self._fallback.join()   # after the results that could still go there
            _forwarding.drain()  # what the workers printed last (their exit) is out too

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            # Ctrl-C out of the block: stop what runs instead of waiting for
            # it, and let the KeyboardInterrupt go on even if a task is stuck
            # in a C call (the exit hook deals with those).
            self.shutdown(wait=False, interrupt=True)
            _atexit.wait_after_interrupt(self._core)
            return
        self.shutdown(wait=True)

