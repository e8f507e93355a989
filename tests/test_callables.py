"""How callables travel: those of importable modules by reference, other
plain functions (lambdas, nested functions, closures) and local classes by
value, through every front door; what cannot travel gets a clear TypeError
at the call (Pool) or fails through the future (the drop-in executor, as
the stdlib's does).  Functions of __main__: test_byvalue.py and
test_main_loading.py."""

import asyncio
import functools
from concurrent.futures import BrokenExecutor
from _interpreters import NotShareableError  # concurrent.interpreters' class; 3.13 too

import pytest

import helpers_byvalue as hb
import helpers_no_subinterp as hn
import helpers_tasks as ht
import interpool
from interpool import InterpreterPoolExecutor, InterpreterThreadPoolExecutor, interpreter


@pytest.fixture(scope="module")
def pool():
    p = interpool.Pool(2, name="callables-pool")
    assert p.wait_ready(60)
    yield p
    p.shutdown()


# ------------------------------------------------------------ every front door


def test_lambda_through_every_front_door(pool):
    double = lambda x: x * 2  # noqa: E731
    assert pool.submit(double, 4).result(60) == 8
    assert pool.schedule(double, (5,), timeout=60).result(60) == 10
    assert list(pool.map(double, range(5))) == [0, 2, 4, 6, 8]
    assert list(pool.map(double, range(7), chunksize=3)) == [x * 2 for x in range(7)]
    assert list(pool.map(double, range(5), buffersize=2)) == [0, 2, 4, 6, 8]

    async def main():
        wrapped = pool.wrap(double)
        got = [await pool.run(double, 1), await wrapped(2)]
        got.append([x async for x in pool.amap(double, range(3))])
        async for fut in pool.as_completed([(double, 9)]):
            got.append(await fut)
        return got

    assert asyncio.run(main()) == [2, 4, [0, 2, 4], 18]


def test_lambda_through_the_executors():
    with InterpreterPoolExecutor(2) as ex:
        assert ex.submit(lambda x: x + 1, 1).result(60) == 2
        assert list(ex.map(lambda x: -x, range(3))) == [0, -1, -2]

        async def main():
            return await asyncio.get_running_loop().run_in_executor(ex, lambda: "loop")

        assert asyncio.run(main()) == "loop"
    with InterpreterThreadPoolExecutor(2) as ex:
        assert ex.submit(interpreter(lambda x: x * 3), 3).result(60) == 9
        assert ex.submit(interpreter(hb.make_adder(5)), 1).result(60) == 6


def test_runner_runs_a_closure():
    async def main():
        with interpool.Runner(workers=1) as runner:
            return await runner.run(hb.make_adder(10), 5), await runner.wrap(lambda: 7)()

    assert asyncio.run(main()) == (15, 7)


# ------------------------------------------------------------ by value


def test_nested_function_reads_its_modules_globals(pool):
    # Its globals are helpers_byvalue's, imported by name in the worker.
    assert pool.submit(hb.make_scaler(), 4).result(60) == 4 * hb.SCALE


def test_closure_sends_its_current_captured_values(pool):
    assert pool.submit(hb.make_adder(3), 1).result(60) == 4
    box = [1, 2]
    view = hb.make_counter_view(box)
    assert pool.submit(view).result(60) == [1, 2]
    box.append(3)
    assert pool.submit(view).result(60) == [1, 2, 3]   # the cell's content as it is now


def test_defaults_travel_with_each_call(pool):
    fn = lambda x, y=2, *, z=3: (x, y, z)  # noqa: E731
    assert pool.submit(fn, 1).result(60) == (1, 2, 3)
    fn.__defaults__ = (20,)
    fn.__kwdefaults__ = {"z": 30}
    assert pool.submit(fn, 1).result(60) == (1, 20, 30)


def test_recursive_and_composed_closures(pool):
    assert pool.submit(hb.make_recursive(), 6).result(60) == 720
    assert pool.submit(hb.make_composed(4), 5).result(60) == 21


def test_async_closure(pool):
    assert pool.submit(hb.make_async(3), 5).result(60) == 15


def test_partial_of_a_lambda(pool):
    sub = functools.partial(lambda a, b: a - b, 10)
    assert pool.submit(sub, 4).result(60) == 6
    assert list(pool.map(sub, [1, 2])) == [9, 8]


def test_closure_as_initializer_sets_its_modules_global():
    # The initializer's globals are helpers_byvalue's, in the worker: a
    # module-level task of that module sees what it set (not so with the
    # stdlib executor, which runs it against the worker's __main__).
    with interpool.Pool(1, initializer=hb.make_initializer("ready")) as p:
        assert p.submit(hb.read_state).result(60) == "ready"
    with interpool.Pool(1, initializer=lambda: None) as p:
        assert p.submit(ht.add, 1, 2).result(60) == 3


