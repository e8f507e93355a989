"""Caller side: where workers' forwarded output and log records land.

One channel per process (made on first use), shared by the workers of
every pool that forwards.  A daemon thread writes whatever arrives to the
main interpreter's sys.stdout / sys.stderr *as they are at that moment*
(so contextlib.redirect_stdout, pytest's capture and notebooks see it) and
hands log records to ``logging.getLogger(name).handle(record)`` when that
logger's level allows them.  Before results are resolved, the C core calls
``drain()`` (hook drain_output): a task's output is written before its
future resolves.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from . import _core

_lock = threading.RLock()      # writing is serialized: whole items, in order (reentrant: a log
                               # handler may wait for a result, which drains again)
_channel: Any = None
_thread: threading.Thread | None = None
# Bounded: when the caller cannot keep up (its stdout blocks), printing
# workers wait, as threads writing to a blocked stdout would.
CHANNEL_SIZE = 4096


def channel() -> Any:
    """The process's forwarding channel; starts the writer on first use.

    None where the writer cannot run: an interpreter that refuses daemon
    threads (a pool made inside a stdlib subinterpreter).  Its workers then
    write to the process's file descriptors directly, as before forwarding.
    """
    global _channel, _thread
    if _channel is not None:
        return _channel
    with _lock:
        if _channel is None:
            chan = _core.Queue(CHANNEL_SIZE)
            try:
                thread = threading.Thread(target=_run, args=(chan,), name="interpool-output",
                                          daemon=True)
            except RuntimeError:
                return None
            thread.start()
            _thread = thread
            _channel = chan
            _core._set_output_drain(chan)
            import atexit

            atexit.register(drain)   # after pools stopped (they stop earlier, in threading's exit)
    return _channel


def _run(chan: Any) -> None:
    import select

    while True:
        fd = chan._add_waiter(False)
        if fd >= 0:
            try:
                select.select([fd], [], [])
            except (OSError, ValueError):
                pass
            finally:
                chan._remove_waiter(fd)
        # Said before taking an item: a batch resolved meanwhile waits for
        # what this thread took (the C core skips the drain hook otherwise).
        _core._output_writing(True)
        try:
            drain()
        finally:
            _core._output_writing(False)


def drain() -> None:
    """Write out (and hand to logging) everything on the channel now."""
    chan = _channel
    if chan is None:
        return
    import queue

    with _lock:
        while True:
            if chan.empty():   # the common case at every batch: no exception raised
                return
            try:
                item = chan.get_nowait()
            except queue.Empty:
                return
            try:
                _deliver(item)
            except Exception:
                pass  # a closed or failing stream: the output is lost, not the pool


def deliver(item: tuple) -> None:
    """Write out one item forwarded from elsewhere (a pool's fallback
    process), in turn with the channel's."""
    with _lock:
        try:
            _deliver(item)
        except Exception:
            pass  # a closed or failing stream: the output is lost, not the pool


def _deliver(item: tuple) -> None:
    kind, payload = item
    if kind == "log":
        import logging

        record = logging.makeLogRecord(payload)
        logger = logging.getLogger(record.name) if record.name != "root" else logging.getLogger()
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)
        return
    stream = sys.stdout if kind == "out" else sys.stderr
    if stream is not None:
        stream.write(payload)
