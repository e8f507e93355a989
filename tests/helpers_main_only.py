"""A module that imports in the main interpreter but fails in a worker."""

from concurrent import interpreters

if interpreters.get_current().id != 0:
    raise RuntimeError("helpers_main_only refuses to load in a subinterpreter")


def f():
    return 1
