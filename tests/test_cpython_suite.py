"""CPython's own InterpreterPoolExecutor tests, run on interpool's class (and
its multiprocessing.Pool tests, on interpool.multiprocessing.Pool: the last
test here).

``tests/cpython_suite/run_cpython_suite.py`` swaps
``interpool.InterpreterPoolExecutor`` in for the stdlib class (everywhere
``test.test_concurrent_futures`` looks it up, subprocess scripts included)
and runs every CPython test written for that class, plus the generic
shutdown/wait mixins instantiated for it.  It runs in a subprocess: the
tests create dozens of pools, start Python subprocesses, and must not share
this process's warnings filters or threads.

Every test must pass unless ``tests/cpython_suite/expectations.py`` lists it
as an expected failure (with its reason), and every listed test must still
fail, so the list tracks the library both ways.  By hand:

    tools/python tests/cpython_suite/run_cpython_suite.py -v [-k NAME]
    tools/python tests/cpython_suite/run_cpython_suite.py --stdlib   # baseline
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys

import pytest

import interpool

SUITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cpython_suite")
SRC_DIR = os.path.dirname(os.path.dirname(os.path.abspath(interpool.__file__)))
# The whole run takes ~30 s; pytest's own timeout is 300 s.
RUN_TIMEOUT = 240
GROUPS = ("tests stdlib internals: ", "documented deviation: ", "interpool bug: ")


def _suite_available(name="test.test_concurrent_futures"):
    try:
        return importlib.util.find_spec(name) is not None
    except Exception:  # no `test` package at all, or it refused to import
        return False


def _load(name):
    spec = importlib.util.spec_from_file_location(
        f"_cpython_suite_{name}", os.path.join(SUITE_DIR, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tail(text, lines=80):
    return "\n".join((text or "").splitlines()[-lines:])


def _run_suite(json_path, cwd, runner="run_cpython_suite"):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [SUITE_DIR, SRC_DIR] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("PYTHONWARNINGS", None)
    env.pop("INTERPOOL_CPYTHON_SWAP", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", runner, "--json", json_path],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # so a hung run's own subprocesses die with it
    )
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the CPython suite did not finish within {RUN_TIMEOUT} s "
                    f"(a hanging test belongs in expectations.SKIP):\n{_tail(err)}\n{_tail(out)}")
    return proc.returncode, out, err


@pytest.mark.skipif(
    sys.version_info < (3, 14),
    reason="CPython 3.13 has no InterpreterPoolExecutor, so its test suite has no tests for one",
)
@pytest.mark.skipif(
    not _suite_available(),
    reason=f"CPython's test suite (test.test_concurrent_futures) is not installed for "
           f"Python {sys.version_info.major}.{sys.version_info.minor}",
)
def test_cpython_interpreter_pool_executor_suite(tmp_path):
    _check_suite(tmp_path, "run_cpython_suite", _load("expectations"), minimum=60)


def _check_suite(tmp_path, runner, expectations, minimum):
    """Run one of the runners; every outcome as its expectations say, and
    nothing of interpool left alive at the end."""
    json_path = str(tmp_path / "results.json")
    rc, out, err = _run_suite(json_path, tmp_path, runner)

    if rc == 2:
        pytest.skip(f"the runner found no usable CPython test suite: {_tail(err, 5)}")
    if rc not in (0, 1) or not os.path.exists(json_path):
        pytest.fail(f"the runner did not complete (exit status {rc}):\n{_tail(err)}\n{_tail(out)}")
    with open(json_path) as f:
        report = json.load(f)
    outcomes = report["outcomes"]
    summary = f"counts {report['counts']} in {report['seconds']} s"
    print(summary)

    assert report["swapped"], "the stdlib class was not swapped out"
    assert len(outcomes) >= minimum, f"too few tests collected: {summary}"

    for test_id, reason in expectations.EXPECTED_FAILURES.items():
        assert reason.startswith(GROUPS), f"{test_id}: reason must start with one of {GROUPS}"

    unexpected, stale = [], []
    for test_id, entry in sorted(outcomes.items()):
        outcome = entry["outcome"]
        if test_id in expectations.SKIP:
            if outcome != "skipped":
                stale.append(f"{test_id}: in SKIP but {outcome}")
        elif test_id in expectations.EXPECTED_FAILURES:
            if outcome not in ("failed", "error"):
                stale.append(f"{test_id}: listed as expected failure but {outcome} "
                             f"-- delete its entry ({expectations.EXPECTED_FAILURES[test_id]})")
        elif outcome in ("failed", "error", "unexpected_success"):
            unexpected.append(f"{test_id}: {outcome}\n{entry['detail']}")
    for listed in (expectations.EXPECTED_FAILURES, expectations.SKIP):
        stale += [f"{test_id}: listed in expectations.py but not run"
                  for test_id in sorted(set(listed) - set(outcomes))]

    problems = unexpected + stale
    assert not problems, (
        f"{len(unexpected)} unexpected failure(s), {len(stale)} stale expectation(s); "
        f"{summary}\n\n" + "\n\n".join(problems))

    # Every worker interpreter is gone once the tests are over (executors of
    # tests that failed before shutdown() included), and the runner exited.
    core = report["leaks"]["core"]
    assert core.get("workers") == 0 and core.get("tasks") == 0, report["leaks"]
    assert rc == 0, f"runner and this test disagree (exit status {rc}):\n{_tail(err, 30)}"


@pytest.mark.skipif(
    not _suite_available("test._test_multiprocessing"),
    reason=f"CPython's test suite (test._test_multiprocessing) is not installed for "
           f"Python {sys.version_info.major}.{sys.version_info.minor}",
)
def test_cpython_multiprocessing_pool_suite(tmp_path):
    """CPython's multiprocessing.Pool tests (_TestPool & co.) on
    interpool.multiprocessing.Pool (tests/cpython_suite/run_multiprocessing_pool.py;
    what cannot apply, and why, is in expectations_multiprocessing.py)."""
    _check_suite(tmp_path, "run_multiprocessing_pool", _load("expectations_multiprocessing"),
                 minimum=30)
