"""interpool.multiprocessing.Pool: the drop-in for multiprocessing.Pool.

CPython's own Pool tests run against it in tests/test_cpython_suite.py; these
cover what they do not (interpool's differences, bad input, the internals
those tests read and a drop-in need not copy).
"""

import itertools
import multiprocessing
import multiprocessing.pool
import os
import threading
import time

import pytest

import helpers_control as hc
import helpers_tasks as ht
import helpers_typing
import interpool
from helpers_util import wait_for_path
from interpool.multiprocessing import Pool


def test_every_method_gives_multiprocessings_results():
    with Pool(2) as pool:
        assert pool.map(ht.square, range(10)) == [x * x for x in range(10)]
        assert pool.map(ht.square, range(100), chunksize=7) == [x * x for x in range(100)]
        assert pool.map_async(ht.square, [3]).get(timeout=60) == [9]
        assert pool.starmap(ht.add, [(1, 2), (3,), (4, 5)]) == [3, 3, 9]   # arity may vary
        assert pool.starmap_async(ht.add, [(1, 2)] * 3, 2).get(timeout=60) == [3, 3, 3]
        assert list(pool.imap(ht.square, iter(range(30)), 4)) == [x * x for x in range(30)]
        assert sorted(pool.imap_unordered(ht.square, range(30))) == [x * x for x in range(30)]
        assert pool.apply(ht.add, (1,), {"c": 5}) == 6
        result = pool.apply_async(ht.square, (4,))
        assert result.get(timeout=60) == 16
        assert result.ready() and result.successful()
        assert isinstance(result, interpool.multiprocessing.AsyncResult)


def test_lambdas_and_closures_travel_by_value():
    """multiprocessing cannot pickle them; interpool sends them by value,
    chunked tasks included."""
    offset = 10
    with Pool(2) as pool:
        assert pool.map(lambda x: x + offset, range(20), chunksize=3) == list(range(10, 30))
        assert pool.apply(lambda: offset) == 10
        assert list(pool.imap(lambda x: -x, [1, 2])) == [-1, -2]


def test_callbacks_run_before_get_returns():
    seen = []
    with Pool(2) as pool:
        result = pool.map_async(ht.square, [1, 2], callback=seen.append)
        assert result.get(timeout=60) == [1, 4]
        assert seen == [[1, 4]]
        result = pool.apply_async(ht.raise_custom, ("no",), error_callback=seen.append)
        result.wait(60)
        assert type(seen[-1]).__name__ == "CustomError"
        assert not result.successful()
        with pytest.raises(Exception, match="no"):
            result.get()


def test_task_exception_has_multiprocessings_remote_traceback():
    with Pool(1) as pool:
        with pytest.raises(ht.CustomError) as info:
            pool.apply(ht.raise_on, (3, 3))
    cause = info.value.__cause__
    assert type(cause) is multiprocessing.pool.RemoteTraceback
    assert "raise_on" in cause.tb


def test_unsendable_result_is_maybe_encoding_error():
    with Pool(1) as pool:
        with pytest.raises(multiprocessing.pool.MaybeEncodingError, match="_thread.lock"):
            pool.apply(ht.return_lock)
        assert pool.apply(ht.square, (3,)) == 9   # the worker is fine


def test_unsendable_argument_fails_its_result_with_the_pickling_error():
    with Pool(1) as pool:
        result = pool.apply_async(ht.identity, (threading.Lock(),))
        with pytest.raises(TypeError, match="lock"):
            result.get(timeout=60)


def test_get_timeout_is_multiprocessings_timeout_error():
    with Pool(1) as pool:
        result = pool.apply_async(hc.spin_until, (1.0,))
        with pytest.raises(multiprocessing.TimeoutError):
            result.get(timeout=0.01)
        assert not result.ready()
        with pytest.raises(ValueError, match="not ready"):
            result.successful()
        assert result.get(timeout=60) == 1.0
        it = pool.imap(hc.spin_until, [0.5, 0.0])
        with pytest.raises(multiprocessing.TimeoutError):
            it.next(timeout=0.01)
        assert list(it) == [0.5, 0.0]   # the iterator is still good


def test_input_error_takes_its_place_in_imap_results():
    def numbers():
        yield 1
        yield 2
        raise KeyError("input")

    with Pool(2) as pool:
        it = pool.imap(ht.square, numbers())
        assert [next(it), next(it)] == [1, 4]
        with pytest.raises(KeyError, match="input"):
            next(it)
        with pytest.raises(StopIteration):
            next(it)


def test_terminate_stops_running_python_code(tmp_path):
    finally_path, entered = str(tmp_path / "finally"), str(tmp_path / "entered")
    pool = Pool(1)
    result = pool.apply_async(hc.spin_forever, (finally_path, entered))
    queued = pool.map_async(ht.square, range(10))
    wait_for_path(entered)   # the task runs (the map's tasks wait behind it)
    started = time.monotonic()
    pool.terminate()
    pool.join()
    assert time.monotonic() - started < 30   # a hang detector, not a timing
    assert os.path.exists(finally_path)      # the running task was stopped
    for dropped in (result, queued):
        assert not dropped.ready()
        with pytest.raises(multiprocessing.TimeoutError, match="terminated"):
            dropped.get()                        # at once, even without a timeout
        dropped.wait()


def test_terminate_keeps_finished_results():
    pool = Pool(1)
    done = pool.apply_async(ht.square, (5,))
    assert done.get(timeout=60) == 25
    pool.terminate()
    assert done.get() == 25


