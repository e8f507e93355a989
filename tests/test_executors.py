"""The executors: interpool.InterpreterPoolExecutor (a drop-in for the stdlib
class of that name) and interpool.InterpreterThreadPoolExecutor with
interpool.interpreter(fn) (threads and interpreters behind one executor).

Where the stdlib defines the behaviour, the test runs against both classes
(with builtins as task functions: the stdlib's interpreters cannot import
the test helpers).  Behaviour only, never timings: tasks that must be
running or queued coordinate with the test through files in tmp_path.
"""

import asyncio
import concurrent.futures
import functools
import importlib
import os
import sys
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor

try:
    from concurrent import interpreters
except ImportError:  # CPython 3.13
    interpreters = None

import pytest

import helpers_async_tasks as ha
import interpool
from interpool import interpreter

try:
    from concurrent.futures.interpreter import BrokenInterpreterPool
except ImportError:  # CPython 3.13: no stdlib InterpreterPoolExecutor
    BrokenInterpreterPool = None
# What a broken executor raises: the stdlib's interpreter-pool class where it
# exists (interpool's BrokenPool subclasses it), else the base of them all.
BROKEN = BrokenInterpreterPool or concurrent.futures.BrokenExecutor

EXECUTORS = {
    "interpool": interpool.InterpreterPoolExecutor,
    "stdlib": getattr(concurrent.futures, "InterpreterPoolExecutor", None),
}
# The stdlib rows: its class to compare with is new in CPython 3.14.
WHICH = [
    "interpool",
    pytest.param("stdlib", marks=pytest.mark.skipif(
        EXECUTORS["stdlib"] is None,
        reason="concurrent.futures.InterpreterPoolExecutor is new in CPython 3.14: "
               "nothing to compare with on 3.13")),
]


@pytest.fixture(params=WHICH)
def executor_class(request):
    return EXECUTORS[request.param]


def run(coro_fn, *args):
    async def bounded():
        async with asyncio.timeout(60):
            return await coro_fn(*args)

    return asyncio.run(bounded())


# ================================================= InterpreterPoolExecutor
# ------------------------------------------- stdlib semantics (both classes)


def test_is_an_executor(executor_class):
    with executor_class(1) as ex:
        assert isinstance(ex, Executor)
        assert isinstance(ex, ThreadPoolExecutor)


@pytest.mark.parametrize("max_workers", [0, -1])
def test_max_workers_must_be_positive(executor_class, max_workers):
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        executor_class(max_workers)


def test_initializer_must_be_callable(executor_class):
    # a string would be a script: both classes refuse it
    with pytest.raises(TypeError):
        executor_class(1, initializer="print('hi')")


def test_initializer_must_be_callable_interpool():
    # (the stdlib class only checks for scripts here and fails later)
    with pytest.raises(TypeError, match="callable"):
        interpool.InterpreterPoolExecutor(1, initializer=42)


def test_submit_script_refused(executor_class):
    with executor_class(1) as ex:
        with pytest.raises(TypeError, match="scripts not supported"):
            ex.submit("print('hi')")
        assert ex.submit(abs, -5).result(60) == 5


def test_submit_and_map(executor_class):
    with executor_class(2) as ex:
        assert ex.submit(abs, -3).result(60) == 3
        assert ex.submit(pow, 2, 10).result(60) == 1024
        assert list(ex.map(abs, [-1, -2, 3])) == [1, 2, 3]
        assert list(ex.map(pow, [2, 3, 4], [3, 2, 1])) == [8, 9, 4]
        assert list(ex.map(abs, range(-7, 0), chunksize=3)) == [7, 6, 5, 4, 3, 2, 1]
        assert list(ex.map(abs, range(-7, 0), buffersize=2)) == [7, 6, 5, 4, 3, 2, 1]
        assert list(ex.map(abs, [])) == []


