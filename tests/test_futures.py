"""Sync futures of a Pool and their done-callbacks.

Done-callbacks run on the pool's callback thread with no interpool lock
held: a callback may block on the caller's locks, submit follow-up work,
wait for other futures (result(), concurrent.futures.wait, as_completed)
without stalling anything else.  cancel() wakes every thread waiting for
the future.  A dropped future frees its result without the cyclic GC.

Hangs are what these tests look for: each wait is bounded by HANG seconds,
which only turns a hang into a failure.
"""

import concurrent.futures
import gc
import sys
import threading
import weakref

import pytest

import helpers_tasks as ht
import interpool
from helpers_util import run_python, wait_for_path

HANG = 60  # seconds: only to turn a hang into a failure


def in_thread(fn):
    """Run fn in a thread; return (thread, outcome list)."""
    outcome = []

    def run():
        try:
            outcome.append(fn())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


# ------------------------------------------- callbacks run with no lock held


def test_a_callback_blocked_on_the_callers_lock_blocks_nothing_else():
    """The callback waits for something only the submitting thread will
    give (joblib's lock, say) after its next submit() and result(): those
    must not wait for the callback."""
    gate = threading.Event()
    entered = threading.Event()
    with interpool.Pool(2) as pool:

        def callback(_future):
            entered.set()
            gate.wait(HANG)

        def submitter():
            pool.submit(ht.square, 2).add_done_callback(callback)
            assert entered.wait(HANG)
            # The callback now blocks until this thread opens the gate.
            futures = [pool.submit(ht.square, i) for i in range(50)]
            got = [f.result(timeout=HANG) for f in futures]
            done = all(f.done() for f in futures)
            gate.set()
            return got, done

        thread, outcome = in_thread(submitter)
        thread.join(HANG)
        hung = thread.is_alive()
        gate.set()
        thread.join(HANG)
    assert not hung, "submit()/result() waited for a done-callback"
    assert outcome == [([i * i for i in range(50)], True)]


def test_result_timeout_holds_while_a_callback_blocks(tmp_path):
    gate = threading.Event()
    entered = threading.Event()
    with interpool.Pool(2) as pool:
        pool.submit(ht.square, 2).add_done_callback(lambda f: (entered.set(), gate.wait(HANG)))
        assert entered.wait(HANG)
        slow = pool.submit(ht.signal_and_wait, str(tmp_path / "s"), str(tmp_path / "r"))
        fast = pool.submit(ht.square, 3)
        thread, outcome = in_thread(lambda: fast.result(timeout=HANG))
        thread.join(HANG)
        assert outcome == [9]
        with pytest.raises(TimeoutError):
            slow.result(timeout=0.1)
        gate.set()
        (tmp_path / "r").touch()
        assert slow.result(HANG) is None


def test_callbacks_run_off_the_threads_that_wait_or_submit():
    ran_on = []
    done = threading.Event()
    with interpool.Pool(2) as pool:
        futures = []
        for i in range(20):
            f = pool.submit(ht.square, i)
            f.add_done_callback(lambda f: (ran_on.append(threading.get_ident()),
                                           len(ran_on) == 20 and done.set()))
            futures.append(f)
        assert [f.result(HANG) for f in futures] == [i * i for i in range(20)]
        assert done.wait(HANG)
    assert threading.get_ident() not in ran_on


# ------------------------------------------------ callbacks that submit more


def test_callbacks_that_submit_follow_up_work_lose_none(tmp_path):
    """2,000 results arriving together, each callback submitting a
    follow-up with a callback of its own: every follow-up completes."""
    n = 2000
    finished = []
    all_done = threading.Event()
    with interpool.Pool(1) as pool:

        def on_follow_up(f):
            finished.append(f.result())
            if len(finished) == n:
                all_done.set()

        def on_first(f):
            pool.submit(ht.add, f.result(), 1).add_done_callback(on_follow_up)

        pool.submit(ht.signal_and_wait, str(tmp_path / "s"), str(tmp_path / "r"))
        for i in range(n):
            pool.submit(ht.square, i).add_done_callback(on_first)
        (tmp_path / "r").touch()   # the squares now finish faster than callbacks run
        assert all_done.wait(HANG), f"{len(finished)} of {n} follow-ups completed"
    assert sorted(finished) == sorted(i * i + 1 for i in range(n))


