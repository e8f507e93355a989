"""Task functions that import numpy inside their body: the module loads in
a worker interpreter, the call fails at the import (and, with a fallback,
runs again there)."""


def doubled(x):
    print(f"before the import {x}")
    import numpy as np

    return int(np.int64(x) * 2)


def length(a):
    return len(a)


def note_init(path):
    """An initializer (for interpreters and the fallback alike): notes its process."""
    import os

    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")


class Payload(list):
    """A list that can be weakly referenced (to see who keeps an argument)."""


async def lazy_coroutine(x):
    import numpy  # noqa: F401

    return x


def fail_in_processes(parent):
    """An initializer that raises in any process but `parent`."""
    import os

    if os.getpid() != parent:
        raise RuntimeError("no setup here")
