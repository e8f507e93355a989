"""A module that imports like a single-phase C extension (numpy, pandas...):
fine in the main interpreter, but in a subinterpreter it raises the
ImportError CPython raises for such an extension there
(Python/import.c: "module %s does not support loading in subinterpreters").
"""

import _interpreters

if _interpreters.get_current()[0] != 0:
    raise ImportError(f"module {__name__} does not support loading in subinterpreters")

FACTOR = 3


def make_pure():
    """A lambda that reads no globals: it runs in a worker without this module."""
    return lambda x: x * 2


def make_global_reader():
    """A lambda that reads FACTOR: the worker must import this module, and cannot."""
    return lambda x: x * FACTOR


def by_reference(x):
    return x


class Opaque:
    """Instances pickle by reference to this module: only the main
    interpreter can rebuild them."""

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Opaque) and other.value == self.value
