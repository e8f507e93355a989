"""Stopping what was started: Ctrl-C in every blocking wait, deadlines,
cancel(interrupt=True), interrupting shutdowns, exit, worker recycling.

Outcomes only: the bounds below only detect a hang (a task that would run
for minutes, a process that would never end)."""

import asyncio
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import CancelledError, as_completed, wait

import pytest

import helpers_control as hc
import interpool
from interpool import _atexit, _core
from helpers_util import assert_back_to, counts, subprocess_env, wait_for_path, wait_until

LONG = 120  # what a task "would" take: the tests end long before


# ------------------------------------------------------------------ Ctrl-C

SIGINT_SCRIPTS = {
    "map": "list(pool.map(hc.spin_until, [LONG] * 4))",
    "future.result": "pool.submit(hc.spin_until, LONG).result()",
    "as_completed": "list(as_completed([pool.submit(hc.spin_until, LONG)]))",
    "futures.wait": "wait([pool.submit(hc.spin_until, LONG)])",
    "shutdown(wait=True)": "pool.submit(hc.spin_until, LONG); pool.shutdown(wait=True)",
    "wait_ready": "interpool.Pool(1, initializer=hc.spin_until, initargs=(LONG,)).wait_ready()",
    "Runner.start": "interpool.Runner(workers=1, initializer=hc.spin_until, initargs=(LONG,)).start()",
    "Queue.get": "interpool.Queue().get(timeout=LONG)",
    "Queue.put": "q = interpool.Queue(1); q.put(1); q.put(2, timeout=LONG)",
    "with Pool": "with interpool.Pool(2) as p:\n    p.submit(hc.spin_forever)\n    p.submit(hc.spin_until, LONG).result()",
    "exit with a forever task": "pool.submit(hc.spin_forever); print('exiting', flush=True); raise SystemExit(0)",
}


SCRIPT = """\
import signal, sys, time
# Ctrl-C as from a terminal, however the suite was started: a shell without
# job control starts a background job with SIGINT ignored, and Python keeps
# an ignored SIGINT ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)
from concurrent.futures import as_completed, wait
import helpers_control as hc, interpool
LONG = {long}
if __name__ == "__main__":
    pool = interpool.Pool(2)
    pool.wait_ready()
    print("ready", flush=True)
    t0 = time.monotonic()
    try:
{body}
    except KeyboardInterrupt:
        print(f"KeyboardInterrupt {{time.monotonic() - t0:.3f}}", flush=True)
        raise
"""


def read_line(proc):
    """One line of the child's stdout, read from the pipe itself: a buffered
    readline() may read ahead, and communicate() would never see those bytes."""
    data = b""
    while not data.endswith(b"\n"):
        byte = os.read(proc.stdout.fileno(), 1)
        if not byte:
            break
        data += byte
    return data.decode()


def start_script(tmp_path, body, env=None):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(long=LONG, body=textwrap.indent(textwrap.dedent(body), " " * 8)))
    return subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path, env=env or subprocess_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.parametrize("body", SIGINT_SCRIPTS.values(), ids=SIGINT_SCRIPTS.keys())
def test_one_sigint_ends_the_program(tmp_path, body):
    proc = start_script(tmp_path, body)
    assert read_line(proc) == "ready\n"
    time.sleep(0.5)  # in the blocking call (or at exit) by now
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    elapsed = time.monotonic() - sent
    assert elapsed < 30, (out, err)  # the tasks would run for LONG seconds
    if "exit" in body:
        assert "exiting" in out, (out, err, proc.returncode)
    else:
        assert "KeyboardInterrupt" in out, (out, err)
        assert proc.returncode == -signal.SIGINT, (proc.returncode, out, err)
        assert "Traceback" in err and "KeyboardInterrupt" in err
    assert "remaining subinterpreters" not in err


def test_sigint_in_map_leaves_the_pool_usable(tmp_path):
    proc = start_script(tmp_path, textwrap.dedent("""\
        try:
            list(pool.map(hc.spin_until, [1] * 200))
        except KeyboardInterrupt:
            print("still works", pool.submit(hc.square, 7).result(), flush=True)
            raise SystemExit(0)
        """))
    assert read_line(proc) == "ready\n"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "still works 49" in out, (out, err)
    assert proc.returncode == 0, err


