"""Task functions for tests/test_coroutines.py (coroutine tasks in workers).

They travel to workers by module and name.  Coordination with the test is
through files in a directory the test passes (never timings): a task writes
``NAME.started`` when it begins, ``NAME.cancelled`` when CancelledError
reaches it, ``NAME.finished`` when it ran to the end; a test creates
``NAME.go`` (or a gate file) to let a task go on.
"""

import asyncio
import os
import time

LIMIT = 60.0  # no task here waits longer than this for the test


def mark(directory, name):
    with open(os.path.join(directory, name), "w") as f:
        f.write(str(os.getpid()))


def exists(directory, name):
    return os.path.exists(os.path.join(directory, name))


async def _await_file(directory, name, limit=LIMIT):
    deadline = time.monotonic() + limit
    while not exists(directory, name):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} never appeared")
        await asyncio.sleep(0.002)


# ------------------------------------------------------------ plain results


async def add(x, y, *, delay=0.0):
    await asyncio.sleep(delay)
    return x + y


async def echo(i):
    await asyncio.sleep(0)
    return i


async def no_await(x):
    return x * 2


def square(x):
    return x * x


def sync_add(x, y):
    return x + y


async def loop_name(_=None):
    return type(asyncio.get_running_loop()).__name__


async def loop_id(_=None):
    """Which worker (interpreter) and which loop ran this."""
    import _interpreters

    return _interpreters.get_current()[0], id(asyncio.get_running_loop())


def interp_id():
    import _interpreters

    return _interpreters.get_current()[0]


async def running_together(directory, name, expected, limit=LIMIT):
    """Count in and wait until `expected` tasks of this worker are inside at
    once (proves they run concurrently on one loop); return the peak seen."""
    global _inside
    _inside = globals().get("_inside", 0) + 1
    peak = _inside
    mark(directory, f"{name}.started")
    deadline = time.monotonic() + limit
    try:
        while _inside < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {_inside} of {expected} ran together")
            await asyncio.sleep(0.002)
            peak = max(peak, _inside)
        await asyncio.sleep(0.01)  # let the others see the peak too
        return max(peak, _inside)
    finally:
        _inside -= 1


# ------------------------------------------------------------ errors


class CoroError(Exception):
    def __init__(self, message, code):
        super().__init__(message, code)
        self.code = code


async def boom(message):
    await asyncio.sleep(0)
    raise CoroError(message, 42)  # BOOM-LINE


async def boom_after(directory, name, message):
    await _await_file(directory, f"{name}.go")
    raise ValueError(message)


# ------------------------------------------------------------ loops


class MarkedLoop(asyncio.SelectorEventLoop):
    """A loop class a test can recognize (proves the factory was used)."""


def marked_loop():
    return MarkedLoop()


def plain_loop():
    return asyncio.new_event_loop()


def failing_loop():
    raise OSError("no loop for you")


def uvloop_loop():
    """uvloop's loop, imported in the worker (a single-phase-init Cython
    module: it refuses to load in subinterpreters)."""
    import uvloop

    return uvloop.new_event_loop()


def import_error_text(module):
    """In a worker: None if `module` imports, else the error as text."""
    try:
        __import__(module)
    except BaseException as exc:  # noqa: BLE001 - any failure is the answer
        return f"{type(exc).__name__}: {exc}"
    return None


# ------------------------------------------------------------ loop-lived state

_state = {}


async def async_init_event(tag):
    """An async initializer that keeps an asyncio object in a module global."""
    _state["event"] = asyncio.Event()
    _state["loop"] = id(asyncio.get_running_loop())
    _state["tag"] = tag
    _state["init_runs"] = _state.get("init_runs", 0) + 1


def sync_init_event(tag):
    """A sync initializer: no loop runs yet, but an asyncio object made now
    binds to the worker's loop at its first wait and must keep working."""
    _state["event"] = asyncio.Event()
    _state["tag"] = tag
    _state["init_runs"] = _state.get("init_runs", 0) + 1


