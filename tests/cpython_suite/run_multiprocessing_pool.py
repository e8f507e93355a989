"""Run CPython's multiprocessing.Pool tests against interpool.multiprocessing.Pool.

    python -m run_multiprocessing_pool [--json PATH] [-v] [-k SUBSTRING ...] [--stdlib]

(with this directory and interpool's ``src`` on PYTHONPATH; from the
repository, ``tools/python tests/cpython_suite/run_multiprocessing_pool.py -v``
works too.)

What runs: the Pool tests of ``test._test_multiprocessing`` as CPython's
``test.test_multiprocessing_spawn.test_processes`` generates them (the spawn
start method, processes only): ``WithProcessesTestPool`` (``_TestPool``),
``WithProcessesTestPoolWorkerErrors``, ``WithProcessesTestPoolWorkerLifetime``,
plus the two other tests that make a ``multiprocessing.Pool``, from
``test_misc``: ``TestInitializers.test_pool_initializer`` and
``MiscTestCase.test_large_pool`` (a script with a pool of 200 workers).

``multiprocessing.Pool`` is swapped for interpool's class
(``cpython_swap.install_multiprocessing()``) before the test module is
imported (its ``ProcessesMixin`` binds the name then), and in the scripts the
tests run in subprocesses (``boot/sitecustomize.py``).  ``--stdlib`` runs the
same selection on multiprocessing's own Pool, as a baseline.  The verdict
is against ``expectations_multiprocessing.py``; exit status as
``run_cpython_suite.py``'s.
"""

import faulthandler
import os
import sys
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # when run as a script rather than with -m
    sys.path.insert(0, HERE)

import cpython_swap  # noqa: E402
import expectations_multiprocessing as expectations  # noqa: E402
import run_cpython_suite as runner  # noqa: E402

MODULE = "test._test_multiprocessing"
# Where CPython's test_multiprocessing_spawn generates its test classes (the
# workers import the test functions and classes from them by name).
GENERATED = "test.test_multiprocessing_spawn.test_processes"
MISC = "test.test_multiprocessing_spawn.test_misc"
# The classes generated from the Pool test bases, for processes.
POOL_CLASSES = ("WithProcessesTestPool", "WithProcessesTestPoolWorkerErrors",
                "WithProcessesTestPoolWorkerLifetime")
# The other tests of the module that make a multiprocessing.Pool.
OTHER_TESTS = {"TestInitializers": ("test_pool_initializer",),
               "MiscTestCase": ("test_large_pool",)}


def build_suite(selectors=()):
    """The selected tests, and the generated module (whose setUpModule sets
    the spawn start method, as when CPython runs it)."""
    import importlib

    generated = importlib.import_module(GENERATED)
    misc = importlib.import_module(MISC)
    classes = [getattr(generated, name) for name in POOL_CLASSES]
    classes += [getattr(misc, name) for name in OTHER_TESTS]
    suite = unittest.TestSuite()
    for test in runner._iter_tests(runner.make_suite(classes, selectors, expectations)):
        keep = OTHER_TESTS.get(type(test).__name__)
        if keep is None or test._testMethodName in keep:
            suite.addTest(test)
    return suite, generated


def main(argv=None):
    args = runner.parse_args(argv, __doc__,
                             "baseline: run the same tests on multiprocessing's Pool")

    import importlib.util

    if importlib.util.find_spec(MODULE) is None:
        print(f"{MODULE} is not installed", file=sys.stderr)
        return 2
    faulthandler.enable()
    from test import support

    support.verbose = int(args.verbose)
    if not args.stdlib:
        cpython_swap.install_multiprocessing()
        runner._patch_script_helper("multiprocessing")
    try:
        suite, module = build_suite(args.selectors)
    except unittest.SkipTest as exc:
        print(f"{MODULE} skipped itself: {exc}", file=sys.stderr)
        return 2
    except Exception:
        traceback.print_exc()
        return 3
    # setUpModule/tearDownModule of the generated module (start method,
    # multiprocessing's temporary directory), as unittest would run them.
    module.setUpModule()
    try:
        return runner.run_and_report(
            suite, args, expectations, swapped=cpython_swap.MULTIPROCESSING_POOL is not None)
    finally:
        module.tearDownModule()


if __name__ == "__main__":
    sys.exit(main())
