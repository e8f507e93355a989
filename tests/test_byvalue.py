"""Functions and classes of __main__ (and of exec'd code: notebook cells)
travel by value: the code and the globals it reads, never the script.

Cells are exec'd in one namespace, as a notebook runs them; its name is not
an importable module (pickle would import one of that name to look it up).
Scripts, ``-c``, stdin, joblib and Dask: test_main_loading.py.
"""

import asyncio
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

import helpers_byvalue as hb
import helpers_tasks as ht
import interpool
from helpers_util import subprocess_env
from interpool import _byvalue

from _interpreters import NotShareableError  # concurrent.interpreters' class; 3.13 too

HANG = 60  # seconds: only to turn a hang into a failure


@pytest.fixture(scope="module")
def pool():
    p = interpool.Pool(2, name="byvalue-pool")
    assert p.wait_ready(HANG)
    yield p
    p.shutdown()


def cells(*sources, ns=None):
    """Run each source in one namespace, as notebook cells; return it."""
    ns = {"__name__": "__cells__"} if ns is None else ns
    for source in sources:
        exec(compile(textwrap.dedent(source), "<cell>", "exec"), ns)
    return ns


# ------------------------------------------------------------ what a cell reads


def test_cells_read_modules_regexes_and_helpers_of_other_cells(pool):
    ns = cells(
        """
        import json, re
        import xml.etree.ElementTree
        WORD = re.compile(r"[a-z]+")
        """,
        """
        def words(text):
            return WORD.findall(text)
        """,
        """
        def task(text):
            root = xml.etree.ElementTree.fromstring(text)   # a submodule, by attribute
            return json.dumps({"words": words(root.text)})
        """,
    )
    assert pool.submit(ns["task"], "<a>one two</a>").result(HANG) == '{"words": ["one", "two"]}'
    assert list(pool.map(ns["words"], ["a b", "c"])) == [["a", "b"], ["c"]]


def test_a_helper_defined_in_a_later_cell(pool):
    ns = cells("def task(x):\n    return later(x)\n")
    with pytest.raises(NameError, match="later"):
        pool.submit(ns["task"], 1).result(HANG)
    cells("def later(x):\n    return x + 1\n", ns=ns)
    assert pool.submit(ns["task"], 1).result(HANG) == 2


def test_recursion_and_mutual_recursion(pool):
    ns = cells(
        """
        def fact(n):
            return 1 if n <= 1 else n * fact(n - 1)

        def even(n):
            return True if n == 0 else odd(n - 1)

        def odd(n):
            return False if n == 0 else even(n - 1)
        """
    )
    assert pool.submit(ns["fact"], 6).result(HANG) == 720
    assert list(pool.map(ns["even"], range(5))) == [True, False, True, False, True]


def test_closures_over_helpers_of_the_cells(pool):
    ns = cells(
        """
        def double(x):
            return 2 * x

        def make(k):
            def task(x):
                return double(x) + k
            return task

        adders = [make(k) for k in range(3)]
        """
    )
    assert [pool.submit(f, 5).result(HANG) for f in ns["adders"]] == [10, 11, 12]


# ------------------------------------------------------------ classes


CLASSES = """
    import abc, dataclasses, enum, functools, typing

    @dataclasses.dataclass
    class Point:
        x: int
        y: int = 0
        tags: list = dataclasses.field(default_factory=list)

        def moved(self, dx):
            return Point(self.x + dx, self.y, self.tags)   # the class names itself

    @dataclasses.dataclass(frozen=True)
    class Frozen:
        a: int

    class Color(enum.Enum):
        RED = 1
        GREEN = 2

        def lower(self):
            return self.name.lower()

    class Perm(enum.IntFlag):
        R = 4
        W = 2

    class Shape(abc.ABC):
        @abc.abstractmethod
        def area(self): ...

        def describe(self):
            return f"{type(self).__name__}:{self.area()}"

    class Square(Shape):
        __slots__ = ("side",)

        def __init__(self, side):
            self.side = side

        def area(self):
            return self.side * self.side

        @property
        def double(self):
            return 2 * self.side

        @staticmethod
        def unit():
            return Square(1)

        @classmethod
        def of(cls, side):
            return cls(side)

        def describe(self):
            return "square " + super().describe()

    class Pair(typing.NamedTuple):
        a: int
        b: str = "b"

    class Failed(Exception):
        def __init__(self, code, *, why):
            super().__init__(code)
            self.code = code
            self.why = why

    @functools.lru_cache(maxsize=None)
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    def use(n):
        p = Point(n, 2).moved(1)
        return (dataclasses.asdict(p), [f.name for f in dataclasses.fields(p)], Color(1).lower(),
                int(Perm.R | Perm.W), Square.of(3).describe(), Square.unit().double,
                isinstance(Square(2), Shape), Pair(1), fib(30), Frozen(n) == Frozen(n))

    def fail():
        raise Failed(7, why="because")

    def same(x):
        return x
"""


