"""Functions that travel by value (lambdas, nested functions, closures),
made by the factories below, for test_callables.py.

Their globals are this module's: a worker imports it by name when one of
them reads a global, as it would for a module-level function.
"""

import sys

SCALE = 10
STATE = {"initialized": None}


def scale_global(x):  # module level: travels by reference
    return x * SCALE


def read_state():
    return STATE["initialized"]


def make_scaler():
    """A nested function that reads a module global (SCALE)."""

    def scaled(x):
        return x * SCALE

    return scaled


def make_adder(n):
    """A closure: n travels with each call."""

    def add(x):
        return x + n

    return add


def make_counter_view(box):
    """A closure over a mutable list: each call sends its current content."""

    def view():
        return list(box)

    return view


def make_recursive():
    def fact(n):
        return 1 if n <= 1 else n * fact(n - 1)

    return fact


def make_composed(k):
    """A closure that captures another closure (which travels by value too)."""

    def helper(x):
        return x * k

    def task(x):
        return helper(x) + 1

    return task


def make_async(k):
    async def co(x):
        import asyncio

        await asyncio.sleep(0)
        return x * k

    return co


def make_initializer(value):
    """A closure used as an initializer: it sets this module's global in the
    worker, where module-level task functions see it."""

    def init():
        STATE["initialized"] = value

    return init


def make_module_capture():
    def uses_sys():
        return sys.version

    s = sys

    def captures_module():
        return s.version

    return uses_sys, captures_module


def make_local_class_users():
    class Local:
        def run(self):
            return 1

    instance = Local()

    def captures_instance():
        return instance.run()

    return Local, instance, captures_instance


def make_nonlocal_writer():
    count = 0

    def bump():
        nonlocal count
        count += 1
        return count

    return bump


def interpreter_id_of_caller():
    import _interpreters

    return _interpreters.get_current()[0]


def is_imported_here(name):
    return name in sys.modules
