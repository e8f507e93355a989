"""Task functions for the interpool tests.

Workers import these by module and name (``helpers_tasks.<name>``), so they
all live at module level.  Workers cannot share Python objects with the test,
so coordination between a test and its tasks goes through files.
"""

import collections
import dataclasses
import os
import sys
import threading
import time

# ------------------------------------------------------------------ values


def identity(x):
    return x


def add(a, b=0, *, c=0):
    return a + b + c


def echo(*args, **kwargs):
    """Return exactly what arrived, so the test can compare both halves."""
    return args, kwargs


def type_name(x):
    return type(x).__qualname__


def sleep_then_return(seconds, value=None):
    time.sleep(seconds)
    return value


def cpu_bound(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def square(x):
    return x * x


@dataclasses.dataclass(frozen=True)
class Point:
    """A class used as the callable itself: submit(Point, 1, 2)."""

    x: int
    y: int


Pair = collections.namedtuple("Pair", "left right")


class Adder:
    """A picklable callable instance (travels pickled, not by name)."""

    def __init__(self, offset):
        self.offset = offset

    def __call__(self, x):
        return x + self.offset


class Multiplier:
    """Picklable module-level object; its bound method travels pickled."""

    def __init__(self, factor):
        self.factor = factor

    def apply(self, x):
        return self.factor * x


# ------------------------------------------------------------------ errors


class CustomError(Exception):
    pass


def raise_custom(message):
    raise CustomError(message)  # the raising line: checked in the traceback


class TwoArgError(Exception):
    """Pickles as TwoArgError(str) but __init__ needs two arguments, so it
    cannot be rebuilt in the caller."""

    def __init__(self, code, detail):
        super().__init__(f"code {code}: {detail}")
        self.code = code
        self.detail = detail


def raise_two_arg(code, detail):
    raise TwoArgError(code, detail)


def raise_system_exit(code):
    raise SystemExit(code)


def raise_keyboard_interrupt():
    raise KeyboardInterrupt("from a task")


def raise_on(value, bad):
    """identity, except that `bad` raises CustomError."""
    if value == bad:
        raise CustomError(f"bad item {value}")
    return value


def return_lock():
    return threading.Lock()


def return_generator():
    return (i for i in range(3))


def nested_function():
    def inner():
        return 1

    return inner


# ---------------------------------------------------- per-worker identity


def interpreter_id():
    from helpers_interp import current_interpreter_id

    return current_interpreter_id()


def worker_identity():
    """(interpreter id, thread id, id of sys.modules): distinct per worker."""
    from helpers_interp import current_interpreter_id

    return current_interpreter_id(), threading.get_ident(), id(sys.modules)


def interpreter_id_for(item):
    return item, interpreter_id()


def main_module_name():
    return sys.modules["__main__"].__name__


INIT_VALUE = None
INIT_CALLS = 0


def init_worker(value, extra=None):
    global INIT_VALUE, INIT_CALLS
    INIT_CALLS += 1
    INIT_VALUE = (value, extra)


def init_state():
    return interpreter_id(), INIT_CALLS, INIT_VALUE


def init_state_after(seconds):
    time.sleep(seconds)
    return init_state()


def failing_initializer(message):
    raise CustomError(message)


def failing_initializer_after(release, message):
    """Block until `release` exists, then fail: tasks submitted meanwhile
    are certainly still queued when the pool breaks."""
    wait_for_path(release)
    raise CustomError(message)


# ----------------------------------------------- coordination through files


def wait_for_path(path, timeout=60.0):
    """Poll until `path` exists; True if it did before the timeout."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def touch(path, value=None):
    with open(path, "a"):
        pass
    return value


def signal_and_wait(started, release, value=None, timeout=60.0):
    """Create `started`, then block until `release` exists; return value."""
    touch(started)
    if not wait_for_path(release, timeout):
        raise TimeoutError(f"{release} never appeared")
    return value


def barrier(directory, parties, token, timeout=60.0):
    """Arrive at a file barrier in `directory` and wait for `parties` arrivals.

    Only tasks that run at the same time can all pass it; returns the
    interpreter id, or raises TimeoutError if the others never came.
    """
    touch(os.path.join(directory, f"arrived-{token}"))
    deadline = time.monotonic() + timeout
    while sum(name.startswith("arrived-") for name in os.listdir(directory)) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError("the other parties never arrived")
        time.sleep(0.002)
    return interpreter_id()


# ------------------------------------------------ results the caller can't rebuild


def return_ghost(*_ignored):
    """An instance of a class from a module that exists only in this worker:
    it pickles here but cannot be unpickled by the caller."""
    import types

    module = sys.modules.get("helpers_ghost_module")
    if module is None:
        module = types.ModuleType("helpers_ghost_module")
        exec("class Ghost:\n    pass\n", module.__dict__)
        sys.modules["helpers_ghost_module"] = module
    return module.Ghost()


def raise_ghost_error(message):
    """An exception whose class exists only in this worker."""
    import types

    module = sys.modules.get("helpers_ghost_errors")
    if module is None:
        module = types.ModuleType("helpers_ghost_errors")
        sys.modules["helpers_ghost_errors"] = module
        exec("class GhostError(Exception):\n    pass\n", module.__dict__)
    raise module.GhostError(message)


class LockedError(Exception):
    """Cannot be pickled in the worker: it holds a lock."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


def raise_locked(message):
    raise LockedError(message)


# ------------------------------------------------ a result whose rebuilding waits

# The caller-side future the rebuild waits for (set by the test).
AWAITED = []


def rebuild_after_awaited():
    """Runs in the caller while the result is decoded: waits for another
    future first (Python code in a decoding hook, as a custom __setstate__
    or __reduce__ may run)."""
    return ("rebuilt", AWAITED[0].result(30))


class WaitsWhenRebuilt:
    def __reduce__(self):
        return (rebuild_after_awaited, ())


def return_waits_when_rebuilt():
    return WaitsWhenRebuilt()


# The next rebuild raises KeyboardInterrupt while this holds an item (the
# test sets it): Ctrl-C landing in a decoding hook.
INTERRUPT_ONCE = []


def rebuild_interrupted_once():
    if INTERRUPT_ONCE:
        INTERRUPT_ONCE.pop()
        raise KeyboardInterrupt
    return "rebuilt"


class InterruptedWhenRebuilt:
    def __reduce__(self):
        return (rebuild_interrupted_once, ())


def return_interrupted_when_rebuilt(*_ignored):
    return InterruptedWhenRebuilt()


def make_bytes(size):
    """A result of `size` bytes made in the worker (memory tests)."""
    return b"x" * size
