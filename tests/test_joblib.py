"""interpool.joblib: the "interpool" joblib backend.

Modelled on joblib's own backend tests (joblib/test/test_parallel.py):
ordered results, exceptions with their type, generators, n_jobs rules,
abort on error, nested calls, the managed (``with Parallel``) form.  Tasks
live in helpers_joblib.py; tasks that must wait block on interpool Queues
that the test opens, never on timings.
"""

import multiprocessing
import queue
import threading

import pytest

joblib = pytest.importorskip("joblib", reason="needs joblib (Debian: python3-joblib)")

from joblib import Parallel, delayed, parallel_config  # noqa: E402
from joblib._parallel_backends import SequentialBackend, ThreadingBackend  # noqa: E402

import helpers_joblib as h  # noqa: E402
import interpool  # noqa: E402
from helpers_util import run_python  # noqa: E402
import interpool.joblib  # noqa: E402
from interpool.joblib import InterpoolBackend  # noqa: E402

HANG = 60  # seconds: only to turn a hang into a failure


def drain(q: interpool.Queue) -> set:
    items = set()
    while True:
        try:
            items.add(q.get_nowait())
        except queue.Empty:
            return items


def supports_unordered() -> bool:
    try:
        Parallel(n_jobs=2, backend="interpool", return_as="generator_unordered")
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------ results


@pytest.mark.parametrize("n", [0, 1, 5, 1000])
@pytest.mark.parametrize("batch_size", ["auto", 1, 7])
def test_results_in_order(n, batch_size):
    with parallel_config(backend="interpool", n_jobs=2):
        out = Parallel(batch_size=batch_size)(delayed(h.square)(i) for i in range(n))
    assert out == [i * i for i in range(n)]


def test_one_task_per_batch_all_dispatched_at_once_does_not_hang(tmp_path):
    """joblib's dispatching thread holds its lock while it submits, and the
    done-callback of a finished batch takes that lock: the callback must not
    hold up submit() (it used to: a deadlock, most runs hung within 30 calls)."""
    script = (
        "import helpers_joblib as h\n"
        "from joblib import Parallel, delayed\n"
        "import interpool.joblib\n"
        "for _ in range(30):\n"
        "    out = Parallel(n_jobs=2, backend='interpool', batch_size=1, pre_dispatch='all')(\n"
        "        delayed(h.square)(i) for i in range(1000))\n"
        "    assert out == [i * i for i in range(1000)]\n"
        "print('ok')\n"
    )
    proc = run_python(["-c", script], cwd=tmp_path, timeout=HANG * 3)  # TimeoutExpired: hung
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ok"]


def test_keyword_arguments_and_callables_that_travel_pickled():
    with parallel_config(backend="interpool", n_jobs=2):
        assert Parallel()(delayed(h.scale)(i, factor=3) for i in range(4)) == [0, 3, 6, 9]
        assert Parallel()(delayed(lambda x: x - 1)(i) for i in range(3)) == [-1, 0, 1]


def test_tasks_run_in_worker_interpreters():
    with parallel_config(backend="interpool", n_jobs=2):
        ids = Parallel()(delayed(h.interpreter_id)(i) for i in range(8))
    assert 0 not in ids
    assert len(set(ids)) <= 2


def test_auto_batching_groups_small_tasks():
    with parallel_config(backend="interpool", n_jobs=2):
        parallel = Parallel(batch_size="auto")
        assert parallel(delayed(h.square)(i) for i in range(20_000))[-1] == 19_999**2
    # joblib grew the batches past one task each (the tasks are tiny).
    assert parallel.n_dispatched_batches < parallel.n_dispatched_tasks


def test_pool_options_pass_through():
    with parallel_config(backend="interpool", n_jobs=2, initializer=h.set_value, initargs=(7,)):
        assert Parallel()(delayed(h.get_value)(i) for i in range(4)) == [7] * 4


def test_require_sharedmem_falls_back_to_threads():
    with parallel_config(backend="interpool", n_jobs=2):
        ids = Parallel(require="sharedmem")(delayed(h.interpreter_id)(i) for i in range(4))
    assert ids == [0] * 4


# ------------------------------------------------------------------- n_jobs


def test_n_jobs_minus_one_uses_every_cpu():
    with parallel_config(backend="interpool", n_jobs=-1):
        parallel = Parallel()
        assert parallel(delayed(h.square)(i) for i in range(10)) == [i * i for i in range(10)]
        assert parallel._effective_n_jobs() == joblib.cpu_count()
    backend = InterpoolBackend()
    assert backend.effective_n_jobs(-1) == joblib.cpu_count()
    assert backend.effective_n_jobs(-2) == max(joblib.cpu_count() - 1, 1)
    assert backend.effective_n_jobs(-1000) == 1
    assert backend.effective_n_jobs(3) == 3


