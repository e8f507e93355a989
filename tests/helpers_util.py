"""Test-side helpers (not task functions): polling and leak checks."""

import gc
import os
import subprocess
import sys
import time

import interpool
from interpool import _core

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
SRC_DIR = os.path.dirname(os.path.dirname(os.path.abspath(interpool.__file__)))


def wait_until(predicate, timeout=30.0, interval=0.005):
    """Poll `predicate` until it returns true; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_for_path(path, timeout=30.0):
    return wait_until(lambda: os.path.exists(path), timeout)


def counts():
    return _core.live_counts()


def assert_back_to(baseline, keys=("pools", "workers", "tasks"), timeout=30.0):
    """Assert the live C objects return to (at most) `baseline`.

    Other tests' garbage may be freed meanwhile, so "at most" rather than
    "exactly"; workers exit a moment after join() returns, hence the polling.
    """

    def settled():
        gc.collect()
        now = counts()
        return all(now[k] <= baseline[k] for k in keys)

    assert wait_until(settled, timeout), f"leaked: baseline {baseline}, now {counts()}"


def subprocess_env(**extra):
    env = dict(os.environ)
    parts = [SRC_DIR, TESTS_DIR]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env.pop("PYTHONWARNINGS", None)
    env.update(extra)
    return env


def run_python(args, cwd, timeout=60, **extra_env):
    """Run sys.executable with `args`; return the CompletedProcess (text)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=subprocess_env(**extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
