"""The workers of a pool's fallback (``Pool(fallback=...)``): where calls run
whose function cannot be loaded in a subinterpreter.

- ProcessWorkers (``"processes"``): worker processes the pool owns, started
  on first need, at most as many as the pool has workers.  One manager
  thread hands jobs to idle processes, reads what they send back (output,
  log records, results), and kills a process whose job must stop (past its
  deadline, cancelled with interrupt, a shutdown with interrupt); a killed
  or finished-up process is replaced on the next need, as pebble does.
- ThreadWorkers (``"threads"``): threads of this interpreter, started on
  first need, at most as many as the pool has workers.  A job that must
  stop gets TaskInterrupted at its next bytecode (as in a worker
  interpreter); a thread cannot be stopped inside a C call.

Both take Jobs from one queue.  A Job is also the handle its future holds
(``cancel(interrupt)``, ``running``); its outcome goes to its sink, once,
unless it was cancelled.
"""

from __future__ import annotations

import heapq
import itertools
import os
import pickle
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from . import _byvalue, _core, _forwarding
from ._errors import broken_error, stop_error

Sink = Callable[[bool, Any], None]

# A job that swallows TaskInterrupted is asked again this often (seconds).
_REPEAT_STOP = 0.5
# How long processes that were asked to exit get before they are killed.
_EXIT_GRACE = 2.0


class Job:
    """One call in the fallback, and the handle its future holds."""

    __slots__ = ("owner", "fn", "args", "kwargs", "chunked", "timeout", "sink", "state",
                 "stop", "deadline", "thread", "form", "payload")

    def __init__(self, owner: _Workers, fn: Any, args: Any, kwargs: dict[str, Any] | None,
                 chunked: bool, timeout: float | None, sink: Sink) -> None:
        self.owner = owner
        self.fn = fn
        self.args = args            # a tuple, or for a chunk a list of tuples
        self.kwargs = kwargs
        self.chunked = chunked
        self.timeout = timeout
        self.sink = sink
        self.state = "queued"       # queued, running, done, cancelled
        self.stop: str | None = None   # why it must stop: "timeout", "cancel", "shutdown"
        self.deadline: float | None = None
        self.thread = 0             # ThreadWorkers: the thread running it
        self.form: Any = None       # ProcessWorkers: (key, ref, prefix)
        self.payload: bytes | None = None

    def cancel(self, interrupt: bool = False) -> bool:
        """Cancel it while queued; with interrupt, also stop it while it
        runs.  True if it will not deliver (its future is to be cancelled)."""
        return self.owner.cancel(self, interrupt)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def finished(self) -> bool:
        return self.state in ("done", "cancelled")

    def finish(self, ok: bool, value: Any) -> None:
        """Deliver the outcome (never under the workers' lock)."""
        owner = self.owner
        with owner.lock:
            if self.state == "cancelled":
                return
            self.state = "done"
        self.sink(ok, value)


def _stopped_error(job: Job) -> BaseException:
    return stop_error("timeout" if job.stop == "timeout" else "interrupted")