def test_sigint_at_exit_with_a_task_stuck_in_c(tmp_path):
    """A stop lands only when a C call returns: the exit waits a grace
    period after Ctrl-C, then leaves anyway (exit code 130)."""
    proc = start_script(tmp_path, "pool.submit(time.sleep, LONG); print('exiting', flush=True)")
    assert read_line(proc) == "ready\n"
    assert read_line(proc) == "exiting\n"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "still run in C code" in err


def test_exit_after_one_sigint_waits_one_grace(tmp_path):
    """Ctrl-C inside `with Pool(2)`, four tasks stuck in a C call: the
    `with` exit and the exit hook share one grace (2 s), counted from the
    Ctrl-C; they used to wait one each (4 s).  The bound is the point of
    the test: less than two graces."""
    proc = start_script(tmp_path, """\
        with interpool.Pool(2) as p:
            futures = [p.submit(time.sleep, LONG) for _ in range(4)]
            print("in the block", flush=True)
            futures[0].result()
        """)
    assert read_line(proc) == "ready\n"
    assert read_line(proc) == "in the block\n"
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    elapsed = time.monotonic() - sent
    assert proc.returncode == 130, (out, err)
    assert "KeyboardInterrupt" in err and "still run in C code" in err
    assert elapsed < 1.6 * _atexit.GRACE, (elapsed, err)


def test_a_second_sigint_ends_the_exit_at_once(tmp_path):
    """A second Ctrl-C while stopped work is given its grace ends the
    process at once (status 130), its output flushed; it used to wait a
    whole grace more.  The bound is the point: less than half a grace."""
    buffered = subprocess_env()
    buffered.pop("PYTHONUNBUFFERED", None)
    proc = start_script(tmp_path, """\
        with interpool.Pool(2) as p:
            futures = [p.submit(time.sleep, LONG) for _ in range(4)]
            print("in the block", flush=True)
            print("unflushed output", end="")
            futures[0].result()
        """, env=buffered)
    assert read_line(proc) == "ready\n"
    assert read_line(proc) == "in the block\n"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)   # in the grace now
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    elapsed = time.monotonic() - sent
    assert proc.returncode == 130, (out, err)
    assert "unflushed output" in out
    assert "still run in C code" in err
    assert elapsed < _atexit.GRACE / 2, (elapsed, err)


def test_normal_exit_leaves_a_call_stuck_in_c_after_the_grace(tmp_path):
    """A call stuck in C whose deadline passed was taken over: the program
    ends normally, and its exit waits for that call only the grace."""
    proc = start_script(tmp_path, """\
        import os
        r, w = os.pipe()   # nobody writes: the call never returns
        future = pool.schedule(hc.read_byte, (r,), timeout=0.2)
        print(type(future.exception()).__name__, flush=True)
        """)
    out, err = proc.communicate(timeout=60)
    assert out == "ready\nTimeoutError\n", (out, err)
    assert proc.returncode == 0, (out, err)
    assert "still run in C code" in err
    assert "remaining subinterpreters" not in err


def test_sigterm_handler_during_the_exit_wait(tmp_path):
    """A SIGTERM handler that raises SystemExit while the exit waits for
    running work stops that work like Ctrl-C and leaves with its status:
    no "Exception ignored on threading shutdown" noise."""
    proc = start_script(tmp_path, """\
        def on_term(*args):
            raise SystemExit(3)
        signal.signal(signal.SIGTERM, on_term)
        future = pool.submit(time.sleep, LONG)
        print("exiting", flush=True)
        """)
    assert read_line(proc) == "ready\n"
    assert read_line(proc) == "exiting\n"
    time.sleep(0.5)   # in the exit hook's wait for the running task
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, (out, err)
    assert "Exception ignored" not in err
    assert "remaining subinterpreters" not in err


@pytest.mark.skipif(bool(os.environ.get("INTERPOOL_ASAN")), reason="ASan reserves terabytes")
def test_a_pool_too_large_for_the_address_space(tmp_path):
    """Pool(1000) under a 6 GiB address-space cap: one clear BrokenPool,
    not a block of noise per worker."""
    proc = start_script(tmp_path, """\
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
        try:
            with interpool.Pool(1000) as big:
                big.wait_ready()
                print("all ready", big.submit(hc.square, 3).result(), flush=True)
        except interpool.BrokenPool as exc:
            print("BrokenPool", flush=True)
        """)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    assert out.endswith("BrokenPool\n") or out.endswith("all ready 9\n"), (out, err)
    # CPython itself reports each interpreter whose creation failed: at
    # most those created at once (one per core) when memory ran out
    assert err.count("Exception ignored") <= max(2, os.cpu_count()), err


