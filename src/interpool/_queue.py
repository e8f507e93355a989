"""Queue: a channel between the caller and workers, sync and asyncio."""

from __future__ import annotations

import asyncio
import queue as _stdqueue
from typing import Any

from . import _core

__all__ = ["Queue"]


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


class Queue(_core.Queue):
    """A FIFO channel that the caller and every worker can put to and get from.

    ``Queue(maxsize=0)``: items are any codec value (buffers travel
    zero-copy).  Pass the queue to tasks as an argument: each worker gets a
    Queue on the same channel.  ``put``/``get`` block (with ``block`` and
    ``timeout`` like ``queue.Queue``, raising ``queue.Full``/``queue.Empty``);
    ``await q.aput(item)``/``await q.aget()`` wait on the event loop.  No
    side polls: a waiter sleeps until a put (or get) wakes it.
    """

    __slots__ = ()

    async def aget(self) -> Any:
        """Remove and return an item, waiting on the event loop while empty."""
        while True:
            try:
                return self.get_nowait()
            except _stdqueue.Empty:
                pass
            fd = self._add_waiter(False)
            if fd < 0:
                continue
            try:
                await _readable(fd)
            finally:
                self._remove_waiter(fd)

    async def aput(self, item: Any) -> None:
        """Put item, waiting on the event loop while a bounded queue is full."""
        while True:
            try:
                return self.put_nowait(item)
            except _stdqueue.Full:
                pass
            fd = self._add_waiter(True)
            if fd < 0:
                continue
            try:
                await _readable(fd)
            finally:
                self._remove_waiter(fd)

    def __repr__(self) -> str:
        return f"<interpool.Queue maxsize={self.maxsize} qsize={self.qsize()}>"