def test_a_long_chain_of_callbacks_does_not_recurse(tmp_path):
    """2,000 links, each callback submitting the next: a recursion per
    link would hit Python's limit (printed as "Exception ignored")."""
    proc = run_python(["-c", CHAIN_SCRIPT], cwd=tmp_path, timeout=HANG * 2)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2000", str(sys.getrecursionlimit())]
    assert "Exception ignored" not in proc.stderr and "RecursionError" not in proc.stderr


CHAIN_SCRIPT = """
import sys, threading
import helpers_tasks as ht
import interpool

LINKS = 2000
done = threading.Event()
depths = []

def link(f):
    n = f.result()
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    depths.append(depth)
    if n == LINKS:
        done.set()
    else:
        pool.submit(ht.add, n, 1).add_done_callback(link)

with interpool.Pool(2) as pool:
    pool.submit(ht.add, 0, 1).add_done_callback(link)
    assert done.wait(60)
print(len(depths), sys.getrecursionlimit())
assert max(depths) < 60, max(depths)   # flat: no growth per link
"""


# ------------------------------------------- waits inside a done-callback


@pytest.mark.parametrize("how", ["wait", "as_completed", "result"])
def test_a_callback_waits_for_a_later_future(tmp_path, how):
    release = tmp_path / "release"
    outcome = []
    waiting, finished = threading.Event(), threading.Event()
    with interpool.Pool(2) as pool:
        later = pool.submit(ht.signal_and_wait, str(tmp_path / "started"), str(release), "later")
        assert wait_for_path(str(tmp_path / "started"))

        def callback(_f):
            waiting.set()
            if how == "wait":
                done, _ = concurrent.futures.wait([later], timeout=HANG)
                outcome.append([f.result() for f in done])
            elif how == "as_completed":
                outcome.append([f.result() for f in concurrent.futures.as_completed([later], HANG)])
            else:
                outcome.append([later.result(HANG)])
            finished.set()

        pool.submit(ht.square, 2).add_done_callback(callback)
        assert waiting.wait(HANG)
        release.touch()   # `later` finishes while the callback waits for it
        assert finished.wait(HANG * 2)
    assert outcome == [["later"]]


# --------------------------------------------------------------- cancel()


def test_cancel_wakes_a_thread_waiting_for_the_result(tmp_path):
    with interpool.Pool(1) as pool:
        blocker = pool.submit(ht.signal_and_wait, str(tmp_path / "s"), str(tmp_path / "r"))
        assert wait_for_path(str(tmp_path / "s"))
        queued = pool.submit(ht.square, 3)
        waiting = threading.Event()

        def wait_for_it():
            waiting.set()
            return queued.result(timeout=HANG)

        thread, outcome = in_thread(wait_for_it)
        assert waiting.wait(HANG)
        assert queued.cancel()
        thread.join(HANG)   # the blocker still runs: only cancel() can wake it
        woke = not thread.is_alive()
        (tmp_path / "r").touch()
        thread.join(HANG)
        assert blocker.result(HANG) is None
    assert woke, "the waiting thread did not wake when its future was cancelled"
    assert len(outcome) == 1 and isinstance(outcome[0], concurrent.futures.CancelledError)


@pytest.mark.parametrize("how", ["result", "exception"])
def test_a_cancelled_future_raises_at_once_while_another_thread_resolves(tmp_path, how):
    """A cancelled future's result()/exception() raise CancelledError at
    once: they do not wait for another thread's batch (here one whose
    decoding waits on `gate`), nor for the cancelled task to let go."""
    gate = concurrent.futures.Future()
    ht.AWAITED[:] = [gate]
    try:
        with interpool.Pool(1) as pool:
            blocker = pool.submit(ht.signal_and_wait, str(tmp_path / "s"), str(tmp_path / "r"))
            assert wait_for_path(str(tmp_path / "s"))
            queued = pool.submit(ht.square, 3)
            assert queued.cancel()
            (tmp_path / "r").touch()
            assert blocker.result(HANG) is None
            slow = pool.submit(ht.return_waits_when_rebuilt)
            resolver, got = in_thread(lambda: slow.result(HANG))   # its batch waits on gate
            for _ in range(HANG * 100):
                if slow._handle.finished:
                    break
                threading.Event().wait(0.01)
            threading.Event().wait(0.2)   # (the resolver is inside its batch)
            thread, outcome = in_thread(lambda: getattr(queued, how)(HANG))
            thread.join(5)
            hung = thread.is_alive()
            gate.set_result("open")
            thread.join(HANG)
            resolver.join(HANG)
        assert not hung, f"{how}() of a cancelled future waited for another thread's batch"
        assert len(outcome) == 1 and isinstance(outcome[0], concurrent.futures.CancelledError)
        assert got == [("rebuilt", "open")]
    finally:
        ht.AWAITED.clear()


