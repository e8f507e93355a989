"""A drop-in for ``multiprocessing.Pool`` that runs on interpool's workers.

Change the import and keep the code::

    from interpool.multiprocessing import Pool   # was: from multiprocessing import Pool

    with Pool(4) as pool:
        print(pool.map(square, range(10)))

``Pool(processes=None, initializer=None, initargs=(), maxtasksperchild=None,
context=None)`` has ``multiprocessing.Pool``'s methods with their semantics:
``apply``/``apply_async``, ``map``/``map_async`` (a list),
``starmap``/``starmap_async``, ``imap``, ``imap_unordered`` (with
``chunksize``), the ``AsyncResult`` (``get(timeout)``, ``wait``, ``ready``,
``successful``), ``callback`` and ``error_callback`` (called on one thread
of the pool's, before ``get()`` returns), ``close``, ``join``,
``terminate``, and ``with`` (which terminates, as multiprocessing's does).
Bad input raises what multiprocessing raises: ``ValueError`` for
``processes < 1``, a ``maxtasksperchild`` that is not a positive int, and
any call on a pool that is closed or terminated ("Pool not running").

What differs, because workers are threads with their own interpreter rather
than processes:

- ``context`` (a start method) is accepted and ignored: there is no process
  to start.  ``maxtasksperchild`` replaces a worker's interpreter (its
  initializer runs again), not a process.
- Functions travel as with :class:`interpool.Pool`: lambdas and closures
  work too, as tasks and as results (multiprocessing cannot pickle them).
- ``terminate()`` stops running tasks (``TaskInterrupted`` at their next
  bytecode) instead of killing processes; a task blocked in a C call
  (``time.sleep``) is set aside after 100 ms: its worker is replaced and
  its thread ends when the call returns (exit waits for that at most two
  seconds).  A result that ``terminate()`` dropped never becomes ready, as
  with multiprocessing, but waiting for it does not hang: ``wait()``
  returns and ``get()`` raises ``multiprocessing.TimeoutError`` at once.
- An initializer that raises breaks the pool: every task fails with
  :class:`interpool.BrokenPool` (multiprocessing restarts the worker
  processes for ever).

As with multiprocessing, a task's exception has a
``multiprocessing.pool.RemoteTraceback`` as its ``__cause__``, a result
that cannot be sent back fails with ``MaybeEncodingError``, an argument
that cannot be sent fails its result with the pickling error, and Manager
proxies work in tasks and initargs (workers use the caller's
authentication key, as child processes do).
"""

from __future__ import annotations

__all__ = ["ApplyResult", "AsyncResult", "IMapIterator", "IMapUnorderedIterator", "MapResult", "Pool"]


# Worker interpreters import this module when a script that imports it is
# loaded there: at run time it imports neither typing nor concurrent.futures
# (~100 ms in a worker), and what only the caller needs is imported where it
# is used.  What workers run for it is in _multiprocessing_worker.
import collections
import functools
import itertools
import queue
import threading
import time
import types
import warnings
import weakref

from ._multiprocessing_worker import init_worker, run_chunk, run_star_chunk

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from concurrent.futures import Future
    from typing import Any, Generic, Self, TypeVar

    T = TypeVar("T")
    S = TypeVar("S")
    P = TypeVar("P")
else:
    class Generic:
        """``ApplyResult[int]`` at run time, as the stdlib's generic classes."""

        __class_getitem__ = classmethod(types.GenericAlias)

    T = S = P = None


# multiprocessing.pool's states (its tests may set _state to RUN).
INIT = "INIT"
RUN = "RUN"
CLOSE = "CLOSE"
TERMINATE = "TERMINATE"


_job_counter = itertools.count()


def _mp_exception(exc: BaseException) -> BaseException:
    """A task's exception as multiprocessing raises it: the worker-side
    traceback as a ``multiprocessing.pool.RemoteTraceback`` cause."""
    from multiprocessing.pool import RemoteTraceback as MPRemoteTraceback

    from ._errors import RemoteTraceback

    cause = exc.__cause__
    if isinstance(cause, RemoteTraceback):
        exc.__cause__ = MPRemoteTraceback(f'\n"""\n{cause.text.rstrip()}\n"""')
    return exc


