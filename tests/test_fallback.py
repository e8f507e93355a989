"""Pool(fallback="processes" | "threads"): functions that need numpy (which
refuses subinterpreters) still run, with the pool's whole API, in worker
processes the pool owns or in threads of the main interpreter.  With real
numpy (tests/helpers_numpy.py imports it at top level)."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

try:
    import numpy  # noqa: F401
except ImportError:   # (on 3.13 Debian's numpy is there, for other versions only)
    pytest.skip("needs numpy (Debian packages it for 3.14 and 3.15)", allow_module_level=True)

import helpers_lazy_numpy as hl  # noqa: E402
import helpers_numpy as hnp  # noqa: E402
import interpool  # noqa: E402
from helpers_util import subprocess_env, wait_until  # noqa: E402

KINDS = ["processes", "threads"]


def make_pool(kind, workers=2, **options):
    return interpool.Pool(workers, fallback=kind, **options)


LONG = 120   # what a call "would" take: the tests stop it long before


@pytest.fixture(params=KINDS)
def pool(request):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # "runs in the fallback from now on"
        pool = make_pool(request.param)
        try:
            yield pool
        finally:
            pool.shutdown(wait=True, interrupt=True)


def divert(pool, *fns):
    """Make the pool send these functions of helpers_numpy to its fallback
    (their first call, refused by the interpreters, runs there)."""
    for fn in fns:
        pool.submit(fn, *{hnp.spin: (0,), hnp.is_shared: (1,)}.get(fn, ())).exception(60)


def here_or_process(kind, where):
    pid, interp = where
    if kind == "threads":
        assert (pid, interp) == (os.getpid(), 0)   # this process, main interpreter
    else:
        assert pid != os.getpid() and interp == 0  # a process of its own


# ------------------------------------------------------------------ results


@pytest.mark.parametrize("kind", KINDS)
def test_a_numpy_function_runs_and_warns_once(kind):
    with make_pool(kind) as pool:
        with pytest.warns(RuntimeWarning) as caught:
            assert pool.submit(hnp.total, 10).result(60) == 45
        [warning] = [w for w in caught if "fallback" in str(w.message)]
        text = str(warning.message)
        assert "helpers_numpy.total()" in text and "numpy" in text and kind in text
        assert warning.filename == hnp.__file__   # it points at the function
        with warnings.catch_warnings():
            warnings.simplefilter("error")        # decided once: no second warning
            assert pool.submit(hnp.total, 11).result(60) == 55
            here_or_process(kind, pool.submit(hnp.where).result(60))
            assert pool.submit(hnp.scaled, [1, 2], factor=3).result(60).tolist() == [3, 6]
        assert pool.fallback == kind


def test_the_default_is_no_fallback():
    with interpool.Pool(1) as pool:
        assert pool.fallback is None
        exc = pool.submit(hnp.total, 3).exception(60)
    assert isinstance(exc, interpool.SubinterpreterImportError)
    assert (exc.name, exc.stage, exc.function) == ("numpy", "load", "total")
    assert exc.module == "numpy._core._multiarray_umath"


@pytest.mark.parametrize("bad", ["process", 1, True])
def test_bad_fallback_is_refused_at_the_call(bad):
    with pytest.raises(TypeError if not isinstance(bad, str) else ValueError, match="fallback"):
        interpool.Pool(1, fallback=bad)


def test_exceptions_keep_their_type_and_attributes(pool):
    exc = pool.submit(hnp.overdraw, "alice").exception(60)
    assert type(exc) is hnp.Overdrawn
    assert (exc.account, exc.amount, exc.note) == ("alice", 5, "set later")
    assert "alice is short of 5" in str(exc)
    if pool.fallback == "processes":   # the worker-side traceback, as from an interpreter
        assert isinstance(exc.__cause__, interpool.RemoteTraceback)
        assert "overdraw" in exc.__cause__.text


def test_map_ordered_unordered_and_chunked(pool):
    expected = [n * (n - 1) // 2 for n in range(40)]
    assert list(pool.map(hnp.total, range(40))) == expected
    assert sorted(pool.map(hnp.total, range(40), ordered=False)) == sorted(expected)
    assert list(pool.map(hnp.total, range(40), chunksize=7)) == expected
    assert list(pool.map(hnp.total, range(40), buffersize=3)) == expected


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunksize", [1, 4])
def test_a_map_nobody_reads_still_runs_every_item(tmp_path, kind, chunksize):
    """`pool.map(f, xs)` inside `with`, its iterator never read: the items
    the interpreters refuse still run, in the fallback (nothing is lost)."""
    paths = [str(tmp_path / f"done-{i}") for i in range(150)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with make_pool(kind) as pool:
            pool.map(hnp.spin_then_report, [0] * len(paths), paths, chunksize=chunksize)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(os.path.basename(p) for p in paths)


def test_map_raises_a_task_exception_in_order(pool):
    results = pool.map(hnp.overdraw, ["a", "b"])
    with pytest.raises(hnp.Overdrawn, match="a is short"):
        next(results)


def test_await_run_amap_and_wrap(pool):
    async def main():
        one = await pool.run(hnp.total, 5)
        ordered = [x async for x in pool.amap(hnp.total, range(12))]
        unordered = [x async for x in pool.amap(hnp.total, range(12), ordered=False)]
        wrapped = await pool.wrap(hnp.total)(6)
        with pytest.raises(hnp.Overdrawn):
            await pool.run(hnp.overdraw, "c")
        return one, ordered, sorted(unordered), wrapped

    expected = [n * (n - 1) // 2 for n in range(12)]
    assert asyncio.run(main()) == (10, expected, sorted(expected), 15)


def test_output_is_forwarded(pool, capsys):
    assert pool.submit(hnp.show, 7).result(60) == 7
    assert "fallback says 7" in capsys.readouterr().out


def test_a_resolved_future_does_not_keep_its_arguments(pool):
    import gc
    import weakref

    arg = hl.Payload([1, 2, 3])
    ref = weakref.ref(arg)
    future = pool.submit(hl.length, arg)   # kept to run it again, until resolved
    assert future.result(60) == 3

    async def main():
        return await pool.run(hl.length, arg)

    assert asyncio.run(main()) == 3
    del arg
    gc.collect()
    assert ref() is None


def test_log_records_are_forwarded(pool, caplog):
    divert(pool, hnp.log)
    with caplog.at_level("WARNING", logger="helpers_numpy"):
        assert pool.submit(hnp.log, "hello").result(60) == "hello"
    assert "fallback logs hello" in caplog.text


def test_a_process_that_dies_fails_its_call_and_is_replaced():
    from concurrent.futures.process import BrokenProcessPool

    with make_pool("processes", 1) as pool, pytest.warns(RuntimeWarning):
        pid, _ = pool.submit(hnp.where).result(60)
        with pytest.raises(BrokenProcessPool, match="exit status 3"):
            pool.submit(hnp.die, 3).result(60)
        new_pid, _ = pool.submit(hnp.where).result(60)
        assert new_pid != pid


# ------------------------------------------------------------------ refused while running


@pytest.mark.parametrize("kind", KINDS)
def test_an_import_while_running_runs_again_in_the_fallback(kind, capsys):
    """The part of the function before the import ran once in the
    interpreter, and again in the fallback."""
    with make_pool(kind, 1) as pool:
        with pytest.warns(RuntimeWarning, match="helpers_lazy_numpy.doubled"):
            assert pool.submit(hl.doubled, 4).result(60) == 8
        assert capsys.readouterr().out.count("before the import 4") == 2
        assert pool.submit(hl.doubled, 5).result(60) == 10   # straight to the fallback now
        assert capsys.readouterr().out.count("before the import 5") == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ordered", [True, False])
def test_a_map_refused_midway_finishes_in_the_fallback(kind, ordered):
    with make_pool(kind) as pool, pytest.warns(RuntimeWarning):
        results = list(pool.map(hl.doubled, range(30), ordered=ordered))
    assert (results if ordered else sorted(results)) == [2 * x for x in range(30)]


@pytest.mark.parametrize("kind", KINDS)
def test_an_amap_refused_midway_finishes_in_the_fallback(kind):
    async def main(pool):
        return [x async for x in pool.amap(hl.doubled, range(20))]

    with make_pool(kind) as pool, pytest.warns(RuntimeWarning):
        assert asyncio.run(main(pool)) == [2 * x for x in range(20)]


@pytest.mark.parametrize("kind", KINDS)
def test_await_run_refused_runs_again_in_the_fallback(kind):
    async def main(pool):
        return await pool.run(hl.doubled, 21)

    with make_pool(kind) as pool, pytest.warns(RuntimeWarning):
        assert asyncio.run(main(pool)) == 42


# ------------------------------------------------------------------ arguments


def test_a_numpy_array_argument_says_what_to_do():
    import numpy as np

    with interpool.Pool(1) as pool:
        exc = pool.submit(hl.length, np.arange(3)).exception(60)
        assert pool.submit(hl.length, memoryview(np.arange(3))).result(60) == 3   # zero-copy
        assert pool.submit(hl.length, np.arange(3).tolist()).result(60) == 3
    assert isinstance(exc, interpool.SubinterpreterImportError)
    assert exc.stage == "argument" and exc.name == "numpy"
    text = str(exc)
    assert "memoryview(a)" in text and "a.tolist()" in text and 'fallback="processes"' in text
    assert "bad install" not in text and "\n" not in text


@pytest.mark.parametrize("kind", KINDS)
def test_a_numpy_array_argument_runs_in_the_fallback(kind):
    import numpy as np

    with make_pool(kind) as pool, pytest.warns(RuntimeWarning, match="length"):
        assert pool.submit(hl.length, np.arange(5)).result(60) == 5
        assert list(pool.map(hl.length, [np.arange(n) for n in range(4)])) == [0, 1, 2, 3]


def test_what_cannot_cross_into_a_process_says_so():
    with make_pool("processes", 1) as pool, pytest.warns(RuntimeWarning):
        # Refused by the interpreters first: the re-run cannot go either.
        exc = pool.submit(hnp.is_shared, pool.share({"a": 1})).exception(60)
        assert isinstance(exc, TypeError) and "pass the value itself" in str(exc)
        cases = {
            "pass the value itself": pool.share({"a": 1}),
            "multiprocessing queue": interpool.Queue(),
            "SharedMemory": interpool.SharedBuffer(16),
            "bytes(view)": memoryview(b"abc"),
        }
        for alternative, value in cases.items():   # now refused at the call
            with pytest.raises(TypeError, match="cannot send") as info:
                pool.submit(hnp.is_shared, value)
            assert alternative in str(info.value) and "fallback" in str(info.value)
            with pytest.raises(TypeError) as info:
                pool.submit(hnp.is_shared, [1, {"nested": value}])   # anywhere in the arguments
            assert alternative in str(info.value)
        assert pool.submit(hnp.is_shared, bytearray(b"x")).result(60) == "bytearray"   # a copy


def test_a_share_handle_to_a_thread_says_so():
    with make_pool("threads", 1) as pool, pytest.warns(RuntimeWarning):
        pool.submit(hnp.is_shared, 1).result(60)
        with pytest.raises(TypeError, match="pass the value itself"):
            pool.submit(hnp.is_shared, pool.share([1, 2]))
        # Threads share memory: a queue or a SharedBuffer is fine.
        assert pool.submit(hnp.is_shared, interpool.SharedBuffer(8)).result(60) == "SharedBuffer"


# ------------------------------------------------------------------ stopping


def test_a_process_past_its_deadline_is_killed_and_replaced():
    with make_pool("processes", 1) as pool, pytest.warns(RuntimeWarning):
        pid, _ = pool.submit(hnp.where).result(60)
        future = pool.schedule(hnp.spin, (LONG,), timeout=0.5)
        with pytest.raises(TimeoutError):
            future.result(60)
        assert wait_until(lambda: not _alive(pid), 10)
        new_pid, _ = pool.submit(hnp.where).result(60)
        assert new_pid != pid
        assert pool.submit(hnp.total, 4).result(60) == 6


def test_task_timeout_applies_to_the_fallback(pool):
    divert(pool, hnp.spin, hnp.total)
    pool._fallback.workers.task_timeout = 0.5   # as Pool(task_timeout=0.5) sets it
    with pytest.raises(TimeoutError):
        pool.submit(hnp.spin, LONG).result(60)
    pool._fallback.workers.task_timeout = None
    assert pool.submit(hnp.total, 3).result(60) == 3


def test_a_thread_past_its_deadline_is_interrupted():
    with make_pool("threads", 1) as pool, pytest.warns(RuntimeWarning):
        future = pool.schedule(hnp.spin, (LONG,), timeout=0.3)
        with pytest.raises(TimeoutError):
            future.result(60)
        assert pool.submit(hnp.total, 4).result(60) == 6


def test_cancel_with_interrupt_stops_a_running_call(pool, tmp_path):
    divert(pool, hnp.spin_then_report, hnp.total)
    path = tmp_path / "ran"
    future = pool.submit(hnp.spin_then_report, LONG, str(path))
    assert wait_until(future.running, 30)
    assert future.cancel(interrupt=True)
    assert future.cancelled()
    assert pool.submit(hnp.total, 3).result(60) == 3
    assert not path.exists()


STOP_STORM = """\
import random, threading, warnings
import helpers_numpy as hnp, interpool

