"""interpool.dask: Dask workers that run tasks in interpool interpreters.

Real LocalClusters with worker processes on loopback.  Task functions live
in helpers_dask.py, which worker processes import by name (spawned workers
inherit this process's sys.path, which conftest.py extends with tests/).
Tasks that must wait for the test wait on marker files; timeouts here only
detect hangs.
"""

import functools
import inspect
import logging
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("distributed", reason="needs Dask's distributed (Debian: python3-distributed)")

import dask  # noqa: E402
import dask.bag as db  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

import helpers_dask as h  # noqa: E402
import interpool  # noqa: E402
from interpool.dask import InterpreterExecutor, InterpreterWorkerPlugin  # noqa: E402

HANG = 90  # seconds: only to turn a hang into a failure

# Dashboard off; the scheduler's HTTP endpoint still starts: on a free port.
CLUSTER = dict(
    processes=True, dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"},
    silence_logs=logging.CRITICAL,
)


def interrupt_supported() -> bool:
    """Whether interpool futures accept cancel(interrupt=True) yet."""
    with interpool.Pool(1) as pool:
        future = pool.submit(abs, -1)
        future.result()
        return "interrupt" in inspect.signature(future.cancel).parameters


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + HANG
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def executing_keys(client: Client) -> set:
    def keys(dask_worker):
        return [ts.key for ts in dask_worker.state.tasks.values() if ts.state == "executing"]

    return {k for ks in client.run(keys).values() for k in ks}


@pytest.fixture(scope="module")
def client():
    # Two Dask threads but one interpreter: a second task waits in the pool's queue.
    with LocalCluster(n_workers=1, threads_per_worker=2, **CLUSTER) as cluster:
        with Client(cluster) as c:
            c.register_plugin(InterpreterWorkerPlugin(workers=1))
            yield c


@pytest.fixture
def markers(tmp_path):
    yield str(tmp_path)
    h.mark(str(tmp_path), "release")  # let any blocked task end


# ------------------------------------------------------------------ results


def test_results_and_dependencies(client):
    with dask.annotate(executor="interpool"):
        x = client.submit(h.square, 7)
        y = client.submit(h.add, x, b=3)  # a dependency as a positional arg
        z = client.submit(h.total, [x, y, 1], {"a": x, "b": 2})  # inside containers
        many = client.map(h.square, range(20))
    assert x.result(timeout=HANG) == 49
    assert y.result(timeout=HANG) == 52
    assert z.result(timeout=HANG) == 49 + 52 + 1 + 49 + 2
    assert client.gather(many) == [i * i for i in range(20)]


def test_callables_that_do_not_travel_by_reference(client):
    with dask.annotate(executor="interpool"):
        lam = client.submit(lambda v: v + 1, 41)  # cloudpickled by value
        part = client.submit(functools.partial(h.add, b=10), 5)
    assert lam.result(timeout=HANG) == 42
    assert part.result(timeout=HANG) == 15


def test_collections_with_nested_tasks(client):
    # dask.bag inlines its own functions around the user's: the task runs whole.
    with dask.annotate(executor="interpool"):
        bag = db.from_sequence(range(10), npartitions=2).map(h.square)
        assert client.compute(bag.sum()).result(timeout=HANG) == sum(i * i for i in range(10))
        delayed = dask.delayed(h.add)(dask.delayed(h.square)(3), b=1)
        assert client.compute(delayed).result(timeout=HANG) == 10


def test_tasks_run_in_a_worker_interpreter(client):
    with dask.annotate(executor="interpool"):
        inside = client.submit(h.interpreter_id, pure=False)
    outside = client.submit(h.interpreter_id, pure=False)  # Dask's own thread pool
    assert inside.result(timeout=HANG) != 0
    assert outside.result(timeout=HANG) == 0


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kind, exc_type", [("value", ValueError), ("custom", h.CustomError), ("key", KeyError)]
)
def test_exceptions_keep_their_type(client, kind, exc_type):
    with dask.annotate(executor="interpool"):
        future = client.submit(h.fail, kind, f"bad {kind}")
    with pytest.raises(exc_type, match=f"bad {kind}") as info:
        future.result(timeout=HANG)
    # The worker-side traceback travels as the cause: it names the failing line.
    assert "in fail" in str(info.value.__cause__)
    # The worker is still fine afterwards.
    with dask.annotate(executor="interpool"):
        assert client.submit(h.square, 3, pure=False).result(timeout=HANG) == 9


def test_unknown_executor_name_fails_like_dask(client):
    with dask.annotate(executor="nope"):
        future = client.submit(h.square, 2)
    with pytest.raises(ValueError, match="Invalid executor 'nope'"):
        future.result(timeout=HANG)


