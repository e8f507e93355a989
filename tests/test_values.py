"""Values arrive as what was sent (issue 12, item 8), through a real pool.

- Zero-copy sharing applies to memoryview, bytearray, array.array and
  mmap.mmap, and to classes that opt in (``__interpool_zero_copy__``);
  any other object, buffer or not, arrives as its own type.
- An n-D C-contiguous buffer keeps its shape and format in the worker.
- Shared and recursive references keep their identities (the codec's memo).
"""

import array
import ctypes
import decimal
import gc

import pytest

import helpers_values as hv
import interpool
from interpool import _core


@pytest.fixture(scope="module")
def pool():
    p = interpool.Pool(2, name="values-pool")
    assert p.wait_ready(60)
    yield p
    p.shutdown()


def run(pool, fn, *args):
    return pool.submit(fn, *args).result(timeout=60)


# ------------------------------------------------------- types are kept


def test_bytes_subclass_arrives_as_itself(pool):
    b = hv.Tagged(b"caf\xc3\xa9")
    b.tag = "t1"
    info = run(pool, hv.describe, b)
    assert info["type"] == "Tagged" and info["module"] == "helpers_values"
    assert info["tag"] == "t1" and info["decoded"] == "café"
    back = run(pool, hv.identity, b)
    assert type(back) is hv.Tagged and back == b and back.tag == "t1"


def test_buffer_exporter_with_attributes_arrives_as_itself(pool):
    f = hv.Frame(b"abc", "left")
    info = run(pool, hv.describe, f)
    assert info["type"] == "Frame"
    assert info["label"] == "left" and info["data"] == b"abc"
    # Not shared: the worker wrote into its own copy.
    assert run(pool, hv.fill, f, 9) == 3
    assert f.data == bytearray(b"abc")


def test_ctypes_array_arrives_as_itself(pool):
    a = hv.IntArray3(1, -2, 3)
    info = run(pool, hv.describe, a)
    assert info["type"] == "IntArray3" and info["items"] == [1, -2, 3]
    back = run(pool, hv.identity, a)
    assert type(back) is hv.IntArray3 and list(back) == [1, -2, 3]


def test_unpicklable_buffer_is_refused_not_turned_into_a_view(pool):
    # An anonymous ctypes array type cannot be pickled: a clear TypeError at
    # the call site (it used to arrive as a bare memoryview).
    anonymous = (ctypes.c_int * 3)(1, 2, 3)
    with pytest.raises(TypeError, match=r"c_int_Array_3.*memoryview\(value\)"):
        pool.submit(hv.describe, anonymous)
    # The way to share its memory: say so with a memoryview.
    info = run(pool, hv.describe, memoryview(anonymous))
    assert info["type"] == "memoryview" and info["format"] == "<i"
    assert info["raw"] == bytes(anonymous)


def test_array_subclass_is_not_the_listed_type(pool):
    a = hv.LabelledArray("h", [1, 2])
    a.label = "mine"
    info = run(pool, hv.describe, a)
    assert info["type"] == "LabelledArray" and info["items"] == [1, 2]
    assert info["label"] == "mine"


def test_listed_types_still_travel_zero_copy(pool):
    for buf in (bytearray(4), array.array("b", bytes(4)), memoryview(bytearray(4))):
        assert run(pool, hv.describe, buf)["type"] == "memoryview"
        assert run(pool, hv.fill, buf, 5) == 4
        assert bytes(buf) == b"\x05" * 4


def test_opt_in_type_travels_zero_copy(pool):
    f = hv.SharedFrame(b"\x00" * 6, "shared")
    info = run(pool, hv.describe, f)
    assert info["type"] == "memoryview" and info["items"] == [0] * 6
    assert run(pool, hv.fill, f, 7) == 6
    assert f.data == bytearray(b"\x07" * 6)   # the worker wrote the caller's memory


def test_opt_in_is_read_from_the_class():
    class Off(hv.Frame):
        __interpool_zero_copy__ = False

    f = Off(b"x", "instance")
    f.__interpool_zero_copy__ = True   # instances cannot opt in
    with interpool.Pool(1) as p:
        # Off is local: it travels by value, pickled (not shared).
        info = p.submit(hv.describe, f).result(60)
    assert info["type"].endswith("<locals>.Off") and info["data"] == b"x"