warnings.simplefilter("ignore", RuntimeWarning)
random.seed(7)
for _ in range(8):
    with interpool.Pool(2, fallback="threads") as pool:
        pool.submit(hnp.spin, 0).exception(60)
        futures = [pool.schedule(hnp.spin, (random.uniform(0, 0.004),),
                                 timeout=random.uniform(0.0005, 0.004)) for _ in range(300)]
        outcomes = {type(f.exception(60)).__name__ for f in futures}
print(sorted(outcomes))
"""


def test_deadlines_racing_the_threads_leave_nothing_behind(tmp_path):
    """Many deadlines landing at every point of a fallback thread's call
    (just before it, as it takes the lock to finish, after it): every
    future resolves, each pool shuts down and the program exits (a stop
    landing as the lock was taken used to leave it held: a hang)."""
    script = tmp_path / "storm.py"
    script.write_text(STOP_STORM)
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=subprocess_env(),
                          capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stderr
    assert "TimeoutError" in proc.stdout
    assert "Exception in thread" not in proc.stderr   # (a stop that reached the wrong thread)


def test_cancel_of_a_queued_call(pool):
    divert(pool, hnp.spin, hnp.total)
    busy = [pool.submit(hnp.spin, 1) for _ in range(2)]
    queued = pool.submit(hnp.total, 5)
    assert queued.cancel()
    assert [f.result(60) for f in busy] == ["finished"] * 2
    assert queued.cancelled()


def test_max_tasks_per_worker_replaces_processes():
    with make_pool("processes", 1, max_tasks_per_worker=2) as pool, pytest.warns(RuntimeWarning):
        pids = [pool.submit(hnp.where).result(60)[0] for _ in range(6)]
    assert len(set(pids)) == 3, pids


def test_at_most_as_many_processes_as_workers():
    with make_pool("processes", 2) as pool, pytest.warns(RuntimeWarning):
        pool.submit(hnp.total, 1).result(60)
        pids = {pid for pid, _ in pool.map(hnp.where_after, [0.05] * 12)}
    assert 1 <= len(pids) <= 2


def test_shutdown_with_interrupt_stops_the_fallback(pool):
    divert(pool, hnp.spin, hnp.total)
    running = [pool.submit(hnp.spin, LONG) for _ in range(2)]
    queued = pool.submit(hnp.total, 5)
    assert wait_until(lambda: all(f.running() for f in running), 30)
    pool.shutdown(wait=True, interrupt=True)
    for future in running + [queued]:
        assert isinstance(future.exception(5), interpool.PoolShutdownError)


def test_shutdown_waits_for_the_fallback(pool):
    divert(pool, hnp.spin)
    futures = [pool.submit(hnp.spin, 0.2) for _ in range(4)]
    pool.shutdown(wait=True)
    assert all(f.done() and f.result() == "finished" for f in futures)
    assert not any(t.is_alive() for t in pool._fallback.workers.threads)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------ Ctrl-C and exit


CTRL_C = """\
import os, signal, sys, warnings
signal.signal(signal.SIGINT, signal.default_int_handler)
warnings.simplefilter("ignore")
import helpers_numpy as hnp, interpool
if __name__ == "__main__":
    with interpool.Pool(2, fallback={kind!r}) as pool:
        print("where", *pool.submit(hnp.where).result(60), flush=True)
        try:
            pool.submit(hnp.spin, 120).result()
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
            raise