# ------------------------------------------------------------- cancellation


def test_cancel_drops_a_queued_task(client, markers):
    with dask.annotate(executor="interpool"):
        running = client.submit(h.block, markers, "a", pure=False)
        wait_for(lambda: h.exists(markers, "started-a"), "task a to start")
        queued = client.submit(h.block, markers, "b", pure=False)
        # Dask runs two tasks at once here, the pool one: b waits in the pool.
        wait_for(lambda: queued.key in executing_keys(client), "task b to reach the pool")
        client.cancel(queued)
        wait_for(lambda: queued.key not in executing_keys(client), "Dask to release b")
        h.mark(markers, "release")
        assert running.result(timeout=HANG) == "a"
        # The pool is FIFO with one interpreter: had b stayed queued, it would
        # have started before this one.
        assert client.submit(h.record, markers, "c", pure=False).result(timeout=HANG) == "c"
    assert not h.exists(markers, "started-b")
    assert queued.cancelled()


@pytest.mark.skipif(not interrupt_supported(), reason="interpool cannot interrupt running tasks yet")
def test_cancel_interrupts_a_running_task(client, markers):
    with dask.annotate(executor="interpool"):
        running = client.submit(h.block, markers, "a", pure=False)
        wait_for(lambda: h.exists(markers, "started-a"), "task a to start")
        client.cancel(running)
        # One interpreter: this runs only once the interrupted task has stopped.
        assert client.submit(h.record, markers, "c", pure=False).result(timeout=HANG) == "c"
    assert not h.exists(markers, "finished-a")


def test_cancel_asks_for_an_interrupt_where_futures_support_it():
    class Interruptible:
        def __init__(self):
            self.calls = []

        def cancel(self, interrupt=False):
            self.calls.append(interrupt)
            return True

    future = Interruptible()
    assert interpool.dask._cancel(future) and future.calls == [True]


def test_task_released_before_it_reaches_the_pool_does_not_run(markers):
    from types import SimpleNamespace

    from dask._task_spec import Task
    from distributed.worker import Reschedule, _run_task_simple

    task = Task("k", h.record, markers, "x")
    state = SimpleNamespace(state="cancelled")
    worker = SimpleNamespace(state=SimpleNamespace(tasks={"k": state}))
    executor = InterpreterExecutor(interpool.Pool(1), worker=worker)
    try:
        message = executor.submit(_run_task_simple, task, {}, 0.0).result(timeout=HANG)
        assert message["op"] == "task-erred"
        assert isinstance(message["actual_exception"], Reschedule)
        assert not h.exists(markers, "started-x")
        state.state = "executing"
        message = executor.submit(_run_task_simple, task, {}, 1.5).result(timeout=HANG)
        assert message["op"] == "task-finished" and message["result"] == "x"
        assert message["nbytes"] > 0 and message["type"] is str
        assert message["start"] <= message["stop"] and message["thread"] != 0
    finally:
        executor.shutdown()


# ------------------------------------------------- default, plugin lifecycle


def test_default_true_runs_every_task_in_the_pool(client):
    plugin = InterpreterWorkerPlugin(workers=1, name="everything", default=True)
    client.register_plugin(plugin)
    try:
        assert client.submit(h.interpreter_id, pure=False).result(timeout=HANG) != 0

        # Other work Dask sends to its default executor stays on its threads.
        def other_work(dask_worker):
            return dask_worker.executor.submit(h.interpreter_id).result(timeout=HANG)

        assert list(client.run(other_work).values()) == [0]
    finally:
        client.unregister_worker_plugin("everything")
    assert client.submit(h.interpreter_id, pure=False).result(timeout=HANG) == 0


def test_executor_and_pool_on_the_worker(client):
    def describe(dask_worker):
        executor = dask_worker.executors["interpool"]
        return type(executor).__name__, executor.pool.workers

    assert list(client.run(describe).values()) == [("InterpreterExecutor", 1)]


def test_workers_default_to_the_worker_thread_count(client):
    client.register_plugin(InterpreterWorkerPlugin(name="sized"))
    try:
        sizes = client.run(lambda dask_worker: dask_worker.executors["sized"].pool.workers)
        assert list(sizes.values()) == [2]
        with dask.annotate(executor="sized"):
            assert client.submit(h.interpreter_id, pure=False).result(timeout=HANG) != 0
    finally:
        client.unregister_worker_plugin("sized")
    assert list(client.run(lambda dask_worker: "sized" in dask_worker.executors).values()) == [False]