def _sending_error(exc: Exception) -> Exception:
    """What multiprocessing raises for arguments it cannot send: the
    pickling error itself (interpool's TypeError names it as its cause)."""
    cause = exc.__cause__
    return cause if isinstance(exc, TypeError) and isinstance(cause, Exception) else exc


def _outcome(future: Future[Any], terminated: bool) -> tuple[bool, Any] | None:
    """(success, value) of a finished task, or None if terminate() dropped it."""
    from concurrent.futures import CancelledError

    from ._errors import PoolShutdownError

    try:
        exc = future.exception()
    except CancelledError:   # only terminate() cancels
        return None
    if exc is None:
        return True, future.result()
    if terminated and isinstance(exc, PoolShutdownError):
        return None
    return False, _mp_exception(exc)


class _Job:
    """What a pool keeps for each call: the futures of its tasks.

    A job with callbacks has its results pushed to it (done-callbacks, on
    interpool's result thread, as multiprocessing's result handler does);
    one without pulls them in the thread that waits for them, with no thread
    in between (``TaskFuture.exception()`` takes a result from its worker)."""

    def __init__(self, pool: Pool, push: bool) -> None:
        self._push = push
        self._lock = threading.Lock()
        self._terminated = False
        self._pending: collections.deque[tuple[int, Future[Any], bool]] = collections.deque()
        pool._jobs.add(self)

    def _add(self, index: int, future: Future[Any], single: bool) -> None:
        """The task `index` of this job was queued (a one-item chunk, `single`,
        has its value as result; a chunk, the list of values)."""
        if self._push:
            future.add_done_callback(lambda f: self._take(index, f, single))
        else:
            self._pending.append((index, future, single))

    def _take(self, index: int, future: Future[Any], single: bool) -> None:
        outcome = _outcome(future, self._terminated)
        if outcome is not None:
            success, value = outcome
            self._set(index, success, [value] if success and single else value)

    def _pull(self, timeout: float | None) -> None:
        """Wait (at most timeout seconds) for the tasks, in this thread, and
        take the results that are in."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for _, future, _ in list(self._pending):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not _wait(future, remaining):
                break
        self._take_done()

    def _take_done(self) -> None:
        """Take the results of the first tasks, as long as they are in."""
        while True:
            with self._lock:
                if not self._pending or not self._pending[0][1].done():
                    return
                index, future, single = self._pending.popleft()
            self._take(index, future, single)

    def _fail(self, index: int, exc: BaseException) -> None:
        """The task `index` failed before it was queued (an argument that
        cannot be sent, or the input raised)."""
        self._set(index, False, exc)

    def _set(self, index: int, success: bool, value: Any) -> None:
        raise NotImplementedError

    def _terminate(self) -> None:
        """terminate() dropped this job's unfinished tasks."""
        self._terminated = True


