"""Run Dask tasks in interpool's interpreters: one Dask worker process, N GILs.

A Dask worker runs its tasks on threads that share the process's GIL, so
pure-Python tasks do not run in parallel inside one worker.  This plugin
gives every worker an executor backed by an :class:`interpool.Pool`::

    from interpool.dask import InterpreterWorkerPlugin

    client.register_plugin(InterpreterWorkerPlugin(workers=2))
    with dask.annotate(executor="interpool"):
        futures = client.map(count_primes, ranges)

or, for workers started from the command line::

    dask worker SCHEDULER --preload interpool.dask --interpool-workers 2

Dask's bookkeeping (timing, sizes, error messages, its state machine) stays
in the worker's main interpreter: only the task's function, its arguments and
its result cross into a worker interpreter.  Task functions must import in a
subinterpreter (pure Python and the stdlib do; numpy, pandas and
``distributed`` itself do not): the module defining a task function is
imported by every interpreter, so it must not import ``distributed`` at top
level (functions of the client's script travel by value, with the globals
they read: the script's own imports, numpy included, do not matter).
"""

from __future__ import annotations

import threading
import time

from ._integrations import cancel_interrupting as _cancel
from ._integrations import in_subinterpreter

# Not `from typing import ...` at run time: worker interpreters import this
# module too, and typing costs each of them milliseconds (see __init__.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["InterpreterExecutor", "InterpreterWorkerPlugin", "dask_setup"]


