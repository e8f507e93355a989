"""A module that imports in the main interpreter but fails in a worker."""

from helpers_interp import current_interpreter_id

if current_interpreter_id() != 0:
    raise RuntimeError("helpers_main_only refuses to load in a subinterpreter")


def f():
    return 1
