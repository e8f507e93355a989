"""Queue: a channel between the caller and workers, sync and asyncio.

A worker that receives a Queue imports this module, so it imports neither
asyncio (until aget/aput wait) nor typing.  Type checkers read _queue.pyi,
where Queue is generic in its item type.
"""

from __future__ import annotations

from . import _core

# Not `from typing import ...`: typing costs every worker ~9 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# asyncio and queue are imported on first use: workers decode Queue
# arguments (and the output channel) into this class, and should not pay
# for asyncio unless they await.

__all__ = ["Queue"]


async def _readable(fd: int) -> None:
    import asyncio

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
    zero-copy); ``Queue[int]()`` is a queue of ints for type checkers.
    Pass the queue to tasks as an argument: each worker gets a
    Queue on the same channel.  ``put``/``get`` block (with ``block`` and
    ``timeout`` like ``queue.Queue``, raising ``queue.Full``/``queue.Empty``);
    ``await q.aput(item)``/``await q.aget()`` wait on the event loop.  No
    side polls: a waiter sleeps until a put (or get) wakes it.
    """

    __slots__ = ()

    # Queue[int] at run time too (types.GenericAlias, without importing types).
    __class_getitem__ = classmethod(type(list[int]))

    async def aget(self) -> object:
        """Remove and return an item, waiting on the event loop while empty."""
        import queue as _stdqueue

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

    async def aput(self, item: object) -> None:
        """Put item, waiting on the event loop while a bounded queue is full."""
        import queue as _stdqueue

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
