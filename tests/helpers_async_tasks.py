"""Task functions for the asyncio and executor tests.

Workers import these by module and name (``helpers_async_tasks.<name>``), so
they all live at module level.  A worker cannot share Python objects with the
test, so coordination between a test and its tasks goes through files.
"""

import contextvars
import os
import threading
import time

# ------------------------------------------------------------------ values


def ident(x):
    return x


def add(a, b=0, *, c=0):
    return a + b + c


def square(x):
    return x * x


def sleep_return(seconds, value=None):
    time.sleep(seconds)
    return value


def interp_id(*_ignored):
    from helpers_interp import current_interpreter_id

    return current_interpreter_id()


def tagged(x):
    """(interpreter id, x * 2): where the call ran, and its result."""
    return interp_id(), x * 2


# ------------------------------------------------------------------ errors


class AsyncTaskError(Exception):
    pass


def boom(message):
    raise AsyncTaskError(message)  # BOOM-LINE: the tests look for this line number


class NeedsTwoArgs(Exception):
    """Pickles as NeedsTwoArgs(str) but __init__ needs two arguments: it
    cannot be rebuilt in the caller."""

    def __init__(self, code, detail):
        super().__init__(f"code {code}: {detail}")
        self.code = code
        self.detail = detail


def raise_needs_two_args(code, detail):
    raise NeedsTwoArgs(code, detail)


class HoldsLock(Exception):
    """Cannot even be pickled in the worker: it holds a lock."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


def raise_holds_lock(message):
    raise HoldsLock(message)


def fail_on(value, bad):
    """identity, except that `bad` raises AsyncTaskError."""
    if value == bad:
        raise AsyncTaskError(f"bad item {value}")
    return value


# ----------------------------------------------- coordination through files


def wait_for_path(path, timeout=30.0):
    """Poll until `path` exists; True if it did before the timeout."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def square_when(path, x, then=None, timeout=30.0):
    """x * x once `path` exists (then creates the file `then`, if given)."""
    assert wait_for_path(path, timeout), f"{path} never appeared"
    if then is not None:
        touch(then)
    return x * x


async def asquare_when(path, x, then=None, timeout=30.0):
    """square_when, as a coroutine that awaits while it polls."""
    import asyncio

    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.005)
    if then is not None:
        touch(then)
    return x * x


def touch(path, value=None):
    with open(path, "a"):
        pass
    return value


def block(started, release, value=None, done=None, timeout=30.0):
    """Create `started`, block until `release` exists, create `done` (if
    given) and return value.  Raises TimeoutError if never released, so a
    test that fails to release fails instead of hanging."""
    touch(started)
    if not wait_for_path(release, timeout):
        raise TimeoutError(f"{release} never appeared")
    if done is not None:
        touch(done)
    return value


def mark(directory, item, release=None):
    """Write marker `directory/ran-<item>`; for item > 0 first create
    `directory/started-<item>` and wait for `release` (when given).
    Returns item."""
    if release is not None and item > 0:
        touch(os.path.join(directory, f"started-{item}"))
        if not wait_for_path(release):
            raise TimeoutError(f"{release} never appeared")
    touch(os.path.join(directory, f"ran-{item}"))
    return item


def mark_stoppable(directory, item, release=None):
    """mark(), and `directory/stopped-<item>` if it is stopped while it
    waits (interpool.TaskInterrupted)."""
    import interpool

    try:
        return mark(directory, item, release)
    except interpool.TaskInterrupted:
        touch(os.path.join(directory, f"stopped-{item}"))
        raise


def sleep_mark(path, seconds, value=None):
    """Sleep, then write marker `path` (to detect whether a task ever ran)."""
    time.sleep(seconds)
    touch(path)
    return value


# --------------------------------------------- per-interpreter/thread state

INIT_CALLS = 0
INIT_THREADS = []  # thread idents the initializer ran on (this interpreter)
_init_lock = threading.Lock()


def counting_init(tag):
    global INIT_CALLS
    with _init_lock:
        INIT_CALLS += 1
        INIT_THREADS.append((tag, threading.get_ident()))


def init_report(x):
    """(interpreter id, thread ident, INIT_CALLS, initializer threads, x)."""
    with _init_lock:
        return interp_id(), threading.get_ident(), INIT_CALLS, list(INIT_THREADS), x


def init_report_slow(x, seconds):
    time.sleep(seconds)
    return init_report(x)


def failing_init(message):
    raise AsyncTaskError(message)


REQUEST_ID = contextvars.ContextVar("REQUEST_ID", default="unset")


def io_call(y):
    """(interpreter id, thread ident, the caller's REQUEST_ID, y)."""
    return interp_id(), threading.get_ident(), REQUEST_ID.get(), y


# ------------------------------------------------ awkward exceptions/values


def raise_stop_iteration(value=None):
    raise StopIteration(value)


def raise_system_exit(code):
    raise SystemExit(code)


def return_lock():
    return threading.Lock()