@pytest.mark.parametrize("n_jobs", [None, 1])
def test_one_job_or_unset_runs_sequentially_in_the_caller(n_jobs):
    with parallel_config(backend="interpool", n_jobs=n_jobs):
        parallel = Parallel()
        assert parallel(delayed(h.interpreter_id)(i) for i in range(3)) == [0, 0, 0]
        assert isinstance(parallel._backend, SequentialBackend)


def test_n_jobs_zero_is_an_error():
    with pytest.raises(ValueError, match="n_jobs == 0"):
        Parallel(n_jobs=0, backend="interpool")(delayed(h.square)(i) for i in range(2))


def test_unknown_backend_option_fails_at_the_call():
    with pytest.raises(TypeError, match="not an interpool.Pool option"):
        with parallel_config(backend="interpool", n_jobs=2, workerz=3):
            pass
    with pytest.raises(TypeError, match="n_jobs"):
        InterpoolBackend(workers=3)


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kind, exc_type", [("value", ValueError), ("custom", h.CustomError), ("zero", ZeroDivisionError)]
)
def test_exceptions_keep_their_type(kind, exc_type):
    with pytest.raises(exc_type) as info:
        Parallel(n_jobs=2, backend="interpool")(delayed(h.fail_at)(i, 3, kind) for i in range(30))
    assert "in fail_at" in str(info.value.__cause__)  # the worker-side traceback


def test_argument_that_cannot_travel():
    with pytest.raises(TypeError, match="lock"):
        Parallel(n_jobs=2, backend="interpool")(delayed(h.square)(threading.Lock()) for _ in range(2))


def test_error_in_the_task_iterator():
    def tasks(raise_at):
        for i in range(20):
            if i == raise_at:
                raise ValueError("iterator failed")
            yield delayed(h.square)(i)

    with Parallel(n_jobs=2, backend="interpool") as parallel:
        for raise_at in (0, 5, 19):
            with pytest.raises(ValueError, match="iterator failed"):
                parallel(tasks(raise_at))


def test_managed_backend_keeps_one_pool_and_survives_errors():
    with Parallel(n_jobs=2, backend="interpool") as parallel:
        assert parallel(delayed(h.square)(i) for i in range(5)) == [0, 1, 4, 9, 16]
        pool = parallel._backend._pool
        for _ in range(5):
            with pytest.raises(ValueError):
                parallel(delayed(h.fail_at)(i, 2) for i in range(10))
            # No result of the aborted call leaks into this one (joblib keeps
            # its undispatched batches; the backend drops them).
            assert parallel(delayed(h.square)(i) for i in range(5)) == [0, 1, 4, 9, 16]
        assert parallel._backend._pool is pool
    assert parallel._backend._pool is None  # shut down when the block ends


def test_error_aborts_the_remaining_tasks():
    """Task 0 fails while tasks 1 and 2 occupy both workers and 3 is queued:
    joblib re-raises at once, 3 is dropped and nothing more is dispatched."""
    gate, started = interpool.Queue(), interpool.Queue()
    with Parallel(n_jobs=2, batch_size=1, backend="interpool") as parallel:
        with pytest.raises(ValueError, match="first task failed"):
            parallel(delayed(h.fail_or_wait)(i, gate, started) for i in range(50))
        for _ in range(50):
            gate.put(None)
        # The pool is FIFO: a task 3 left in its queue would start before these.
        assert parallel(delayed(h.square)(i) for i in range(4)) == [0, 1, 4, 9]
    assert drain(started) <= {0, 1, 2}


def test_error_returns_without_waiting_for_running_tasks():
    gate, started = interpool.Queue(), interpool.Queue()
    waited = threading.Event()

    def open_gate() -> None:  # only if the call hangs on its blocked tasks
        waited.set()
        for _ in range(50):
            gate.put(None)

    watchdog = threading.Timer(HANG, open_gate)
    watchdog.start()
    try:
        with pytest.raises(ValueError, match="first task failed"):
            Parallel(n_jobs=2, batch_size=1, backend="interpool")(
                delayed(h.fail_or_wait)(i, gate, started) for i in range(50)
            )
    finally:
        watchdog.cancel()
    assert not waited.is_set(), "Parallel waited for the tasks blocked on the gate"
    for _ in range(50):
        gate.put(None)
    assert 0 in drain(started)