def test_normal_exit_finishes_running_work(tmp_path):
    proc = start_script(tmp_path, "f = pool.submit(hc.spin_until, 0.5)\nprint('exiting', flush=True)")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out, err)
    assert err == ""


# ------------------------------------------------------------------ running code


def test_schedule_timeout_stops_code_that_swallows_exceptions(tmp_path):
    done = str(tmp_path / "finally")
    with interpool.Pool(1) as pool:
        future = pool.schedule(hc.spin_forever, (done,), timeout=0.2)
        with pytest.raises(TimeoutError):
            future.result(timeout=60)
        # its finally: block runs (before the future fails, unless the worker
        # took longer than the stop grace to get there and was set aside)
        assert wait_for_path(done, 60)
        assert pool.submit(hc.square, 3).result(timeout=60) == 9  # the worker is free


def test_schedule_with_kwargs_and_no_timeout():
    with interpool.Pool(1) as pool:
        assert pool.schedule(hc.spin_then, (5,), {"spins": 10}).result(60) == 5


def test_pool_task_timeout_applies_to_every_front_door(tmp_path):
    async def run_async(pool):
        with pytest.raises(TimeoutError):
            await pool.run(hc.spin_forever)
        assert await pool.run(hc.square, 2) == 4

    with interpool.Pool(2, task_timeout=0.2) as pool:
        with pytest.raises(TimeoutError):
            pool.submit(hc.spin_forever).result(60)
        with pytest.raises(TimeoutError):
            list(pool.map(hc.spin_forever, [None]))
        asyncio.run(run_async(pool))
        assert pool.submit(hc.spin_until, 0.01).result(60) == 0.01  # fast ones unaffected
        # schedule(timeout=) overrides the pool's
        assert pool.schedule(hc.spin_until, (0.5,), timeout=30).result(60) == 0.5
    with interpool.InterpreterPoolExecutor(1, task_timeout=0.2) as ex:
        with pytest.raises(TimeoutError):
            ex.submit(hc.spin_forever).result(60)


def test_cancel_interrupt_stops_a_running_task(tmp_path):
    started, done = str(tmp_path / "started"), str(tmp_path / "finally")
    entered = str(tmp_path / "entered")
    with interpool.Pool(1) as pool:
        future = pool.submit(hc.spin_forever, done, entered)
        assert pool.submit(hc.touch, started)  # queued behind it: never runs before
        assert wait_until(future.running, 60)
        assert wait_for_path(entered, 60)  # in its try block: a stop now runs its finally
        assert future.cancel() is False  # plain cancel: stdlib semantics
        assert future.cancel(interrupt=True) is True
        assert future.cancelled()
        with pytest.raises(CancelledError):
            future.result(0)
        assert wait_for_path(started, 60)  # the worker moved on to the next task
        assert wait_for_path(done, 60)  # the stopped task's finally: ran
        assert pool.submit(hc.square, 4).result(60) == 16


def test_cancel_interrupt_of_queued_and_finished_tasks():
    with interpool.Pool(1) as pool:
        first = pool.submit(hc.spin_until, 0.3)
        queued = pool.submit(hc.square, 2)
        assert queued.cancel(interrupt=True) is True and queued.cancelled()
        assert first.result(60) == 0.3
        assert first.cancel(interrupt=True) is False  # finished: nothing to cancel
        assert not first.cancelled()


def test_shutdown_interrupt(tmp_path):
    done = str(tmp_path / "finally")
    pool = interpool.Pool(1)
    entered = str(tmp_path / "entered")
    running = pool.submit(hc.spin_forever, done, entered)
    queued = pool.submit(hc.square, 3)
    assert wait_until(running.running, 60)
    assert wait_for_path(entered, 60)  # in its try block: a stop now runs its finally
    pool.shutdown(wait=True, interrupt=True)
    assert queued.cancelled()
    with pytest.raises(interpool.PoolShutdownError):
        running.result(60)
    assert os.path.exists(done)


def test_task_interrupted_is_a_base_exception():
    assert issubclass(interpool.TaskInterrupted, BaseException)
    assert not issubclass(interpool.TaskInterrupted, Exception)


def test_coroutine_task_timeout():
    with interpool.Pool(1, concurrency=4, task_timeout=0.2) as pool:
        with pytest.raises(TimeoutError):
            pool.submit(hc.async_forever).result(60)
        assert pool.submit(hc.square, 5).result(60) == 25
    with interpool.Pool(1) as pool:  # the C loop runs coroutines too
        with pytest.raises(TimeoutError):
            pool.schedule(hc.async_forever, timeout=0.2).result(60)


