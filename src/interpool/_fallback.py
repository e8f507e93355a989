"""``Pool(fallback="processes" | "threads")``: functions that need a module
which refuses subinterpreters still run, in the pool's fallback workers
(interpool._fallback_workers).

The pool learns which functions need it from their first call that fails
with SubinterpreterImportError in a worker interpreter: the module that
defines the function imports such a module, an argument comes from one,
or the function imported one while running.  That call runs again in the
fallback (for an import while running, the part of the function before
the import ran once in the interpreter), one warning names the function
and the module, and every later call of that function goes straight to
the fallback: the decision is made once per function and cached.  Such
calls keep the pool's API: futures, map, ``await pool.run``, amap,
deadlines, cancelling, shutdown.

A function is known by its code (so a lambda made anew each time counts
once), a bound method by its function, a ``functools.partial`` by what it
wraps, a callable object by its class; the integrations name the user's
functions inside their wrappers (``route``).
"""

from __future__ import annotations

import asyncio
import functools
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any, Literal, NamedTuple

from ._fallback_workers import Job, ProcessWorkers, ThreadWorkers
from ._futures import AsyncTaskFuture, TaskFuture
from ._refusal import SubinterpreterImportError

__all__ = ["FALLBACKS", "Fallback", "check_fallback"]

FALLBACKS = ("processes", "threads")
Kind = Literal["processes", "threads"]


def check_fallback(value: object) -> None:
    """None, "processes" or "threads" (a clear error at the call)."""
    if value is None or value in FALLBACKS:
        return
    if not isinstance(value, str):
        raise TypeError(f'fallback must be None, "processes" or "threads", not {type(value).__name__}')
    raise ValueError(f'fallback must be None, "processes" or "threads", not {value!r}')


def _decision_key(fn: Any, route: Any) -> Any:
    """What the decision to use the fallback is cached under."""
    if route is not None:
        try:
            hash(route)
            return route
        except TypeError:
            pass
    while isinstance(fn, functools.partial):
        fn = fn.func
    fn = getattr(fn, "__func__", fn)    # a bound method: its function
    code = getattr(fn, "__code__", None)
    if code is not None:
        return code
    if callable(fn) and not isinstance(fn, type) and not hasattr(fn, "__qualname__"):
        return type(fn)                 # a callable object: its class
    try:
        hash(fn)
    except TypeError:
        return type(fn)
    return fn


def _name(fn: Any) -> str:
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}()" if module and module not in ("__main__", "__mp_main__") else f"{name}()"


def _settle(future: Future[Any], ok: bool, value: Any) -> None:
    """Resolve a sync future with a fallback outcome (any thread)."""
    try:
        if ok:
            Future.set_result(future, value)
        else:
            Future.set_exception(future, value)
    except InvalidStateError:   # cancelled meanwhile
        pass