class ApplyResult(_Job, Generic[T]):
    """The result of ``apply_async`` (``AsyncResult``): ``get(timeout)``,
    ``wait(timeout)``, ``ready()``, ``successful()``."""

    def __init__(
        self,
        pool: Pool,
        callback: Callable[[T], object] | None,
        error_callback: Callable[[BaseException], object] | None,
    ) -> None:
        super().__init__(pool, push=callback is not None or error_callback is not None)
        # Set once the result is in (and the callback ran), or terminate()
        # dropped it: what a pushed result's waiters wait for.
        self._done = threading.Event() if self._push else None
        self._ready = False
        self._success = False
        self._value: Any = None
        self._callback = callback
        self._error_callback = error_callback

    def __repr__(self) -> str:
        state = "ready" if self._ready else "terminated" if self._terminated else "pending"
        return f"<{type(self).__module__}.{type(self).__qualname__} {state}>"

    def ready(self) -> bool:
        """Whether the call has completed."""
        if not self._ready and not self._push:
            self._pull(0)
        return self._ready

    def successful(self) -> bool:
        """Whether the call completed without raising (ValueError if it
        has not completed)."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._success

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the result is available or until timeout seconds pass."""
        if self._done is not None:
            self._done.wait(timeout)
        elif not self._ready and not self._terminated:
            self._pull(timeout)

    def get(self, timeout: float | None = None) -> T:
        """The result when it arrives; raise the task's exception, or
        ``multiprocessing.TimeoutError`` if it is not there within
        ``timeout`` seconds (or terminate() dropped it)."""
        self.wait(timeout)
        if not self._ready:
            raise _timeout_error(self._terminated)
        if self._success:
            return self._value  # type: ignore[no-any-return]
        raise self._value

    def _set(self, index: int, success: bool, value: Any) -> None:
        with self._lock:
            if self._ready:
                return
            self._success = success
            self._value = value[0] if success else value
        self._finish()

    def _finish(self) -> None:
        """Call the callback, then let waiters see the result (as
        multiprocessing: get() returns after the callback ran)."""
        try:
            if self._success and self._callback is not None:
                self._callback(self._value)
            elif not self._success and self._error_callback is not None:
                self._error_callback(self._value)
        finally:
            self._ready = True
            if self._done is not None:
                self._done.set()

    def _terminate(self) -> None:
        super()._terminate()
        if self._done is not None:
            self._done.set()


AsyncResult = ApplyResult


