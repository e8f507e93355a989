"""Put interpool's InterpreterPoolExecutor where CPython's tests look it up.

CPython's ``test.test_concurrent_futures`` finds the executor class in three
places, all bound at import time or looked up by name:

* ``concurrent.futures.InterpreterPoolExecutor`` (a lazy module
  ``__getattr__``; a real attribute in the module dict takes precedence), used
  by ``util.InterpreterPoolMixin.executor_type`` and by the scripts the tests
  run in subprocesses (``from concurrent.futures import InterpreterPoolExecutor``);
* ``concurrent.futures.interpreter.InterpreterPoolExecutor``;
* ``test.test_concurrent_futures.util.InterpreterPoolMixin.executor_type``
  (a class attribute, copied when ``util`` is first imported).

``install()`` must run before the test modules are imported; it patches the
mixin too in case ``util`` was imported already.  ``BrokenInterpreterPool``
is left alone: interpool's ``BrokenPool`` subclasses the stdlib class.
"""

import sys

STDLIB_CLASS = None


def install():
    """Swap the class in; return interpool's class."""
    global STDLIB_CLASS
    import concurrent.futures as cf
    import concurrent.futures.interpreter as cfi

    from interpool import InterpreterPoolExecutor as ours

    if STDLIB_CLASS is None and cfi.InterpreterPoolExecutor is not ours:
        STDLIB_CLASS = cfi.InterpreterPoolExecutor
    cf.InterpreterPoolExecutor = ours
    cfi.InterpreterPoolExecutor = ours
    util = sys.modules.get("test.test_concurrent_futures.util")
    if util is not None:
        util.InterpreterPoolMixin.executor_type = ours
    return ours


def check():
    """Raise AssertionError unless every lookup place yields interpool's class."""
    import concurrent.futures as cf
    import concurrent.futures.interpreter as cfi

    from interpool import InterpreterPoolExecutor as ours

    places = {
        "concurrent.futures.InterpreterPoolExecutor": cf.InterpreterPoolExecutor,
        "concurrent.futures.interpreter.InterpreterPoolExecutor": cfi.InterpreterPoolExecutor,
    }
    util = sys.modules.get("test.test_concurrent_futures.util")
    if util is not None:
        places["util.InterpreterPoolMixin.executor_type"] = util.InterpreterPoolMixin.executor_type
    wrong = {name: cls for name, cls in places.items() if cls is not ours}
    assert not wrong, f"swap not in effect: {wrong}"


MULTIPROCESSING_POOL = None


def install_multiprocessing():
    """Make ``multiprocessing.Pool`` interpool's drop-in.

    CPython's ``test._test_multiprocessing`` calls ``multiprocessing.Pool``
    (a module attribute, looked up at each call) and binds it into
    ``ProcessesMixin.Pool`` when the module is imported: this must run
    before that import.  ``multiprocessing.pool.Pool`` (the class itself)
    is left alone."""
    global MULTIPROCESSING_POOL
    import multiprocessing

    from interpool.multiprocessing import Pool as ours

    if MULTIPROCESSING_POOL is None and multiprocessing.Pool is not ours:
        MULTIPROCESSING_POOL = multiprocessing.Pool
    multiprocessing.Pool = ours
    return ours
