"""Where a pool's results reach the caller: one Completions (C) per
consumer, resolved in batches.

- ThreadCompletions: the sync futures of one pool, resolved by the thread
  that waits for one (result()), by a submitter, or by a resolver thread
  once a done-callback or wait()/as_completed() needs one.  Resolving only
  sets futures; their done-callbacks run on the pool's callback thread,
  with no lock of interpool held.
- LoopCompletions: the asyncio futures of one event loop; its eventfd is
  watched by the loop, and each wake-up resolves every finished future of
  that loop in one C call.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future

from . import _core
from ._errors import stop_error
from ._futures import FINISHED, TaskFuture, cancel_future, settled


# Where concurrent.futures logs a failing done-callback.
_LOGGER = logging.getLogger("concurrent.futures")

# The completions with threads alive, so that the exit can release them (abandon_all).
_live: weakref.WeakSet[ThreadCompletions] = weakref.WeakSet()


def abandon_all() -> None:
    """At exit, once every worker has exited (or been left running after
    a second Ctrl-C): resolve what has arrived, then detach, which wakes
    each resolver thread for good, and fail the futures whose result never
    came.  A non-daemon thread would otherwise keep the interpreter
    waiting for a result that was lost (it is joined before finalization).
    Every completions is detached even if a callback raises (Ctrl-C, say);
    the first such exception is raised at the end."""
    stop: BaseException | None = None
    for completions in list(_live):
        completions.abandoned = True
        try:
            completions.resolve(timeout=1.0)   # another thread's batch may be stuck decoding
        except BaseException as exc:
            stop = stop or exc
        for future in completions.core.detach():
            try:
                if not future.done():
                    future.set_exception(stop_error())
            except BaseException as exc:
                stop = stop or exc
        completions.wake_callbacks()   # its callback thread exits once it ran what is queued
    if stop is not None:
        raise stop


class ThreadCompletions:
    """The Completions that a pool's sync futures are resolved through.

    Callers resolve them themselves (TaskFuture.result); a resolver thread
    starts only when needed (need_thread).  A batch sets futures only: the
    done-callbacks it triggers are queued (call_soon) for the callback
    thread, which runs them in order with no lock of interpool held.  So a
    callback may block on the caller's locks, submit more work or wait for
    other futures, and no submit(), result() or done() waits for it, nor
    does a callback run inside another's submit() or result()."""

    def __init__(self, name: str) -> None:
        # The batch asks each future whether it is done with settled()
        # (TaskFuture.done() would resolve), and sets a lean TaskFuture itself.
        self.core = _core.Completions(on_cancelled=cancel_future, owner_done=settled,
                                      lean=(TaskFuture, FINISHED))
        # Batches never overlap.  Held while a batch decodes results and
        # sets futures, never while a done-callback runs.
        self._lock = threading.RLock()
        self._name = name
        self._thread_lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self._resolver = 0   # the thread resolving a batch now (0: none)
        self.abandoned = False
        # Futures whose done-callbacks are due, for the callback thread.
        self._callbacks: collections.deque[Future[object]] = collections.deque()
        self._callbacks_due = threading.Condition(threading.Lock())
        self.callback_thread: threading.Thread | None = None

    def _start(self, target: Callable[[], object], kind: str) -> threading.Thread | None:
        # Not a daemon: CPython forbids daemon threads in isolated
        # subinterpreters, and the exit hook closes the completions first.
        thread = threading.Thread(target=target, name=f"{self._name}-{kind}")
        _live.add(self)   # before it starts: abandon_all() must see it
        try:
            thread.start()
        except RuntimeError:  # the interpreter is shutting down
            return None
        return thread

    def need_thread(self) -> None:
        """Resolve in the background from now on: done-callbacks and
        wait()/as_completed() need it when no caller waits."""
        if self.thread is None:
            with self._thread_lock:
                if self.thread is None:
                    self.thread = self._start(self._run, "results")

    def _run(self) -> None:
        core = self.core
        while True:
            # Woken by a result, by the last outstanding one being taken
            # elsewhere, or by abandon_all() detaching it; the timeout only
            # re-checks, in case a count was lost.
            core.wait(5.0)
            try:
                self.resolve()
            except BaseException:   # (a decoding hook's SystemExit): keep resolving
                _LOGGER.exception("exception resolving results")
            if core.closed and (core.outstanding == 0 or self.abandoned):
                self.wake_callbacks()
                return

    def resolve(self, timeout: float | None = None) -> None:
        """Resolve whatever has finished (any thread; batches never overlap).
        With a timeout (0: only if free), give up if another thread's batch
        lasts longer: it resolves what this one would have."""
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            return
        try:
            outer, self._resolver = self._resolver, threading.get_ident()
            try:
                self.core.resolve()
            finally:
                self._resolver = outer
        finally:
            self._lock.release()

    def resolving_here(self) -> bool:
        """Is this thread inside a batch now?  (Then a future's done-callbacks
        wait for the callback thread.)"""
        return self._resolver == threading.get_ident()

    def resolve_ready(self) -> None:
        """Resolve what has finished, if anything has and no other thread is
        at it (a submitter calls it, so results nobody waits for do not pile
        up in C memory)."""
        if self.core.ready:
            self.resolve(0)

    # ------------------------------------------------------ done-callbacks

    def call_soon(self, future: Future[object]) -> None:
        """Run `future`'s done-callbacks on the callback thread (started
        the first time), after those already queued."""
        with self._callbacks_due:
            self._callbacks.append(future)
            if self.callback_thread is not None:
                self._callbacks_due.notify()
                return
            self.callback_thread = self._start(self._run_callbacks, "callbacks")
            if self.callback_thread is not None:
                return
        self._run_callbacks_here()   # no thread can start any more (exit)

    def _callbacks_finished(self) -> bool:
        core = self.core
        return core.closed and (core.outstanding == 0 or self.abandoned)

    def _run_callbacks(self) -> None:
        due = self._callbacks
        while True:
            with self._callbacks_due:
                while not due:
                    if self._callbacks_finished():
                        self.callback_thread = None
                        return
                    self._callbacks_due.wait()
                future = due.popleft()
            try:
                Future._invoke_callbacks(future)  # type: ignore[attr-defined]  # logs errors
            except BaseException:   # SystemExit from a done-callback: keep going
                _LOGGER.exception("exception calling callback for %r", future)
            del future   # not kept (nor its result) while the thread waits

    def _run_callbacks_here(self) -> None:
        while True:
            with self._callbacks_due:
                if not self._callbacks:
                    return
                future = self._callbacks.popleft()
            Future._invoke_callbacks(future)  # type: ignore[attr-defined]

    def wake_callbacks(self) -> None:
        """Let an idle callback thread see that nothing more will come."""
        with self._callbacks_due:
            self._callbacks_due.notify()

    # ------------------------------------------------------ shutting down

    def close(self, resolve_later: bool = True) -> None:
        """No more submissions.  Results still due are resolved in the
        background (a thread that exits once every result is in), unless the
        program is exiting (resolve_later=False)."""
        self.core.close()
        if resolve_later and self.core.outstanding:
            self.need_thread()
        self.wake_callbacks()

    def join(self) -> None:
        """Wait for the resolver and callback threads to exit (after close()
        and once every result is in): every done-callback has run."""
        current = threading.current_thread()
        thread = self.thread
        if thread is not None and thread is not current:
            thread.join()
        self.wake_callbacks()
        thread = self.callback_thread
        if thread is not None and thread is not current:
            thread.join()