def test_classes_run_in_the_worker(pool):
    ns = cells(CLASSES)
    assert pool.submit(ns["use"], 1).result(HANG) == (
        {"x": 2, "y": 2, "tags": []}, ["x", "y", "tags"], "red", 6, "square Square:9", 2,
        True, (1, "b"), 832040, True)


def test_instances_come_back_as_the_callers_classes(pool):
    ns = cells(CLASSES)
    for value in (ns["Point"](1, 2, ["t"]), ns["Color"].GREEN, ns["Perm"].W, ns["Pair"](3),
                  ns["Frozen"](4)):
        back = pool.submit(ns["same"], value).result(HANG)
        assert type(back) is type(value) and back == value
    square = pool.submit(ns["Square"].of, 5).result(HANG)
    assert type(square) is ns["Square"] and square.side == 5
    # A module-level function of an importable module, an argument of a cell's class.
    assert type(pool.submit(ht.identity, ns["Point"](1)).result(HANG)) is ns["Point"]
    assert pool.submit(ns["same"], ns["Point"]).result(HANG) is ns["Point"]


def test_exception_class_of_a_cell_is_raised_as_itself(pool):
    ns = cells(CLASSES)
    with pytest.raises(ns["Failed"]) as info:
        pool.submit(ns["fail"]).result(HANG)
    assert (info.value.code, info.value.why) == (7, "because")


def test_lru_cache_keeps_its_cache_in_the_worker():
    ns = cells(
        """
        import functools

        calls = []

        @functools.cache
        def slow_square(x):
            calls.append(x)   # a worker's own copy of the list
            return x * x

        def count():
            return len(calls)
        """
    )
    with interpool.Pool(1) as pool:
        assert [pool.submit(ns["slow_square"], 4).result(HANG) for _ in range(3)] == [16] * 3
    assert ns["calls"] == []   # the caller's list: the worker's changes stay there


# ------------------------------------------------------------ globals: when they travel


def test_a_rebound_global_is_seen_at_the_next_call(pool):
    ns = cells("K = 2\ndef scale(x):\n    return x * K\n")
    assert pool.submit(ns["scale"], 5).result(HANG) == 10
    ns["K"] = 3
    assert pool.submit(ns["scale"], 5).result(HANG) == 15
    assert list(pool.map(ns["scale"], [1, 2])) == [3, 6]


def test_a_function_called_again_travels_anew_once_it_changes(pool, monkeypatch):
    # A pool remembers the id of a function sent by value with nothing per
    # call and skips plan() for it; its code, its defaults and the globals
    # it read are still checked at every call.
    from interpool import _pool

    ns = cells("K = 2\ndef scale(x):\n    return x * K\n"
               "def offset(x):\n    return x + 100\n")
    fn = ns["scale"]
    assert pool.submit(fn, 5).result(HANG) == 10
    planned = []
    plan = _pool.plan
    monkeypatch.setattr(_pool, "plan", lambda *a: (planned.append(a[0]), plan(*a))[1])
    assert pool.submit(fn, 6).result(HANG) == 12
    assert planned == []                       # the remembered id
    ns["K"] = 3
    assert pool.submit(fn, 5).result(HANG) == 15
    fn.__code__ = ns["offset"].__code__
    assert pool.submit(fn, 5).result(HANG) == 105
    fn.__defaults__ = (7,)
    assert pool.submit(fn).result(HANG) == 107
    fn.__defaults__ = None
    fn.__kwdefaults__ = {}
    assert pool.submit(fn, 1).result(HANG) == 101
    assert planned == [fn] * 4


def test_globals_travel_when_first_sent_and_when_rebound():
    ns = cells("SEEN = []\ndef snapshot():\n    return list(SEEN)\n"
               "def append(x):\n    SEEN.append(x)\n    return list(SEEN)\n")
    with interpool.Pool(1) as pool:   # one worker: what it keeps is observable
        assert pool.submit(ns["snapshot"]).result(HANG) == []
        # What a task changes stays in its worker, for its later tasks; the
        # caller's list is as it was.
        assert pool.submit(ns["append"], 1).result(HANG) == [1]
        assert pool.submit(ns["append"], 2).result(HANG) == [1, 2]
        assert ns["SEEN"] == []
        # A change the caller makes in place is not sent again...
        ns["SEEN"].append("caller")
        assert pool.submit(ns["snapshot"]).result(HANG) == [1, 2]
        # ...rebinding the name is: calls from then on bring its new value.
        ns["SEEN"] = ["rebound"]
        assert pool.submit(ns["snapshot"]).result(HANG) == ["rebound"]
        assert pool.submit(ns["append"], 3).result(HANG) == ["rebound", 3]