class _Workers:
    """The queue, and what both kinds of workers share."""

    kind = ""

    def __init__(self, size: int, name: str, task_timeout: float | None, max_tasks: int,
                 initializer: Any, initargs: tuple[Any, ...]) -> None:
        self.size = size
        self.name = name
        self.task_timeout = task_timeout
        self.max_tasks = max_tasks
        self.initializer = initializer
        self.initargs = initargs
        # An RLock: in a thread worker a stop (an asynchronous exception) may
        # land just after _disarm took it, which must then see that it holds it.
        self.lock = threading.RLock()
        self.queue: deque[Job] = deque()
        self.closing = False          # the pool shut down: workers leave once idle
        self.stopped = False          # stopped with interrupt: nothing more runs
        self.broken: str | None = None   # why (the initializer raised in a worker)
        self.threads: list[threading.Thread] = []
        self.helpers: list[threading.Thread] = []   # not workers: no part of `size`

    def prepare(self, fn: Any) -> Any:
        """What job() needs to know of fn, made once for many calls (a map's)."""
        return None

    def job(self, fn: Any, args: Any, kwargs: dict[str, Any] | None, timeout: float | None,
            sink: Sink, chunked: bool = False, form: Any = None) -> Job:
        """A job for fn(*args, **kwargs) (or each of a chunk's args); TypeError
        if it cannot go to these workers (say why, naming the alternative).
        `form`: prepare(fn), if made already."""
        return Job(self, fn, args, kwargs, chunked, self.task_timeout if timeout is None else timeout,
                   sink)

    def put(self, job: Job) -> None:
        """Queue a job; its sink gets the outcome."""
        with self.lock:
            refused = self._refusal()
            if refused is None:
                self.queue.append(job)
                self._wake()
        if refused is not None:
            job.finish(False, refused)

    def _refusal(self) -> BaseException | None:
        if self.broken is not None:
            return broken_error(self.broken)
        if self.stopped:
            return stop_error("interrupted")
        return None

    def cancel(self, job: Job, interrupt: bool) -> bool:
        with self.lock:
            if job.state == "queued":
                job.state = "cancelled"   # skipped when its turn comes
                return True
            if job.state != "running" or not interrupt:
                return False
            job.state = "cancelled"
            job.stop = "cancel"
            self._interrupt(job)
            return True

    def stop(self, cancel: bool, interrupt: bool) -> None:
        """The pool shuts down: finish the queue (or drop it with `cancel`)
        and leave; with `interrupt`, also stop the running jobs."""
        dropped: list[Job] = []
        with self.lock:
            self.closing = True
            if cancel:
                while self.queue:
                    job = self.queue.popleft()
                    if job.state == "queued":
                        dropped.append(job)
            if interrupt:
                self.stopped = True
                self._stop_running()
            self._wake()
        for job in dropped:
            job.finish(False, stop_error(None))

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every worker left (Ctrl-C ends the wait)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self.lock:
                threads = [t for t in self.threads + self.helpers if t.is_alive()]
            if not threads:
                return True
            for thread in threads:
                if thread is threading.current_thread():
                    continue
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                thread.join(left)

    def start_helper(self, target: Callable[..., None], name: str, *args: Any) -> None:
        """Start a thread that feeds this fallback jobs; join() waits for it
        too (it may still queue jobs while the pool shuts down)."""
        thread = threading.Thread(target=target, args=args, name=name)
        with self.lock:
            self.helpers = [t for t in self.helpers if t.is_alive()]
            self.helpers.append(thread)
        thread.start()

    def _start_thread(self, target: Callable[..., None], name: str, *args: Any) -> None:
        """Start a worker or manager thread (under the lock).  Not a daemon:
        a normal exit waits for the fallback's work as for the pool's."""
        thread = threading.Thread(target=target, args=args, name=name)
        self.threads.append(thread)
        thread.start()

    def _next_job(self) -> Job | None:
        """The next queued job, marked running (under the lock)."""
        while self.queue:
            job = self.queue.popleft()
            if job.state == "queued":
                job.state = "running"
                if job.timeout is not None:
                    job.deadline = time.monotonic() + job.timeout
                return job
        return None

    # provided by each kind (called under the lock)
    def _wake(self) -> None:
        raise NotImplementedError

    def _interrupt(self, job: Job) -> None:
        raise NotImplementedError

    def _stop_running(self) -> None:
        raise NotImplementedError


# ------------------------------------------------------------ threads


