"""Run CPython's InterpreterPoolExecutor tests against interpool's class.

    python -m run_cpython_suite [--json PATH] [-v] [-k SUBSTRING ...] [--stdlib]

(with this directory and interpool's ``src`` on PYTHONPATH; from the
repository, ``tools/python tests/cpython_suite/run_cpython_suite.py -v``
works too.)

What runs: every test CPython generates for ``InterpreterPoolExecutor`` in
``test.test_concurrent_futures`` (every TestCase built on
``util.InterpreterPoolMixin``; in 3.14 these are):

* ``test_interpreter_pool``: ``InterpreterPoolExecutorTest`` (which includes
  the shared ``executor.ExecutorTest``) and ``AsyncioTest``;
* ``test_as_completed.InterpreterPoolAsCompletedTest``;
* ``test_init.InterpreterPoolInitializerTest`` and
  ``InterpreterPoolFailingInitializerTest``;

plus the generic executor mixins CPython only instantiates for the other
executors (``test_shutdown.ExecutorShutdownTest``, ``test_wait.WaitTests``),
instantiated here with ``util.create_executor_tests(...,
executor_mixins=(InterpreterPoolMixin,))`` exactly as CPython names them:
``InterpreterPoolExecutorShutdownTest`` and ``InterpreterPoolWaitTest``.

interpool's class is swapped in (``cpython_swap.install()``) before any test
module is imported; scripts the tests run in a subprocess through
``script_helper`` get it too (``boot/sitecustomize.py``).  Tests listed in
``expectations.SKIP`` are not run (each entry says why).  ``--stdlib`` runs
the same selection on the stdlib class instead, as a baseline.

The run ends with a verdict against ``expectations.EXPECTED_FAILURES``; with
``--json`` the per-test outcomes are written there for
``tests/test_cpython_suite.py``.  Exit status: 0 outcomes as expected,
1 unexpected outcomes, 2 the suite is not available, 3 the swap failed.
"""

import argparse
import faulthandler
import json
import os
import sys
import threading
import time
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BOOT = os.path.join(HERE, "boot")
if HERE not in sys.path:  # when run as a script rather than with -m
    sys.path.insert(0, HERE)

import cpython_swap  # noqa: E402
import expectations  # noqa: E402

PACKAGE = "test.test_concurrent_futures"

# The test classes are found, not listed: every unittest.TestCase subclass of
# util.InterpreterPoolMixin defined in a test_* module of the package (CPython
# 3.14: test_interpreter_pool's InterpreterPoolExecutorTest and AsyncioTest,
# test_as_completed's InterpreterPoolAsCompletedTest, test_init's
# InterpreterPoolInitializerTest and InterpreterPoolFailingInitializerTest).

# Generic mixins upstream runs for the other executors only:
# module -> (mixin name, the class name create_executor_tests gives it).
EXTRA = {
    "test_shutdown": ("ExecutorShutdownTest", "InterpreterPoolExecutorShutdownTest"),
    "test_wait": ("WaitTests", "InterpreterPoolWaitTest"),
}

# A watchdog per test: a hung test dumps every thread's traceback and ends
# the run (exit status 1 from faulthandler) instead of running into the
# caller's timeout with nothing to show.
PER_TEST_TIMEOUT = float(os.environ.get("INTERPOOL_CPYTHON_TEST_TIMEOUT", "90"))

# How bad each outcome is, to merge subtests into one result per test.
_RANK = {"skipped": 0, "expected_failure": 1, "passed": 1, "unexpected_success": 2,
         "failed": 3, "error": 4}


# ----------------------------------------------------------------- subprocesses


def _patch_script_helper(swap="1"):
    """Make ``assert_python_ok`` & co. run their scripts with the swap
    (``swap``: the value of INTERPOOL_CPYTHON_SWAP, see boot/sitecustomize.py).

    They normally run ``python -I`` (isolated: PYTHONPATH ignored) when given
    no environment variables.  Here they get PYTHONPATH = boot dir, this dir,
    interpool's src, and INTERPOOL_CPYTHON_SWAP=1; ``-s -P`` keep the rest of
    what ``-I`` means (no user site-packages, no script/cwd dir on sys.path).
    """
    from test.support import script_helper

    original = script_helper.run_python_until_end
    if getattr(original, "_interpool_swap", False):
        return

    def run_python_until_end(*args, **env_vars):
        if env_vars.get("__cleanenv"):
            return original(*args, **env_vars)
        isolated = env_vars.pop("__isolated", None)
        if isolated is None:
            isolated = not any(not k.startswith("__") for k in env_vars)
        if isolated:
            args = ("-s", "-P", *args)
        path = [BOOT, HERE, _src_dir()]
        inherited = env_vars.get("PYTHONPATH", os.environ.get("PYTHONPATH"))
        if inherited:
            path.append(inherited)
        env_vars["PYTHONPATH"] = os.pathsep.join(path)
        env_vars["INTERPOOL_CPYTHON_SWAP"] = swap
        env_vars["__isolated"] = False
        return original(*args, **env_vars)

    run_python_until_end._interpool_swap = True
    script_helper.run_python_until_end = run_python_until_end


