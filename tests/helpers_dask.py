"""Task functions for tests/test_dask.py.

Dask worker processes import this module by name (the tests directory is on
their sys.path), and so do the worker interpreters inside them.  Nothing here
imports dask or distributed: these functions run in subinterpreters.

Tasks that must wait do so on files (markers in a directory the test owns):
the test, the Dask worker process and its interpreters share the file system.
"""

import os
import time

LIMIT = 120.0  # a blocked task gives up after this, so no process outlives a failed test


class CustomError(Exception):
    """An exception type of the user's own, defined in an importable module."""


def square(x: int) -> int:
    return x * x


def add(a: int, b: int = 0) -> int:
    return a + b


def total(values: list[int], extra: dict[str, int]) -> int:
    return sum(values) + sum(extra.values())


def interpreter_id() -> int:
    """The id of the interpreter running this task (0: the main interpreter)."""
    import _interpreters

    return _interpreters.get_current()[0]


def fail(kind: str, message: str) -> None:
    if kind == "value":
        raise ValueError(message)
    if kind == "custom":
        raise CustomError(message)
    raise KeyError(message)


def mark(directory: str, name: str) -> None:
    with open(os.path.join(directory, name), "w"):
        pass


def exists(directory: str, name: str) -> bool:
    return os.path.exists(os.path.join(directory, name))


def block(directory: str, tag: str) -> str:
    """Mark `started-<tag>`, wait until the test marks `release`, then mark
    `finished-<tag>`."""
    mark(directory, f"started-{tag}")
    deadline = time.monotonic() + LIMIT
    while not exists(directory, "release") and time.monotonic() < deadline:
        time.sleep(0.01)
    mark(directory, f"finished-{tag}")
    return tag


def record(directory: str, tag: str) -> str:
    mark(directory, f"started-{tag}")
    return tag


def count_primes(lo: int, hi: int) -> int:
    count = 0
    for n in range(max(lo, 2), hi):
        for d in range(2, int(n**0.5) + 1):
            if n % d == 0:
                break
        else:
            count += 1
    return count
