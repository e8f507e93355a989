"""The C worker pool through its sync API: interpool.Pool.

Behaviour only, never timings: where a test needs a task to be running (or
still queued) it coordinates with the task through files in tmp_path.
"""

import ast
import concurrent.futures
import datetime
import decimal
import fractions
import functools
import gc
import importlib.util
import itertools
import math
import os
import sys
import textwrap
import threading
import types
from collections import OrderedDict
from concurrent.futures import BrokenExecutor

import pytest

import helpers_byvalue as hb
import helpers_tasks as ht
import interpool
from helpers_interp import current_interpreter_id
from helpers_util import assert_back_to, counts, run_python, wait_for_path, wait_until
from interpool import _core

try:
    from concurrent import interpreters
except ImportError:  # CPython 3.13
    interpreters = None

# Tests that create interpreters with the stdlib's public API.
needs_stdlib_interpreters = pytest.mark.skipif(
    interpreters is None,
    reason="concurrent.interpreters is new in CPython 3.14: 3.13 has no public way to create one")

# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def pool():
    """A shared 2-worker pool for tests that never block its workers."""
    p = interpool.Pool(2, name="shared-test-pool")
    assert p.wait_ready(60)
    yield p
    p.shutdown()


def same(a, b):
    """Equal values of exactly the same types, all the way down (so 1, 1.0
    and True differ, -0.0 differs from 0.0, and NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


# ------------------------------------------------------------ construction


def test_public_api():
    assert issubclass(interpool.BrokenPool, BrokenExecutor)
    assert issubclass(interpool.PoolShutdownError, RuntimeError)
    assert issubclass(interpool.RemoteError, Exception)
    assert issubclass(interpool.RemoteTraceback, Exception)
    assert set(interpool.__all__) >= {
        "Pool",
        "BrokenPool",
        "PoolShutdownError",
        "RemoteError",
        "RemoteTraceback",
    }
    with pytest.raises(AttributeError):
        interpool.NoSuchName  # noqa: B018


def test_default_workers_is_process_cpu_count():
    with interpool.Pool() as p:
        assert p.workers == (os.process_cpu_count() or 1)
        assert p.submit(ht.add, 1, 2).result(timeout=60) == 3


@pytest.mark.parametrize(
    ("workers", "error"),
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("2", TypeError), (True, TypeError)],
)
def test_bad_workers(workers, error):
    with pytest.raises(error):
        interpool.Pool(workers)


def test_bad_initializer():
    with pytest.raises(TypeError, match="initializer"):
        interpool.Pool(1, initializer=42)


def test_name_and_repr(pool):
    assert pool.name == "shared-test-pool"
    assert "shared-test-pool" in repr(pool) and "running" in repr(pool)
    with interpool.Pool(1) as p:
        assert p.name.startswith("interpool-")
        other = interpool.Pool(1)
        assert other.name != p.name
        other.shutdown()
        assert "shut down" in repr(other)


def test_wait_ready(pool):
    assert pool.wait_ready() is True
    assert pool.wait_ready(0) is True


# ------------------------------------------------------------ values


VALUES = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2**62,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64,
    10**400,
    -(10**400) + 7,
    0.0,
    -0.0,
    1.5,
    5e-324,
    float("inf"),
    float("-inf"),
    float("nan"),
    complex(1.5, -2),
    "",
    "ascii",
    "latin-1: héllo",
    "BMP: Ωμέγα ✓",
    "non-BMP: 😀 𝄞 🐍",
    "lone surrogate \udc80",
    "nul \x00 inside",
    b"",
    b"\x00\xff bytes",
    (),
    (1,),
    (1, "two", 3.0, None),
    [],
    [1, [2, [3, [4, []]]]],
    {},
    {"a": 1, 2: "b", (1, 2): [3, 4], None: {"nested": (5,)}},
    {1, 2, 3},
    set(),
    frozenset({"x", 1}),
    {"list": [1, 2.5, "s", b"b", (None, True)], "set": {1}, "frozen": frozenset()},
    OrderedDict([("b", 1), ("a", 2)]),
    ht.Pair(1, [2]),
    ht.Point(3, 4),
    decimal.Decimal("1.10"),
    fractions.Fraction(1, 3),
    datetime.datetime(2024, 2, 29, 12, 30, tzinfo=datetime.UTC),
    list(range(10_000)),
    "x" * 1_000_000,
    bytes(range(256)) * 4096,
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: f"{type(v).__name__}:{repr(v)[:30]}")
def test_value_round_trip(pool, value):
    result = pool.submit(ht.identity, value).result(timeout=60)
    assert same(result, value), (value, result)


def test_bytearray_argument_and_result(pool):
    # Buffers in arguments may travel zero-copy (as a view): check the bytes.
    assert pool.submit(bytes, bytearray(b"mutable \x00\xff")).result(60) == b"mutable \x00\xff"
    result = pool.submit(bytearray, b"made in a worker").result(60)
    assert type(result) is bytearray
    assert result == bytearray(b"made in a worker")


def test_arguments_and_kwargs(pool):
    args, kwargs = pool.submit(ht.echo, 1, "two", [3], key={"k": (4,)}, other=None).result(60)
    assert args == (1, "two", [3])
    assert kwargs == {"key": {"k": (4,)}, "other": None}
    assert list(kwargs) == ["key", "other"]
    # 'fn' and 'self' are positional-only in submit(), so they are free as kwargs.
    assert pool.submit(ht.echo, fn="f", self="s").result(60) == ((), {"fn": "f", "self": "s"})
    assert pool.submit(ht.add, 1, b=2, c=3).result(60) == 6
    assert pool.submit(ht.echo).result(60) == ((), {})


def test_value_types_arrive_as_the_same_types(pool):
    values = [1, 1.0, True, "1", b"1", (1,), [1], {1}, frozenset([1]), {1: 1}, None]
    names = [pool.submit(ht.type_name, v).result(60) for v in values]
    assert names == [type(v).__qualname__ for v in values]


def test_builtins_travel_by_reference(pool):
    assert pool.submit(pow, 2, 100).result(60) == 2**100
    assert pool.submit(pow, 3, 4, 5).result(60) == 81 % 5
    assert pool.submit(len, "abcd").result(60) == 4
    assert pool.submit(math.factorial, 50).result(60) == math.factorial(50)
    assert pool.submit(sorted, [3, 1, 2], reverse=True).result(60) == [3, 2, 1]
    assert pool.submit(divmod, 17, 5).result(60) == (3, 2)


def test_class_as_callable(pool):
    assert pool.submit(ht.Point, 1, y=2).result(60) == ht.Point(1, 2)
    assert pool.submit(int, "ff", 16).result(60) == 255
    assert pool.submit(dict, a=1).result(60) == {"a": 1}


def test_bound_method_partial_and_callable_object(pool):
    assert pool.submit(ht.Multiplier(3).apply, 14).result(60) == 42
    assert pool.submit(functools.partial(ht.add, 10, c=5), 1).result(60) == 16
    assert pool.submit(ht.Adder(100), 1).result(60) == 101
    assert pool.submit("-".join, ["a", "b"]).result(60) == "a-b"


def test_callable_object_state_is_sent_at_each_submit(pool):
    multiplier = ht.Multiplier(3)
    assert pool.submit(multiplier.apply, 2).result(60) == 6
    multiplier.factor = 10
    adder = ht.Adder(1)
    assert pool.submit(adder, 1).result(60) == 2
    adder.offset = 100
    assert (pool.submit(multiplier.apply, 2).result(60), pool.submit(adder, 1).result(60)) == (20, 101)


def test_pool_does_not_keep_submitted_callables_alive():
    import weakref

    with interpool.Pool(1) as pool:
        obj = ht.Multiplier(5)
        ref = weakref.ref(obj)
        assert pool.submit(obj.apply, 2).result(60) == 10
        del obj
        gc.collect()
        assert ref() is None


def test_same_function_many_times_and_many_functions(pool):
    futures = [pool.submit(ht.square, i) for i in range(50)]
    futures += [pool.submit(ht.add, i, i) for i in range(50)]
    assert [f.result(60) for f in futures] == [i * i for i in range(50)] + [2 * i for i in range(50)]


def test_cpu_bound(pool):
    futures = [pool.submit(ht.cpu_bound, 20_000) for _ in range(4)]
    expected = ht.cpu_bound(20_000)
    assert [f.result(60) for f in futures] == [expected] * 4


# ------------------------------------------------- interpreters, parallelism


def test_tasks_run_in_parallel_in_distinct_subinterpreters(pool, tmp_path):
    # A two-party barrier: both tasks pass only if they run at the same time.
    futures = [pool.submit(ht.barrier, str(tmp_path), 2, token) for token in "ab"]
    ids = {f.result(60) for f in futures}
    assert len(ids) == 2
    main_id = current_interpreter_id()
    assert main_id == 0
    assert main_id not in ids


def test_tasks_never_run_in_the_main_interpreter(pool):
    idents = {pool.submit(ht.worker_identity).result(60) for _ in range(20)}
    for interp_id, thread_id, modules_id in idents:
        assert interp_id != 0
        assert thread_id != threading.get_ident()
        assert modules_id != id(sys.modules)
    # A worker keeps one interpreter: one thread and one sys.modules per id.
    by_interp = {}
    for interp_id, thread_id, modules_id in idents:
        by_interp.setdefault(interp_id, set()).add((thread_id, modules_id))
    assert all(len(v) == 1 for v in by_interp.values())
    assert len(by_interp) <= pool.workers


def test_submit_from_many_threads(pool):
    results = {}

    def submitter(k):
        futures = [pool.submit(ht.add, k, i) for i in range(300)]
        results[k] = [f.result(60) for f in futures]

    threads = [threading.Thread(target=submitter, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {k: [k + i for i in range(300)] for k in range(8)}


# ------------------------------------------------- refused at submit time


async def _coroutine_function():
    return 1


def test_lambda_travels_by_value(pool):
    # Issue 12 changed this: lambdas used to be refused at the call.
    assert pool.submit(lambda: 1).result(60) == 1
    assert pool.submit(lambda x, y=10: x * y, 4).result(60) == 40


def test_nested_function_and_closure_travel_by_value(pool):
    # Issue 12 changed this: nested functions and closures used to be refused.
    def nested():
        return 1

    captured = 5

    def closure():
        return captured

    for fn in (nested, closure, ht.nested_function()):
        assert pool.submit(fn).result(60) in (1, 5)
    assert pool.submit(closure).result(60) == 5


def test_closure_that_assigns_to_what_it_captures_is_refused(pool):
    count = 0

    def bump():
        nonlocal count
        count += 1

    with pytest.raises(TypeError, match="nonlocal") as info:
        pool.submit(bump)
    assert "count" in str(info.value)


def test_local_class_travels_by_value(pool):
    # Issue 19 changed this: a class defined in a function used to be refused.
    class Local:
        def run(self):
            return 1

    assert type(pool.submit(Local).result(60)) is Local
    assert pool.submit(Local().run).result(60) == 1


def test_non_callable_refused(pool):
    with pytest.raises(TypeError, match="not callable"):
        pool.submit(42)
    with pytest.raises(TypeError, match="not callable"):
        pool.submit("identity")


def test_coroutine_and_generator_objects_refused(pool):
    coro = _coroutine_function()
    try:
        with pytest.raises(TypeError, match="coroutine"):
            pool.submit(coro)
    finally:
        coro.close()
    gen = ht.return_generator()
    with pytest.raises(TypeError, match="generator"):
        pool.submit(gen)


def test_interactive_main_function_reads_its_globals(pool, monkeypatch):
    # What a function typed at the REPL looks like: its module has no file.
    # Issue 19 changed this: one that reads globals used to be refused; the
    # functions of __main__ travel by value, with the globals they read.
    fake_main = types.ModuleType("__main__")
    code = compile("def typed_in():\n    return 1\n\ndef reads_global():\n    return typed_in()\n",
                   "<stdin>", "exec")
    exec(code, fake_main.__dict__)
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    monkeypatch.setattr(sys, "argv", [""])
    assert pool.submit(fake_main.typed_in).result(60) == 1
    assert pool.submit(fake_main.reads_global).result(60) == 1


def test_refusal_queues_nothing(pool):
    before = counts()["tasks"]
    for bad in (hb.make_nonlocal_writer(), 42):
        with pytest.raises(TypeError):
            pool.submit(bad)
    with pytest.raises(TypeError):
        pool.submit(ht.identity, threading.Lock())
    assert counts()["tasks"] <= before
    assert pool.submit(ht.add, 2, 2).result(60) == 4


def test_unpicklable_argument_refused_naming_its_type(pool):
    with pytest.raises(TypeError, match="lock"):
        pool.submit(ht.identity, threading.Lock())
    with pytest.raises(TypeError, match="generator"):
        pool.submit(ht.identity, [1, (i for i in ())])
    with pytest.raises(TypeError, match="lock"):
        pool.submit(ht.echo, key=threading.Lock())
    assert pool.submit(ht.identity, "still works").result(60) == "still works"


@pytest.mark.parametrize(("fn", "type_text"), [(ht.return_lock, "lock"), (ht.return_generator, "generator")])
def test_unpicklable_result_fails_that_future_only(pool, fn, type_text):
    future = pool.submit(fn)
    exc = future.exception(60)
    assert isinstance(exc, TypeError)
    assert type_text in str(exc)
    assert pool.submit(ht.add, 20, 22).result(60) == 42


# ------------------------------------------------------------ exceptions


def test_custom_exception_comes_back_with_remote_traceback(pool):
    future = pool.submit(ht.raise_custom, "boom 💥")
    with pytest.raises(ht.CustomError, match="boom 💥") as info:
        future.result(60)
    exc = info.value
    assert type(exc) is ht.CustomError
    assert exc.args == ("boom 💥",)
    cause = exc.__cause__
    assert isinstance(cause, interpool.RemoteTraceback)
    assert "raise_custom" in cause.text
    assert "raise CustomError(message)" in cause.text
    assert "helpers_tasks.py" in cause.text
    assert cause.text in str(cause)


def test_builtin_exceptions_come_back(pool):
    exc = pool.submit(ht.add, 1, "x").exception(60)
    assert type(exc) is TypeError
    assert isinstance(exc.__cause__, interpool.RemoteTraceback)
    assert "in add" in exc.__cause__.text
    exc = pool.submit(int, "nope").exception(60)
    assert type(exc) is ValueError and "nope" in str(exc)


def test_exception_with_another_init_signature_is_rebuilt(pool):
    # Issue 12 changed this: it used to arrive as a RemoteError.
    future = pool.submit(ht.raise_two_arg, 7, "detail text")
    with pytest.raises(ht.TwoArgError) as info:
        future.result(60)
    exc = info.value
    assert (exc.code, exc.detail) == (7, "detail text")
    assert exc.args == ("code 7: detail text",)
    assert isinstance(exc.__cause__, interpool.RemoteTraceback)
    assert "raise TwoArgError(code, detail)" in exc.__cause__.text


def test_exception_whose_class_cannot_be_found_becomes_remote_error(pool):
    future = pool.submit(ht.raise_ghost_error, "from nowhere")
    with pytest.raises(interpool.RemoteError) as info:
        future.result(60)
    exc = info.value
    assert exc.type_name == "helpers_ghost_errors.GhostError"
    assert "from nowhere" in exc.message
    assert "helpers_ghost_errors.GhostError" in str(exc)
    assert "raise_ghost_error" in exc.traceback
    assert isinstance(exc.__cause__, interpool.RemoteTraceback)


def test_remote_error_pickles():
    import pickle

    err = interpool.RemoteError("mod.Type", "msg", "tb text")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.type_name, copy.message, copy.traceback) == ("mod.Type", "msg", "tb text")
    assert str(copy) == "mod.Type: msg"


def test_exception_that_cannot_be_pickled_keeps_what_can_travel(pool):
    # Issue 12 changed this: it used to arrive as a RemoteError.  Its class
    # and args are rebuilt; the attribute that cannot travel (a lock) is not.
    exc = pool.submit(ht.raise_locked, "holds a lock").exception(60)
    assert type(exc) is ht.LockedError
    assert exc.args == ("holds a lock",)
    assert not hasattr(exc, "lock")
    assert "raise LockedError(message)" in exc.__cause__.text


def test_result_that_cannot_be_rebuilt_fails_that_future_only(pool):
    exc = pool.submit(ht.return_ghost).exception(60)
    assert isinstance(exc, ImportError)
    assert "helpers_ghost_module" in str(exc)
    with pytest.raises(ImportError):
        list(pool.map(ht.return_ghost, [1, 2]))
    assert pool.submit(ht.add, 1, 2).result(60) == 3


def test_system_exit_fails_only_its_future(pool):
    exc = pool.submit(ht.raise_system_exit, 3).exception(60)
    assert type(exc) is SystemExit
    assert exc.code == 3
    assert pool.submit(ht.add, 1, 1).result(60) == 2


def test_keyboard_interrupt_fails_only_its_future(pool):
    exc = pool.submit(ht.raise_keyboard_interrupt).exception(60)
    assert type(exc) is KeyboardInterrupt
    assert pool.submit(ht.add, 1, 2).result(60) == 3
    assert pool.wait_ready(0)


def test_function_whose_module_fails_to_import_in_the_worker(pool):
    import helpers_main_only

    for _ in range(2):  # a failed load is not cached: the next task retries
        exc = pool.submit(helpers_main_only.f).exception(60)
        assert type(exc) is RuntimeError
        assert "refuses to load in a subinterpreter" in str(exc)
        assert "helpers_main_only" in exc.__cause__.text
    assert pool.submit(ht.add, 1, 2).result(60) == 3


def test_module_not_on_the_workers_path_loads_from_its_file(pool, tmp_path, monkeypatch):
    # A function whose module is importable here but not in the worker.
    mod_dir = tmp_path / "private"
    mod_dir.mkdir()
    (mod_dir / "helpers_only_here.py").write_text("def f(x):\n    return x + 1\n")
    monkeypatch.syspath_prepend(str(mod_dir))
    import helpers_only_here

    try:
        # Loaded from its file by path in the worker (not on the pool's sys.path).
        assert pool.submit(helpers_only_here.f, 1).result(60) == 2
    finally:
        sys.modules.pop("helpers_only_here", None)


# ------------------------------------------------------------------ map


def test_map_ordered(pool):
    assert list(pool.map(ht.square, range(200))) == [i * i for i in range(200)]


def test_map_several_iterables_zip_semantics(pool):
    assert list(pool.map(pow, [2, 3, 4], [5, 6, 7])) == [32, 729, 16384]
    assert list(pool.map(ht.add, range(10), range(3))) == [0, 2, 4]
    assert list(pool.map(ht.add, range(3), itertools.count(100))) == [100, 102, 104]


@pytest.mark.parametrize("chunksize", [1, 2, 7, 100, 1000])
def test_map_chunksize_same_results(pool, chunksize):
    assert list(pool.map(ht.add, range(100), range(100), chunksize=chunksize)) == [
        2 * i for i in range(100)
    ]


def test_map_chunk_travels_as_one_task(pool):
    out = list(pool.map(ht.interpreter_id_for, range(12), chunksize=4))
    assert [item for item, _ in out] == list(range(12))
    for start in range(0, 12, 4):
        assert len({iid for _, iid in out[start : start + 4]}) == 1


def test_map_empty(pool):
    assert list(pool.map(ht.square, [])) == []
    assert list(pool.map(ht.square, [], chunksize=5)) == []
    assert list(pool.map(ht.square, [], buffersize=3)) == []
    assert list(pool.map(ht.add, [1, 2], [])) == []
    assert list(pool.map(ht.square)) == []


@pytest.mark.parametrize("buffersize", [None, 2])
def test_map_exception_raises_at_its_item(pool, buffersize):
    it = pool.map(ht.raise_on, range(10), [5] * 10, buffersize=buffersize)
    got = []
    with pytest.raises(ht.CustomError, match="bad item 5") as info:
        for value in it:
            got.append(value)
    assert got == [0, 1, 2, 3, 4]
    assert isinstance(info.value.__cause__, interpool.RemoteTraceback)
    assert "raise_on" in info.value.__cause__.text
    assert pool.submit(ht.add, 1, 1).result(60) == 2


def test_map_exception_in_chunk_fails_whole_chunk(pool):
    got = []
    with pytest.raises(ht.CustomError, match="bad item 5"):
        for value in pool.map(ht.raise_on, range(10), [5] * 10, chunksize=3):
            got.append(value)
    assert got == [0, 1, 2]  # the chunk [3, 4, 5] failed as a whole


def test_map_unpicklable_argument(pool):
    with pytest.raises(TypeError, match="lock"):
        pool.map(ht.identity, [1, threading.Lock()])
    assert list(pool.map(ht.identity, [1, 2])) == [1, 2]


def test_map_of_a_lambda(pool):
    # Issue 12 changed this: map used to refuse lambdas.
    assert list(pool.map(lambda x: x + 1, [1, 2, 3])) == [2, 3, 4]
    assert list(pool.map(lambda x: x * 2, range(10), chunksize=4)) == [x * 2 for x in range(10)]


def test_map_is_lazy_with_buffersize(pool):
    consumed = 0

    def source():
        nonlocal consumed
        for i in itertools.count():
            consumed += 1
            yield i

    before = counts()["tasks"]
    it = pool.map(ht.square, source(), buffersize=4)
    assert consumed <= 4
    first = [next(it) for _ in range(10)]
    assert first == [i * i for i in range(10)]
    # At most `buffersize` items are read ahead of the results consumed.
    assert consumed <= 10 + 4
    it.close()
    assert counts()["tasks"] <= before + 4


def test_map_lazy_with_chunksize_and_buffersize(pool):
    consumed = 0

    def source():
        nonlocal consumed
        for i in itertools.count():
            consumed += 1
            yield i

    it = pool.map(ht.square, source(), chunksize=3, buffersize=2)
    assert list(itertools.islice(it, 10)) == [i * i for i in range(10)]
    # 10 results span 4 chunks; 2 more chunks may be in flight.
    assert consumed <= (4 + 2) * 3
    it.close()


@pytest.mark.parametrize("buffersize", [None, 3])
def test_map_input_that_raises(pool, buffersize):
    def source():
        yield from range(5)
        raise KeyError("input broke")

    got = []
    with pytest.raises(KeyError, match="input broke"):
        # Without buffersize the input is read by map() itself, as with the stdlib.
        for value in pool.map(ht.square, source(), buffersize=buffersize):
            got.append(value)
    assert got == [i * i for i in range(len(got))]
    assert pool.submit(ht.add, 1, 2).result(60) == 3


def test_map_without_buffersize_submits_everything_at_once(pool):
    consumed = 0

    def source():
        nonlocal consumed
        for i in range(20):
            consumed += 1
            yield i

    it = pool.map(ht.square, source())
    assert consumed == 20
    assert list(it) == [i * i for i in range(20)]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"chunksize": 0}, ValueError),
        ({"chunksize": -1}, ValueError),
        ({"chunksize": 1.5}, TypeError),
        ({"chunksize": "2"}, TypeError),
        ({"buffersize": 0}, ValueError),
        ({"buffersize": -1}, ValueError),
        ({"buffersize": 1.5}, TypeError),
        ({"buffersize": "4"}, TypeError),
    ],
)
def test_map_bad_arguments(pool, kwargs, error):
    # Raised by the call itself, before iteration, as with the stdlib.
    with pytest.raises(error):
        pool.map(ht.square, [1, 2], **kwargs)


def test_map_timeout(tmp_path):
    baseline = counts()
    pool = interpool.Pool(1)
    release = tmp_path / "release"
    started = [str(tmp_path / f"started-{i}") for i in range(4)]
    it = pool.map(ht.signal_and_wait, started, [str(release)] * 4, range(4), timeout=0.05)
    assert wait_for_path(started[0])
    with pytest.raises(TimeoutError):
        next(it)
    # Leaving the iterator cancels what is still queued.
    release.touch()
    pool.shutdown(wait=True)
    assert os.path.exists(started[0])
    assert not any(os.path.exists(p) for p in started[1:])
    del it, pool
    assert_back_to(baseline)


def test_map_timeout_returns_results_that_already_arrived():
    with interpool.Pool(1) as pool:
        it = pool.map(ht.square, range(3), timeout=0)
        # One worker runs tasks in order: once this is done, so is the map.
        assert pool.submit(ht.identity, None).result(60) is None
        assert list(it) == [0, 1, 4]


def test_map_abandoned_iterator_does_not_leak(tmp_path):
    baseline = counts()
    with interpool.Pool(2) as pool:
        it = pool.map(ht.square, range(1000))
        assert next(it) == 0
        del it
        it = pool.map(ht.square, range(1000), chunksize=10, buffersize=3)
        assert next(it) == 0
        del it
        assert pool.submit(ht.add, 1, 2).result(60) == 3
    del pool
    assert_back_to(baseline)


def test_map_after_shutdown():
    pool = interpool.Pool(1)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="shutdown"):
        pool.map(ht.square, [1])




# A map's whole input runs even if nobody consumes the iterator, as with
# the stdlib: only the encoding of its arguments goes a window at a time.
# More items than the first window (64 tasks) and than a whole one (1,024).
MANY = 3000


def paths_in(directory, n=MANY, prefix="ran"):
    return [str(directory / f"{prefix}-{i}") for i in range(n)]


def ran(directory, prefix="ran"):
    return len(list(directory.glob(f"{prefix}-*")))


@pytest.mark.parametrize("chunksize", [1, 7])
def test_map_never_consumed_runs_every_item_inside_with(tmp_path, chunksize):
    with interpool.Pool(2) as pool:
        pool.map(ht.touch, paths_in(tmp_path), chunksize=chunksize)
    assert ran(tmp_path) == MANY


def test_map_consumed_after_the_with_block_yields_everything():
    with interpool.Pool(2) as pool:
        results = pool.map(ht.square, range(MANY))
        unordered = pool.map(ht.square, range(MANY), ordered=False)
    assert list(results) == [i * i for i in range(MANY)]
    assert sorted(unordered) == [i * i for i in range(MANY)]


def test_map_input_is_fed_while_nobody_consumes(tmp_path):
    """The pool, not the consumer, feeds the workers the rest of the input."""
    with interpool.Pool(2) as pool:
        it = pool.map(ht.touch, paths_in(tmp_path), range(MANY))
        assert wait_until(lambda: ran(tmp_path) == MANY, 60), ran(tmp_path)
        assert list(it) == list(range(MANY))


def test_map_dropped_iterator_runs_everything_and_keeps_no_result(tmp_path):
    baseline = counts()
    with interpool.Pool(2) as pool:
        pool.map(ht.touch, paths_in(tmp_path), [b"x" * 1000] * MANY)
        assert wait_until(lambda: ran(tmp_path) == MANY, 60), ran(tmp_path)
        # Nobody can read those results: they were freed as they arrived.
        assert wait_until(lambda: counts()["tasks"] <= baseline["tasks"], 60), counts()
        assert pool.submit(ht.add, 1, 2).result(60) == 3


@pytest.mark.parametrize("how", ["shutdown(wait=False)", "del pool"])
def test_map_input_still_runs_after_a_shutdown_without_wait(tmp_path, how):
    pool = interpool.Pool(2)
    pool.map(ht.touch, paths_in(tmp_path))
    if how == "del pool":
        del pool
    else:
        pool.shutdown(wait=False)
    assert wait_until(lambda: ran(tmp_path) == MANY, 60), ran(tmp_path)


def test_map_input_runs_at_a_normal_exit(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(f"""\
        import interpool, helpers_tasks as ht
        pool = interpool.Pool(2)
        results = pool.map(ht.touch, [{str(tmp_path)!r} + f"/ran-{{i}}" for i in range({MANY})])
        print("leaving")
        """))
    proc = run_python([str(script)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert ran(tmp_path) == MANY


@pytest.mark.parametrize("n", [3, MANY])   # queued, and not queued yet either
def test_map_cancelled_by_shutdown_raises_pool_shutdown_error(tmp_path, n):
    pool = interpool.Pool(1)
    started, release = tmp_path / "started", tmp_path / "release"
    blocker = pool.submit(ht.signal_and_wait, str(started), str(release), "done")
    assert wait_for_path(started)
    it = pool.map(ht.touch, paths_in(tmp_path, n))
    pool.shutdown(wait=False, cancel_futures=True)
    release.touch()
    with pytest.raises(interpool.PoolShutdownError):
        list(it)
    assert blocker.result(60) == "done"
    pool.shutdown()
    assert ran(tmp_path) == 0


def test_map_with_buffersize_runs_only_the_buffer_unless_consumed(tmp_path):
    """buffersize keeps the stdlib's lazy contract: `buffersize` tasks are
    submitted by the call, one more per result consumed."""
    with interpool.Pool(2) as pool:
        it = pool.map(ht.touch, paths_in(tmp_path, 100), buffersize=4)
        del it
        assert pool.submit(ht.add, 1, 2).result(60) == 3
    assert ran(tmp_path) == 4


def test_map_item_that_cannot_travel_fails_at_its_place(pool):
    items = [1] * MANY + [threading.Lock()] + [2] * 10
    got = []
    with pytest.raises(TypeError, match="lock"):
        for value in pool.map(ht.identity, items):
            got.append(value)
    assert got == [1] * MANY
    assert pool.submit(ht.add, 1, 2).result(60) == 3


# ------------------------------------------------------------ initializer


def test_initializer_runs_once_per_worker_before_its_tasks():
    with interpool.Pool(2, initializer=ht.init_worker, initargs=["hello", 2]) as pool:
        assert pool.wait_ready(60)
        states = [pool.submit(ht.init_state_after, 0.002).result(60) for _ in range(10)]
        states += list(pool.map(ht.init_state_after, [0.002] * 10))
    for interp_id, calls, value in states:
        assert interp_id != 0
        assert calls == 1
        assert value == ("hello", 2)
    # The main interpreter's copy of the module is untouched.
    assert ht.INIT_CALLS == 0


def test_initializer_seen_by_first_task():
    with interpool.Pool(1, initializer=ht.init_worker, initargs=("first",)) as pool:
        # Submitted before the worker is ready: the initializer still runs first.
        assert pool.submit(ht.init_state).result(60)[1:] == (1, ("first", None))


def test_failing_initializer_breaks_the_pool(tmp_path):
    baseline = counts()
    release = tmp_path / "release"
    pool = interpool.Pool(
        2,
        initializer=ht.failing_initializer_after,
        initargs=(str(release), "init failed 🙁"),
    )
    # Workers are held in the initializer: these tasks are certainly queued.
    pending = [pool.submit(ht.identity, i) for i in range(5)]
    release.touch()
    for future in pending:
        exc = future.exception(60)
        assert isinstance(exc, interpool.BrokenPool)
        assert isinstance(exc, BrokenExecutor)
        assert "initializer" in str(exc)
        assert "init failed 🙁" in str(exc)
    with pytest.raises(interpool.BrokenPool, match="init failed"):
        pool.submit(ht.identity, 1)
    with pytest.raises(interpool.BrokenPool):
        pool.map(ht.identity, [1])
    with pytest.raises(interpool.BrokenPool):
        pool.wait_ready(60)
    assert "broken" in repr(pool)
    pool.shutdown()
    pool.shutdown()
    with pytest.raises((interpool.BrokenPool, RuntimeError)):
        pool.submit(ht.identity, 1)
    del pending, future, exc, pool
    assert_back_to(baseline)


def test_failing_initializer_immediately():
    pool = interpool.Pool(1, initializer=ht.failing_initializer, initargs=("at once",))
    with pytest.raises(interpool.BrokenPool, match="at once"):
        pool.wait_ready(60)
    with pytest.raises(interpool.BrokenPool):
        pool.submit(ht.identity, 1)
    pool.shutdown()


def test_unpicklable_initargs_refused():
    baseline = counts()
    with pytest.raises(TypeError, match="lock"):
        interpool.Pool(1, initializer=ht.init_worker, initargs=(threading.Lock(),))
    assert_back_to(baseline)


def test_initializer_must_be_sendable():
    # Issue 12 changed this: a nested function or lambda used to be refused;
    # issue 19: a local class too (it travels by value).
    class LocalInit:
        pass

    with interpool.Pool(1, initializer=LocalInit) as pool:
        assert pool.submit(ht.add, 1, 2).result(60) == 3
    count = 0

    def bump():
        nonlocal count
        count += 1

    with pytest.raises(TypeError, match="nonlocal"):
        interpool.Pool(1, initializer=bump)


# ------------------------------------------------------------ shutdown


def test_submit_after_shutdown():
    pool = interpool.Pool(1)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(ht.identity, 1)
    assert "shut down" in repr(pool)


def test_shutdown_waits_for_running_and_queued_tasks():
    baseline = counts()
    pool = interpool.Pool(2)
    futures = [pool.submit(ht.sleep_then_return, 0.02, i) for i in range(6)]
    pool.shutdown(wait=True)
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == list(range(6))
    assert_back_to(baseline, keys=("workers",))


def test_shutdown_cancel_futures(tmp_path):
    pool = interpool.Pool(1)
    started, release = tmp_path / "started", tmp_path / "release"
    running = pool.submit(ht.signal_and_wait, str(started), str(release), "first")
    assert wait_for_path(started)
    queued = [pool.submit(ht.touch, str(tmp_path / f"ran-{i}"), i) for i in range(5)]
    callbacks = []
    for f in queued:
        f.add_done_callback(callbacks.append)
    shutter = threading.Thread(target=pool.shutdown, kwargs={"cancel_futures": True})
    shutter.start()
    done, not_done = concurrent.futures.wait(queued, timeout=60)
    assert not not_done
    assert all(f.cancelled() for f in queued)
    assert not running.done()
    release.touch()
    shutter.join(60)
    assert not shutter.is_alive()
    assert running.result() == "first"
    assert not list(tmp_path.glob("ran-*"))
    assert sorted(map(id, callbacks)) == sorted(map(id, queued))
    for f in queued:
        with pytest.raises(concurrent.futures.CancelledError):
            f.result()


def test_shutdown_cancel_futures_cancels_before_returning(tmp_path):
    pool = interpool.Pool(1)
    started, release = tmp_path / "started", tmp_path / "release"
    running = pool.submit(ht.signal_and_wait, str(started), str(release))
    assert wait_for_path(started)
    queued = [pool.submit(ht.square, i) for i in range(3)]
    interval = sys.getswitchinterval()
    # Keep this thread on the GIL between shutdown() and the checks, so the
    # result dispatcher cannot step in: the outcome does not depend on luck.
    sys.setswitchinterval(30)
    try:
        pool.shutdown(wait=False, cancel_futures=True)
        cancelled_now = [f.cancelled() for f in queued]
    finally:
        sys.setswitchinterval(interval)
        release.touch()
        pool.shutdown()
    assert running.result(60) is None
    assert cancelled_now == [True, True, True]


def test_shutdown_no_wait_returns_and_futures_complete_later(tmp_path):
    pool = interpool.Pool(1)
    started, release = tmp_path / "started", tmp_path / "release"
    blocked = pool.submit(ht.signal_and_wait, str(started), str(release), 42)
    behind = pool.submit(ht.square, 7)
    assert wait_for_path(started)
    # Would never return if it waited: the worker is held until `release`.
    pool.shutdown(wait=False)
    assert not blocked.done()
    with pytest.raises(RuntimeError):
        pool.submit(ht.square, 1)
    release.touch()
    assert blocked.result(60) == 42
    assert behind.result(60) == 49
    pool.shutdown(wait=True)


def test_shutdown_twice_and_with_idle_pool():
    pool = interpool.Pool(2)
    pool.shutdown()
    pool.shutdown()
    pool.shutdown(wait=False)
    pool.shutdown(wait=False, cancel_futures=True)
    baseline = counts()
    other = interpool.Pool(2)
    other.shutdown(wait=False)
    other.shutdown(wait=True)
    assert_back_to(baseline, keys=("workers",))


def test_context_manager():
    with interpool.Pool(2) as pool:
        assert isinstance(pool, interpool.Pool)
        futures = [pool.submit(ht.sleep_then_return, 0.01, i) for i in range(4)]
    assert [f.result(0) for f in futures] == [0, 1, 2, 3]
    with pytest.raises(RuntimeError):
        pool.submit(ht.identity, 1)


def test_context_manager_shuts_down_on_error():
    with pytest.raises(ZeroDivisionError):
        with interpool.Pool(1) as pool:
            future = pool.submit(ht.add, 2, 3)
            1 / 0  # noqa: B018
    assert future.result(0) == 5
    with pytest.raises(RuntimeError):
        pool.submit(ht.identity, 1)


# ------------------------------------------------------------ futures


def test_cancel_queued_and_running(tmp_path):
    pool = interpool.Pool(1)
    started, release = tmp_path / "started", tmp_path / "release"
    never = tmp_path / "never"
    running = pool.submit(ht.signal_and_wait, str(started), str(release), "ran")
    assert wait_for_path(started)
    queued = pool.submit(ht.touch, str(never), "should not run")
    after = pool.submit(ht.add, 40, 2)
    calls = []
    queued.add_done_callback(calls.append)
    running.add_done_callback(calls.append)

    assert running.running()
    assert not queued.running()
    assert queued.cancel() is True
    assert queued.cancelled() and queued.done()
    assert calls == [queued]
    assert queued.cancel() is True  # cancelling again is fine
    assert running.cancel() is False
    assert not running.cancelled()

    waited = concurrent.futures.wait([queued, running, after], timeout=0)
    assert queued in waited.done

    release.touch()
    assert running.result(60) == "ran"
    assert after.result(60) == 42
    assert running.cancel() is False
    assert after.cancel() is False
    pool.shutdown()
    assert not never.exists()
    assert calls == [queued, running]


def test_wait_and_as_completed_with_cancelled_futures(tmp_path):
    pool = interpool.Pool(1)
    started, release = tmp_path / "started", tmp_path / "release"
    first = pool.submit(ht.signal_and_wait, str(started), str(release), 0)
    assert wait_for_path(started)
    rest = [pool.submit(ht.square, i) for i in range(1, 7)]
    cancelled = rest[::2]
    assert all(f.cancel() for f in cancelled)
    everything = [first, *rest]

    done, not_done = concurrent.futures.wait(
        everything, timeout=0, return_when=concurrent.futures.FIRST_COMPLETED
    )
    assert set(cancelled) <= done
    release.touch()
    seen = list(concurrent.futures.as_completed(everything, timeout=60))
    assert sorted(map(id, seen)) == sorted(map(id, everything))
    done, not_done = concurrent.futures.wait(everything, timeout=60)
    assert not not_done
    assert [f.result() for f in everything if not f.cancelled()] == [0, 4, 16, 36]
    pool.shutdown()


def test_done_callback_after_completion(pool):
    future = pool.submit(ht.add, 1, 2)
    assert future.result(60) == 3
    calls = []
    future.add_done_callback(calls.append)
    assert calls == [future]
    assert not future.running()


def test_done_callback_may_wait_for_another_future():
    outcome = []
    finished = threading.Event()
    with interpool.Pool(2) as pool:

        def callback(future):
            try:
                outcome.append(pool.submit(ht.add, future.result(), 1).result(timeout=1))
            except Exception as exc:  # TimeoutError when deadlocked
                outcome.append(exc)
            finished.set()

        pool.submit(ht.add, 1, 1).add_done_callback(callback)
        assert finished.wait(60)
    assert outcome == [3]


def test_done_callbacks_see_results(pool):
    event = threading.Event()
    results = []

    def callback(f):
        results.append(f.result())
        if len(results) == 5:
            event.set()

    for i in range(5):
        pool.submit(ht.square, i).add_done_callback(callback)
    assert event.wait(60)
    assert sorted(results) == [0, 1, 4, 9, 16]


# ------------------------------------------------------------ volume, leaks


def test_ten_thousand_tasks_no_leaks():
    baseline = counts()
    n = 10_000
    with interpool.Pool(2) as pool:
        futures = [pool.submit(ht.identity, i) for i in range(n)]
        results = [f.result(60) for f in futures]
        assert sorted(results) == list(range(n))
        assert list(pool.map(ht.identity, range(n))) == list(range(n))
        assert list(pool.map(ht.identity, range(n), chunksize=97)) == list(range(n))
        lazy = pool.map(ht.identity, range(n), buffersize=16)
        assert list(lazy) == list(range(n))
    del futures, pool, lazy
    assert_back_to(baseline)


def test_errors_and_cancellations_do_not_leak(tmp_path):
    baseline = counts()
    pool = interpool.Pool(1)
    started, release = tmp_path / "started", tmp_path / "release"
    blocker = pool.submit(ht.signal_and_wait, str(started), str(release))
    assert wait_for_path(started)
    cancelled = [pool.submit(ht.square, i) for i in range(10)]
    assert all(f.cancel() for f in cancelled)
    errors = [pool.submit(ht.raise_custom, "x") for _ in range(10)]
    unpicklable = pool.submit(ht.return_lock)
    with pytest.raises(TypeError):
        pool.submit(ht.identity, threading.Lock())
    release.touch()
    assert blocker.result(60) is None
    assert all(isinstance(f.exception(60), ht.CustomError) for f in errors)
    assert isinstance(unpicklable.exception(60), TypeError)
    pool.shutdown(cancel_futures=True)
    del pool, blocker, cancelled, errors, unpicklable
    assert_back_to(baseline)


def test_dropped_pool_stops_its_workers():
    baseline = counts()
    pool = interpool.Pool(2)
    future = pool.submit(ht.add, 1, 2)
    del pool
    gc.collect()
    assert future.result(60) == 3
    del future
    assert_back_to(baseline, keys=("workers", "tasks"))


def test_shutdown_no_wait_workers_exit():
    baseline = counts()
    pool = interpool.Pool(2)
    assert pool.submit(ht.add, 1, 2).result(60) == 3
    pool.shutdown(wait=False)
    assert_back_to(baseline, keys=("workers", "tasks"))


@pytest.mark.parametrize("how", ["del pool", "pool.shutdown(wait=False); del pool"])
def test_pool_released_without_shutdown_wait(tmp_path, how):
    # In a fresh process, so that no other test's pools are counted.
    code = textwrap.dedent(
        f"""
        import gc, time, helpers_tasks, interpool
        from interpool import _core
        pool = interpool.Pool(1)
        assert pool.submit(helpers_tasks.add, 1, 2).result(60) == 3
        {how}
        deadline = time.monotonic() + 2
        while True:
            gc.collect()
            counts = _core.live_counts()
            if counts["pools"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        print(counts)
        """
    )
    proc = run_python(["-c", code], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    counts = ast.literal_eval(proc.stdout.strip())
    assert {k: counts[k] for k in ("pools", "workers", "tasks")} == {
        "pools": 0, "workers": 0, "tasks": 0,
    }


# ------------------------------------------------------------ the extension


@needs_stdlib_interpreters
def test_extension_imports_in_a_stdlib_interpreter():
    interp = interpreters.create()
    try:
        interp.exec(
            f"import sys\n"
            f"sys.path[:] = {sys.path!r}\n"
            "import interpool._core as core\n"
            "assert core.decode(core.encode([1, 'x', 2**100])) == [1, 'x', 2**100]\n"
            "assert set(core.live_counts()) >= {'pools', 'workers', 'tasks'}\n"
        )
    finally:
        interp.close()


def _run_in_stdlib_interpreter(code):
    interp = interpreters.create()
    try:
        interp.exec(f"import sys\nsys.path[:] = {sys.path!r}\n" + textwrap.dedent(code))
    finally:
        interp.close()


@needs_stdlib_interpreters
def test_pool_map_from_a_stdlib_interpreter():
    _run_in_stdlib_interpreter(
        """
        import interpool, helpers_tasks
        pool = interpool.Pool(2)
        assert list(pool.map(helpers_tasks.square, range(5))) == [0, 1, 4, 9, 16]
        pool.shutdown()
        """
    )


@needs_stdlib_interpreters
def test_pool_submit_from_a_stdlib_interpreter():
    _run_in_stdlib_interpreter(
        """
        import interpool, helpers_tasks
        with interpool.Pool(2) as pool:
            assert pool.submit(helpers_tasks.add, 1, 2).result(60) == 3
        """
    )


def test_extension_is_multi_phase():
    # A second load is a new module with its own types (single-phase init
    # would hand back a copy of the cached module).
    spec = importlib.util.find_spec("interpool._core")
    again = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(again)
    assert again is not _core
    assert again.PoolCore is not _core.PoolCore
    assert again.Completions is not _core.Completions
    assert again.decode(again.encode({"a": [1]})) == {"a": [1]}
    assert set(again.live_counts()) >= {"pools", "workers", "tasks"}


def test_max_workers_is_a_synonym_of_workers():
    """concurrent.futures spells it max_workers (issue 21)."""
    with interpool.Pool(max_workers=2) as pool:
        assert pool.workers == 2
        assert pool.submit(ht.square, 3).result(60) == 9


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_and_max_workers_together_is_a_type_error(workers):
    with pytest.raises(TypeError, match="workers or max_workers"):
        interpool.Pool(workers, max_workers=2)


def test_max_workers_is_checked_as_workers():
    with pytest.raises(ValueError, match="at least 1"):
        interpool.Pool(max_workers=0)
    with pytest.raises(TypeError, match="workers must be an int"):
        interpool.Pool(max_workers="2")