class LoopCompletions:
    """One event loop's Completions: its eventfd is watched by the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.core = _core.Completions(eventfd=True)
        self.fd = self.core.fileno()
        self.retiring = False
        self.timer: asyncio.TimerHandle | None = None
        loop.add_reader(self.fd, self.on_ready)

    def on_ready(self) -> None:
        resolved = self.core.resolve()
        if self.retiring and self.core.outstanding == 0:
            self._unwatch()
        elif resolved and self.timer is None:
            # Under load, workers may hold this loop's wake-ups for a batch
            # (Completions.hold): it then looks again when the window ends.
            window = self.core.hold()
            if window:
                self.timer = self.loop.call_later(window, self._window_ended)

    def _window_ended(self) -> None:
        self.timer = None
        self.on_ready()

    def retire(self) -> None:
        """At shutdown: stop watching once the last result is in."""
        self.retiring = True
        self.on_ready()

    def _unwatch(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.loop.remove_reader(self.fd)
        self.core.detach()

    def fail_orphans(self) -> None:
        """Fail the futures of a loop that closed with tasks still in flight
        (or of a pool shut down with results still due there)."""
        for future in self.core.detach():
            if not future.done():
                try:
                    future.set_exception(stop_error("loop closed"))
                except RuntimeError:  # the loop is closed: callbacks cannot be scheduled
                    pass
                # Nobody can await it any more: no "Future exception was never
                # retrieved" when it is collected (loop.run_in_executor's
                # futures are as quiet).
                if future.done() and not future.cancelled():
                    future.exception()