def _src_dir():
    import interpool

    return os.path.dirname(os.path.dirname(os.path.abspath(interpool.__file__)))


# ----------------------------------------------------------------- results


class RecordingResult(unittest.TextTestResult):
    """A TextTestResult that also keeps one outcome per test id."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outcomes = {}  # test id -> {"outcome": ..., "detail": ..., "seconds": ...}
        self._started = {}

    def _record(self, test, outcome, detail=""):
        case = getattr(test, "test_case", test)  # a _SubTest reports for its test
        test_id = case.id()
        if hasattr(test, "test_case") and detail:
            detail = f"[subtest {test._subDescription()}]\n{detail}"
        entry = self.outcomes.get(test_id)
        if entry is None or _RANK[outcome] > _RANK[entry["outcome"]]:
            seconds = entry["seconds"] if entry else None
            self.outcomes[test_id] = entry = {"outcome": outcome, "detail": "", "seconds": seconds}
        if detail and _RANK[outcome] >= _RANK[entry["outcome"]]:
            entry["detail"] = (entry["detail"] + "\n" + detail).strip()[-6000:]

    def _text(self, test, err):
        return self._exc_info_to_string(err, test)

    def startTest(self, test):
        self._started[test.id()] = time.monotonic()
        if PER_TEST_TIMEOUT > 0:
            faulthandler.dump_traceback_later(PER_TEST_TIMEOUT, exit=True)
        super().startTest(test)

    def stopTest(self, test):
        faulthandler.cancel_dump_traceback_later()
        super().stopTest(test)
        start = self._started.pop(test.id(), None)
        entry = self.outcomes.get(test.id())
        if start is not None and entry is not None:
            entry["seconds"] = round(time.monotonic() - start, 3)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._record(test, "passed")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "failed", self._text(test, err))

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "error", self._text(test, err))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skipped", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._record(test, "expected_failure", self._text(test, err))

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._record(test, "unexpected_success",
                     "passed, but CPython marks it @unittest.expectedFailure")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            if issubclass(err[0], test.failureException):
                self._record(subtest, "failed", self._text(test, err))
            else:
                self._record(subtest, "error", self._text(test, err))


# ----------------------------------------------------------------- the suite


def _iter_tests(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _iter_tests(item)
        else:
            yield item


def build_suite(selectors=()):
    import importlib

    from test.test_concurrent_futures import util

    import pkgutil

    package = importlib.import_module(PACKAGE)
    modules = [importlib.import_module(f"{PACKAGE}.{info.name}")
               for info in pkgutil.iter_modules(package.__path__)
               if info.name.startswith("test_")]
    for module in modules:
        extra = EXTRA.get(module.__name__.rpartition(".")[2])
        if extra is not None and not hasattr(module, extra[1]):
            util.create_executor_tests(
                vars(module), getattr(module, extra[0]),
                executor_mixins=(util.InterpreterPoolMixin,))
    classes = [
        cls
        for module in modules
        for cls in vars(module).values()
        if isinstance(cls, type) and issubclass(cls, unittest.TestCase)
        and issubclass(cls, util.InterpreterPoolMixin) and cls.__module__ == module.__name__
    ]

    return make_suite(classes, selectors, expectations)


def make_suite(classes, selectors, expectations):
    """The tests of `classes` whose id contains one of `selectors` (all if
    none), those in ``expectations.SKIP`` marked skipped with their reason."""
    for cls in classes:
        for test_id, reason in expectations.SKIP.items():
            cls_path, method = test_id.rsplit(".", 1)
            if cls_path == f"{cls.__module__}.{cls.__qualname__}":
                skipped = unittest.skip(f"interpool SKIP: {reason}")(getattr(cls, method))
                setattr(cls, method, skipped)

    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for cls in classes:
        for test in _iter_tests(loader.loadTestsFromTestCase(cls)):
            if not selectors or any(s in test.id() for s in selectors):
                suite.addTest(test)
    return suite


def verdict(outcomes, expectations=expectations):
    """The outcomes (and expectations) that contradict each other, as text."""
    problems = []
    for test_id, entry in sorted(outcomes.items()):
        outcome = entry["outcome"]
        expected_fail = test_id in expectations.EXPECTED_FAILURES
        if test_id in expectations.SKIP:
            if outcome != "skipped":
                problems.append(f"{test_id}: listed in SKIP but {outcome}")
        elif expected_fail and outcome not in ("failed", "error"):
            problems.append(
                f"{test_id}: listed in EXPECTED_FAILURES "
                f"({expectations.EXPECTED_FAILURES[test_id]}) but {outcome}")
        elif not expected_fail and outcome in ("failed", "error", "unexpected_success"):
            problems.append(f"{test_id}: {outcome}\n{entry['detail']}")
    for listed in (expectations.EXPECTED_FAILURES, expectations.SKIP):
        for test_id in sorted(set(listed) - set(outcomes)):
            problems.append(f"{test_id}: listed in expectations.py but did not run")
    return problems


def _leaks(settle=10.0):
    """Pools, workers and threads still alive once every test has finished.

    Executors of tests that failed before shutdown() are garbage by now;
    collect them and give their workers a moment to exit.
    """
    import gc

    from interpool import _core

    deadline = time.monotonic() + settle
    while True:
        gc.collect()
        counts = dict(_core.live_counts())
        if (counts.get("workers") == 0 and counts.get("tasks") == 0) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    report = {"core": counts}
    report["threads"] = sorted(
        t.name for t in threading.enumerate() if t is not threading.main_thread())
    return report


def parse_args(argv, doc, stdlib_help):
    """A runner's command line (this one's and run_multiprocessing_pool's)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--json", help="write per-test outcomes to this file")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("-k", dest="selectors", action="append", default=[],
                        help="run only tests whose id contains this (repeatable)")
    parser.add_argument("--stdlib", action="store_true", help=stdlib_help)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv, __doc__,
                      "baseline: run the same tests on the stdlib class (no swap, no verdict)")

    try:
        # The package only; its test modules must be imported after the swap.
        import test.test_concurrent_futures  # noqa: F401
    except (Exception, unittest.SkipTest) as exc:
        print(f"test.test_concurrent_futures is not importable: {exc!r}", file=sys.stderr)
        return 2
    if "test.test_concurrent_futures.util" in sys.modules:
        print("warning: test modules were imported before the swap", file=sys.stderr)

    faulthandler.enable()
    from test import support

    support.verbose = int(args.verbose)  # as regrtest does (it prints timings when set)
    if not args.stdlib:
        cpython_swap.install()
        _patch_script_helper()
    try:
        suite = build_suite(args.selectors)
        if not args.stdlib:
            cpython_swap.check()
    except Exception:
        traceback.print_exc()
        return 3

    return run_and_report(suite, args, expectations, swapped=cpython_swap.STDLIB_CLASS is not None)