def test_interrupt_storm():
    """1,000 tasks, each cancelled with interrupt at a random moment
    (queued, starting, running, finishing): every future resolves exactly
    once, the pool stays healthy, nothing leaks."""
    baseline = counts()
    rng = random.Random(1234)
    resolved = []
    with interpool.Pool(2) as pool:
        futures = []
        for i in range(1000):
            f = pool.submit(hc.spin_then, i, rng.choice([0, 10, 1000, 20000]))
            f.add_done_callback(lambda f, i=i: resolved.append(i))
            futures.append(f)
            if rng.random() < 0.5:
                time.sleep(rng.choice([0, 0, 0.0001, 0.001]))
                futures[rng.randrange(len(futures))].cancel(interrupt=True)
        for f in futures:
            if rng.random() < 0.3:
                f.cancel(interrupt=True)
        for i, f in enumerate(futures):
            try:
                assert f.result(60) == i
            except CancelledError:
                assert f.cancelled()
        assert wait_until(lambda: len(resolved) == 1000, 60)
        assert sorted(resolved) == list(range(1000))  # exactly once each
        assert pool.submit(hc.square, 9).result(60) == 81
    del futures, f  # their handles hold the tasks
    assert_back_to(baseline)


def test_cancelled_queued_coroutines_never_start():
    """gather(...).cancel() over many queued coroutine runs: only those
    already running (workers x concurrency) ever started."""
    async def main():
        q = interpool.Queue()
        async with interpool.Pool(2, concurrency=8) as pool:
            runs = [pool.run(hc.note_start_then_wait, q) for _ in range(2000)]
            gathered = asyncio.gather(*runs)
            while q.qsize() < 16:
                await asyncio.sleep(0.01)
            gathered.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gathered
        return q.qsize()

    assert asyncio.run(main()) <= 16


def test_cancel_while_a_breaking_pool_delivers_its_queue():
    """A pool that breaks detaches its queue and fails each task; cancel()
    of such a task in between finds it no longer queued (it returns False,
    as for a running task), so nothing is unlinked twice or delivered
    twice, and every future fails with BrokenPool exactly once."""
    baseline = counts()
    q = interpool.Queue()
    pool = interpool.Pool(1, initializer=hc.wait_then_fail, initargs=(q,))
    futures = [pool.submit(hc.square, i) for i in range(200)]
    resolved = []
    for f in futures:
        f.add_done_callback(resolved.append)
    _core._hold_dropped(True)   # the break waits between detaching and delivering
    try:
        q.put("fail now")
        assert wait_until(lambda: pool._core.broken is not None, 60)
        cancelled = [f.cancel() for f in reversed(futures)]
        queued = pool._core.queued
    finally:
        _core._hold_dropped(False)
    assert queued == 0
    assert not any(cancelled)
    for f in futures:
        with pytest.raises(interpool.BrokenPool):
            f.result(60)
    pool.shutdown()
    assert wait_until(lambda: len(resolved) == len(futures), 60)
    assert sorted(map(id, resolved)) == sorted(map(id, futures))   # once each
    del futures, f, resolved, pool
    assert_back_to(baseline)


# ------------------------------------------------------------------ calls stuck in C
# A stop lands in running code at its next bytecode; a C call that blocks
# holds it.  Here the call reads from a pipe that nobody writes to until
# the test lets it return, so everything checked before that happens while
# the call is stuck.  Such a call is taken over after a short grace: its
# future fails on time, and a fresh worker takes the stuck one's place.

BLOCKERS = {"GIL released": hc.read_byte, "GIL held": hc.read_byte_holding_gil}


@pytest.fixture
def pipe():
    workers = counts()["workers"]
    r, w = os.pipe()
    try:
        yield r, w
    finally:
        os.close(w)   # EOF: a call a failed test left blocking returns
        wait_until(lambda: counts()["workers"] <= workers, 60)
        os.close(r)


def back_to(workers):
    """The set-aside thread ended (its call returned): worker threads are
    back to `workers`."""
    return wait_until(lambda: counts()["workers"] == workers, 60)


