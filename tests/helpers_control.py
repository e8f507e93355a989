"""Task functions for the control tests (stopping running work)."""

import os
import time


def touch(path):
    with open(path, "w"):
        pass


def spin_forever(finally_path=None, entered_path=None):
    """Pure Python that never ends, and swallows every Exception.  With
    entered_path, that file is made once the try block is entered (a stop
    that lands before it skips the finally block)."""
    try:
        if entered_path:
            touch(entered_path)
        n = 0
        while True:
            try:
                n += 1
                if n % 1000 == 0:
                    raise ValueError("caught and ignored")
            except Exception:
                pass
    finally:
        if finally_path:
            touch(finally_path)


def spin_until(seconds, started=None):
    """Busy for `seconds` (pure Python, no sleeping)."""
    if started:
        touch(started)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return seconds


def read_byte(fd, started=None):
    """Block in a C call (GIL released) until a byte arrives on fd (with
    `started`, that file is made just before)."""
    if started:
        touch(started)
    return os.read(fd, 1)


def read_byte_holding_gil(fd, started=None):
    """The same, but the C call holds the worker's GIL while it blocks (as
    a regex that backtracks for minutes does): nothing else runs in that
    interpreter, its control thread included."""
    import ctypes

    buf = ctypes.create_string_buffer(1)
    if started:
        touch(started)
    ctypes.PyDLL(None).read(fd, buf, 1)
    return buf.raw


def catastrophic(n):
    """A regex that backtracks 2**n times inside one C call."""
    import re

    return re.match(r"(a+)+$", "a" * n + "b") is not None


def spin_then(i, spins):
    """Spin for `spins` iterations, then return i (the interrupt storm)."""
    n = 0
    while n < spins:
        n += 1
    return i


def interpreter_id(*_):
    import _interpreters

    current = _interpreters.get_current()
    return current[0] if isinstance(current, tuple) else current


async def async_interpreter_id(*_):
    return interpreter_id()


init_value = None


def init(value):
    global init_value
    init_value = value


def wait_then_fail(q):
    """An initializer that fails when told to (through the Queue q)."""
    q.get(timeout=60)
    raise RuntimeError("the initializer failed on purpose")


def interpreter_and_init(*_):
    return interpreter_id(), init_value


async def nap_then(i, seconds):
    import asyncio

    await asyncio.sleep(seconds)
    return i


async def async_forever(started=None):
    import asyncio

    if started:
        touch(started)
    while True:
        await asyncio.sleep(3600)


async def note_start_then_wait(q):
    import asyncio

    q.put(1)
    await asyncio.sleep(3600)


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def square(x):
    return x * x


def nested_async_pool():
    """Runs in a worker: `async with Pool()` there too."""
    import asyncio

    import interpool

    async def main():
        async with interpool.Pool(1) as pool:
            return [await pool.run(square, i) for i in range(3)]

    return asyncio.run(main())
