"""Type stub of _queue: Queue is generic in its item type (``Queue[int]()``).

The module itself stays free of typing at run time: workers that receive a
Queue import it.
"""

from typing import TypeVar

from . import _core

__all__ = ["Queue"]

_T = TypeVar("_T")

class Queue(_core.Queue[_T]):
    """A FIFO channel that the caller and every worker can put to and get from.

    ``Queue[T](maxsize=0)``: items are any codec value (buffers travel
    zero-copy); ``T`` is the item type for type checkers.  Pass the queue to
    tasks as an argument: each worker gets a Queue on the same channel.
    ``put``/``get`` block (with ``block`` and ``timeout`` like
    ``queue.Queue``, raising ``queue.Full``/``queue.Empty``);
    ``await q.aput(item)``/``await q.aget()`` wait on the event loop.
    """

    async def aget(self) -> _T:
        """Remove and return an item, waiting on the event loop while empty."""

    async def aput(self, item: _T) -> None:
        """Put item, waiting on the event loop while a bounded queue is full."""