def test_exceptions_keep_their_type(executor_class):
    with executor_class(1) as ex:
        fut = ex.submit(divmod, 1, 0)
        with pytest.raises(ZeroDivisionError):
            fut.result(60)
        assert isinstance(fut.exception(), ZeroDivisionError)
        results = ex.map(int, ["1", "x", "3"])
        assert next(results) == 1
        with pytest.raises(ValueError, match="invalid literal"):
            next(results)


def test_submit_after_shutdown(executor_class):
    ex = executor_class(1)
    assert ex.submit(abs, -1).result(60) == 1
    ex.shutdown(wait=True)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(abs, -1)
    ex2 = executor_class(1)
    ex2.shutdown(wait=False)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex2.submit(abs, -1)
    with pytest.raises(RuntimeError):
        ex2.map(abs, [1])
    ex.shutdown()  # again: a no-op


def test_failing_initializer_breaks_the_executor(executor_class):
    ex = executor_class(1, initializer=int, initargs=("not a number",))
    try:
        fut = ex.submit(abs, -2)
        with pytest.raises(BROKEN):
            fut.result(60)
        # later submissions fail too, at submit() or through their future
        with pytest.raises(BROKEN):
            ex.submit(abs, -2).result(60)
    finally:
        ex.shutdown()


def test_with_statement_waits_for_pending_work(executor_class):
    with executor_class(2) as ex:
        futures = [ex.submit(pow, i, 2) for i in range(20)]
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [i * i for i in range(20)]


# ----------------------------------------------- interpool's executor only


def test_failing_initializer_is_a_broken_pool():
    ex = interpool.InterpreterPoolExecutor(2, initializer=ha.failing_init, initargs=("no",))
    try:
        futures = [ex.submit(ha.square, i) for i in range(4)]
        for fut in futures:
            exc = fut.exception(60)
            assert isinstance(exc, interpool.BrokenPool)
            assert isinstance(exc, BROKEN)
            assert isinstance(exc, concurrent.futures.BrokenExecutor)
    finally:
        ex.shutdown()


def test_runs_in_worker_interpreters_with_remote_traceback():
    # Issue 12 changed this: the drop-in's cause was interpool.RemoteTraceback;
    # it is now the stdlib's ExecutionFailed, which shows the same traceback.
    with interpool.InterpreterPoolExecutor(2) as ex:
        ids = set(ex.map(ha.interp_id, range(20)))
        assert ids and 0 not in ids
        assert ex.submit(ha.add, 1, b=2, c=3).result(60) == 6
        fut = ex.submit(ha.boom, "from executor")
        exc = fut.exception(60)
        assert type(exc) is ha.AsyncTaskError
        assert str(exc) == "from executor"
        cause = exc.__cause__
        if interpreters is None:   # 3.13 has no ExecutionFailed: interpool's own cause
            assert isinstance(cause, interpool.RemoteTraceback) and "in boom" in cause.text
        else:
            assert type(cause) is interpreters.ExecutionFailed
            assert cause.excinfo.type.__name__ == "AsyncTaskError"
            assert cause.excinfo.msg == "from executor"
            assert "in boom" in str(cause)
    with interpool.Pool(1) as pool:   # a Pool keeps interpool's RemoteTraceback
        exc = pool.submit(ha.boom, "from pool").exception(60)
        assert isinstance(exc.__cause__, interpool.RemoteTraceback)
        assert "in boom" in exc.__cause__.text


def test_initializer_runs_in_each_interpreter():
    with interpool.InterpreterPoolExecutor(
        2, initializer=ha.counting_init, initargs=("ipe",)
    ) as ex:
        reports = list(ex.map(ha.init_report, range(10)))
    for interp, thread, calls, threads, _ in reports:
        assert interp != 0
        assert calls == 1
        assert threads == [("ipe", thread)]


def test_shutdown_cancel_futures(tmp_path):
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    ex = interpool.InterpreterPoolExecutor(1)
    try:
        running = ex.submit(ha.block, started, release, "ran")
        assert ha.wait_for_path(started)
        queued = [ex.submit(ha.touch, str(tmp_path / f"q{i}")) for i in range(3)]
        ex.shutdown(wait=False, cancel_futures=True)
        done, not_done = concurrent.futures.wait(queued, timeout=60)
        assert not not_done
        assert all(fut.cancelled() for fut in queued)
        assert not running.done()
    finally:
        ha.touch(release)
    assert running.result(60) == "ran"
    ex.shutdown(wait=True)
    assert not any((tmp_path / f"q{i}").exists() for i in range(3))