def test_same_function_is_registered_once(pool):
    fn = lambda x: x  # noqa: E731
    pool.submit(fn, 0).result(60)
    registered = len(pool._fn_ids)
    for i in range(20):
        assert pool.submit(fn, i).result(60) == i
    # A lambda made anew at each call has the same code: registered once too.
    for i in range(20):
        assert pool.submit(lambda i=i: i).result(60) == i
    assert len(pool._fn_ids) <= registered + 1
    adders = [hb.make_adder(n) for n in range(10)]
    assert [pool.submit(a, 1).result(60) for a in adders] == list(range(1, 11))
    assert len(pool._fn_ids) <= registered + 2


def test_code_that_reads_no_globals_does_not_import_its_module(pool):
    # helpers_no_subinterp cannot be imported in a worker, like a module
    # that imports numpy; a lambda of it that reads no globals still runs.
    assert pool.submit(hn.make_pure(), 21).result(60) == 42
    assert pool.submit(hb.is_imported_here, "helpers_no_subinterp").result(60) is False


def test_code_that_reads_globals_of_a_module_workers_cannot_import(pool):
    exc = pool.submit(hn.make_global_reader(), 1).exception(60)
    assert isinstance(exc, ImportError)
    assert "helpers_no_subinterp" in str(exc)
    assert "cannot be imported in a subinterpreter" in str(exc)


def test_local_class_travels_by_value(pool):
    # Issue 19 changed this: a class defined in a function used to be
    # refused.  It travels by value, as a callable, through a bound method
    # and captured by a closure, and comes back as the caller's own class.
    local, instance, captures_instance = hb.make_local_class_users()
    assert type(pool.submit(local).result(60)) is local
    assert pool.submit(instance.run).result(60) == 1
    assert pool.submit(captures_instance).result(60) == 1
    assert type(pool.submit(ht.identity, instance).result(60)) is local


def test_closure_capturing_a_module_imports_it_by_name(pool):
    # Issue 19 changed this: a captured module used to be refused.
    import sys

    uses_sys, captures_module = hb.make_module_capture()
    assert pool.submit(uses_sys).result(60) == sys.version
    assert pool.submit(captures_module).result(60) == sys.version


# ------------------------------------------------------------ refused at the call (Pool)


def test_closure_assigning_to_a_captured_variable_is_refused(pool):
    with pytest.raises(TypeError, match="nonlocal") as info:
        pool.submit(hb.make_nonlocal_writer())
    assert "count" in str(info.value)


def test_closure_capturing_an_unsendable_value_fails_at_the_call(pool):
    import threading

    lock = threading.Lock()
    fn = lambda: lock  # noqa: E731
    with pytest.raises(TypeError, match="lock"):
        pool.submit(fn)
    assert pool.submit(ht.add, 1, 1).result(60) == 2


@pytest.mark.parametrize("door", ["submit", "map", "run", "amap", "wrap", "schedule"])
def test_refusals_come_at_the_call_through_every_front_door(pool, door):
    bad = hb.make_nonlocal_writer()

    async def in_loop():
        if door == "run":
            pool.run(bad)
        elif door == "wrap":
            pool.wrap(bad)
        else:
            async for _ in pool.amap(bad, range(2)):
                pass

    with pytest.raises(TypeError, match="nonlocal"):
        if door == "submit":
            pool.submit(bad)
        elif door == "map":
            pool.map(bad, range(2))
        elif door == "schedule":
            pool.schedule(bad, timeout=5)
        else:
            asyncio.run(in_loop())


# ------------------------------------------------------------ the drop-in executor


def test_executor_fails_closures_through_the_future_as_the_stdlib():
    spam = True

    def task():
        return spam

    local, instance, _ = hb.make_local_class_users()
    with InterpreterPoolExecutor(1) as ex:
        for fn in (task, local, instance.run, hb.make_nonlocal_writer()):
            fut = ex.submit(fn)
            with pytest.raises(NotShareableError):
                fut.result(60)
        assert ex.submit(lambda: "still fine").result(60) == "still fine"
        with pytest.raises(NotShareableError):
            list(ex.map(hb.make_adder(1), [1, 2]))


def test_executor_non_callable_fails_in_the_worker_as_the_stdlib():
    with InterpreterPoolExecutor(1) as ex:
        exc = ex.submit(42).exception(60)
    assert type(exc) is TypeError and "not callable" in str(exc)


def test_executor_unsendable_argument_fails_through_the_future():
    import threading

    with InterpreterPoolExecutor(1) as ex:
        fut = ex.submit(ht.identity, threading.Lock())
        with pytest.raises(NotShareableError, match="lock"):
            fut.result(60)


def test_executor_closure_initializer_breaks_the_pool_at_first_use():
    count = 0

    def init():
        assert count == 0

    with InterpreterPoolExecutor(1, initializer=init) as ex:
        try:
            error = ex.submit(ht.add, 1, 2).exception(60)
        except BrokenExecutor as exc:   # the worker broke before this submit (it starts eagerly)
            error = exc
    assert isinstance(error, BrokenExecutor)
    assert "NotShareableError" in str(error) and "init" in str(error)
