"""Task functions for the streaming map and auto-share tests."""

import os
import random
import time


def jitter(i, seed=0):
    """Return i after a short random pause (results finish out of order)."""
    time.sleep(random.Random(i * 7919 + seed).random() * 0.004)
    return i


def fail_at(i, bad):
    if i == bad:
        raise ValueError(f"item {i}")
    return i


def first_then_wait(i, release, timeout=60.0):
    """Item 0 returns at once; the others wait for `release`."""
    if i == 0:
        return 0
    deadline = time.monotonic() + timeout
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError(release)
        time.sleep(0.002)
    return i


def summarize(value):
    """A stable summary of a (nested) value."""
    return repr(value)


def total(grid, i):
    return sum(sum(row) for row in grid) + i


def first_item(value):
    return value[0]


def lengths(*values):
    return [len(v) for v in values]


def total_of_pair(pair):
    """One-argument form of total(grid, extra): amap passes (grid, extra)."""
    grid, extra = pair
    return total(grid, extra)