def test_map_never_consumed_still_runs_every_item(executor_class, tmp_path):
    """Executor.map submits the whole input at the call: leaving the block
    (shutdown) without reading the results loses no work."""
    paths = [str(tmp_path / f"d{i}") for i in range(500)]
    with executor_class(2) as ex:
        ex.map(os.mkdir, paths)
    assert len(list(tmp_path.iterdir())) == 500


def test_map_read_after_shutdown_yields_every_result(executor_class):
    with executor_class(2) as ex:
        results = ex.map(abs, range(-3000, 0))
    assert list(results) == list(range(3000, 0, -1))


@pytest.mark.parametrize("which", WHICH)
def test_shutdown_cancel_futures_cancels_before_returning(which):
    """Like the stdlib: the queued futures are cancelled when shutdown()
    returns, not later from another thread.

    Regression: interpool's shutdown(wait=False, cancel_futures=True) used
    to return with the queued futures still pending (the results thread
    cancelled them afterwards)."""
    ex = EXECUTORS[which](1)
    previous = sys.getswitchinterval()
    try:
        blocker = ex.submit(time.sleep, 0.5)
        # wait until the sleep is running, so that the next ones queue
        deadline = time.monotonic() + 60
        while not blocker.running() and time.monotonic() < deadline:
            time.sleep(0.001)
        queued = [ex.submit(abs, -i) for i in range(3)]
        # keep the GIL here until the check: no other thread can cancel the
        # futures between shutdown() returning and the check
        sys.setswitchinterval(5.0)
        ex.shutdown(wait=False, cancel_futures=True)
        states = [fut.cancelled() for fut in queued]
        sys.setswitchinterval(previous)
    finally:
        sys.setswitchinterval(previous)
        ex.shutdown(wait=True)
    assert states == [True, True, True]


def test_cancel_queued_future(tmp_path):
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    marker = tmp_path / "marker"
    with interpool.InterpreterPoolExecutor(1) as ex:
        running = ex.submit(ha.block, started, release, "ran")
        assert ha.wait_for_path(started)
        queued = ex.submit(ha.touch, str(marker))
        assert not running.cancel()  # already running: cannot be cancelled
        assert queued.cancel()
        assert queued.cancelled()
        ha.touch(release)
        assert running.result(60) == "ran"
    assert not marker.exists()


def test_run_in_executor():
    async def main():
        loop = asyncio.get_running_loop()
        with interpool.InterpreterPoolExecutor(2) as ex:
            one = await loop.run_in_executor(ex, ha.tagged, 21)
            many = await asyncio.gather(*[loop.run_in_executor(ex, ha.square, i) for i in range(30)])
            partial = await loop.run_in_executor(ex, functools.partial(ha.add, 1, c=10), 2)
        return one, many, partial

    (interp, doubled), many, partial = run(main)
    assert interp != 0 and doubled == 42
    assert many == [i * i for i in range(30)]
    assert partial == 13


def test_default_executor_makes_to_thread_run_in_an_interpreter():
    ex = interpool.InterpreterPoolExecutor(2)

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ex)
        ha.REQUEST_ID.set("not sent")  # a Context cannot cross: the call itself travels
        one = await asyncio.to_thread(ha.tagged, 5)
        kw = await asyncio.to_thread(ha.add, 1, b=2, c=3)
        ids = await asyncio.gather(*[asyncio.to_thread(ha.interp_id) for _ in range(10)])
        direct = await loop.run_in_executor(None, ha.interp_id)
        with pytest.raises(ha.AsyncTaskError, match="via to_thread"):
            await asyncio.to_thread(ha.boom, "via to_thread")
        return one, kw, ids, direct

    (interp, doubled), kw, ids, direct = run(main)
    assert interp != 0 and doubled == 10
    assert kw == 6
    assert 0 not in ids and direct != 0
    # asyncio.run shut the default executor down when it closed the loop
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(ha.ident, 1)


