"""A fallback worker process (``Pool(fallback="processes")``), child side.

interpool._fallback_workers starts it with ``python -c`` and talks to it
over one socket (multiprocessing's framed Connection).  It loads functions
as a worker interpreter does (interpool._loading: by reference, by value,
pickled; the caller's __main__ as __mp_main__), with the C extensions that
refuse subinterpreters importable here, runs one call at a time, and sends
back, in order, what the call printed or logged (as worker interpreters
forward it) and then its result or its packed exception.

Messages from the parent: the config (first), ``("fn", fid, ref)``,
``("call", job, fid, ref, chunked)`` followed by a frame with the pickled
``(args, kwargs)``, ``("exit",)``.  To the parent: ``("item", item)``
(forwarded output or a log record), ``("done", job, ok)`` followed by a
frame with the pickled result (or packed exception), ``("broken", text)``
(the initializer raised; the process then exits).

SIGINT is ignored here: Ctrl-C is the caller's to handle, and the pool
stops its processes itself (it kills a process whose task must stop).  The
process dies with the thread that started it (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
from typing import Any


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except Exception:
        pass
    if os.getppid() != parent:   # the parent died before the line above
        os._exit(1)


class _Channel:
    """What worker-side forwarding puts output and log records on
    (interpool._worker_output): here, messages to the parent."""

    def __init__(self, conn: Any, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def put(self, item: Any) -> None:
        with self._lock:
            self._conn.send(("item", item))


class _Child:
    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = threading.Lock()   # task threads may print while a result goes out
        self.refs: dict[int, object] = {}
        self.loaded: dict[int, object] = {}
        self.loop: Any = None

    def send(self, header: tuple[Any, ...], payload: bytes | None = None) -> None:
        with self.lock:
            self.conn.send(header)
            if payload is not None:
                self.conn.send_bytes(payload)

    def flush_output(self) -> None:
        output = sys.modules.get("interpool._worker_output")
        if output is not None:
            output.flush()

    def callable(self, fid: int | None, ref: Any) -> Any:
        from ._loading import load_callable

        if fid is None:   # travels with each call (pickled: its state is current)
            return load_callable(ref)
        fn = self.loaded.get(fid)
        if fn is None:
            fn = self.loaded[fid] = load_callable(self.refs[fid])
        return fn

    def await_result(self, value: Any) -> Any:
        """An ``async def`` task's coroutine runs on this process's loop."""
        import inspect

        if not inspect.iscoroutine(value):
            return value
        if self.loop is None:
            import asyncio

            self.loop = asyncio.new_event_loop()
        return self.loop.run_until_complete(value)

    def call(self, fid: int | None, ref: Any, chunked: bool, payload: bytes) -> tuple[bool, bytes]:
        from . import _remote

        try:
            fn = self.callable(fid, ref)
            args, kwargs = pickle.loads(payload)
            if chunked:
                result = [self.await_result(fn(*a)) for a in args]
            else:
                result = self.await_result(fn(*args, **(kwargs or {})))
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: the task's, as in a worker
            return False, _packed(_remote.pack_exception(exc))
        finally:
            self.flush_output()
        try:
            return True, pickle.dumps(result, 5)
        except Exception as exc:
            err = TypeError(f"cannot send a value of type {type(result).__name__} back from "
                            f"a fallback process: {exc}")
            return False, _packed(_remote.pack_exception(err))

    def serve(self) -> None:
        conn = self.conn
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            kind = msg[0]
            if kind == "call":
                _, job, fid, ref, chunked = msg
                payload = conn.recv_bytes()
                ok, data = self.call(fid, ref, chunked, payload)
                self.send(("done", job, ok), data)
            elif kind == "fn":
                self.refs[msg[1]] = msg[2]
            elif kind == "exit":
                return


def _packed(packed: tuple[Any, ...]) -> bytes:
    return pickle.dumps(packed, 5)


def main(fd: int, parent: int) -> None:
    """The process's life: set up as the pool's workers are, run the
    initializer, then serve calls until told to exit (or the parent goes)."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from multiprocessing.connection import Connection

    conn = Connection(fd)
    config = conn.recv()
    sys.path[:] = config["sys_path"]
    child = _Child(conn)
    from . import _loading

    setup = dict(config["setup"])
    if setup.pop("forward", False):
        setup["output"] = _Channel(conn, child.lock)
    _loading.worker_setup(setup, config["index"])
    init = config.get("init")
    if init is not None:
        fid_ref, prefix, initargs = init
        try:
            fn = _loading.load_callable(fid_ref)
            child.await_result(fn(*prefix, *pickle.loads(initargs)))
        except BaseException as exc:
            import traceback

            child.flush_output()
            child.send(("broken", "".join(traceback.format_exception(exc))))
            return
        finally:
            child.flush_output()
    try:
        child.serve()
    finally:
        child.flush_output()
        if child.loop is not None:
            child.loop.close()