# --------------------------------------------------- worker-interpreter side


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Run one task in a worker interpreter; report its wall-clock span there,
    so that time spent queued in the pool does not count as task time."""
    start = time.time()
    result = fn(*args, **kwargs)
    return result, start, time.time(), threading.get_ident()


# Worker interpreters import this module only to find _call: `distributed`
# cannot be imported there (psutil is a single-phase-init extension), so the
# caller-side part below is defined in the main interpreter only.
if TYPE_CHECKING or not in_subinterpreter():
    import inspect
    from concurrent.futures import Executor, Future, InvalidStateError

    import click
    from dask._task_spec import Alias, DataNode, GraphNode, NestedContainer, Task
    from dask.sizeof import sizeof
    from distributed import WorkerPlugin
    from distributed.core import error_message
    from distributed.worker import Reschedule, Worker

    import interpool

    _CALLER_SIDE = True
else:
    Executor = WorkerPlugin = object  # stand-ins so the class statements run
    _CALLER_SIDE = False


_RESERVED_NAMES = ("actor", "offload")


def _resolved_by_dask(obj: object) -> bool:
    """True for argument specs that need no user code to resolve: values,
    references to dependencies, and containers of those."""
    if isinstance(obj, (Alias, DataNode)):
        return True
    if isinstance(obj, NestedContainer):
        return all(_resolved_by_dask(a) for a in obj.args)
    return not isinstance(obj, GraphNode)


def _split(task: Any, data: dict[Any, Any]) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """What to run in the interpreter for a Dask task: (callable, args, kwargs).

    A plain task (``client.submit(f, x, y=fut)``) becomes ``f(x, y=value)``:
    Dask's argument spec is resolved here, so neither ``dask`` nor the task
    object cross.  A task with nested calls (fused or inlined tasks, dask.bag
    internals) travels whole and runs as ``task(data)`` there (``dask``
    itself imports in subinterpreters; ``distributed`` does not).
    """
    if type(task) is Task and all(
        _resolved_by_dask(a) for a in (*task.args, *task.kwargs.values())
    ):
        args = tuple(a(data) if isinstance(a, GraphNode) else a for a in task.args)
        kwargs = {k: v(data) if isinstance(v, GraphNode) else v for k, v in task.kwargs.items()}
        return task.func, args, kwargs
    return task, (data,), {}


def _is_task_runner(fn: object, name: str) -> bool:
    # Matched by name: these functions are private to distributed.worker.
    return getattr(fn, "__module__", None) == "distributed.worker" and getattr(
        fn, "__name__", None
    ) == name


class _Running:
    __slots__ = ("future", "cancelled")

    def __init__(self, future: Future[Any]) -> None:
        self.future = future
        self.cancelled = False

    def stop(self) -> bool:
        """Dropped if still queued, interrupted if running; marked cancelled."""
        self.cancelled = True
        return _cancel(self.future)


class InterpreterExecutor(Executor):
    """A ``concurrent.futures.Executor`` for a Dask worker, over an interpool Pool.

    Dask's worker submits ``_run_task_simple(task, data, time_delay)`` to
    executors whose type is not a ThreadPoolExecutor.  This executor runs the
    bookkeeping part of that function here and only the task's call in a
    worker interpreter, then returns the message Dask expects (``op``,
    ``result`` or ``exception``, ``start``/``stop``, ``nbytes``, ``type``,
    ``thread``).  Any other callable runs in the pool as is, or on
    ``fallback`` (an executor of the main interpreter) when one is given.
    With ``worker``, a task Dask released before handing it over is not run.
    """

    def __init__(
        self, pool: interpool.Pool, fallback: Executor | None = None, worker: Worker | None = None
    ) -> None:
        self.pool = pool
        self._fallback = fallback
        self._worker = worker
        self._lock = threading.Lock()
        self._running: dict[Any, _Running] = {}

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if _is_task_runner(fn, "_run_task_simple") and len(args) == 3 and not kwargs:
            return self._submit_task(*args)
        if _is_task_runner(fn, "_run_task") and len(args) == 7 and not kwargs:
            # (task, data, execution_state, key, active_threads, lock, delay):
            # the thread-executor variant; the thread bookkeeping does not apply.
            task, data, _state, _key, _threads, _lock, delay = args
            return self._submit_task(task, data, delay)
        if self._fallback is not None:
            return self._fallback.submit(fn, *args, **kwargs)
        return self.pool.submit(fn, *args, **kwargs)

    def _submit_task(self, task: Any, data: dict[Any, Any], time_delay: float) -> Future[Any]:
        if self._released(task.key):
            # Cancelled between Dask's decision to run it and this call.
            done: Future[Any] = Future()
            done.set_running_or_notify_cancel()
            done.set_result(self._message(None, True, time_delay))
            return done
        fn, args, kwargs = _split(task, data)
        # A lambda, or a function of the client's __main__ that Dask rebuilt
        # here by value, travels on by value.  With Pool(fallback=...), the
        # task's function decides where it runs.
        route = getattr(fn, "func", fn)
        inner = self.pool._submit(_call, (fn, args, kwargs), {}, None, route)
        key = task.key
        running = _Running(inner)
        with self._lock:
            self._running[key] = running
        outer: Future[Any] = Future()
        outer.set_running_or_notify_cancel()

        def finished(inner: Future[Any]) -> None:
            with self._lock:
                if self._running.get(key) is running:
                    del self._running[key]
            message = self._message(inner, running.cancelled, time_delay)
            try:
                if isinstance(message, BaseException):
                    outer.set_exception(message)
                else:
                    outer.set_result(message)
            except InvalidStateError:  # Dask stopped waiting (worker closing)
                pass

        inner.add_done_callback(finished)
        return outer

    def _released(self, key: Any) -> bool:
        """Whether Dask released task ``key`` while it runs (or was about to)."""
        if self._worker is None:
            return False
        ts = self._worker.state.tasks.get(key)
        return ts is None or ts.state == "cancelled"

    @staticmethod
    def _message(inner: Future[Any] | None, cancelled: bool, time_delay: float) -> Any:
        """The dict _run_task_simple would have returned (or the exception it
        would have raised) for this finished pool future (None: not run)."""
        now = time.time()
        try:
            if inner is None or inner.cancelled():
                raise Reschedule()
            result, start, stop, thread = inner.result()
        except BaseException as exc:
            if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                return exc  # Dask lets these through, as its own executors do
            if cancelled and not isinstance(exc, Reschedule):
                # Stopped because Dask released the task: if Dask wants it
                # again meanwhile, Reschedule makes the scheduler run it anew.
                exc = Reschedule()
            # Inside `except`: error_message takes the traceback from here;
            # the worker-side one is the exception's __cause__.
            return {
                **error_message(exc), "op": "task-erred", "actual_exception": exc,
                "start": now + time_delay, "stop": now + time_delay,
                "thread": threading.get_ident(),
            }
        else:
            return {
                "op": "task-finished",
                "status": "OK",
                "result": result,
                "nbytes": sizeof(result),
                "type": type(result) if result is not None else None,
                "start": start + time_delay,
                "stop": stop + time_delay,
                "thread": thread,
            }

    def release_task(self, key: Any) -> None:
        """Dask released task ``key`` (on the worker's event loop): a queued
        run is dropped now, a running one is stopped once this loop turn
        ends.  Dask releases many keys in one turn (a client that closes);
        had the first running one been stopped at once, its worker could
        take the next released key before that one was dropped."""
        with self._lock:
            running = self._running.get(key)
        if running is None:
            return
        if running.future.running():
            import asyncio

            try:
                asyncio.get_running_loop().call_soon(self.cancel_task, key)
                return
            except RuntimeError:   # (no loop here: stop it now)
                pass
        self.cancel_task(key)

    def cancel_task(self, key: Any) -> bool:
        """Cancel the run of Dask task ``key``: dropped if still queued,
        interrupted if running (where interpool supports that)."""
        with self._lock:
            running = self._running.get(key)
        return running is not None and running.stop()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shut the pool down; with ``cancel_futures``, drop queued tasks and
        interrupt running ones (where interpool supports that)."""
        self.pool.shutdown(wait=False, cancel_futures=cancel_futures)
        if cancel_futures:
            with self._lock:
                running = list(self._running.values())
            for r in running:
                r.stop()
        if wait:
            self.pool.shutdown(wait=True)


class InterpreterWorkerPlugin(WorkerPlugin):
    """Give every Dask worker an executor that runs tasks in interpool interpreters.

    ``client.register_plugin(InterpreterWorkerPlugin(workers=2))`` attaches
    it to every current and future worker.  Tasks annotated with
    ``dask.annotate(executor=name)`` then run in the worker's pool; with
    ``default=True`` every task does (except ``async def`` tasks, which Dask
    runs on its event loop).

    ``workers``: interpreters per Dask worker (default: the worker's thread
    count, which is how many tasks Dask runs on it at once).  ``name``: the
    executor's name (also the plugin's; registering another plugin with the
    same name replaces it).  ``pool_options``: further keyword arguments of
    :class:`interpool.Pool` (``initializer``, ``initargs``, ...).

    Cancelling a Dask future (``future.cancel()``, ``client.cancel``) drops
    its task from the pool's queue, and interrupts it while it runs where
    interpool supports that.  Closing the worker (or removing the plugin)
    shuts the pool down: queued tasks are dropped, running ones finish or
    are interrupted.
    """

    def __init__(
        self,
        workers: int | None = None,
        name: str = "interpool",
        default: bool = False,
        **pool_options: Any,
    ) -> None:
        if workers is not None:
            if isinstance(workers, bool) or not isinstance(workers, int):
                raise TypeError(f"workers must be an int or None, not {type(workers).__name__}")
            if workers < 1:
                raise ValueError(f"workers must be at least 1, got {workers}")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        if not name or name in _RESERVED_NAMES:
            raise ValueError(f"name must be a non-empty executor name other than "
                             f"{' or '.join(map(repr, _RESERVED_NAMES))}, got {name!r}")
        if not isinstance(default, bool):
            raise TypeError(f"default must be a bool, not {type(default).__name__}")
        if "name" in pool_options or "workers" in pool_options:
            raise TypeError("pass workers and name as the plugin's own arguments")
        try:  # unknown options fail here, at the call, not on every worker
            inspect.signature(interpool.Pool).bind(workers, **pool_options)
        except TypeError as exc:
            raise TypeError(f"InterpreterWorkerPlugin: {exc} (not an interpool.Pool option)") from None
        self.workers = workers
        self.name = name
        self.default: bool = default or name == "default"
        self.pool_options = pool_options
        # Per worker (a plugin object is shared by all in-process workers).
        self._executors: dict[int, tuple[Any, InterpreterExecutor, Executor | None]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_executors": {}}

    def __repr__(self) -> str:
        return (f"InterpreterWorkerPlugin(workers={self.workers!r}, name={self.name!r}, "
                f"default={self.default!r})")

    def setup(self, worker: Worker) -> None:
        """Start this worker's pool and install it as ``worker.executors[name]``."""
        workers = self.workers if self.workers is not None else worker.state.nthreads
        pool = interpool.Pool(workers, name=f"dask-{self.name}", **self.pool_options)
        previous = worker.executors.get("default") if self.default else None
        executor = InterpreterExecutor(pool, fallback=previous, worker=worker)
        self._executors[id(worker)] = (worker, executor, previous)
        worker.executors[self.name] = executor
        if self.default:
            worker.executors["default"] = executor

    def teardown(self, worker: Worker) -> None:
        """Remove the executor and shut its pool down without blocking the
        worker's event loop: queued tasks are dropped, running ones finish
        (or are interrupted, where interpool supports that)."""
        entry = self._executors.pop(id(worker), None)
        if entry is None:
            return
        _, executor, previous = entry
        if worker.executors.get(self.name) is executor:
            del worker.executors[self.name]
        if self.default and worker.executors.get("default") is executor and previous is not None:
            worker.executors["default"] = previous
        executor.shutdown(wait=False, cancel_futures=True)

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        """Dask released a task that runs in our pool: cancel that run."""
        if start not in ("executing", "long-running") or finish not in ("released", "cancelled"):
            return
        for _, executor, _ in list(self._executors.values()):
            if executor._released(key):
                executor.release_task(key)


if _CALLER_SIDE:

    @click.command()
    @click.option("--interpool-workers", type=click.IntRange(min=1), default=None,
                  help="Interpreters per worker (default: the worker's thread count).")
    @click.option("--interpool-name", default="interpool", show_default=True,
                  help="Executor name for dask.annotate(executor=...).")
    @click.option("--interpool-default/--no-interpool-default", default=False,
                  help="Run every task in the interpreters.")
    def dask_setup(worker: Worker, interpool_workers: int | None, interpool_name: str,
                   interpool_default: bool) -> Any:
        """Preload entry point: ``dask worker ... --preload interpool.dask
        [--interpool-workers N] [--interpool-name NAME] [--interpool-default]``."""
        plugin = InterpreterWorkerPlugin(interpool_workers, interpool_name, interpool_default)
        return worker.plugin_add(plugin, catch_errors=False)
