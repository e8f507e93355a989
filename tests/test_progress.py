"""Progress bars over Pool.map (issue 13.3): tqdm must advance per result.

``tqdm(pool.map(fn, xs), total=n)`` advances only as fast as map yields.
The behaviour we want: map yields each result as soon as it (and the ones
before it) are in, while later tasks still run.  Task i > 0 waits on its
own gate (an interpool.Queue) that the test opens only after it has seen
result i - 1, so the assertions rest on events, not timings.  A watchdog
turns a map that holds results back (today it waits for a batch of 64 or
for every task) into a failure instead of a hang.
"""

import io
import threading

import pytest

tqdm = pytest.importorskip("tqdm", reason="needs tqdm (Debian: python3-tqdm)").tqdm

import interpool  # noqa: E402
from helpers_progress import wait_gate  # noqa: E402

HANG = 10  # seconds a next() may take before the test calls it held back
N = 6


def next_or_fail(it, gates, step: int):
    """next(it), failing (and releasing every task) if it does not return."""
    box: dict[str, object] = {}
    done = threading.Event()

    def advance() -> None:
        try:
            box["value"] = next(it)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc
        done.set()

    threading.Thread(target=advance, name=f"next-{step}").start()
    if not done.wait(HANG):
        for g in gates:  # let the held-back map finish so the pool can stop
            g.put(None)
        done.wait(HANG)
        pytest.fail(f"map held result {step} back while later tasks were still waiting: "
                    "it does not stream")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]


def test_tqdm_over_map_advances_per_result():
    gates = [interpool.Queue() for _ in range(N)]
    with interpool.Pool(2) as pool:
        try:
            bar = tqdm(pool.map(wait_gate, range(N), [gates] * N),
                       total=N, file=io.StringIO(), miniters=1, mininterval=0)
            it = iter(bar)
            assert next_or_fail(it, gates, 0) == 0  # tasks 1.. wait for their gates
            for i in range(1, N):
                gates[i].put(None)
                assert next_or_fail(it, gates, i) == i
                # tqdm counts the results handed out before this one; tasks
                # i+1.. have not been let go yet.
                assert bar.n == i
            assert next(it, "end") == "end"
            assert bar.n == N
        finally:
            for g in gates:
                g.put(None)
