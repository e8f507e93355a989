"""Task functions of the stress driver (tests/stress_driver.py).

Workers import them by module and name, so they live at module level.  Every
task computes a checkable function of its input (``expected(x)``), so the
driver can check each result.  The caller steers running tasks through
SharedBuffers (workers share no Python objects with it):

- a *gate* holds a task until the caller releases it: ``started[i]`` is set
  when the task runs, and it returns once ``released[i]`` is set.  Gated
  tasks poll (a 2 ms sleep), so ``cancel(interrupt=True)`` and shutdown
  stop them at once, and no worker stays blocked in a C call;
- a *mark* counts how many times the task of index i ran (``marks[i] += 1``):
  a map whose tasks must all run, and no task twice.

Every wait here has a cap (``CAP`` seconds) so that a driver that died
leaves no worker spinning for ever.
"""

import asyncio
import time

CAP = 600.0   # seconds a task may wait for the caller, at most


def expected(x):
    """What every task computes from its integer input."""
    return x * 7 + 3


class StressError(Exception):
    """The one exception tasks raise on purpose (the driver expects it)."""


# ------------------------------------------------------------------ plain tasks


def compute(x):
    return expected(x)


def fail(x):
    raise StressError(x)


def mark_or_fail(marks, i, x, poison=-1):
    """Count a run of task i; raise StressError(x) for the poisoned one."""
    marks[i] = marks[i] + 1   # each index belongs to one task: no race
    if i == poison:
        raise StressError(x)
    return expected(x)


POISON = 7


def compute_unless_poison(x):
    if x == POISON:
        raise StressError(x)
    return expected(x)


def blen(buf, x):
    """A buffer argument (shared zero-copy: the worker gets a memoryview)."""
    return (len(buf), expected(x))


def spin(x, seconds):
    """Pure Python for `seconds` (None: until stopped, at most CAP)."""
    end = time.monotonic() + (CAP if seconds is None else seconds)
    n = 0
    while time.monotonic() < end:
        n += 1
    return expected(x)


def gate(started, released, i, x):
    started[i] = 1
    end = time.monotonic() + CAP
    while not released[i]:
        if time.monotonic() > end:
            raise TimeoutError("gate never released")
        time.sleep(0.002)
    return expected(x)


def summary(v):
    """A short checksum of a large value: its type, length, ends."""
    if isinstance(v, frozenset):
        items = sorted(v, key=repr)
        return ("frozenset", len(v), repr(items[:1])[:40], repr(items[-1:])[:40])
    if isinstance(v, tuple) and 0 < len(v) <= 64 and isinstance(v[0], (tuple, str, bytes, frozenset)):
        return ("tuple", len(v), [summary(item) for item in v])
    return (type(v).__name__, len(v), repr(v[:1])[:40], repr(v[-1:])[:40])


def sizes(*args, **kwargs):
    """Checksums of the (large) arguments of a call."""
    return [summary(a) for a in args], {k: summary(v) for k, v in sorted(kwargs.items())}


def with_shared(value, x):
    return (len(value), value[0], value[-1], expected(x))


def queue_echo(inbox, outbox, n):
    """Move n items from inbox to outbox, each as expected(item)."""
    for _ in range(n):
        outbox.put(expected(inbox.get(timeout=CAP)), timeout=CAP)
    return n


# ------------------------------------------------------------------ coroutines


async def acompute(x, seconds=0.0):
    await asyncio.sleep(seconds)
    return expected(x)


async def agate(started, released, i, x):
    started[i] = 1
    end = time.monotonic() + CAP
    while not released[i]:
        if time.monotonic() > end:
            raise TimeoutError("gate never released")
        await asyncio.sleep(0.002)
    return expected(x)


async def afail(x):
    await asyncio.sleep(0)
    raise StressError(x)


# ------------------------------------------------------------------ initializers


def init_tokens(tokens, release):
    """Succeed while `tokens` (an interpool.Queue) has a token; the first
    initializer that finds none waits for `release[0]`, then raises: the
    pool breaks when the driver says (a later worker's, or a recycled
    interpreter's initializer)."""
    import queue

    try:
        tokens.get_nowait()
        return
    except queue.Empty:
        pass
    end = time.monotonic() + CAP
    while not release[0] and time.monotonic() < end:
        time.sleep(0.001)
    raise StressError("initializer refused")