@pytest.mark.parametrize("block", BLOCKERS.values(), ids=BLOCKERS.keys())
def test_a_deadline_fails_a_call_stuck_in_c_and_its_worker_is_replaced(pipe, block):
    r, w = pipe
    baseline = counts()
    with interpool.Pool(1, initializer=hc.init, initargs=("fresh",)) as pool:
        first = pool.submit(hc.interpreter_id).result(60)
        workers = counts()["workers"]
        resolved = []
        future = pool.schedule(block, (r,), timeout=0.2)
        future.add_done_callback(resolved.append)
        assert isinstance(future.exception(60), TimeoutError)   # while the call blocks
        # the pool kept its capacity: a fresh interpreter, initializer run
        other, value = pool.submit(hc.interpreter_and_init).result(60)
        assert other != first and value == "fresh"
        assert counts()["workers"] == workers + 1   # and the stuck one, set aside
        os.write(w, b"x")   # the call returns: what it made goes nowhere
        assert back_to(workers)
        assert isinstance(future.exception(0), TimeoutError)
        assert resolved == [future]
        assert pool.submit(hc.square, 3).result(60) == 9
    del future, resolved, pool
    assert_back_to(baseline)


def in_the_call(started):
    """The task made `started` just before its C call: let it get there."""
    assert wait_for_path(started, 60)
    time.sleep(0.2)


@pytest.mark.parametrize("block", BLOCKERS.values(), ids=BLOCKERS.keys())
def test_cancel_interrupt_frees_the_worker_of_a_call_stuck_in_c(tmp_path, pipe, block):
    r, w = pipe
    started = str(tmp_path / "started")
    with interpool.Pool(1) as pool:
        pool.submit(hc.square, 1).result(60)
        workers = counts()["workers"]
        future = pool.submit(block, r, started)
        in_the_call(started)
        assert future.cancel(interrupt=True) and future.cancelled()
        assert pool.submit(hc.square, 4).result(60) == 16   # while the call blocks
        os.write(w, b"x")
        assert back_to(workers)


@pytest.mark.parametrize("block", BLOCKERS.values(), ids=BLOCKERS.keys())
def test_shutdown_interrupt_does_not_wait_for_a_call_stuck_in_c(tmp_path, pipe, block):
    r, w = pipe
    started = str(tmp_path / "started")
    workers = counts()["workers"]
    pool = interpool.Pool(2)
    stuck = pool.submit(block, r, started)
    in_the_call(started)
    assert finishes(lambda: pool.shutdown(wait=True, interrupt=True))   # while the call blocks
    with pytest.raises(interpool.PoolShutdownError):
        stuck.result(0)
    assert pool._core.live_workers == 0   # the stuck thread was set aside
    os.write(w, b"x")
    assert back_to(workers)


def test_shutdown_interrupt_does_not_wait_for_an_initializer_stuck_in_c(tmp_path, pipe):
    r, w = pipe
    started = str(tmp_path / "started")
    workers = counts()["workers"]
    pool = interpool.Pool(1, initializer=hc.read_byte_holding_gil, initargs=(r, started))
    queued = pool.submit(hc.square, 2)
    in_the_call(started)
    assert finishes(lambda: pool.shutdown(wait=True, interrupt=True))
    assert queued.cancelled()
    os.write(w, b"x")
    assert back_to(workers)


def test_asyncio_cancellation_of_a_call_stuck_in_c(pipe):
    r, w = pipe
    workers = counts()["workers"]

    async def main():
        async with interpool.Pool(1) as pool:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await pool.run(hc.read_byte_holding_gil, r)
            assert await pool.run(hc.square, 5) == 25   # the worker was replaced

    # `async with` does not wait for the stuck call either
    assert finishes(lambda: asyncio.run(main()))
    os.write(w, b"x")
    assert back_to(workers)


def test_a_result_made_as_its_deadline_passes_wins():
    """The deadline passes while the call runs in C holding its GIL (so no
    stop reaches it), and the call returns within the grace: the value it
    made is the future's result, not TimeoutError."""
    old = _core._set_stop_grace(60)   # so the call is not taken over meanwhile
    n = 20_000_000                    # sum() of it: a second or so in one C call
    try:
        with interpool.Pool(1) as pool:
            pool.submit(hc.square, 1).result(60)
            assert pool.schedule(sum, (range(n),), timeout=0.01).result(120) == n * (n - 1) // 2
    finally:
        _core._set_stop_grace(old)


# ------------------------------------------------------------------ recycling