@pytest.mark.parametrize(
    "kwargs, exc_type, match",
    [
        (dict(workers=0), ValueError, "at least 1"),
        (dict(workers=-2), ValueError, "at least 1"),
        (dict(workers="2"), TypeError, "int or None"),
        (dict(workers=True), TypeError, "int or None"),
        (dict(name=""), ValueError, "non-empty"),
        (dict(name="actor"), ValueError, "other than"),
        (dict(name=3), TypeError, "name must be a str"),
        (dict(default="yes"), TypeError, "default must be a bool"),
        (dict(concurency=2), TypeError, "not an interpool.Pool option"),
        (dict(concurrency="many"), None, None),  # Pool checks values: on the worker
    ],
)
def test_bad_arguments_fail_at_the_call(kwargs, exc_type, match):
    if exc_type is None:
        InterpreterWorkerPlugin(**kwargs)
        return
    with pytest.raises(exc_type, match=match):
        InterpreterWorkerPlugin(**kwargs)


def test_plain_callables_on_the_executor():
    executor = InterpreterExecutor(interpool.Pool(1))
    assert executor.submit(h.square, 6).result(timeout=HANG) == 36
    assert executor.submit(h.interpreter_id).result(timeout=HANG) != 0
    assert list(executor.map(h.square, range(4))) == [0, 1, 4, 9]
    executor.shutdown(wait=True, cancel_futures=True)
    with pytest.raises(RuntimeError):
        executor.submit(h.square, 2)


# ---------------------------------------------------------------- shutdown


def test_closing_a_cluster_with_tasks_in_flight_does_not_hang(tmp_path):
    markers = str(tmp_path)
    try:
        started = time.monotonic()
        cluster = LocalCluster(n_workers=1, threads_per_worker=3, **CLUSTER)
        client = Client(cluster)
        client.register_plugin(InterpreterWorkerPlugin(workers=1))
        with dask.annotate(executor="interpool"):
            futures = [client.submit(h.block, markers, str(i), pure=False) for i in range(3)]
        wait_for(lambda: h.exists(markers, "started-0"), "a task to start")
        wait_for(lambda: len(executing_keys(client)) == 3, "all tasks to reach the pool")
        client.close(timeout=HANG)
        cluster.close(timeout=20)
        assert time.monotonic() - started < HANG
        assert not any(f.done() and f.status == "finished" for f in futures)
    finally:
        h.mark(markers, "release")
    # Queued tasks were dropped, not run, when the worker closed.
    assert not h.exists(markers, "started-1") and not h.exists(markers, "started-2")


# ----------------------------------------------------------------- preload


def test_preload_with_options(tmp_path):
    with LocalCluster(
        n_workers=1, threads_per_worker=2, **CLUSTER,
        preload=["interpool.dask"], preload_argv=["--interpool-workers", "3", "--interpool-name", "ip"],
    ) as cluster, Client(cluster) as client:
        sizes = client.run(lambda dask_worker: dask_worker.executors["ip"].pool.workers)
        assert list(sizes.values()) == [3]
        with dask.annotate(executor="ip"):
            assert client.submit(h.interpreter_id, pure=False).result(timeout=HANG) != 0
            assert client.submit(h.square, 5).result(timeout=HANG) == 25


def test_dask_worker_command_line_preload():
    src = os.path.dirname(os.path.dirname(os.path.abspath(interpool.__file__)))
    tests = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, tests]))
    with LocalCluster(n_workers=0, **CLUSTER) as cluster, Client(cluster) as client:
        worker = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
             "--nthreads", "2", "--no-dashboard", "--preload", "interpool.dask",
             "--interpool-workers", "2", "--interpool-default"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        try:
            client.wait_for_workers(1, timeout=HANG)
            assert client.submit(h.interpreter_id, pure=False).result(timeout=HANG) != 0
            sizes = client.run(lambda dask_worker: dask_worker.executors["interpool"].pool.workers)
            assert list(sizes.values()) == [2]
        finally:
            client.retire_workers(close_workers=True)
            try:
                _, err = worker.communicate(timeout=HANG)
            except subprocess.TimeoutExpired:
                worker.kill()
                _, err = worker.communicate()
    assert worker.returncode == 0, err
    assert "Failed to start preload" not in err


# ----------------------------------------------------------------- example


def test_example_dask_grid_quick():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = os.path.dirname(os.path.dirname(os.path.abspath(interpool.__file__)))
    env = dict(os.environ, PYTHONPATH=src)
    proc = subprocess.run(
        [sys.executable, "-W", "default::ResourceWarning",
         os.path.join(root, "examples", "dask_grid.py"), "--quick"],
        cwd=root, env=env, capture_output=True, text=True, timeout=HANG * 2,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for label in ("one GIL", "2 interpreters", "2 processes"):
        assert label in proc.stdout
    assert "OK: all three agree" in proc.stdout
    assert proc.stderr == "", proc.stderr