# ------------------------------------------------------- n-D buffers


def test_2d_buffer_keeps_shape_and_format(pool):
    ba = bytearray(24)
    grid = memoryview(ba).cast("i", (2, 3))
    info = run(pool, hv.describe, grid)
    assert info["type"] == "memoryview"
    assert info["format"] == "i" and info["itemsize"] == 4
    assert info["shape"] == (2, 3) and info["ndim"] == 2
    assert info["items"] == [[0, 0, 0], [0, 0, 0]]
    assert run(pool, hv.write_at, grid, (1, 2), -7) == -7
    assert grid[1, 2] == -7 and grid.tolist() == [[0, 0, 0], [0, 0, -7]]


def test_3d_buffer_and_readonly_2d(pool):
    cube = memoryview(bytearray(8 * 24)).cast("d", (2, 3, 4))
    info = run(pool, hv.describe, cube)
    assert info["shape"] == (2, 3, 4) and info["format"] == "d"
    assert run(pool, hv.write_at, cube, (1, 2, 3), 2.5) == 2.5
    assert cube[1, 2, 3] == 2.5
    ro = memoryview(bytes(range(6))).cast("B", (3, 2))
    info = run(pool, hv.describe, ro)
    assert info["shape"] == (3, 2) and info["readonly"] is True
    assert info["items"] == [[0, 1], [2, 3], [4, 5]]


def test_non_contiguous_2d_still_refused(pool):
    view = memoryview(bytearray(24)).cast("B", (4, 6))[::2]
    with pytest.raises(TypeError, match="C-contiguous"):
        pool.submit(hv.describe, view)


# ------------------------------------------------------- identities


def test_recursive_containers_through_a_pool(pool):
    loop = []
    loop.append(loop)
    assert run(pool, hv.shape_of, loop) == "self-list"
    back = run(pool, hv.identity, loop)
    assert back[0] is back
    d = {"n": 1}
    d["self"] = d
    assert run(pool, hv.shape_of, d) == "self-dict"
    back = run(pool, hv.identity, d)
    assert back["self"] is back and back["n"] == 1


def test_shared_references_stay_shared(pool):
    s = [1, 2]
    assert run(pool, hv.shape_of, [s, s, s]) == [True, True]
    assert run(pool, hv.shape_of, [s, [1, 2]]) == [False]
    back = run(pool, hv.identity, [s, s])
    assert back == [[1, 2], [1, 2]] and back[0] is back[1]
    # ... in keyword arguments and across positional arguments too
    assert pool.submit(hv.identity, x=[s, s]).result(timeout=60) is not None
    args_back = pool.submit(lambda_free_pair, s, s).result(timeout=60)
    assert args_back is True


def lambda_free_pair(a, b):
    return a is b


def test_shared_pickled_leaves_stay_shared(pool):
    p = decimal.Decimal("1.5")
    back = run(pool, hv.identity, [p, p, {"k": p}])
    assert back[0] == p and back[0] is back[1] is back[2]["k"]
    f = hv.Frame(b"z", "same")
    assert run(pool, hv.shape_of, [f, f]) == [True]


def test_shared_zero_copy_buffer_is_one_view(pool):
    ba = bytearray(3)
    assert run(pool, hv.shape_of, [ba, ba]) == [True]


def test_recursion_through_a_tuple(pool):
    t = ([],)
    t[0].append(t)
    back = run(pool, hv.identity, t)
    assert type(back) is tuple and back[0][0] is back


def test_decoded_atomic_tuples_are_not_gc_tracked():
    assert not gc.is_tracked(_core.decode(_core.encode((1, "a", (2.5, None)))))
    assert not gc.is_tracked(_core.decode(_core.encode(frozenset({1, (2,)}))))
    assert gc.is_tracked(_core.decode(_core.encode((1, []))))
    assert gc.is_tracked(_core.decode(_core.encode(({},))))