def test_state_an_initializer_keeps_in_globals():
    # The idiom of ProcessPoolExecutor's initializer: per-worker state in
    # globals of the script (a connection, a client in a dict).  Rebinding
    # another global the task reads registers it again: the state stays.
    ns = cells(
        """
        CONN = None
        CLIENT = {}
        K = 1

        def init(tag):
            global CONN
            CONN = f"conn-{tag}"
            CLIENT["name"] = tag

        def task(x):
            return CONN, CLIENT.get("name"), x * K
        """
    )
    with interpool.Pool(2, initializer=ns["init"], initargs=("w",)) as pool:
        assert list(pool.map(ns["task"], range(3))) == [("conn-w", "w", i) for i in range(3)]
        ns["K"] = 10
        assert pool.submit(ns["task"], 2).result(HANG) == ("conn-w", "w", 20)
    assert ns["CONN"] is None and ns["CLIENT"] == {}


def test_registered_once_per_pool(monkeypatch):
    ns = cells("import math\nK = 2\ndef f(x):\n    return math.floor(x) * K\n")
    defined = []
    real = _byvalue._define
    monkeypatch.setattr(_byvalue, "_define", lambda export, root: (defined.append(root), real(export, root)))
    with interpool.Pool(2) as pool:
        assert [pool.submit(ns["f"], i).result(HANG) for i in range(50)] == [2 * i for i in range(50)]
        assert list(pool.map(ns["f"], range(50))) == [2 * i for i in range(50)]
        ids = len(pool._fn_ids)
        assert [pool.submit(ns["f"], i).result(HANG) for i in range(20)] == [2 * i for i in range(20)]
        assert len(pool._fn_ids) == ids
        assert defined == [ns["f"]]   # defined once, not per call
        ns["K"] = 3                   # rebound: defined and registered once more
        assert [pool.submit(ns["f"], i).result(HANG) for i in range(20)] == [3 * i for i in range(20)]
        assert len(defined) == 2 and len(pool._fn_ids) == ids + 1


def test_a_global_rebound_at_every_call_in_a_loop():
    # Each rebinding is a new definition at first; then the rebound globals
    # travel with each call, so a pool's registrations stop growing.  What
    # the initializer set stays in its worker all along.
    ns = cells("K = 0\nSTATE = {}\ndef init():\n    STATE['ready'] = True\n"
               "def task(_=None):\n    return K, STATE.get('ready')\n")
    with interpool.Pool(1, initializer=ns["init"]) as pool:
        pool.submit(ns["task"]).result(HANG)
        ids = len(pool._fn_ids)
        for k in range(40):
            ns["K"] = k
            assert pool.submit(ns["task"]).result(HANG) == (k, True)
        assert list(pool.map(ns["task"], range(3))) == [(39, True)] * 3
        assert len(pool._fn_ids) <= ids + 12


@pytest.mark.parametrize("resent", [False, True])
def test_a_global_set_back_after_another_function_sent_it_is_sent_again(resent):
    # f and g read K.  g sends K = 3 to pool a's worker (their namespace
    # there is one); the caller sets K back to the value f was sent with:
    # f's next call must bring it again, not find f unchanged.  With
    # `resent`, h first takes K = 2 to another pool: that is a new sending
    # of 2, not the one f was made with, and a's worker still holds 3.
    ns = cells("K = 2\ndef f(x):\n    return x * K\ndef g(x):\n    return x * K\n"
               "def h(x):\n    return x * K\n")
    with interpool.Pool(1) as a, interpool.Pool(1) as b:   # one worker each: observable
        assert a.submit(ns["f"], 1).result(HANG) == 2
        ns["K"] = 3
        assert a.submit(ns["g"], 1).result(HANG) == 3
        ns["K"] = 2
        if resent:
            assert b.submit(ns["h"], 1).result(HANG) == 2
        assert a.submit(ns["f"], 1).result(HANG) == 2
        assert a.submit(ns["g"], 1).result(HANG) == 2
        assert list(a.map(ns["f"], [1, 2])) == [2, 4]


def test_a_global_rebound_at_every_call_then_set_back_travels_again():
    # Rebound at every call, K travels with each call; set back to the value
    # the definition was made with, it must travel too (the worker holds the
    # last one sent).
    ns = cells("K = 0\ndef scale(x):\n    return x * K\n")
    with interpool.Pool(1) as pool:
        for k in range(1000, 1020):
            ns["K"] = k
            assert pool.submit(ns["scale"], 1).result(HANG) == k
        export = _byvalue._templates[(id(ns["scale"].__code__), id(ns))]
        assert export.volatile
        first = next(v for _, name, v in export.watch if name == "K")
        ns["K"] = first
        assert pool.submit(ns["scale"], 1).result(HANG) == first


