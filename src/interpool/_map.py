"""How a map's input reaches the workers, and its results the consumer.

``Pool.map`` takes its whole input at the call, as ``Executor.map`` does,
and every item runs even if nobody reads the results.  Only the *encoding*
goes a window at a time (so a long map of large arguments is not held twice
in memory): the call encodes and queues the first window, and the pool's
feeder thread encodes the next batch whenever the workers have taken half
of what is queued.  It knows when by a marker task (``int()``) queued in the
middle of each batch: a worker that takes the marker has taken everything
before it, and its result wakes the feeder.  The consumer never feeds, so a
map nobody iterates (or whose pool is shut down) still runs to the end.

With ``buffersize`` the stdlib's lazy contract holds instead: the call
submits ``buffersize`` tasks, and each result consumed submits one more.

The results wait, encoded in C memory, for the iterator; when the iterator
is dropped before it was started (nobody can read them) they are freed as
they arrive; a started iterator that is closed or dropped cancels the tasks
not yet started, as the stdlib's does.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from . import _core
from ._errors import stop_error

# Encoded payloads a map keeps queued (no buffersize): enough to keep
# every worker busy, bounded in count and bytes however long the input.
WINDOW = 1024
WINDOW_BYTES = 4 * 1024 * 1024
# The first batch, before the size of an encoded item is known.
_FIRST_BATCH = 64


class MapRun:
    """The tasks of one map call: how many were submitted and consumed,
    and (for a map without buffersize) the input not yet submitted."""

    __slots__ = ("core", "fn_id", "chunked", "completions", "submitted", "consumed", "total",
                 "error", "items", "lazy", "window", "window_bytes", "taken", "marker_at",
                 "item_bytes", "lock", "token", "feeder", "_watch", "detour", "__weakref__")

    def __init__(self, core: Any, fn_id: int, chunked: bool, tasks: list[Any] | Iterator[Any],
                 buffersize: int | None) -> None:
        self.core, self.fn_id, self.chunked = core, fn_id, chunked
        self.completions = _core.Completions()
        self.submitted = self.consumed = 0
        self.error: tuple[int, BaseException] | None = None   # (index, exception): see feed_error
        self.lock = threading.Lock()   # the feeder and shutdown refill concurrently
        self.token = -1
        self.feeder: MapFeeder | None = None
        self.taken = self.marker_at = 0
        self.item_bytes = 0.0
        self._watch: Any = None
        self.detour: Any = None   # a pool with a fallback: _fallback.MapDetour
        if buffersize is None:
            assert isinstance(tasks, list)
            self.items: list[Any] | None = tasks
            self.lazy: Iterator[Any] | None = None
            self.total: int | None = len(tasks)
            self.window, self.window_bytes = WINDOW, WINDOW_BYTES
        else:
            self.items, self.lazy, self.total = None, iter(tasks), None
            self.window, self.window_bytes = buffersize, 0

    # ------------------------------------------------------ the consumer's side

    def watch(self, results: Iterator[Any]) -> None:
        """Free the results on arrival once `results` (the iterator handed
        to the caller) is gone.  (The callback refers to the completions
        only: no cycle through this object.)"""
        completions = self.completions
        detour = self.detour
        if detour is None:
            self._watch = weakref.ref(results, lambda _ref: completions.detach())
        else:   # the refused items must still reach the fallback
            run = weakref.ref(self)
            self._watch = weakref.ref(results, lambda _ref: detour.orphan(run))

    def more(self) -> bool:
        """Are results still due to the consumer?"""
        if self.total is not None:
            return self.consumed < self.total
        return self.consumed < self.submitted or self.read_more()

    def check_error(self) -> None:
        """Raise the error that ended the feeding, once every result before
        it has been consumed (where the stdlib would raise it)."""
        if self.error is not None and self.consumed >= self.error[0]:
            raise self.error[1]

    def stop(self) -> None:
        """The consumer left early: feed nothing more, cancel what is queued."""
        with self.lock:
            self.items = None
        if self.feeder is not None:
            self.feeder.discard(self)
        self.core.cancel_queued(self.completions)

    # ------------------------------------------- lazy input (with buffersize)

    def read_more(self) -> bool:
        """Submit input while fewer than `buffersize` tasks are in flight;
        True if any are in flight now.  The consumer's thread only: reading
        the input may raise, to the consumer, as with the stdlib."""
        if self.lazy is not None:
            room = self.window - (self.submitted - self.consumed)
            if room > 0:
                items = list(itertools.islice(self.lazy, room))
                if len(items) < room:
                    self.lazy = None
                if items:
                    self._submit(items)
        return self.submitted > self.consumed

    # --------------------------------------- whole input (without buffersize)

    def refill(self, marker_back: bool = False, first: bool = False) -> bool:
        """Queue more of the input while the window has room, the second
        half of the batch after a marker; True if input is left (a marker
        is then out).  `marker_back`: the last marker was taken, so was
        everything before it.  An item that cannot travel (or a pool that
        refuses) ends the feeding there, or raises if the `first` call has
        queued nothing yet (then nothing runs)."""
        feeder = self.feeder
        assert feeder is not None
        with self.lock:
            items = self.items
            if items is None:
                return False
            if marker_back:
                self.taken = self.marker_at
            total = len(items)
            while True:
                queued = self.submitted - self.taken
                room = self.window - queued
                if self.item_bytes == 0:   # the size of an item is not known yet
                    room = min(room, _FIRST_BATCH)
                else:
                    room = min(room, int((self.window_bytes - queued * self.item_bytes)
                                         // self.item_bytes))
                    # Large items: still two per worker, so none waits for the feeder.
                    room = max(room, 2 * feeder.workers - queued)
                start = self.submitted
                end = min(total, start + max(1, room))
                # The marker goes where half of what will be queued is behind it.
                split = max(start, end - (queued + end - start) // 2)
                known = self.item_bytes > 0
                try:
                    if known and end < total:
                        self._submit(items[start:split])
                        self.marker_at = split
                        feeder.place_marker(self)
                        self._submit(items[split:end])
                    else:
                        self._submit(items[start:end])
                except Exception as exc:
                    if first and self.submitted == 0:
                        self.items = None
                        raise
                    self._feed_failed(items, end, exc)
                    return False
                if end >= total:
                    self.items = None
                    return False
                if known:
                    return True
                first = False   # the first batch is in: its size sizes the rest

    def flush(self) -> None:
        """Queue all the input left now (the pool is about to stop)."""
        with self.lock:
            items, self.items = self.items, None
            if items is None:
                return
            try:
                for start in range(self.submitted, len(items), self.window):
                    self._submit(items[start:start + self.window])
            except Exception as exc:
                self._feed_failed(items, len(items), exc)

    def drop(self) -> None:
        """The pool drops its queued work: so is the input not queued yet."""
        with self.lock:
            if self.items is not None:
                self.items = None
                self._fail_at(self.submitted, stop_error())

    def _submit(self, items: list[Any]) -> None:
        if items:
            nbytes = (self.core.submit_many(self.fn_id, items, self.completions, self.submitted,
                                            self.chunked) if self.detour is None
                      else self.detour.send(items, self.submitted))
            self.submitted += len(items)
            self.item_bytes = max(nbytes / len(items), 1.0)   # the latest batch's average

    def _feed_failed(self, items: list[Any], end: int, exc: Exception) -> None:
        """A batch could not be queued: queue its items one by one up to
        the first that fails, which ends the feeding there."""
        self.items = None
        for start in range(self.submitted, end):
            try:
                self._submit(items[start:start + 1])
            except Exception as item_exc:
                exc = item_exc
                break
        self._fail_at(self.submitted, exc)

    def fail(self, exc: BaseException) -> None:
        """End the feeding with `exc`, raised where the next item would be."""
        with self.lock:
            self.items = None
            self._fail_at(self.submitted, exc)

    def _fail_at(self, index: int, exc: BaseException) -> None:
        self.error = (index, exc)
        self.completions.close()   # a consumer waiting with nothing in flight wakes


class MapFeeder:
    """A pool's feeder: one thread, started when a map has more input than
    its first window, that queues the rest as the workers take tasks."""

    def __init__(self, core: Any, marker_id: int, name: str, workers: int) -> None:
        self.core = core
        self.marker_id = marker_id
        self.name = name
        self.workers = workers
        self.completions = _core.Completions()   # where the markers come back
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)   # no map has input left
        self.runs: dict[int, MapRun] = {}
        self.tokens = itertools.count()
        self.thread: threading.Thread | None = None

    def start(self, run: MapRun) -> None:
        """Queue the first window of `run` (in the caller's thread: errors
        in it raise there) and feed the rest from the feeder's thread."""
        with self.lock:
            run.token = next(self.tokens)
            run.feeder = self
            self.runs[run.token] = run
        try:
            more = run.refill(first=True)
        except BaseException:
            self.discard(run)
            raise
        if not more:
            self.discard(run)
            return
        with self.lock:
            if self.thread is None:
                thread = threading.Thread(target=self._run, name=f"{self.name}-map-feeder")
                thread.start()   # (not a daemon: subinterpreters refuse those)
                self.thread = thread

    def place_marker(self, run: MapRun) -> None:
        self.core.submit_many(self.marker_id, [()], self.completions, run.token)

    def discard(self, run: MapRun) -> None:
        with self.lock:
            if self.runs.pop(run.token, None) is not None and not self.runs:
                self.idle.notify_all()

    def _run(self) -> None:
        completions = self.completions
        while True:
            with self.lock:
                # A map with input left has a marker out (start() places the
                # first before it looks for this thread).
                if completions.outstanding == 0:
                    self.thread = None
                    return
            completions.wait(None)
            for token, _ok, _value in completions.drain():
                run = self.runs.get(token)
                if run is None:
                    continue   # stopped, flushed or dropped meanwhile
                try:
                    more = run.refill(marker_back=True)
                except BaseException as exc:   # (SystemExit from encoding): that map ends there
                    run.fail(exc)
                    more = False
                if not more:
                    self.discard(run)

    def wait_fed(self) -> None:
        """Block until every map's input is queued (Ctrl-C ends the wait)."""
        with self.lock:
            while self.runs:
                self.idle.wait()

    def finish(self, cancel: bool) -> None:
        """The pool stops: queue every map's input left now (the workers
        finish the queue), or with `cancel` drop it."""
        with self.lock:
            runs = list(self.runs.values())
        for run in runs:
            if cancel:
                run.drop()
            else:
                run.flush()
            self.discard(run)

    def join(self) -> None:
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