def test_timeout():
    gate, started = interpool.Queue(), interpool.Queue()
    gates = [gate] * 4
    try:
        with pytest.raises(multiprocessing.TimeoutError):  # joblib's timeout error
            Parallel(n_jobs=2, batch_size=1, backend="interpool", timeout=0.5)(
                delayed(h.gated)(i, gates, started) for i in range(4)
            )
    finally:
        for _ in range(4):
            gate.put(None)


# --------------------------------------------------------------- generators


def test_generator_yields_each_result_as_it_arrives():
    """Result i comes out while task i+1 still waits for its gate."""
    n = 6
    gates = [interpool.Queue() for _ in range(n)]
    started = interpool.Queue()
    results = Parallel(n_jobs=2, batch_size=1, backend="interpool", return_as="generator")(
        delayed(h.gated)(i, gates, started) for i in range(n)
    )
    try:
        for i in range(n):
            assert next(results) == i
            if i + 1 < n:
                gates[i + 1].put(None)
        assert next(results, "end") == "end"
    finally:
        for g in gates:
            g.put(None)


def test_generator_unordered():
    if not supports_unordered():
        pytest.skip("this joblib has no return_as='generator_unordered'")
    gates = [interpool.Queue() for _ in range(3)]
    started = interpool.Queue()
    # Task 1 waits for its gate, so task 2 (no wait once opened) ... task 0 first.
    results = Parallel(n_jobs=2, batch_size=1, backend="interpool",
                       return_as="generator_unordered")(
        delayed(h.gated)(i, gates, started) for i in range(3)
    )
    try:
        assert next(results) == 0  # the only task that does not wait
        gates[2].put(None)
        assert next(results) == 2  # before task 1, which still waits
        gates[1].put(None)
        assert next(results) == 1
    finally:
        for g in gates:
            g.put(None)


def test_separate_generators_at_once():
    first = Parallel(2, backend="interpool", return_as="generator")(
        delayed(h.square)(i) for i in range(10)
    )
    second = Parallel(2, backend="interpool", return_as="generator")(
        delayed(h.square)(i) for i in range(10, 20)
    )
    assert list(second) == [i * i for i in range(10, 20)]
    assert list(first) == [i * i for i in range(10)]


# ------------------------------------------------------------------ nesting


def test_task_that_calls_parallel_does_not_deadlock():
    """joblib cannot be imported in a worker interpreter today (loky imports
    faulthandler, a single-phase-init module): the task fails at once with
    ImportError.  Should joblib become importable there, the nested call
    must run (sequentially, joblib's rule under this backend)."""
    try:
        out = Parallel(n_jobs=2, backend="interpool")(delayed(h.nested_parallel)(i) for i in range(2))
    except ImportError as exc:
        assert "subinterpreter" in str(exc)
    else:
        assert out == [[0, 1, 4], [1, 4, 9]]


def test_nested_backend_is_sequential():
    backend, n_jobs = InterpoolBackend(nesting_level=0).get_nested_backend()
    assert isinstance(backend, SequentialBackend) and backend.nesting_level == 1
    assert n_jobs is None


def run_inner(k: int) -> list[int]:
    # Runs on a joblib thread of the main interpreter.
    return Parallel(n_jobs=2, backend="interpool")(delayed(h.square)(k + j) for j in range(3))


def test_interpool_inside_threading_backend():
    out = Parallel(n_jobs=2, backend="threading")(delayed(run_inner)(k) for k in range(4))
    assert out == [[(k + j) ** 2 for j in range(3)] for k in range(4)]


def test_threading_backend_nested_in_parallel_config():
    with parallel_config(backend="interpool", n_jobs=2):
        with parallel_config(backend="threading"):
            parallel = Parallel()
            assert isinstance(parallel._backend, ThreadingBackend)
        assert isinstance(Parallel()._backend, InterpoolBackend)


def test_concurrent_parallel_calls_from_threads():
    results: dict[int, list[int]] = {}

    def run(k: int) -> None:
        results[k] = Parallel(n_jobs=2, backend="interpool")(
            delayed(h.square)(i) for i in range(k, k + 50)
        )

    threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG)
    assert results == {k: [i * i for i in range(k, k + 50)] for k in range(3)}


def test_cancel_asks_for_an_interrupt_where_futures_support_it():
    class Interruptible:
        def __init__(self):
            self.calls = []

        def cancel(self, interrupt=False):
            self.calls.append(interrupt)
            return True

    class QueuedOnly:
        def __init__(self):
            self.calls = 0

        def cancel(self):
            self.calls += 1
            return False

    new, old = Interruptible(), QueuedOnly()
    assert interpool.joblib._cancel(new) and new.calls == [True]
    assert not interpool.joblib._cancel(old) and old.calls == 1