# ------------------------------------------------------------ what cannot travel


def _unsendable_globals():
    sock = socket.socket()
    handle = open(os.devnull)
    return sock, handle, {"LOCK": threading.Lock(), "SOCK": sock, "FILE": handle,
                          "GEN": (i for i in range(3))}


@pytest.mark.parametrize("name", ["LOCK", "SOCK", "FILE", "GEN"])
@pytest.mark.parametrize("door", ["submit", "map", "run"])
def test_a_global_that_cannot_travel_is_named_at_the_call(pool, name, door):
    sock, handle, values = _unsendable_globals()
    try:
        ns = cells(f"def uses():\n    return {name}\n", ns={"__name__": "__cells__", **values})
        with pytest.raises(TypeError) as info:
            if door == "submit":
                pool.submit(ns["uses"])
            elif door == "map":
                pool.map(ns["uses"], [])
            else:
                async def main():
                    await pool.run(ns["uses"])
                asyncio.run(main())
        message = str(info.value)
        assert "'uses'" in message and f"global {name!r}" in message
    finally:
        sock.close()
        handle.close()
    assert pool.submit(ht.add, 1, 1).result(HANG) == 2


def test_a_worker_imports_only_what_the_function_needs(pool):
    # helpers_no_subinterp refuses subinterpreters, as numpy does.
    ns = cells("import helpers_no_subinterp\n"
               "def pure(x):\n    return x + 1\n"
               "def uses(x):\n    return helpers_no_subinterp.by_reference(x)\n")
    assert pool.submit(ns["pure"], 1).result(HANG) == 2
    assert pool.submit(hb.is_imported_here, "helpers_no_subinterp").result(HANG) is False
    exc = pool.submit(ns["uses"], 1).exception(HANG)
    assert isinstance(exc, ImportError)
    message = str(exc)
    assert "uses()" in message and "helpers_no_subinterp" in message
    assert "cannot be imported in a subinterpreter" in message


# ------------------------------------------------------------ every front door


def test_nested_pools_with_functions_of_the_cells(pool):
    # Issue 18 item 16: a worker's own pool sends them on by value.
    ns = cells(
        CLASSES,
        """
        import interpool

        def leaf(x):
            return Point(x * 2)

        def branch(n):
            with interpool.Pool(2) as inner:
                return [p.x for p in inner.map(leaf, range(n))], inner.submit(leaf, n).result()
        """,
    )
    xs, point = pool.submit(ns["branch"], 3).result(HANG)
    assert xs == [0, 2, 4] and type(point) is ns["Point"] and point.x == 6


def test_executors_runner_and_asyncio(pool):
    ns = cells("K = 10\ndef add(x):\n    return x + K\nasync def later(x):\n    return x * K\n")
    with interpool.InterpreterPoolExecutor(2) as ex:
        assert ex.submit(ns["add"], 1).result(HANG) == 11
        assert list(ex.map(ns["add"], [1, 2])) == [11, 12]
        closure = cells("def make(k):\n    return lambda: k\n")["make"](1)
        with pytest.raises(NotShareableError):   # as the stdlib's: no closures
            ex.submit(closure).result(HANG)
    with interpool.InterpreterThreadPoolExecutor(2) as ex:
        assert ex.submit(interpool.interpreter(ns["add"]), 2).result(HANG) == 12

    async def main():
        with interpool.Runner(workers=1) as runner:
            ran = await runner.run(ns["add"], 3)
        return ran, await pool.run(ns["later"], 2), [x async for x in pool.amap(ns["add"], [4])]

    assert asyncio.run(main()) == (13, 20, [14])


def test_a_function_that_comes_back_is_the_same_function(pool):
    ns = cells("def f():\n    return 1\n")
    assert pool.submit(ht.identity, ns["f"]).result(HANG) is ns["f"]


def test_travelling_form_loads_in_another_process():
    # What a process (the fallback helper's) does with it: pickle.loads.
    ns = cells(CLASSES, "def task(n):\n    return use(n)[0], Point(n)\n")
    data = _byvalue.dumps((ns["task"], (4,)), portable=True)
    code = ("import pickle, sys; fn, args = pickle.loads(sys.stdin.buffer.read()); "
            "print(fn(*args))")
    proc = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True,
                          env=subprocess_env(), timeout=HANG)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() == (
        "({'x': 5, 'y': 2, 'tags': []}, Point(x=4, y=0, tags=[]))")
    assert pickle.loads(data)[0] is ns["task"]   # home: the very function