class MapResult(ApplyResult[list[T]]):
    """The result of ``map_async``/``starmap_async``: the list of results,
    in order, or the first exception once every task is over."""

    def __init__(
        self,
        pool: Pool,
        chunksize: int,
        length: int,
        callback: Callable[[list[T]], object] | None,
        error_callback: Callable[[BaseException], object] | None,
    ) -> None:
        super().__init__(pool, callback, error_callback)
        self._success = True
        self._value = [None] * length
        self._chunksize = chunksize
        self._number_left = -(-length // chunksize)
        if self._number_left == 0:
            self._finish()

    def _set(self, index: int, success: bool, value: Any) -> None:
        with self._lock:
            if self._ready:
                return
            if not success:
                if self._success:   # only the first exception is kept
                    self._success, self._value = False, value
            elif self._success:
                self._value[index * self._chunksize:(index + 1) * self._chunksize] = value
            self._number_left -= 1
            if self._number_left:
                return
        self._finish()   # once every task is over, as multiprocessing does


class IMapIterator(_Job, Generic[T]):
    """The iterator ``imap`` returns: results in order.
    ``next(timeout)`` raises ``multiprocessing.TimeoutError`` if the
    next result is not there in time (the iterator stays usable)."""

    def __init__(self, pool: Pool, push: bool = False) -> None:
        super().__init__(pool, push)
        self._cond = threading.Condition(self._lock)   # the feeder queued more
        self._items: collections.deque[tuple[bool, Any]] = collections.deque()
        self._queued = 0                 # tasks the feeder queued (or failed)
        self._length: int | None = None  # all of them, once the input is read
        self._taken = 0                  # tasks whose results are in _items

    def __iter__(self) -> Self:
        return self

    def next(self, timeout: float | None = None) -> T:
        """The next result (its exception raised), waiting at most
        ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._items:
            with self._cond:
                if self._taken == self._length:
                    raise StopIteration
                if self._terminated:
                    raise _timeout_error(True)
                if not self._pending and self._queued == self._taken:   # the feeder is behind
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0 or not self._cond.wait(remaining):
                        raise _timeout_error(False)
                    continue
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._pull(remaining)
            if not self._items and deadline is not None and time.monotonic() >= deadline:
                raise _timeout_error(self._terminated)
        return _unpack(self._items.popleft())

    __next__ = next

    def _pull(self, timeout: float | None) -> None:
        """The next task's result (imap: in order, in this thread)."""
        with self._lock:
            if not self._pending:
                return
            _, future, _ = self._pending[0]
        if _wait(future, timeout):
            self._take_done()

    def _add(self, index: int, future: Future[Any], single: bool) -> None:
        with self._cond:
            super()._add(index, future, single)
            self._queued += 1
            self._cond.notify()

    def _fail(self, index: int, exc: BaseException) -> None:
        # In its place among the results: as a failed future.
        self._add(index, _failed_future(exc), True)

    def _set(self, index: int, success: bool, value: Any) -> None:
        if success:
            self._items.extend((True, v) for v in value)
        else:
            self._items.append((False, value))
        self._taken += 1

    def _set_length(self, length: int) -> None:
        with self._cond:
            self._length = length
            self._cond.notify()

    def _terminate(self) -> None:
        with self._cond:
            super()._terminate()
            self._cond.notify_all()


class IMapUnorderedIterator(IMapIterator[T]):
    """The iterator ``imap_unordered`` returns: results as they finish
    (pushed to it by done-callbacks)."""

    def __init__(self, pool: Pool) -> None:
        super().__init__(pool, push=True)

    def next(self, timeout: float | None = None) -> T:
        with self._cond:
            if not self._items:
                if self._taken == self._length:
                    raise StopIteration
                if not self._terminated:
                    self._cond.wait_for(
                        lambda: self._items or self._taken == self._length or self._terminated,
                        timeout)
                if not self._items:
                    if self._taken == self._length:
                        raise StopIteration
                    raise _timeout_error(self._terminated)
            item = self._items.popleft()
        return _unpack(item)

    __next__ = next

    def _add(self, index: int, future: Future[Any], single: bool) -> None:
        with self._cond:
            self._queued += 1
        future.add_done_callback(lambda f: self._take(index, f, single))

    def _set(self, index: int, success: bool, value: Any) -> None:
        with self._cond:
            super()._set(index, success, value)
            self._cond.notify()

    def _set_length(self, length: int) -> None:
        with self._cond:
            self._length = length
            self._cond.notify_all()


def _unpack(item: tuple[bool, Any]) -> Any:
    """An iterator's next value, or its exception raised."""
    success, value = item
    if success:
        return value
    raise value


def _wait(future: Future[Any], timeout: float | None) -> bool:
    """Wait for a task in this thread (which takes its result from the
    worker); False on timeout."""
    from concurrent.futures import CancelledError

    try:
        future.exception(timeout)
    except TimeoutError:
        return False
    except CancelledError:   # terminate()
        pass
    return True


def _failed_future(exc: BaseException) -> Future[Any]:
    from concurrent.futures import Future

    future: Future[Any] = Future()
    future.set_exception(exc)
    return future


class Pool:
    """``multiprocessing.Pool`` on interpool's worker interpreters (see
    the module's documentation for what differs)."""

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        context: object = None,
    ) -> None:
        self._state = INIT   # __del__ looks at it even if __init__ fails
        import multiprocessing

        from . import _core
        from ._pool import Pool as InterpoolPool
        from ._pool import cpu_count

        if processes is None:
            processes = cpu_count()
        elif isinstance(processes, bool) or not isinstance(processes, int):
            raise TypeError(f"processes must be an int or None, not {type(processes).__name__}")
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None:
            if not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0:
                raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._processes = processes
        self._jobs: weakref.WeakSet[_Job] = weakref.WeakSet()   # for terminate()
        self._lock = threading.Lock()
        self._tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()   # imap calls, for the feeder
        self._feeder: threading.Thread | None = None
        # The initializer travels as a partial: functions in it go by value
        # (lambdas too); its arguments are decoded once the authkey is set.
        init = functools.partial(init_worker, bytes(multiprocessing.current_process().authkey),
                                 initializer, _core.encode(tuple(initargs)))
        self._pool = _flavored(InterpoolPool)(
            processes, initializer=init, max_tasks_per_worker=maxtasksperchild,
            name=f"interpool-multiprocessing-{next(_job_counter)}",
        )
        self._state = RUN

    def __repr__(self) -> str:
        cls = type(self)
        return (f"<{cls.__module__}.{cls.__qualname__} state={self._state} "
                f"pool_size={self._processes}>")

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if self._state == RUN:
            _warn(f"unclosed running multiprocessing pool {self!r}", ResourceWarning, source=self)

    def __reduce__(self) -> Any:
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def _check_running(self) -> None:
        if self._state != RUN:
            raise ValueError("Pool not running")

    # ------------------------------------------------------------ submitting

    def _submit(self, func: Callable[..., Any], chunk: list[Any], star: bool,
                job: _Job, index: int) -> None:
        """Queue one task of `job`: func on each item of `chunk` (each an
        args tuple if `star`), its result to ``job``."""
        single = len(chunk) == 1
        try:
            if single:
                args = tuple(chunk[0]) if star else (chunk[0],)
                future = self._pool.submit(func, *args)
            else:
                runner = run_star_chunk if star else run_chunk
                future = self._pool.submit(functools.partial(runner, func), chunk)
        except Exception as exc:   # an argument that cannot be sent: this task fails
            job._fail(index, _sending_error(exc))
            return
        job._add(index, future, single)

    def _map_async(
        self, func: Callable[..., Any], iterable: Iterable[Any], star: bool,
        chunksize: int | None, callback: Callable[[list[Any]], object] | None,
        error_callback: Callable[[BaseException], object] | None,
    ) -> MapResult[Any]:
        self._check_running()
        items = list(iterable)
        if chunksize is None:
            # multiprocessing's default: about four tasks per worker.
            chunksize, extra = divmod(len(items), self._processes * 4)
            chunksize += bool(extra)
        else:
            _check_chunksize(chunksize)
        result: MapResult[Any] = MapResult(self, max(chunksize, 1), len(items), callback,
                                           error_callback)
        for index, start in enumerate(range(0, len(items), max(chunksize, 1))):
            self._submit(func, items[start:start + chunksize], star, result, index)
        return result

    def _imap(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int,
              result: IMapIterator[Any]) -> None:
        """Hand an imap call to the feeder thread, which reads the input
        as multiprocessing's task handler does: lazily, in order."""
        _check_chunksize(chunksize)
        with self._lock:
            self._check_running()
            self._tasks.put((func, iterable, chunksize, result))
            if self._feeder is None:
                # It holds the pool only while it feeds a call: an idle
                # feeder does not keep an unclosed pool alive, and ends
                # when the pool is collected.
                self._feeder = threading.Thread(
                    target=_feed, args=(self._tasks, weakref.ref(self)),
                    name=f"{self._pool.name}-feeder", daemon=True)
                self._feeder.start()
                weakref.finalize(self, self._tasks.put, None)

    def _feed_one(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int,
                  result: IMapIterator[Any]) -> None:
        index = 0
        try:
            items = iter(iterable)
            while self._state != TERMINATE:
                chunk = list(itertools.islice(items, chunksize))
                if not chunk:
                    break
                self._submit(func, chunk, False, result, index)
                index += 1
        except Exception as exc:   # the input failed: its place in the results
            result._fail(index, exc)
            index += 1
        result._set_length(index)

    # ------------------------------------------------------------ the API

    def apply(self, func: Callable[..., T], args: Iterable[Any] = (),
              kwds: Mapping[str, Any] = {}) -> T:  # noqa: B006 - multiprocessing's signature
        """``func(*args, **kwds)`` in a worker; wait for its result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(
        self,
        func: Callable[..., T],
        args: Iterable[Any] = (),
        kwds: Mapping[str, Any] = {},  # noqa: B006
        callback: Callable[[T], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
    ) -> ApplyResult[T]:
        """``func(*args, **kwds)`` in a worker; return an AsyncResult."""
        self._check_running()
        result: ApplyResult[T] = ApplyResult(self, callback, error_callback)
        try:
            future = self._pool.submit(func, *args, **kwds)
        except Exception as exc:
            result._fail(0, _sending_error(exc))
        else:
            result._add(0, future, True)
        return result

    def map(self, func: Callable[[S], T], iterable: Iterable[S],
            chunksize: int | None = None) -> list[T]:
        """``[func(x) for x in iterable]``, in the workers; the input is
        read at once and split into chunks of ``chunksize`` items (by
        default about four chunks per worker), each one task."""
        return self._map_async(func, iterable, False, chunksize, None, None).get()

    def map_async(
        self,
        func: Callable[[S], T],
        iterable: Iterable[S],
        chunksize: int | None = None,
        callback: Callable[[list[T]], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
    ) -> MapResult[T]:
        """``map`` that returns an AsyncResult of the list at once."""
        return self._map_async(func, iterable, False, chunksize, callback, error_callback)

    def starmap(self, func: Callable[..., T], iterable: Iterable[Iterable[Any]],
                chunksize: int | None = None) -> list[T]:
        """``[func(*args) for args in iterable]``, in the workers."""
        return self._map_async(func, iterable, True, chunksize, None, None).get()

    def starmap_async(
        self,
        func: Callable[..., T],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        callback: Callable[[list[T]], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
    ) -> MapResult[T]:
        """``starmap`` that returns an AsyncResult of the list at once."""
        return self._map_async(func, iterable, True, chunksize, callback, error_callback)

    def imap(self, func: Callable[[S], T], iterable: Iterable[S],
             chunksize: int = 1) -> IMapIterator[T]:
        """Results in order, each as soon as it and every earlier one are
        in; the input is read lazily, ``chunksize`` items per task.  An
        exception the input raises comes in its place in the results."""
        result: IMapIterator[T] = IMapIterator(self)
        self._imap(func, iterable, chunksize, result)
        return result

    def imap_unordered(self, func: Callable[[S], T], iterable: Iterable[S],
                       chunksize: int = 1) -> IMapIterator[T]:
        """``imap`` with results in the order they finish."""
        result: IMapIterator[T] = IMapUnorderedIterator(self)
        self._imap(func, iterable, chunksize, result)
        return result

    # ------------------------------------------------------------ stopping

    def close(self) -> None:
        """Accept no more work; the workers finish what was given them."""
        with self._lock:
            if self._state == RUN:
                self._state = CLOSE
                self._tasks.put(None)

    def terminate(self) -> None:
        """Stop now: drop queued tasks, stop running ones, and wait for
        the workers to leave (a task blocked in a C call is set aside
        after 100 ms; its thread ends when the call returns)."""
        with self._lock:
            self._state = TERMINATE
            self._tasks.put(None)
        for job in list(self._jobs):   # first: their stopped tasks' errors are no results
            job._terminate()
        self._pool.shutdown(wait=False, interrupt=True)
        from ._atexit import GRACE

        self._pool._core.join(GRACE)

    def join(self) -> None:
        """Wait for the workers to exit (after close() or terminate())."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._state not in (CLOSE, TERMINATE):
            raise ValueError("In unknown state")
        if self._feeder is not None:
            self._feeder.join()
        if self._state == CLOSE:
            from ._errors import BrokenPool

            # multiprocessing starts its workers, initializer and all, at
            # Pool(): a pool closed before any task ran still runs it (a
            # stopping interpool pool starts no interpreter it does not need).
            try:
                self._pool.wait_ready()
            except BrokenPool:
                pass   # its tasks, if any, fail with it
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Self:
        self._check_running()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.terminate()


def _feed(tasks: queue.SimpleQueue[Any], pool_ref: weakref.ref[Pool]) -> None:
    """The feeder thread: imap calls, one after the other, in order."""
    while True:
        task = tasks.get()
        pool = pool_ref()
        if task is None or pool is None:
            return
        pool._feed_one(*task)
        del task, pool   # keep nothing alive while idle


@functools.cache
def _flavored(base: type[P]) -> type[P]:
    """interpool's Pool whose workers report errors as multiprocessing does
    (made on first use: worker interpreters that import this module need
    not import the Pool)."""
    return type("MultiprocessingPool", (base,), {"_flavor": "multiprocessing"})


def _timeout_error(terminated: bool) -> Exception:
    """What get() and next() raise when the result is not there."""
    import multiprocessing

    if terminated:
        return multiprocessing.TimeoutError("the pool was terminated before this task finished")
    return multiprocessing.TimeoutError()


def _check_chunksize(chunksize: object) -> None:
    if isinstance(chunksize, bool) or not isinstance(chunksize, int):
        raise TypeError(f"chunksize must be an int, not {type(chunksize).__name__}")
    if chunksize < 1:
        raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