def _settle_async(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """Resolve an asyncio future with a fallback outcome, on its loop."""

    def settle() -> None:
        if not future.done():
            if ok:
                asyncio.Future.set_result(future, value)
            else:
                asyncio.Future.set_exception(future, value)

    try:
        future.get_loop().call_soon_threadsafe(settle)
    except RuntimeError:   # the loop is closed: nobody can await it
        pass


class _Call(NamedTuple):
    """What a pool keeps of a call it sent to a worker interpreter, so that
    a refusal (SubinterpreterImportError) runs it again in the fallback
    (the future's hook, TaskFuture.set_exception)."""

    fallback: Fallback
    fn: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    timeout: float | None
    route: Any

    def rerun(self, future: Any, exc: BaseException) -> bool:
        """Take the failure over if it is a refusal: True if the call runs
        again in the fallback (or failed there at once), and the future
        then gets that outcome instead."""
        if not isinstance(exc, SubinterpreterImportError):
            return False
        return self.fallback.rerun(self, future, exc)


class _WatchedFuture(TaskFuture):
    """A sync future of a pool with a fallback: it keeps its call (to run it
    again there) until it is resolved."""

    def set_result(self, result: Any) -> None:
        self._detour = None
        super().set_result(result)


class _WatchedAsyncFuture(AsyncTaskFuture[Any]):
    """The asyncio one (see _WatchedFuture)."""

    __slots__ = ()

    def set_result(self, result: Any, /) -> None:
        self._detour = None
        super().set_result(result)


class Fallback:
    """One pool's fallback: which functions use it, and its workers."""

    def __init__(self, kind: Kind, size: int, name: str, *, initializer: Any,
                 initargs: tuple[Any, ...], task_timeout: float | None, max_tasks: int,
                 setup: dict[str, Any], closures: bool) -> None:
        self.kind = kind
        self.name = name
        args = (size, f"{name}-fallback", task_timeout, max_tasks, initializer, initargs)
        self.workers: ProcessWorkers | ThreadWorkers = (
            ProcessWorkers(*args, setup=setup, closures=closures) if kind == "processes"
            else ThreadWorkers(*args))
        self._diverted: dict[Any, str] = {}   # decision key -> the module that refused
        self._lock = threading.Lock()

    def diverts(self, fn: Any, route: Any = None) -> bool:
        """Does fn (or `route`) run in the fallback?"""
        return bool(self._diverted) and _decision_key(fn, route) in self._diverted

    def divert(self, fn: Any, route: Any, exc: SubinterpreterImportError) -> None:
        """From now on fn runs in the fallback; say so once."""
        key = _decision_key(fn, route)
        with self._lock:
            if key in self._diverted:
                return
            self._diverted[key] = exc.module or ""
        names = ", ".join(_name(f) for f in route) if isinstance(route, tuple) else _name(fn)
        message = (f"{names} needs {exc.name}, which cannot be imported in a subinterpreter "
                   f"({exc.module}); it runs in the fallback {self.kind} of the pool "
                   f"{self.name!r} from now on")
        code = getattr(getattr(fn, "__func__", fn), "__code__", None)
        try:
            if code is not None:   # pointing at the function itself
                warnings.warn_explicit(message, RuntimeWarning, code.co_filename,
                                       code.co_firstlineno, module=getattr(fn, "__module__", None))
            else:
                warnings.warn(message, RuntimeWarning, stacklevel=2)
        except Warning:
            pass   # warnings turned into errors: the call still runs

    # ------------------------------------------------ single calls

    def watched(self, completions: Any, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                timeout: float | None, route: Any = None) -> TaskFuture:
        """The sync future of a call sent to the interpreters (resolved
        through `completions`): if they refuse it, it runs again here."""
        future = _WatchedFuture(completions)
        future._detour = _Call(self, fn, args, kwargs, timeout, route)
        return future

    def watched_async(self, loop: asyncio.AbstractEventLoop, fn: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> AsyncTaskFuture[Any]:
        """The asyncio one (see watched)."""
        future = _WatchedAsyncFuture(loop=loop)
        future._detour = _Call(self, fn, args, kwargs, None, None)
        return future

    def submit(self, completions: Any, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
               timeout: float | None) -> TaskFuture:
        """fn(*args, **kwargs) in the fallback, as a pool's sync future (its
        done-callbacks run on the callback thread of `completions`)."""
        future = TaskFuture(completions)
        future._external = True
        future._handle = self._put(fn, args, kwargs, timeout, functools.partial(_settle, future))
        return future

    def run(self, loop: asyncio.AbstractEventLoop, fn: Any, args: tuple[Any, ...],
            kwargs: dict[str, Any]) -> AsyncTaskFuture[Any]:
        """fn(*args, **kwargs) in the fallback, as an awaitable future."""
        future: AsyncTaskFuture[Any] = AsyncTaskFuture(loop=loop)
        future._handle = self._put(fn, args, kwargs, None, functools.partial(_settle_async, future))
        return future

    def _put(self, fn: Any, args: Any, kwargs: dict[str, Any] | None, timeout: float | None,
             sink: Callable[[bool, Any], None], chunked: bool = False) -> Job:
        job = self.workers.job(fn, args, kwargs, timeout, sink, chunked)
        self.workers.put(job)
        return job

    def rerun(self, call: _Call, future: Any, exc: SubinterpreterImportError) -> bool:
        """A call the interpreters refused runs again here (see _Call)."""
        future._detour = None
        self.divert(call.fn, call.route, exc)
        sync = isinstance(future, Future)
        sink = functools.partial(_settle if sync else _settle_async, future)
        try:
            job = self.workers.job(call.fn, call.args, call.kwargs, call.timeout, sink)
        except TypeError as err:   # it cannot go there either: say why
            err.__context__ = exc
            sink(False, err)
            return True
        future._handle = job
        if sync:
            future._external = True   # it resolves from the fallback now
        self.workers.put(job)
        return True

    # ------------------------------------------------ map and amap

    def map_detour(self, fn: Any, prefix_len: int, chunked: bool, core: Any, fn_id: int,
                   completions: Any, deliver: Callable[[int, bool, Any], None] | None = None,
                   route: Any = None) -> MapDetour:
        """The detour of one map (or amap, with `deliver`)."""
        return MapDetour(self, fn, route, prefix_len, chunked, core, fn_id, completions, deliver)

    # ------------------------------------------------ the pool's end

    def stop(self, cancel: bool, interrupt: bool) -> None:
        self.workers.stop(cancel, interrupt)

    def join(self, timeout: float | None = None) -> bool:
        return self.workers.join(timeout)


class MapDetour:
    """One map (or amap) of a pool with a fallback.  It keeps the items in
    flight in the interpreters, so that those the interpreters refuse run
    again in the fallback, and once the function is diverted it sends the
    rest of the map there.  Results from the fallback join the map's own
    (collect), or, for amap, reach it on its event loop (deliver)."""

    def __init__(self, fallback: Fallback, fn: Any, route: Any, prefix_len: int, chunked: bool,
                 core: Any, fn_id: int, completions: Any,
                 deliver: Callable[[int, bool, Any], None] | None) -> None:
        self.fallback = fallback
        self.fn = fn
        self.route = route
        self.prefix_len = prefix_len
        self.chunked = chunked
        self.core = core
        self.fn_id = fn_id
        self.completions = completions
        self.deliver = deliver
        self.loop = asyncio.get_running_loop() if deliver is not None else None
        self.diverted = fallback.diverts(fn, route)
        self.items: dict[int, Any] = {}           # index -> item, while in an interpreter
        self.jobs: dict[int, Job] = {}            # index -> its job in the fallback
        self.done: dict[int, tuple[bool, Any]] = {}   # fallback results not collected yet
        self.cond = threading.Condition()
        self.form: Any = None   # how fn goes to the fallback (made once, as for the interpreters)
        self.orphaned = False   # nobody will read the map's results (see orphan())
        self.started = False    # the map's iterator started (it sifts itself)

    def send(self, items: list[Any], first: int) -> int:
        """Queue items (indexes first, first + 1, ...): to the interpreters,
        or to the fallback once fn is diverted.  Returns the bytes encoded."""
        if self.diverted:
            for k, item in enumerate(items):
                self._submit(first + k, item)
            return 0
        nbytes: int = self.core.submit_many(self.fn_id, items, self.completions, first,
                                            self.chunked)
        self.items.update(zip(range(first, first + len(items)), items))
        return nbytes

    def sift(self, drained: list[tuple[int, bool, Any]]) -> list[tuple[int, bool, Any]]:
        """The interpreters' results, less the refused ones, which run again
        in the fallback (and divert fn)."""
        kept = []
        for index, ok, value in drained:
            item = self.items.pop(index, None)
            if not ok and isinstance(value, SubinterpreterImportError) and item is not None:
                if not self.diverted:
                    self.fallback.divert(self.fn, self.route, value)
                    self.diverted = True
                self._submit(index, item)
            else:
                kept.append((index, ok, value))
        return kept

    def _submit(self, index: int, item: Any) -> None:
        k = self.prefix_len
        if k:   # the fallback sends fn its own way
            item = [a[k:] for a in item] if self.chunked else item[k:]
        sink = functools.partial(self._arrive, index)
        workers = self.fallback.workers
        try:
            if self.form is None:
                self.form = workers.prepare(self.fn)
            job = workers.job(self.fn, item, None, None, sink, self.chunked, self.form)
        except TypeError as exc:
            sink(False, exc)
            return
        with self.cond:
            self.jobs[index] = job
        self.fallback.workers.put(job)

    def _arrive(self, index: int, ok: bool, value: Any) -> None:
        """A fallback result (on a fallback thread)."""
        with self.cond:
            self.jobs.pop(index, None)
            if self.orphaned:
                return
            if self.loop is None:
                self.done[index] = (ok, value)
                self.cond.notify_all()
                return
        try:
            self.loop.call_soon_threadsafe(self.deliver, index, ok, value)   # type: ignore[arg-type]
        except RuntimeError:   # the loop closed: nobody waits for it
            pass

    def collect(self, arrived: dict[int, tuple[bool, Any]], want: int, ordered: bool,
                remaining: float | None) -> bool:
        """Move the fallback's results into `arrived`, waiting for them when
        the next result can only come from the fallback.  True: look again;
        False: wait for the interpreters (or time out) as usual."""
        import time

        end = None if remaining is None else time.monotonic() + remaining
        with self.cond:
            while True:
                if self.done:
                    arrived.update(self.done)
                    self.done.clear()
                    return True
                if not self.jobs or (ordered and want not in self.jobs):
                    return False
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if ordered or not self.completions.outstanding:
                    self.cond.wait(left)
                    continue
                # Unordered, with results due from both sides: look at the
                # interpreters' now and then.
                self.cond.wait(0.02 if left is None else min(0.02, left))
                if not self.done and self.completions.ready:
                    return False

    def orphan(self, run: Any) -> None:
        """The map's iterator was dropped before it started (`ex.map(f, xs)`
        inside `with`, its result never read).  Every item still runs, as in
        a pool without a fallback, so the refused ones must still move to
        the fallback: a thread sifts the interpreters' results (dropping the
        others) until `run` (a weak reference to the MapRun) has no input
        left and nothing is outstanding."""
        with self.cond:
            if self.started:   # its consumer reads, or read and left (close())
                return
            self.orphaned = True
            self.done.clear()
        self.fallback.workers.start_helper(self._sift_orphaned, "interpool-map-sifter", run)

    def _sift_orphaned(self, run: Any) -> None:
        completions = self.completions
        while True:
            if completions.wait(0.05, 1, -1) and completions.ready:
                self.sift(completions.drain())
                continue
            feeding = run()
            if feeding is not None and feeding.items is None:
                feeding = None
            if feeding is None and not completions.outstanding and not completions.ready:
                return

    def close(self, interrupt: bool = False) -> None:
        """The map was left early: its fallback jobs are cancelled (running
        ones stopped with `interrupt`)."""
        with self.cond:
            jobs = list(self.jobs.values())
            self.jobs.clear()
        for job in jobs:
            job.cancel(interrupt)