"""


@pytest.mark.parametrize("kind", KINDS)
def test_ctrl_c_stops_the_program(tmp_path, kind):
    script = tmp_path / "script.py"
    script.write_text(CTRL_C.format(kind=kind))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("where"), (line, proc.stderr.read() if proc.poll() is not None else "")
    child = int(line.split()[1])
    time.sleep(0.5)   # blocked in result() by now
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 30, (out, err)
    assert "KeyboardInterrupt" in out, (out, err)
    assert proc.returncode == -signal.SIGINT, (proc.returncode, out, err)
    if kind == "processes":
        assert wait_until(lambda: not _alive(child), 10)   # no process left behind


EXIT = """\
import warnings
warnings.simplefilter("ignore")
import helpers_numpy as hnp, interpool
if __name__ == "__main__":
    pool = interpool.Pool(1, fallback={kind!r})
    pool.submit(hnp.total, 2).result(60)
    pool.submit(hnp.spin_then_report, 0.5, {path!r})
    print("exiting", flush=True)
"""


@pytest.mark.parametrize("kind", KINDS)
def test_a_normal_exit_finishes_the_fallback_work(tmp_path, kind):
    path = tmp_path / "report"
    script = tmp_path / "script.py"
    script.write_text(EXIT.format(kind=kind, path=str(path)))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "exiting" in proc.stdout
    assert path.read_text().strip()   # the call ran to its end


NUMPY_SCRIPT = """\
import os, warnings
import numpy as np
import interpool

