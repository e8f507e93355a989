"""Swap interpool's executor in for Python subprocesses started by the tests.

CPython's tests run some scripts in a fresh interpreter
(``script_helper.assert_python_ok``); the runner puts this directory first on
their PYTHONPATH and sets INTERPOOL_CPYTHON_SWAP=1, so those scripts'
``from concurrent.futures import InterpreterPoolExecutor`` gets interpool's
class too.  Only the main interpreter swaps: worker interpreters (which also
run ``site``) need not import interpool's caller-side API.
INTERPOOL_CPYTHON_SWAP=multiprocessing swaps ``multiprocessing.Pool``
instead (tests/cpython_suite/run_multiprocessing_pool.py).

This shadows the distribution's own sitecustomize (Debian's only installs
the apport hook), which we chain to below.
"""

import os


def _main_interpreter():
    try:
        import _interpreters
    except ImportError:
        return True
    return _interpreters.get_current()[0] == _interpreters.get_main()[0]


_SWAP = os.environ.get("INTERPOOL_CPYTHON_SWAP")
if _SWAP in ("1", "multiprocessing") and _main_interpreter():
    import cpython_swap

    if _SWAP == "1":
        cpython_swap.install()
    else:
        cpython_swap.install_multiprocessing()

try:  # what Debian's sitecustomize does
    import apport_python_hook
except ImportError:
    pass
else:
    apport_python_hook.install()
