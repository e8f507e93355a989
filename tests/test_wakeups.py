"""Waiting costs the caller nothing it does not need: who is woken, and
who spins.

These count wake-ups (a thread's voluntary context switches, from
/proc/self/task/<tid>/status) and spins (interpool._core.wait_counts()),
never time: the counts do not depend on how loaded the machine is.
"""

import asyncio
import os
import sys
import threading
import time

import pytest

import interpool
from interpool import _core, _forwarding

from helpers_control import spin_forever, spin_until
from helpers_tasks import identity, sleep_then_return

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def cpus() -> int:
    return len(os.sched_getaffinity(0))


def wake_ups() -> int:
    """This thread's voluntary context switches so far (each sleep that
    ended is one)."""
    with open(f"/proc/self/task/{threading.get_native_id()}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches line")


def no_busy_workers(timeout: float = 30.0) -> None:
    """Wait until no worker of the process counts as busy.  A call an
    earlier test stopped while it slept in C (time.sleep) is set aside and
    counts as busy until it returns; meanwhile no core looks spare here and
    nothing spins.  (A bound only against a hang: no timing is asserted.)"""
    deadline = time.monotonic() + timeout
    while _core.wait_counts()["busy_workers"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _core.wait_counts()["busy_workers"] == 0, _core.wait_counts()


def in_thread(fn):
    """fn() on a fresh thread (its waits have no signal-check slices), its
    result or exception handed back."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    assert not t.is_alive(), "the waiting thread hangs"
    if "error" in out:
        raise out["error"]
    return out["value"]


@linux_only
def test_result_wakes_only_for_its_own_task():
    # One worker runs the awaited task while the other finishes 40 others:
    # a thread in result() sleeps through their pushes, woken once.
    with interpool.Pool(2) as pool:
        pool.wait_ready()
        slow = pool.submit(spin_until, 0.5)
        while not slow.running():
            pass

        def wait_for_slow():
            before = wake_ups()
            assert slow.result() == 0.5
            return wake_ups() - before

        quick = []
        feeder = threading.Thread(target=lambda: quick.extend(
            pool.submit(sleep_then_return, 0.005, i).result() for i in range(40)))
        feeder.start()
        woken = in_thread(wait_for_slow)
        feeder.join()
        assert quick == list(range(40))
        assert woken <= 5, f"result() was woken {woken} times for one task"


@linux_only
def test_result_of_a_task_cancelled_elsewhere_returns():
    # A thread waits for a queued task; another thread cancels it (it never
    # runs, nothing is pushed): the waiter is told at once, not when some
    # other task happens to finish.
    with interpool.Pool(1) as pool:
        pool.wait_ready()
        busy = pool.submit(spin_forever)
        while not busy.running():
            pass
        queued = pool.submit(identity, 1)
        waiting = threading.Event()

        def wait_for_queued():
            waiting.set()
            with pytest.raises(Exception) as info:
                queued.result()
            return info.type

        result = {}
        t = threading.Thread(target=lambda: result.setdefault("type", wait_for_queued()))
        t.start()
        waiting.wait()
        time.sleep(0.3)   # (let it reach its wait; sooner would only make the test pass)
        assert queued.cancel()
        t.join(10)
        try:
            assert not t.is_alive(), "result() of a cancelled task still waits"
            assert result["type"].__name__ == "CancelledError"
        finally:
            pool.shutdown(wait=True, interrupt=True)


def test_no_spare_core_no_spinning():
    # As many workers as CPUs, all busy: a caller waiting for a result
    # sleeps at once (spinning would take a core from a worker).  Counted
    # while every worker has queued work: from the first result to the
    # last round.
    n = cpus()
    count = 20 * n
    with interpool.Pool(n) as pool:
        pool.wait_ready()
        results = pool.map(sleep_then_return, [0.002] * count, range(count))
        got = [next(results)]
        before = _core.wait_counts()
        got += [next(results) for _ in range(count - 2 * n)]
        after = _core.wait_counts()
        got += list(results)
    assert got == list(range(count))
    assert after["sleeps"] > before["sleeps"]
    assert after["spins"] == before["spins"], after


@pytest.mark.skipif(cpus() < 2, reason="needs a spare CPU")
def test_spare_core_spins_for_quick_results():
    # One worker and a spare CPU: the idle round trip stays fast by
    # spinning (results come within the spin window).
    no_busy_workers()
    with interpool.Pool(1) as pool:
        pool.wait_ready()
        before = _core.wait_counts()
        for i in range(300):
            assert pool.submit(identity, i).result() == i
        after = _core.wait_counts()
    assert after["spins"] > before["spins"], after


@linux_only
def test_no_drain_call_when_workers_print_nothing(monkeypatch):
    # Workers forward output here, but these tasks print nothing: no
    # Python call per batch to write it (the C core sees an empty queue).
    calls = []
    drain = _forwarding.drain
    with interpool.Pool(2) as pool:
        pool.wait_ready()
        monkeypatch.setattr(_forwarding, "drain", lambda: (calls.append(1), drain())[1])
        assert list(pool.map(identity, range(200))) == list(range(200))
        assert [pool.submit(identity, i).result() for i in range(20)] == list(range(20))
        monkeypatch.undo()
    assert calls == []


@linux_only
def test_gathered_awaits_wake_the_loop_per_batch_under_load():
    # No spare core (more busy workers than CPUs) and results every
    # hundred µs or so: the loop is woken about once per hold window (1-4 ms),
    # not once per result.
    n = cpus() + 1
    count = 400

    async def main():
        with interpool.Pool(n) as pool:
            await asyncio.gather(*[pool.run(spin_until, 0.01) for _ in range(n)])
            before = wake_ups()
            out = await asyncio.gather(*[pool.run(spin_until, 0.0002) for _ in range(count)])
            woken = wake_ups() - before
            assert out == [0.0002] * count
            return woken

    woken = asyncio.run(main())
    assert woken < count / 3, f"the loop was woken {woken} times for {count} results"


def test_lock_stats_count_every_take():
    # The benchmarks' view of the task queue's mutex: timed only when asked.
    with interpool.Pool(2) as pool:
        pool.wait_ready()
        _core._lock_stats(True)
        assert list(pool.map(identity, range(100))) == list(range(100))
        stats = _core._lock_stats(False)
        # A take is timed if timing was on when it took the lock: a worker
        # already waiting for work inside its take (one per worker) is not.
        assert stats["takes"] >= 100 - 2 and stats["enqueues"] >= 1
        assert stats["take_ns"] > 0 and stats["enqueue_ns"] > 0
        list(pool.map(identity, range(100)))
        later = _core._lock_stats(False)   # off: only takes under way then were counted
        assert later["takes"] - stats["takes"] <= 2


def test_the_wake_up_probe_measures_a_positive_cost_and_checks_its_arguments():
    # (make bench's floor under a caller woken per result; no timing asserted)
    cost = _core._wake_cost(50, 1, 0.0002)
    assert 0 < cost < 1
    for bad in ((0, 1, 0.001), (10, 0, 0.001), (10, 65, 0.001), (10, 1, 0.0), (10, 1, 2.0),
                (100_000, 1, 0.001)):
        with pytest.raises(ValueError):
            _core._wake_cost(*bad)
    with pytest.raises(TypeError):
        _core._wake_cost(10, 1)
