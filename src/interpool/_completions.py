"""Where a pool's results reach the caller: one Completions (C) per
consumer, resolved in batches.

- ThreadCompletions: the sync futures of one pool, resolved by the thread
  that waits for one (result()), or by a background thread once a
  done-callback or wait()/as_completed() needs one.  A done-callback may
  wait for another future of the same pool: it resolves that one itself.
- LoopCompletions: the asyncio futures of one event loop; its eventfd is
  watched by the loop, and each wake-up resolves every finished future of
  that loop in one C call.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from concurrent.futures import Future

from . import _core
from ._errors import stop_error
from ._futures import cancel_future


# Where concurrent.futures logs a failing done-callback.
_LOGGER = logging.getLogger("concurrent.futures")

# The result threads alive, so that the exit can release them (abandon_all).
_live: weakref.WeakSet[ThreadCompletions] = weakref.WeakSet()


def abandon_all() -> None:
    """At exit, once every worker has exited (or been left running after
    a second Ctrl-C): resolve what has arrived, then detach, which wakes
    each result thread for good, and fail the futures whose result never
    came.  A non-daemon result thread would otherwise keep the interpreter
    waiting for a result that was lost (it is joined before finalization).
    Every completions is detached even if a callback raises (Ctrl-C, say);
    the first such exception is raised at the end."""
    stop: BaseException | None = None
    for completions in list(_live):
        completions.abandoned = True
        try:
            completions.resolve(timeout=1.0)   # a callback of its thread may be stuck
        except BaseException as exc:
            stop = stop or exc
        for future in completions.core.detach():
            try:
                if not future.done():
                    future.set_exception(stop_error())
            except BaseException as exc:
                stop = stop or exc
    if stop is not None:
        raise stop


class ThreadCompletions:
    """The Completions that a pool's sync futures are resolved through.

    Callers resolve them themselves (TaskFuture.result); a thread that
    resolves in the background starts only when needed (need_thread)."""

    def __init__(self, name: str) -> None:
        # The batch asks each future Future.done(): TaskFuture.done() resolves.
        self.core = _core.Completions(on_cancelled=cancel_future, owner_done=Future.done)
        self._lock = threading.RLock()   # batches never overlap; a callback may resolve
        self._name = name
        self._thread_lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self._resolver = 0   # the thread resolving a batch now (0: none)
        self.abandoned = False

    def need_thread(self) -> None:
        """Resolve in the background from now on: done-callbacks and
        wait()/as_completed() need it when no caller waits."""
        if self.thread is None:
            with self._thread_lock:
                if self.thread is None:
                    # Not a daemon: CPython forbids daemon threads in isolated
                    # subinterpreters, and the exit hook closes the completions first.
                    thread = threading.Thread(target=self._run, name=f"{self._name}-results")
                    _live.add(self)   # before it starts: abandon_all() must see it
                    try:
                        thread.start()
                    except RuntimeError:  # the interpreter is shutting down
                        _live.discard(self)
                        return
                    self.thread = thread

    def _run(self) -> None:
        core = self.core
        while True:
            # Woken by a result, by the last outstanding one being taken
            # elsewhere, or by abandon_all() detaching it; the timeout only
            # re-checks, in case a count was lost.
            core.wait(5.0)
            try:
                self.resolve()
            except BaseException:   # SystemExit from a done-callback: keep resolving
                _LOGGER.exception("exception calling callback")
            if core.closed and (core.outstanding == 0 or self.abandoned):
                return

    def resolve(self, timeout: float = -1) -> None:
        """Resolve whatever has finished (any thread; batches never overlap).
        With a timeout, give up if another thread's batch lasts longer."""
        if not self._lock.acquire(timeout=timeout):
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
        """Is this thread inside a batch now?  (A done-callback that asks
        other futures done() must not go on with the batch from there: a
        callback per future doing so would nest once per future.  One that
        waits for another future's result does go on with it.)"""
        return self._resolver == threading.get_ident()

    def resolve_ready(self) -> None:
        """Resolve what has finished, if anything has (a submitter calls it,
        so results nobody waits for do not pile up in C memory)."""
        if self.core.ready:
            self.resolve()

    def close(self, resolve_later: bool = True) -> None:
        """No more submissions.  Results still due are resolved in the
        background (a thread that exits once every result is in), unless the
        program is exiting (resolve_later=False)."""
        self.core.close()
        if resolve_later and self.core.outstanding:
            self.need_thread()


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