class ThreadWorkers(_Workers):
    """Threads of the main interpreter (``fallback="threads"``).  Calls get
    their arguments as they are (no copy), as with ThreadPoolExecutor."""

    kind = "threads"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._ready = threading.Condition(self.lock)
        self._idle = 0
        self._running: dict[int, Job] = {}   # thread id -> its job
        self._deadlines: list[tuple[float, int, Job]] = []
        self._watch: threading.Thread | None = None
        self._watch_wake = threading.Condition(self.lock)
        self._count = itertools.count()

    def job(self, fn: Any, args: Any, kwargs: dict[str, Any] | None, timeout: float | None,
            sink: Sink, chunked: bool = False, form: Any = None) -> Job:
        for value in (args if not chunked else itertools.chain.from_iterable(args)):
            _refuse_shared(value)
        if kwargs:
            for value in kwargs.values():
                _refuse_shared(value)
        return super().job(fn, args, kwargs, timeout, sink, chunked)

    def _wake(self) -> None:
        if self.closing or self.stopped:
            self._ready.notify_all()
            self._watch_wake.notify_all()
        if not self.queue or self.stopped:
            return
        if self._idle:
            self._ready.notify()
        if len(self.queue) > self._idle and len(self.threads) < self.size:
            self._start_thread(self._serve, f"{self.name}-thread_{len(self.threads)}")

    def _serve(self) -> None:
        me = threading.current_thread()
        try:
            if self.initializer is not None:
                try:
                    _await(self.initializer(*self.initargs))
                except BaseException as exc:
                    self._break(exc)
                    return
            done = 0
            while not self.max_tasks or done < self.max_tasks:
                with self.lock:
                    job = self._next_job()
                    while job is None and not (self.closing or self.stopped):
                        self._idle += 1
                        self._ready.wait()
                        self._idle -= 1
                        job = self._next_job()
                    if job is None or self.stopped:
                        if job is not None:
                            job.state = "queued"
                            self.queue.appendleft(job)
                        return
                    job.thread = threading.get_ident()
                ok, value = self._run(job)
                job.finish(ok, value)
                done += 1
        finally:
            with self.lock:
                # No job may stay armed under this thread's id: a new thread
                # (the deadline watchdog) may get the same id.
                self._running.pop(me.ident or 0, None)
                self.threads.remove(me)
                if self.queue and not self.stopped:
                    self._wake()   # recycled after max_tasks: the next thread takes over

    def _run(self, job: Job) -> tuple[bool, Any]:
        """Call the job's function; a stop request lands in it (and only
        there) as TaskInterrupted."""
        ok, value = False, None   # type: tuple[bool, Any]
        try:
            try:
                # Armed inside the try: wherever a stop lands from here on,
                # _disarm runs and the job finishes.
                self._arm(job)
                if job.chunked:
                    value = [_await(job.fn(*a)) for a in job.args]
                else:
                    value = _await(job.fn(*job.args, **(job.kwargs or {})))
                ok = True
            except BaseException as exc:
                value = exc
            finally:
                while True:   # (a stop may land as _disarm is entered: again)
                    try:
                        self._disarm(job)
                        break
                    except _core.TaskInterrupted:
                        pass
        except _core.TaskInterrupted as exc:   # landed after the call returned
            ok, value = False, exc
        if job.stop is not None:
            return False, _stopped_error(job)
        return ok, value

    def _arm(self, job: Job) -> None:
        """From here on stop requests (a deadline, cancel, shutdown) reach
        this thread."""
        with self.lock:
            self._running[job.thread] = job
            if self.stopped and job.stop is None:
                job.stop = "shutdown"
            if job.stop is not None:   # cancelled or stopped since it was taken
                self._interrupt(job)
            elif job.deadline is not None:
                self._watch_deadline(job)

    def _disarm(self, job: Job) -> None:
        """From here on no stop request reaches this thread; one sent but not
        landed yet is withdrawn (one that lands meanwhile is caught here).
        No `with self.lock`: a stop that lands right after the lock is taken
        (at the call's return, before the block is entered) would leave it
        held for ever; so each round first releases what an interrupted
        round left held."""
        lock = self.lock
        while True:
            try:
                while lock._is_owned():   # type: ignore[attr-defined]  # (RLock's)
                    lock.release()
                lock.acquire()
                self._running.pop(job.thread, None)
                fired = job.stop is not None
                lock.release()
                if fired:
                    _async_raise(job.thread, None)
                return
            except _core.TaskInterrupted:
                continue

    def _interrupt(self, job: Job) -> None:
        # Under the lock, while the job runs (its thread disarms under it too).
        if self._running.get(job.thread) is job:
            _async_raise(job.thread, _core.TaskInterrupted)
            self._watch_deadline(job, time.monotonic() + _REPEAT_STOP)

    def _stop_running(self) -> None:
        for job in list(self._running.values()):
            job.stop = job.stop or "shutdown"
            self._interrupt(job)
        self._ready.notify_all()

    def _break(self, exc: BaseException) -> None:
        import traceback

        text = "".join(traceback.format_exception(exc))
        with self.lock:
            self.broken = f"the fallback's initializer raised:\n{text}"
            failed = [j for j in self.queue if j.state == "queued"]
            self.queue.clear()
        for job in failed:
            job.finish(False, broken_error(self.broken))

    # ------------------------------------------------ deadlines

    def _watch_deadline(self, job: Job, when: float | None = None) -> None:
        """Under the lock: make the watchdog stop `job` at `when` (default:
        its deadline)."""
        heapq.heappush(self._deadlines, (when or job.deadline or 0.0, next(self._count), job))
        if self._watch is None or not self._watch.is_alive():
            self._watch = threading.Thread(target=self._watchdog, name=f"{self.name}-deadlines")
            self._watch.start()
        else:
            self._watch_wake.notify()

    def _watchdog(self) -> None:
        with self.lock:
            while self._deadlines or not (self.closing and not self._running):
                if not self._deadlines:
                    if self.closing:
                        return
                    self._watch_wake.wait()
                    continue
                when, _, job = self._deadlines[0]
                if self._running.get(job.thread) is not job:
                    heapq.heappop(self._deadlines)   # it finished in time
                    continue
                left = when - time.monotonic()
                if left > 0:
                    self._watch_wake.wait(left)
                    continue
                heapq.heappop(self._deadlines)
                if self._running.get(job.thread) is job:
                    job.stop = job.stop or "timeout"
                    self._interrupt(job)