def test_pool_property_exposes_the_asyncio_api():
    with interpool.InterpreterPoolExecutor(2) as ex:
        assert isinstance(ex.pool, interpool.Pool)

        async def main():
            return await ex.pool.run(ha.square, 6)

        assert run(main) == 36


# =========================================== InterpreterThreadPoolExecutor


def test_interpreter_marker_runs_directly_when_called():
    marked = interpreter(ha.tagged)
    assert marked(4) == (0, 8)  # ran here, in the main interpreter
    assert interpreter(ha.interp_id)() == 0
    assert marked.__name__ == "tagged"
    assert marked.__wrapped__ is ha.tagged
    assert marked.fn is ha.tagged
    assert interpreter(marked).fn is ha.tagged  # marking twice is marking once


def test_interpreter_marker_refuses_unsendable_functions():
    # Issue 12 changed this: lambdas and nested functions used to be refused
    # here; they travel by value now (the full check runs at the call).
    def nested():
        return 1

    with interpool.InterpreterThreadPoolExecutor(1) as ex:
        assert ex.submit(interpreter(lambda: 1)).result(60) == 1
        assert ex.submit(interpreter(nested)).result(60) == 1
    with pytest.raises(TypeError):
        interpreter(42)


def test_interpreter_marker_as_decorator():
    """Regression: decorating a module-level function with @interpreter used
    to raise TypeError at import (the module attribute did not exist yet
    when the marker checked that fn could be sent)."""
    sys.modules.pop("helpers_async_decorated", None)
    mod = importlib.import_module("helpers_async_decorated")
    with interpool.InterpreterThreadPoolExecutor(2) as ex:
        interp, doubled = ex.submit(mod.decorated_cpu, 3).result(60)
    assert interp != 0 and doubled == 6


def test_hybrid_is_a_thread_pool_executor():
    with interpool.InterpreterThreadPoolExecutor(2) as ex:
        assert isinstance(ex, ThreadPoolExecutor)


def test_hybrid_submit_routes_marked_calls_to_interpreters():
    with interpool.InterpreterThreadPoolExecutor(2) as ex:
        interp, doubled = ex.submit(interpreter(ha.tagged), 7).result(60)
        assert interp != 0 and doubled == 14
        assert ex.submit(interpreter(ha.add), 1, b=2, c=3).result(60) == 6
        # unmarked calls run on a thread of the main interpreter
        interp, doubled = ex.submit(ha.tagged, 7).result(60)
        assert interp == 0 and doubled == 14
        # unmarked calls need not be sendable at all
        assert ex.submit(lambda: threading.current_thread().name).result(60) != "MainThread"
        assert list(ex.map(interpreter(ha.square), range(5))) == [0, 1, 4, 9, 16]
        exc = ex.submit(interpreter(ha.boom), "marked").exception(60)
        assert type(exc) is ha.AsyncTaskError
        assert isinstance(exc.__cause__, interpool.RemoteTraceback)