# ------------------------------------------------------------------ memory


@pytest.mark.parametrize("how", ["result", "callback", "wait", "dropped"])
def test_a_dropped_future_is_freed_without_the_cyclic_gc(how):
    with interpool.Pool(1) as pool:
        gc.collect()
        gc.disable()
        try:
            refs = []
            for _ in range(5):
                f = pool.submit(ht.make_bytes, 1 << 20)
                if how == "callback":
                    f.add_done_callback(lambda f: None)
                if how == "wait":
                    concurrent.futures.wait([f], timeout=HANG)
                if how != "dropped":
                    assert len(f.result(HANG)) == 1 << 20
                refs.append(weakref.ref(f))
                del f
            # every result is in (the pool resolves what nobody waits for)
            pool.submit(ht.square, 1).result(HANG)
            for _ in range(HANG * 100):
                if all(r() is None for r in refs):
                    break
                pool.submit(ht.square, 1).result(HANG)
            alive = sum(r() is not None for r in refs)
        finally:
            gc.enable()
    assert alive == 0, f"{alive} futures kept alive by a reference cycle"


# ------------------------------------------------------------ lean futures
# A sync future makes its Condition (and waiter and callback lists) only
# when something needs them; until then the batch that resolves it sets it
# directly.  The stdlib's contract must hold either way.


def test_a_future_nobody_waits_on_is_set_without_a_condition():
    with interpool.Pool(1) as pool:
        futures = [pool.submit(ht.square, i) for i in range(200)]
        assert [f.result(HANG) for f in futures] == [i * i for i in range(200)]
        lean = [f for f in futures if not {"_cond", "_condition"} & f.__dict__.keys()]
        assert lean, "every future made a Condition: the lean path never ran"
        for f in lean:
            assert f.done() and not f.cancelled() and not f.running()
            assert f.exception(HANG) is None
        assert "finished returned int" in repr(lean[0])   # (makes the Condition)
        failing = pool.submit(ht.raise_custom, "boom")
        with pytest.raises(ht.CustomError, match="boom"):
            failing.result(HANG)
        assert isinstance(failing.exception(HANG), ht.CustomError)
        assert failing.exception(HANG).__traceback__ is not None


def test_lean_futures_racing_wait_as_completed_and_callbacks_resolve_once():
    # Waiters and callbacks are installed on futures while batches resolve
    # them from another thread: each is notified exactly once, none hangs.
    with interpool.Pool(2) as pool:
        for _ in range(20):
            futures = [pool.submit(ht.square, i) for i in range(100)]
            calls = []
            lock = threading.Lock()

            def record(f):
                with lock:
                    calls.append(f)

            thread, outcome = in_thread(lambda: [f.result(HANG) for f in futures[::-1]])
            for f in futures[::3]:
                f.add_done_callback(record)
            done, pending = concurrent.futures.wait(futures[1::3], timeout=HANG)
            assert not pending
            seen = list(concurrent.futures.as_completed(futures[2::3], timeout=HANG))
            assert len(seen) == len(futures[2::3])
            thread.join(HANG)
            assert outcome == [[i * i for i in range(100)][::-1]]
            for _ in range(HANG * 100):
                if len(calls) == len(futures[::3]):
                    break
                threading.Event().wait(0.01)
            assert sorted(map(id, calls)) == sorted(map(id, futures[::3]))


def test_a_lean_future_cancelled_before_it_ran_reports_so():
    with interpool.Pool(1) as pool:
        blocker = pool.submit(ht.sleep_then_return, 0.5)
        queued = [pool.submit(ht.square, i) for i in range(5)]
        assert all(f.cancel() for f in queued)
        for f in queued:
            assert f.cancelled() and f.done()
            with pytest.raises(concurrent.futures.CancelledError):
                f.result(HANG)
        assert blocker.result(HANG) is None


def test_completions_refuse_a_lean_spec_of_the_wrong_shape():
    from interpool import _core

    for bad in (5, (5, "FINISHED"), ("FINISHED",), [object, "FINISHED"]):
        with pytest.raises(TypeError, match="lean must be"):
            _core.Completions(lean=bad)
