"""The stress driver (tests/stress_driver.py) in the suite.

A short run per suite pass (3.13, 3.14, 3.15 and the debug build each run
it, so ``make test`` stresses the pool for about a minute and a half in
all), and proof that the driver's invariants catch bugs planted in its own
view.  The long run is ``make stress``.

The short run's seed is fixed, so CI draws the same scenarios every time:
a red run comes from the code, not from a new draw, and replays with the
command it prints.  Its first rounds go through every scenario kind (the
driver's coverage order), so each is exercised every pass; thread
interleavings are not seeded, so races still get new chances at each run.
INTERPOOL_STRESS_SEED and INTERPOOL_STRESS_DURATION override seed and
length (a time-derived seed: INTERPOOL_STRESS_SEED=random).

The hang deadline (120 s for one scenario's wait, each scenario normally
taking well under 5 s on a loaded 2-core machine) only detects hangs.
"""

import os
import subprocess
import sys

import pytest

from helpers_util import TESTS_DIR, subprocess_env

DRIVER = os.path.join(TESTS_DIR, "stress_driver.py")
SEED = 20261201
DURATION = 20.0
HANG = 120.0


def run_driver(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, DRIVER, *args], cwd=TESTS_DIR, env=subprocess_env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
    )


def seed() -> str:
    chosen = os.environ.get("INTERPOOL_STRESS_SEED", str(SEED))
    return str(int.from_bytes(os.urandom(4), "little")) if chosen == "random" else chosen


@pytest.mark.timeout(DURATION + 12 * HANG)
def test_stress_short_run():
    duration = float(os.environ.get("INTERPOOL_STRESS_DURATION", DURATION))
    # The driver ends itself on a hang (its watchdog prints every stack);
    # this timeout is only a last resort.
    proc = run_driver("--seed", seed(), "--duration", str(duration), "--hang", str(HANG),
                      timeout=duration + 10 * HANG)
    tail = proc.stdout[-20000:]
    assert proc.returncode == 0, f"stress run failed (status {proc.returncode}):\n{tail}"
    assert "every invariant held" in proc.stdout, tail


# The driver checks itself: each planted bug must fail the run, naming the
# invariant and how to replay it.  Once per suite (the driver is the same
# on every build).
@pytest.mark.skipif(sys.version_info[:2] != (3, 14) or bool(os.environ.get("INTERPOOL_DEBUG")),
                    reason="checks the driver itself: once, on the default build")
@pytest.mark.parametrize("plant, invariant, status", [
    ("wrong", "results are right", 1),
    ("negative", "counts never negative", 1),
    ("lost", "no hang", 1),          # a future that never resolves
    ("hang", "no hang", 2),          # a scenario that never returns
])
def test_stress_driver_catches_planted_bugs(plant, invariant, status):
    proc = run_driver("--seed", "7", "--plant", plant, "--hang", "2", "--rounds", "1",
                      timeout=120)
    assert proc.returncode == status, proc.stdout[-5000:]
    assert f": {invariant}" in proc.stdout, proc.stdout[-5000:]
    assert "replay:\n  make stress SEED=7 " in proc.stdout, proc.stdout[-5000:]
    assert "this round alone: make stress SEED=7 ROUND=0 " in proc.stdout, proc.stdout[-5000:]