def run_and_report(suite, args, expectations, swapped):
    """Run the suite; print (and with --json write) the outcomes and the
    verdict against `expectations`; return the exit status."""
    test_ids = [test.id() for test in _iter_tests(suite)]  # run() drops the tests
    started = time.monotonic()
    runner = unittest.TextTestRunner(
        stream=sys.stderr, verbosity=2 if args.verbose else 1,
        resultclass=RecordingResult)
    result = runner.run(suite)
    elapsed = time.monotonic() - started

    outcomes = result.outcomes
    for test_id in test_ids:  # tests whose class setup failed never start
        outcomes.setdefault(test_id, {"outcome": "error", "seconds": None,
                                        "detail": "did not run (class/module setup failed?)"})
    problems = verdict(outcomes, expectations) if not (args.selectors or args.stdlib) else []
    counts = {}
    for entry in outcomes.values():
        counts[entry["outcome"]] = counts.get(entry["outcome"], 0) + 1
    leaks = _leaks()

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": sys.version, "seconds": round(elapsed, 2),
                       "counts": counts, "outcomes": outcomes, "problems": problems,
                       "leaks": leaks, "swapped": swapped},
                      f, indent=1, sort_keys=True)

    print(f"\ncounts: {json.dumps(counts, sort_keys=True)} in {elapsed:.1f}s", file=sys.stderr)
    print(f"alive at the end: {leaks}", file=sys.stderr)
    if problems:
        print(f"\n{len(problems)} outcome(s) contradict expectations.py:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem.splitlines()[0]}", file=sys.stderr)
        return 1
    print("all outcomes as expected", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