async def use_event():
    """Wait on the initializer's Event: the wait binds it to the running loop,
    so a task on any other loop later would get RuntimeError ("bound to a
    different event loop").  Also check the loop is the same one."""
    loop = asyncio.get_running_loop()
    assert _state.setdefault("loop", id(loop)) == id(loop), "a different loop"
    event = _state["event"]
    event.clear()
    loop.call_soon(event.set)
    await event.wait()
    return _state["tag"], _state["init_runs"]


# A per-worker connection to the test's loopback server.
_conn = {}


async def open_connection(host, port):
    """Async initializer: ONE connection per worker, kept in a module global."""
    reader, writer = await asyncio.open_connection(host, port)
    hello = await reader.readline()  # the server names the connection
    _conn["reader"], _conn["writer"] = reader, writer
    _conn["lock"] = asyncio.Lock()
    _conn["name"] = hello.decode().strip()


async def ask(message):
    """Send one request over this worker's connection; return (connection
    name, reply).  The lock keeps concurrent tasks' exchanges whole."""
    reader, writer = _conn["reader"], _conn["writer"]
    async with _conn["lock"]:
        writer.write(f"{message}\n".encode())
        await writer.drain()
        reply = await reader.readline()
    return _conn["name"], reply.decode().strip()


# ------------------------------------------------------------ cancellation


async def sleeper(directory, name, seconds=LIMIT):
    """Started -> sleeps; CancelledError at the sleep writes NAME.cancelled."""
    mark(directory, f"{name}.started")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        mark(directory, f"{name}.cancelled")
        raise
    mark(directory, f"{name}.finished")
    return name


async def forever(directory, name):
    mark(directory, f"{name}.started")
    try:
        while True:
            await asyncio.sleep(3600)
    except asyncio.CancelledError:
        mark(directory, f"{name}.cancelled")
        raise


async def computing(directory, name, limit=LIMIT):
    """CPU work between awaits: spins (never awaiting) until NAME.go exists,
    then awaits.  A cancel requested while it spins lands at that await."""
    mark(directory, f"{name}.started")
    deadline = time.monotonic() + limit
    spins = 0
    while not exists(directory, f"{name}.go"):
        spins += 1
        if time.monotonic() > deadline:
            mark(directory, f"{name}.timeout")
            return "timeout"
    mark(directory, f"{name}.computed")
    try:
        await asyncio.sleep(limit)
    except asyncio.CancelledError:
        mark(directory, f"{name}.cancelled")
        raise
    mark(directory, f"{name}.finished")
    return spins


async def gated(directory, name, gate="gate"):
    """Holds a coroutine slot (awaiting) until the gate file exists."""
    mark(directory, f"{name}.started")
    await _await_file(directory, gate)
    mark(directory, f"{name}.finished")
    return name


def sync_gated(directory, name, gate="gate"):
    """Holds a worker (no loop) until the gate file exists."""
    mark(directory, f"{name}.started")
    deadline = time.monotonic() + LIMIT
    while not exists(directory, gate):
        if time.monotonic() > deadline:
            raise TimeoutError(gate)
        time.sleep(0.002)
    mark(directory, f"{name}.finished")
    return name


def _rebuild_slow(directory, name):
    """Unpickled in the worker: signals, then waits for NAME.go, so the test
    can act while the task is taken but its coroutine has not started."""
    mark(directory, f"{name}.decoding")
    deadline = time.monotonic() + LIMIT
    while not exists(directory, f"{name}.go"):
        if time.monotonic() > deadline:
            break
        time.sleep(0.002)
    return SlowArg(directory, name)


class SlowArg:
    """An argument whose unpickling in the worker blocks until NAME.go."""

    def __init__(self, directory, name):
        self.directory = directory
        self.name = name

    def __reduce__(self):
        return _rebuild_slow, (self.directory, self.name)


async def sleeper_with_arg(arg, seconds=LIMIT):
    return await sleeper(arg.directory, arg.name, seconds)


# ------------------------------------------------------------ bad input


async def agen(n):
    for i in range(n):
        yield i