def _await(value: Any) -> Any:
    """An ``async def`` function's coroutine runs to completion on this
    thread's own event loop."""
    import inspect

    if not inspect.iscoroutine(value):
        return value
    loop = getattr(_thread_loops, "loop", None)
    if loop is None:
        import asyncio

        loop = _thread_loops.loop = asyncio.new_event_loop()
    return loop.run_until_complete(value)


_thread_loops = threading.local()


def _async_raise(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise exc in that thread at its next bytecode (None: withdraw one
    not raised yet)."""
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else None)


def _refuse_shared(value: Any) -> None:
    if isinstance(value, _core.Shared):
        raise TypeError(
            "cannot pass an interpool.Shared handle (pool.share()) to a function that runs "
            "in the pool's fallback threads: a handle stands for a value held by worker "
            "interpreters; pass the value itself (threads share this process's memory)."
        )


# ------------------------------------------------------------ processes


def _cannot_cross(obj: Any) -> str | None:
    """Why obj cannot be sent to a fallback process, and what to do instead
    (None: it can)."""
    if isinstance(obj, _core.Shared):
        return ("an interpool.Shared handle (pool.share()) to a fallback process: it stands "
                "for a value held by worker interpreters; pass the value itself (it is "
                "pickled for the process)")
    if isinstance(obj, _core.Queue):
        return ("an interpool.Queue to a fallback process: it lives in this process's memory; "
                "use a multiprocessing queue (or a Manager's) to talk to a process, or "
                'fallback="threads"')
    if isinstance(obj, _core.SharedBuffer):
        return ("an interpool.SharedBuffer to a fallback process: its memory is this "
                "process's; use multiprocessing.shared_memory.SharedMemory, or "
                'fallback="threads"')
    import mmap

    if isinstance(obj, (memoryview, mmap.mmap)):
        return (f"a {type(obj).__name__} to a fallback process: worker interpreters get it "
                "zero-copy, but a process cannot share this memory; pass bytes(view) (a "
                "copy) or a multiprocessing.shared_memory.SharedMemory, or use "
                'fallback="threads"')
    return None


class _Pickler(_byvalue.MessagePickler):
    """interpool's by-value pickle with the definitions inline (a process
    has no share of this process's table of definitions: the caller's
    ``__main__`` functions and classes, lambdas, travel whole), refusing
    what cannot cross into a process (see _cannot_cross)."""

    portable = True

    def reducer_override(self, obj: Any) -> Any:
        why = _cannot_cross(obj)
        if why is not None:
            raise _CannotCross(f"cannot send {why}.")
        return super().reducer_override(obj)


class _CannotCross(Exception):
    pass


def dumps(value: Any) -> bytes:
    """Pickle what goes to a fallback process; TypeError, naming the
    alternative, for what cannot cross into a process."""
    import io

    out = io.BytesIO()
    try:
        _Pickler(out, 5).dump(value)
    except _CannotCross as exc:
        raise TypeError(*exc.args) from None
    except Exception as exc:
        raise TypeError(f"cannot send this call to a fallback process: pickling it failed "
                        f"({type(exc).__name__}: {exc})") from exc
    return out.getvalue()


def travelling_form(fn: Any, closures: bool = True) -> tuple[Any, Any, tuple[Any, ...]]:
    """How fn travels to a fallback process: (cache key, or None to send it
    with every call; the reference interpool._loading.load_callable turns
    back into the callable there; leading arguments of every call).

    The one place that decides it: by reference as to a worker interpreter;
    what travels by value to a worker interpreter (a uid of this process's
    table of definitions) goes pickled with its definition inline, made
    anew at each call (its state is current)."""
    from ._callables import plan

    travel = plan(fn, closures=closures)
    ref = travel.ref if travel.key is None else travel.make_ref()
    if ref[0] in ("value", "pickle"):
        return None, ("pickle", dumps(fn)), ()
    return travel.key, ref, (() if travel.state is None else (travel.state,))


class _Proc:
    """One worker process, as the manager sees it."""

    __slots__ = ("popen", "conn", "index", "job", "tasks", "fids", "exiting")

    def __init__(self, popen: subprocess.Popen[bytes], conn: Any, index: int) -> None:
        self.popen = popen
        self.conn = conn
        self.index = index
        self.job: Job | None = None
        self.tasks = 0
        self.fids: set[int] = set()
        self.exiting = False


class ProcessWorkers(_Workers):
    """Worker processes (``fallback="processes"``), spawned with the
    interpreter's own executable (never forked: a process with live
    subinterpreters cannot fork).  Arguments and results are pickled."""

    kind = "processes"

    def __init__(self, *args: Any, setup: dict[str, Any], closures: bool = True) -> None:
        super().__init__(*args)
        self._setup = setup
        self._closures = closures
        self._procs: list[_Proc] = []
        self._manager: threading.Thread | None = None
        self._wake_w = -1   # the running manager's wake-up pipe
        self._woken = False   # a wake-up is on that pipe, not read yet
        self._fids: dict[Any, int] = {}
        self._job_ids = itertools.count()
        self._indexes = itertools.count()
        self._init: tuple[Any, tuple[Any, ...], bytes] | None = None

    def prepare(self, fn: Any) -> tuple[Any, Any, tuple[Any, ...]]:
        """How fn travels (travelling_form), its key numbered for the processes."""
        form = travelling_form(fn, self._closures)
        key = form[0]
        if key is not None and key not in self._fids:
            with self.lock:
                self._fids.setdefault(key, len(self._fids))
        return form

    def job(self, fn: Any, args: Any, kwargs: dict[str, Any] | None, timeout: float | None,
            sink: Sink, chunked: bool = False, form: Any = None) -> Job:
        job = super().job(fn, args, kwargs, timeout, sink, chunked)
        _, _, prefix = job.form = form or self.prepare(fn)
        if prefix:
            args = [prefix + a for a in args] if chunked else prefix + args
        job.payload = dumps((args, kwargs))
        job.args = job.kwargs = None   # what runs is the payload
        return job

    def _wake(self) -> None:
        if self._manager is None:
            if not self.queue and (self.closing or self.stopped):
                return
            wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_w, False)
            self._manager = threading.Thread(target=self._manage, args=(wake_r,),
                                             name=f"{self.name}-processes")
            self.threads.append(self._manager)
            self._manager.start()
            return
        if not self._woken:   # (one wake-up for a burst of jobs)
            self._woken = True
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:
                pass

    def _interrupt(self, job: Job) -> None:
        self._wake()   # the manager kills its process

    def _stop_running(self) -> None:
        for proc in self._procs:
            if proc.job is not None:
                proc.job.stop = proc.job.stop or "shutdown"

    # ------------------------------------------------ the manager thread

    def _manage(self, wake_r: int) -> None:
        import selectors

        me = threading.current_thread()
        selector = selectors.DefaultSelector()
        selector.register(wake_r, selectors.EVENT_READ, None)
        try:
            while True:
                with self.lock:
                    busy = [p for p in self._procs if p.job is not None]
                    if self.stopped or (self.closing and not self.queue and not busy):
                        break
                    kill = [p for p in busy if p.job.stop]   # type: ignore[union-attr]
                    idle = [p for p in self._procs if p.job is None and not p.exiting]
                    assign = []
                    while idle and not self.broken:
                        job = self._next_job()
                        if job is None:
                            break
                        proc = idle.pop()
                        proc.job = job
                        assign.append(proc)
                    # (cancelled jobs still in the queue count: at worst one process early)
                    grow = 0 if self.broken else min(len(self.queue),
                                                     self.size - len(self._procs))
                    broken = self.broken
                if broken is not None:
                    self._fail_queue()
                for proc in kill:
                    self._lost(proc, selector)
                for proc in assign:
                    self._send_job(proc, selector)
                if grow > 0:
                    for _ in range(grow):
                        self._spawn(selector)
                    continue   # the new processes take the queued jobs at once
                for key, _ in selector.select(self._next_deadline()):
                    if key.data is None:
                        with self.lock:
                            self._woken = False
                            os.read(wake_r, 4096)
                    else:
                        self._receive(key.data, selector)
                self._expire(selector)
        finally:
            self._leave(selector)
            selector.close()
            with self.lock:
                self.threads.remove(me)
                self._manager = None
                os.close(wake_r)
                os.close(self._wake_w)
                if self.queue and not self.stopped and self.broken is None:
                    self._wake()   # jobs came in while it was leaving

    def _initializer(self) -> tuple[Any, tuple[Any, ...], bytes] | None:
        """How the pool's initializer travels (made at the first spawn)."""
        if self._init is None and self.initializer is not None:
            _, ref, prefix = travelling_form(self.initializer, self._closures)
            self._init = (ref, prefix, dumps(tuple(self.initargs)))
        return self._init

    def _spawn(self, selector: Any) -> None:
        import selectors
        import socket
        from multiprocessing.connection import Connection

        try:
            init = self._initializer()
        except TypeError as exc:
            with self.lock:
                self.broken = f"the pool's initializer cannot go to a fallback process: {exc}"
            return
        index = next(self._indexes)
        ours, theirs = socket.socketpair()
        src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        code = (f"import sys; sys.path.insert(0, {src!r}); "
                f"from interpool._fallback_child import main; main({theirs.fileno()}, {os.getpid()})")
        try:
            # env: our own copy of os.environ, never the C `environ` itself.
            # A worker importing a module that refuses subinterpreters may be
            # calling putenv/unsetenv right now (numpy does), and a child
            # exec'ing while `environ` is rebuilt fails with EFAULT (seen once
            # in the suite: "[Errno 14] Bad address").
            popen = subprocess.Popen(
                [sys.executable, *subprocess._args_from_interpreter_flags(), "-c", code],  # type: ignore[attr-defined]
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=dict(os.environ),
            )
        except Exception as exc:
            ours.close()
            theirs.close()
            with self.lock:
                self.broken = f"cannot start a fallback process: {type(exc).__name__}: {exc}"
            return
        theirs.close()
        conn = Connection(ours.detach())
        proc = _Proc(popen, conn, index)
        config = {
            "sys_path": [p for p in sys.path if isinstance(p, str)],
            "index": index,
            "setup": {**self._setup, "name": f"{self.name}-process"},
            "init": init,
        }
        try:
            conn.send(config)
        except OSError:
            pass   # it died at once: the selector sees the end of its socket
        with self.lock:
            self._procs.append(proc)
        selector.register(conn.fileno(), selectors.EVENT_READ, proc)

    def _send_job(self, proc: _Proc, selector: Any) -> None:
        job = proc.job
        assert job is not None and job.payload is not None
        key, ref, _ = job.form
        fid = None if key is None else self._fids[key]
        try:
            if fid is not None and fid not in proc.fids:
                proc.conn.send(("fn", fid, ref))
                proc.fids.add(fid)
            proc.conn.send(("call", next(self._job_ids), fid, ref if fid is None else None,
                            job.chunked))
            proc.conn.send_bytes(job.payload)
        except OSError:
            self._lost(proc, selector)

    def _receive(self, proc: _Proc, selector: Any) -> None:
        conn = proc.conn
        try:
            while True:
                msg = conn.recv()
                kind = msg[0]
                if kind == "item":
                    _forwarding.deliver(msg[1])
                elif kind == "done":
                    payload = conn.recv_bytes()
                    self._done(proc, msg[2], payload)
                elif kind == "broken":
                    with self.lock:
                        self.broken = f"the fallback's initializer raised:\n{msg[1]}"
                if not conn.poll():
                    return
        except (EOFError, OSError):
            self._lost(proc, selector)

    def _done(self, proc: _Proc, ok: bool, payload: bytes) -> None:
        job, proc.job = proc.job, None
        proc.tasks += 1
        if self.max_tasks and proc.tasks >= self.max_tasks:
            self._retire(proc)
        if job is None:
            return
        try:
            value = pickle.loads(payload)
            if not ok:
                from ._remote import unpack_exception

                value = unpack_exception(value)
        except Exception as exc:
            ok, value = False, exc
        job.finish(ok, value)

    def _retire(self, proc: _Proc) -> None:
        """A process that ran max_tasks_per_worker jobs leaves (a fresh one
        takes its place on the next need)."""
        proc.exiting = True
        try:
            proc.conn.send(("exit",))
        except OSError:
            pass

    def _lost(self, proc: _Proc, selector: Any) -> None:
        """Kill the process (a stop; or its socket failed), or it is gone (it
        exited, or died): reap it, and fail its job (as stopped, if it was)."""
        self._forget(proc, selector)
        try:
            proc.popen.kill()   # (nothing if it already exited)
        except OSError:
            pass
        code = proc.popen.wait()
        job = proc.job
        proc.job = None
        if job is None:
            return
        if job.stop is not None:
            job.finish(False, _stopped_error(job))
            return
        if self.broken is not None:   # its initializer raised
            job.finish(False, broken_error(self.broken))
            return
        from concurrent.futures.process import BrokenProcessPool

        job.finish(False, BrokenProcessPool(
            f"the fallback process running this task ended abruptly (exit status {code}); "
            "it is replaced for the next tasks"))

    def _forget(self, proc: _Proc, selector: Any) -> None:
        try:
            selector.unregister(proc.conn.fileno())
        except (KeyError, ValueError, OSError):
            pass
        proc.conn.close()
        with self.lock:
            if proc in self._procs:
                self._procs.remove(proc)

    def _next_deadline(self) -> float | None:
        with self.lock:
            deadlines = [p.job.deadline for p in self._procs
                         if p.job is not None and p.job.deadline is not None]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _expire(self, selector: Any) -> None:
        now = time.monotonic()
        with self.lock:
            late = [p for p in self._procs if p.job is not None and p.job.deadline is not None
                    and p.job.deadline <= now]
            for proc in late:
                assert proc.job is not None
                proc.job.stop = proc.job.stop or "timeout"
        for proc in late:
            self._lost(proc, selector)

    def _fail_queue(self) -> None:
        with self.lock:
            failed = [j for j in self.queue if j.state == "queued"]
            self.queue.clear()
            message = self.broken or ""
        for job in failed:
            job.finish(False, broken_error(message))

    def _leave(self, selector: Any) -> None:
        """The manager leaves: busy processes are killed (a stop), idle ones
        asked to exit, then killed if they do not within _EXIT_GRACE."""
        with self.lock:
            procs = list(self._procs)
        for proc in procs:
            if proc.job is not None:
                if proc.job.stop is None:
                    proc.job.stop = "shutdown"
                self._lost(proc, selector)
            else:
                self._retire(proc)
        deadline = time.monotonic() + _EXIT_GRACE
        for proc in procs:
            try:
                proc.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
            self._forget(proc, selector)