warnings.simplefilter("ignore", RuntimeWarning)   # "runs in the fallback from now on"
SCALE = np.arange(4)

def pure(x):
    return x * x

def scaled(x):
    return (int((SCALE * x).sum()), os.getpid())

print("top level ran", flush=True)
pool = interpool.Pool(2, fallback={kind!r})
print(list(pool.map(pure, range(5))))
total, pid = pool.submit(scaled, 2).result(60)
print(total, "here" if pid == os.getpid() else "elsewhere")
pool.shutdown()
"""


@pytest.mark.parametrize("kind", KINDS)
def test_a_script_importing_numpy_with_no_guard(tmp_path, kind):
    """What a user writes first: numpy at the top, no __main__ guard; pure
    functions run in interpreters, a __main__ function that reads a numpy
    global runs in the fallback, and the script's top level runs once."""
    script = tmp_path / "script.py"
    script.write_text(NUMPY_SCRIPT.format(kind=kind))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    where = "here" if kind == "threads" else "elsewhere"
    assert proc.stdout.splitlines() == ["top level ran", "[0, 1, 4, 9, 16]", f"12 {where}"]


# ------------------------------------------------------------------ other front doors


@pytest.mark.parametrize("kind", KINDS)
def test_the_drop_in_executor(kind):
    with interpool.InterpreterPoolExecutor(2, fallback=kind) as ex, pytest.warns(RuntimeWarning):
        assert ex.submit(hnp.total, 10).result(60) == 45
        assert list(ex.map(hnp.total, range(5))) == [0, 0, 1, 3, 6]


