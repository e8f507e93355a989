"""Task functions for the data-plane tests (tests/test_data_plane.py).

Workers import these by module and name, so they all live at module level.
Module globals here are per worker interpreter: each worker has its own copy
of this module.
"""

import queue
import time

from helpers_interp import current_interpreter_id

# ------------------------------------------------------------------ shared values

STATE = None       # set by the pool initializer, one per worker
_STASH = []        # views a task keeps beyond its own call


def worker_id():
    return current_interpreter_id()


def value_id(value):
    """The identity of the worker's copy, and which worker holds it."""
    return worker_id(), id(value)


def identity(x):
    return x


def type_name(x):
    return type(x).__qualname__


def echo_types(*args, **kwargs):
    """Types of what arrived, nested one level into containers."""

    def desc(x):
        if isinstance(x, (list, tuple)):
            return [type(i).__qualname__ for i in x]
        if isinstance(x, dict):
            return {k: type(v).__qualname__ for k, v in x.items()}
        return type(x).__qualname__

    return [desc(a) for a in args], {k: desc(v) for k, v in kwargs.items()}


def append_mark(lst, mark):
    """Mutate the worker's copy of a shared list; return (worker, copy)."""
    lst.append(mark)
    return worker_id(), list(lst)


def nested_ids(container):
    """id() of every value inside a list/tuple/dict of shared values."""
    if isinstance(container, dict):
        return worker_id(), {k: id(v) for k, v in container.items()}
    return worker_id(), [id(v) for v in container]


def init_state(value):
    global STATE
    STATE = {"init": value, "worker": worker_id()}


def combine(table, weights, key):
    """Uses two shared values plus per-worker state set by the initializer."""
    return STATE["init"], STATE["worker"] == worker_id(), table[key] * weights[key]


def sum_shared(value):
    return sum(value)


def block_on_file(path, timeout=60.0):
    """Occupy a worker until `path` exists."""
    import os

    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.002)
    return worker_id()


# ------------------------------------------------------------------ buffers


def view_info(view):
    return {
        "type": type(view).__qualname__,
        "format": view.format,
        "itemsize": view.itemsize,
        "len": len(view),
        "nbytes": view.nbytes,
        "readonly": view.readonly,
        "ndim": view.ndim,
        "items": view.tolist(),
    }


def fill(view, value):
    """Write every byte of the caller's buffer."""
    m = memoryview(view).cast("B")
    for i in range(len(m)):
        m[i] = value
    return len(m)


def scale(view, factor):
    """Multiply every item of a typed view in place ('d' arrays)."""
    for i in range(len(view)):
        view[i] = view[i] * factor
    return view.format


def try_write(view):
    try:
        view[0] = 1
    except Exception as exc:  # noqa: BLE001 - report what was raised
        return type(exc).__qualname__
    return None


def stash(view):
    _STASH.append(view)
    return len(_STASH)


def unstash():
    n = len(_STASH)
    _STASH.clear()
    return n


def first_byte(view):
    return view[0]


# ------------------------------------------------------------------ SharedBuffer


def sb_info(sb):
    return type(sb).__qualname__, len(sb), bytes(sb)


def sb_write(sb, index, value):
    sb[index] = value
    memoryview(sb)[index + 1] = value + 1
    return type(sb).__qualname__


def sb_make(size, value):
    import interpool

    sb = interpool.SharedBuffer(size)
    for i in range(size):
        sb[i] = value
    return sb


def sb_stash(sb):
    _STASH.append(sb)
    return len(_STASH)


# ------------------------------------------------------------------ queues


def q_get(q, timeout=60.0):
    return q.get(timeout=timeout)


def q_get_error(q, timeout=60.0):
    """The type name of the exception q.get() raises (None if it did not)."""
    try:
        q.get(timeout=timeout)
    except BaseException as exc:
        return type(exc).__name__
    return None


def q_put(q, item):
    q.put(item)
    return True


def q_ready_then_get(ready, q, timeout=60.0):
    """Tell the caller we are about to block, then block in get()."""
    ready.put("ready")
    return q.get(timeout=timeout)


def q_produce(q, n):
    """Put 0..n-1 into a (maybe bounded) queue; with a sentinel None at the end."""
    for i in range(n):
        q.put(i, timeout=60)
    q.put(None, timeout=60)
    return n


def q_stage(qin, qout, offset):
    """Pipeline stage: move items from qin to qout (adding offset) until None."""
    count = 0
    while True:
        item = qin.get(timeout=60)
        if item is None:
            qout.put(None, timeout=60)
            return count
        qout.put(item + offset, timeout=60)
        count += 1


def q_api(q):
    """Exercise the non-blocking and introspection API inside a worker."""
    out = [q.maxsize, q.qsize(), q.empty(), q.full()]
    q.put_nowait("a")
    try:
        q.put_nowait("b")
    except queue.Full:
        out.append("full")
    out.append(q.full())
    out.append(q.get_nowait())
    try:
        q.get_nowait()
    except queue.Empty:
        out.append("empty")
    try:
        q.get(timeout=0.01)
    except queue.Empty:
        out.append("empty-timeout")
    return out


def q_new(maxsize):
    import interpool

    q = interpool.Queue(maxsize)
    q.put("from-worker")
    return q


def q_in_container(box):
    box["q"].put(box["item"])
    box["qs"][0].put(box["item"] + 1)
    return type(box["q"]).__qualname__


def q_put_buffer(q, size, value):
    """Put a worker-owned bytearray into a queue (travels zero-copy)."""
    q.put(bytearray([value]) * size)
    return True


def q_get_and_fill(q, value):
    view = q.get(timeout=60)
    for i in range(len(view)):
        view[i] = value
    return type(view).__qualname__


def q_async_roundtrip(q_in, q_out, n):
    """A worker running an event loop: aget from one queue, aput into another."""
    import asyncio

    async def main():
        for _ in range(n):
            item = await q_in.aget()
            await q_out.aput(item * 2)
        return n

    return asyncio.run(main())


class Point:
    """Not a codec type: travels by pickle."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return type(other) is Point and (self.x, self.y) == (other.x, other.y)

    def __repr__(self):
        return f"Point({self.x}, {self.y})"