def test_max_tasks_per_worker_recycles_interpreters():
    with interpool.Pool(1, max_tasks_per_worker=10) as pool:
        ids = [pool.submit(hc.interpreter_id).result(60) for _ in range(100)]
    assert len(set(ids)) == 10
    assert all(ids.count(i) == 10 for i in set(ids))


def test_recycling_with_map_and_an_initializer():
    with interpool.Pool(1, max_tasks_per_worker=10, initializer=hc.init, initargs=("x",)) as pool:
        results = list(pool.map(hc.interpreter_and_init, range(100)))
    assert len(results) == 100  # every result exactly once
    assert {v for _, v in results} == {"x"}  # the initializer ran in every interpreter
    assert len({i for i, _ in results}) == 10


@pytest.mark.parametrize("concurrency", [1, 4])
def test_recycling_with_coroutine_tasks(concurrency):
    with interpool.Pool(1, concurrency=concurrency, max_tasks_per_worker=10) as pool:
        ids = list(pool.map(hc.async_interpreter_id, range(100)))
    assert len(ids) == 100
    assert len(set(ids)) >= 10


def finishes(fn, timeout=60):
    """Run fn() in a thread; whether it returned within `timeout` (a hang
    check, not a timing)."""
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


@pytest.mark.parametrize("wait", [True, False])
def test_recycling_coroutine_workers_finish_the_queue_at_shutdown(wait):
    """A worker whose interpreter ran its max_tasks while the pool stops
    hands the queued tasks to a fresh interpreter instead of leaving them."""
    pool = interpool.Pool(1, concurrency=2, max_tasks_per_worker=2)
    futures = [pool.submit(hc.nap_then, i, 0.2) for i in range(6)]
    assert finishes(lambda: pool.shutdown(wait=wait))
    assert [f.result(60) for f in futures] == list(range(6))
    assert finishes(pool.shutdown)


def test_recycling_keeps_the_queue():
    with interpool.Pool(2, max_tasks_per_worker=3) as pool:
        assert sorted(pool.map(hc.square, range(50))) == sorted(x * x for x in range(50))


# ------------------------------------------------------------------ exit hazards


def run_script(tmp_path, source, timeout=60):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=subprocess_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("style", ["sync", "asyncio"])
def test_exit_with_an_unreferenced_pool_running_coroutines(tmp_path, style):
    main = {
        "sync": """
            def main():
                pool = interpool.Pool(1, concurrency=2)
                pool.submit(hc.async_forever)
                pool.submit(hc.async_forever)
            main()
        """,
        "asyncio": """
            async def main():
                pool = interpool.Pool(1, concurrency=2)
                pool.run(hc.async_forever)
                await asyncio.sleep(0.2)
            asyncio.run(main())
        """,
    }[style]
    proc = run_script(tmp_path, "import asyncio, helpers_control as hc, interpool\n"
                      + textwrap.dedent(main) + "print('OK')\n")
    assert proc.stdout == "OK\n", proc.stderr
    assert proc.returncode == 0, proc.stderr


def test_async_with_pool_inside_a_worker():
    with interpool.Pool(1) as pool:
        assert pool.submit(hc.nested_async_pool).result(120) == [0, 1, 4]


def test_fork_with_live_workers_warns(tmp_path):
    proc = run_script(tmp_path, """
        import os, helpers_control as hc, interpool
        pool = interpool.Pool(1)
        pool.wait_ready()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        pool.shutdown()
    """)
    assert "cannot fork a process with live subinterpreters" in proc.stderr


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("timeout, error", [
    (-1, ValueError), (math.nan, ValueError), ("1", TypeError), (True, TypeError),
    (math.inf, OverflowError), (1e19, OverflowError),
])
def test_bad_timeouts_are_refused_at_the_call(timeout, error):
    with interpool.Pool(1) as pool:
        with pytest.raises(error):
            pool.schedule(hc.square, (1,), timeout=timeout)
        with pytest.raises(error):
            pool.wait_ready(timeout)
        with pytest.raises(error):
            pool.map(hc.square, [1], timeout=timeout)
        q = interpool.Queue()
        with pytest.raises(error):
            q.get(timeout=timeout)
        with pytest.raises(error):
            interpool.Pool(1, task_timeout=timeout)
        assert pool.submit(hc.square, 3).result(60) == 9  # still fine


@pytest.mark.parametrize("value, error", [(0, ValueError), (-3, ValueError), (1.5, TypeError), (True, TypeError)])
def test_bad_max_tasks_per_worker(value, error):
    with pytest.raises(error):
        interpool.Pool(1, max_tasks_per_worker=value)