def test_hybrid_to_thread_picks_the_place_per_call():
    results = {}

    async def main():
        ex = interpool.InterpreterThreadPoolExecutor(4)
        ex.set_as_event_loop_default()
        loop = asyncio.get_running_loop()
        ha.REQUEST_ID.set("request-17")
        results["cpu"] = await asyncio.to_thread(interpreter(ha.tagged), 21)
        results["io"] = await asyncio.to_thread(ha.io_call, "y")
        results["cpu_kw"] = await asyncio.to_thread(interpreter(ha.add), 1, b=2, c=3)
        results["run_in_executor"] = await loop.run_in_executor(None, interpreter(ha.tagged), 1)
        results["many"] = await asyncio.gather(
            *[asyncio.to_thread(interpreter(ha.tagged), i) for i in range(10)],
            *[asyncio.to_thread(ha.io_call, i) for i in range(10)],
        )
        return ex

    ex = run(main)
    interp, doubled = results["cpu"]
    assert interp != 0 and doubled == 42
    interp, thread, request_id, y = results["io"]
    assert interp == 0
    assert thread != threading.main_thread().ident
    assert request_id == "request-17"  # the calling task's context came along
    assert y == "y"
    assert results["cpu_kw"] == 6
    assert results["run_in_executor"][0] != 0
    cpu, io = results["many"][:10], results["many"][10:]
    assert all(i != 0 and d == 2 * n for n, (i, d) in enumerate(cpu))
    assert all(r[0] == 0 and r[2] == "request-17" and r[3] == n for n, r in enumerate(io))
    # asyncio.run shut the default executor down, interpreters included
    with pytest.raises(RuntimeError):
        ex.submit(ha.ident, 1)
    with pytest.raises(RuntimeError):
        ex.submit(interpreter(ha.ident), 1)


def test_hybrid_set_as_default_of_a_given_loop():
    loop = asyncio.new_event_loop()
    try:
        with interpool.InterpreterThreadPoolExecutor(2) as ex:
            ex.set_as_event_loop_default(loop)
            interp, _ = loop.run_until_complete(asyncio.to_thread(interpreter(ha.tagged), 1))
            assert interp != 0
    finally:
        loop.close()


def test_hybrid_initializer_once_per_thread_and_per_interpreter(tmp_path):
    before = len(ha.INIT_THREADS)
    ex = interpool.InterpreterThreadPoolExecutor(
        3, initializer=ha.counting_init, initargs=("hybrid",)
    )
    try:
        # thread calls: several at once, so that several threads start
        started = [str(tmp_path / f"started{i}") for i in range(3)]
        release = str(tmp_path / "release")
        blockers = [ex.submit(ha.block, s, release, i) for i, s in enumerate(started)]
        for s in started:
            assert ha.wait_for_path(s)
        ha.touch(release)
        assert [f.result(60) for f in blockers] == [0, 1, 2]
        thread_reports = [f.result(60) for f in [ex.submit(ha.init_report, i) for i in range(9)]]
        # interpreter calls
        interp_reports = list(ex.map(interpreter(ha.init_report), range(12)))
        interp_reports += [
            ex.submit(interpreter(ha.init_report_slow), i, 0.01).result(60) for i in range(3)
        ]
    finally:
        ex.shutdown()

    # In the main interpreter: once per thread the executor started, never twice.
    init_threads = [thread for tag, thread in ha.INIT_THREADS[before:]]
    assert all(tag == "hybrid" for tag, _ in ha.INIT_THREADS[before:])
    assert len(init_threads) == len(set(init_threads)) == 3
    assert threading.main_thread().ident not in init_threads
    for interp, thread, calls, threads, _ in thread_reports:
        assert interp == 0
        assert thread in init_threads
    # In each interpreter: exactly once, on its own worker thread.
    for interp, thread, calls, threads, _ in interp_reports:
        assert interp != 0
        assert calls == 1
        assert threads == [("hybrid", thread)]


def test_hybrid_interpreters_start_lazily_and_shutdown_refuses():
    ex = interpool.InterpreterThreadPoolExecutor(2)
    assert ex.submit(ha.ident, "thread only").result(60) == "thread only"
    ex.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(interpreter(ha.ident), 1)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(ha.ident, 1)


def test_hybrid_interpreter_calls_keep_nothing_of_the_context():
    """A marked call cannot take the caller's Context to another interpreter:
    it sees the variable's default there."""
    var_reader = interpreter(ha.io_call)

    async def main():
        ex = interpool.InterpreterThreadPoolExecutor(2)
        ex.set_as_event_loop_default()
        ha.REQUEST_ID.set("request-99")
        return await asyncio.to_thread(var_reader, "z")

    interp, _thread, request_id, z = run(main)
    assert interp != 0
    assert request_id == "unset"
    assert z == "z"