@pytest.mark.parametrize("kind", KINDS)
def test_the_runner(kind):
    async def main():
        with interpool.Runner(workers=2, fallback=kind) as runner:
            return await runner.run(hnp.total, 10)

    with pytest.warns(RuntimeWarning):
        assert asyncio.run(main()) == 45


def test_the_joblib_backend():
    joblib = pytest.importorskip("joblib")
    import interpool.joblib  # noqa: F401

    with pytest.warns(RuntimeWarning), joblib.parallel_config(
            backend="interpool", n_jobs=2, fallback="processes"):
        results = joblib.Parallel()(joblib.delayed(hnp.total)(n) for n in range(20))
    assert results == [n * (n - 1) // 2 for n in range(20)]


@pytest.mark.parametrize("kind", KINDS)
def test_an_initializer_runs_in_each_fallback_worker(tmp_path, kind):
    path = tmp_path / "inits"
    with make_pool(kind, 1, initializer=hl.note_init, initargs=(str(path),),
                   max_tasks_per_worker=2) as pool, pytest.warns(RuntimeWarning):
        seen = [pool.submit(hnp.where_thread).result(60) for _ in range(4)]
    noted = path.read_text().split()
    if kind == "processes":
        assert all(str(pid) in noted for pid, _ in seen)
        assert len({pid for pid, _ in seen}) == 2   # replaced after 2 calls
    else:   # in this process: once per interpreter, once per fallback thread
        assert len({thread for _, thread in seen}) == 2
        assert noted.count(str(os.getpid())) >= 2


def test_an_initializer_that_raises_in_a_process_breaks_the_fallback(caplog):
    with make_pool("processes", 1, initializer=hl.fail_in_processes,
                   initargs=(os.getpid(),)) as pool, pytest.warns(RuntimeWarning):
        assert pool.submit(hl.length, [1]).result(60) == 1   # the interpreters are fine
        with pytest.raises(interpool.BrokenPool, match="no setup here"):
            pool.submit(hnp.total, 3).result(60)
        with pytest.raises(interpool.BrokenPool):
            pool.submit(hnp.total, 4).result(60)
        assert pool.submit(hl.length, [1, 2]).result(60) == 2


def test_the_dask_plugin():
    pytest.importorskip("distributed")
    import logging

    import dask
    from distributed import Client, LocalCluster

    import helpers_dask as h
    from interpool.dask import InterpreterWorkerPlugin

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": ":0"},
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        client.register_plugin(InterpreterWorkerPlugin(workers=1, fallback="processes"))
        with dask.annotate(executor="interpool"):
            numpy_task = client.submit(hnp.total, 10)
            pure_task = client.submit(h.interpreter_id, pure=False)
        assert numpy_task.result(timeout=120) == 45          # in the fallback
        assert pure_task.result(timeout=120) != 0            # still in an interpreter