def test_close_then_join_finishes_the_work_already_given():
    pool = Pool(2)
    it = pool.imap(ht.square, (x for x in range(200)))   # read lazily, by the feeder
    mapped = pool.map_async(ht.square, range(50), chunksize=1)
    pool.close()
    with pytest.raises(ValueError, match="Pool not running"):
        pool.map(ht.square, [1])
    pool.join()
    assert mapped.ready() and mapped.get() == [x * x for x in range(50)]
    assert list(it) == [x * x for x in range(200)]


def test_context_manager_terminates_and_refuses_reentry():
    pool = Pool(1)
    with pool as entered:
        assert entered is pool
    with pytest.raises(ValueError, match="Pool not running"):
        with pool:
            pass
    pool.join()


def test_maxtasksperchild_gives_fresh_interpreters():
    with Pool(1, maxtasksperchild=2) as pool:
        ids = [pool.apply(ht.interpreter_id) for _ in range(6)]
    assert len(set(ids)) == 3


def test_initializer_runs_in_every_worker_with_its_args():
    with Pool(2, ht.init_worker, ("hello",)) as pool:
        states = pool.map(ht.init_state_after, [0.2, 0.2], chunksize=1)
    assert {state[2] for state in states} == {("hello", None)}


def test_failing_initializer_breaks_the_pool_instead_of_hanging():
    with Pool(1, ht.failing_initializer, ("bad init",)) as pool:
        with pytest.raises(interpool.BrokenPool):
            pool.apply(ht.square, (1,))


def test_manager_proxies_reach_their_manager():
    """Workers use the caller's authkey, as child processes do (proxies in
    initargs and in task arguments)."""
    with multiprocessing.Manager() as manager:
        namespace = manager.Namespace()
        namespace.count = 0
        queue = manager.Queue()
        with Pool(1, ht.identity, (namespace,)) as pool:
            pool.apply(queue.put, ("from a worker",))
        assert queue.get(timeout=60) == "from a worker"


def test_context_is_accepted_and_ignored():
    with Pool(1, context=multiprocessing.get_context("spawn")) as pool:
        assert pool.apply(ht.square, (2,)) == 4


def test_unclosed_running_pool_warns_like_multiprocessings():
    pool = Pool(1)
    with pytest.warns(ResourceWarning, match="unclosed running multiprocessing pool"):
        pool.__del__()
    pool.terminate()


def test_pool_cannot_be_pickled():
    import pickle

    with Pool(1) as pool:
        with pytest.raises(NotImplementedError):
            pickle.dumps(pool)


# ------------------------------------------------------------ bad input


@pytest.mark.parametrize("processes", [0, -1])
def test_processes_below_one_is_value_error(processes):
    with pytest.raises(ValueError, match="Number of processes must be at least 1"):
        Pool(processes)
    with pytest.raises(ValueError):
        multiprocessing.Pool(processes)   # the same, with multiprocessing's


@pytest.mark.parametrize("value", [0, -1, 0.5, "12"])
def test_bad_maxtasksperchild_is_value_error(value):
    with pytest.raises(ValueError, match="maxtasksperchild must be a positive int or None"):
        Pool(1, maxtasksperchild=value)


def test_bad_processes_type_and_initializer_are_type_errors():
    with pytest.raises(TypeError):
        Pool("2")
    with pytest.raises(TypeError, match="initializer must be a callable"):
        Pool(1, initializer=1)


def test_calls_on_a_closed_or_terminated_pool_are_value_errors():
    pool = Pool(1)
    pool.close()
    calls = [
        lambda: pool.apply_async(ht.square, (1,)), lambda: pool.apply(ht.square, (1,)),
        lambda: pool.map(ht.square, [1]), lambda: pool.map_async(ht.square, [1]),
        lambda: pool.starmap(ht.add, [(1,)]), lambda: pool.imap(ht.square, [1]),
        lambda: pool.imap_unordered(ht.square, [1]),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="Pool not running"):
            call()
    pool.join()
    pool.terminate()
    for call in calls:
        with pytest.raises(ValueError, match="Pool not running"):
            call()


def test_join_on_a_running_pool_is_value_error():
    pool = Pool(1)
    with pytest.raises(ValueError, match="Pool is still running"):
        pool.join()
    pool.terminate()
    pool.join()


@pytest.mark.parametrize("method", ["imap", "imap_unordered", "map", "starmap"])
def test_bad_chunksize(method):
    with Pool(1) as pool:
        call = getattr(pool, method)
        with pytest.raises(ValueError, match="Chunksize must be 1"):
            call(ht.square, [(1,)], 0)
        with pytest.raises(TypeError, match="chunksize"):
            call(ht.square, [(1,)], "2")
        assert call(ht.identity, [(1,)], 1) is not None   # the pool still works


def test_results_are_not_kept_after_they_are_consumed():
    import gc

    with Pool(2) as pool:
        it = pool.imap(ht.square, itertools.islice(itertools.count(), 500), 10)
        assert sum(it) == sum(x * x for x in range(500))
        assert not it._pending and not it._items
        assert pool.map(ht.square, range(100), 1)[-1] == 99 * 99
        del it
        gc.collect()
        assert len(pool._jobs) == 0


def test_workers_import_neither_multiprocessing_nor_the_caller_side():
    """The authkey is set only if a task imports multiprocessing (an import
    hook), and the chunk runners live apart from the caller side: a plain
    map costs workers no import of multiprocessing, typing or
    concurrent.futures."""
    with Pool(1) as pool:
        loaded = pool.map(helpers_typing.loaded, [["multiprocessing", "interpool.multiprocessing",
                                               "typing", "concurrent.futures"]] * 2, chunksize=2)
    assert loaded == [[], []]
