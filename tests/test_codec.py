"""The value codec (src/interpool/codec.c), through _core.encode/_core.decode.

Round trips must preserve exact types and float bits; anything that is not
one of the codec's types goes through pickle; malformed payloads raise
(CodecError mostly) and never crash the process.
"""

import collections
import datetime
import decimal
import enum
import fractions
import gc
import math
import struct
import sys
import threading
import time
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interpool import _core

encode = _core.encode
decode = _core.decode
CodecError = _core.CodecError
MAX_DEPTH = _core.MAX_DEPTH

# Every tag the codec knows (see the table at the top of codec.c).
TAGS = b"NFTiIfcsuUbB([{SZP#*"
RESERVED_TAGS = b"M"
# 'H' names a pinned data-plane object by its index in the payload's own pin
# list: a bare payload (no pins) can never name one.
HANDLE_TAG = b"H"


# ------------------------------------------------------------------ helpers


def float_bits(x: float) -> bytes:
    return struct.pack("<d", x)


def same(a: object, b: object) -> bool:
    """a == b, but exact types all the way down, NaN equal to a NaN with the
    same bits, and 0.0 different from -0.0."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return float_bits(a) == float_bits(b)
    if type(a) is complex:
        return float_bits(a.real) == float_bits(b.real) and float_bits(
            a.imag
        ) == float_bits(b.imag)
    if type(a) in (tuple, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items())
        )
    if type(a) in (set, frozenset):
        if len(a) != len(b):
            return False
        rest = list(b)
        for x in a:
            for i, y in enumerate(rest):
                if same(x, y):
                    del rest[i]
                    break
            else:
                return False
        return True
    return a == b


def roundtrip(value: object) -> object:
    return decode(encode(value))


def assert_roundtrips(value: object) -> None:
    back = roundtrip(value)
    assert same(value, back), f"{value!r} came back as {back!r}"


def nested(depth: int, make=lambda v: [v], leaf: object = 1) -> object:
    v = leaf
    for _ in range(depth):
        v = make(v)
    return v


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Module level, so pickle finds them by reference.
class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return type(other) is Point and (self.x, self.y) == (other.x, other.y)

    __hash__ = None


class Color(enum.IntEnum):
    RED = 1
    GREEN = 2


class Flavour(enum.Enum):
    SWEET = "sweet"


class MyStr(str):
    pass


class MyInt(int):
    pass


class MyFloat(float):
    pass


class MyList(list):
    pass


class MyTuple(tuple):
    pass


class MyDict(dict):
    pass


class RaisesOnReduce:
    def __init__(self, exc):
        self.exc = exc

    def __reduce__(self):
        raise self.exc


class ClearsOnReduce:
    """Pickling it empties the container it sits in."""

    def __init__(self, container):
        self.container = container

    def __reduce__(self):
        self.container.clear()
        return (int, (7,))


# --------------------------------------------------------------- strategies

EDGE_INTS = [
    0, 1, -1, 63, 64, -64, -65, 127, 128, 255, 256, -5, -6,
    2**30 - 1, 2**30, -(2**30), 2**31, 2**32, 2**62, -(2**62),
    2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, -(2**64),
    2**127, -(2**127), 2**2000, -(2**2000), 10**600, -(10**600),
]

SPECIAL_FLOATS = [
    0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, -5e-324, 1.7976931348623157e308,
    *(struct.unpack("<d", struct.pack("<Q", bits))[0] for bits in (
        0x7FF8000000000000,  # quiet NaN
        0xFFF8000000000000,  # negative quiet NaN
        0x7FF0000000000001,  # signalling NaN
        0x7FF8DEADBEEF0001,  # NaN with a payload
        0xFFFFFFFFFFFFFFFF,
    )),
]

# Built so that the strategies' reprs stay short (hypothesis warns otherwise).
big_ints = st.builds(
    lambda bits, sign, low: sign * ((1 << bits) + low),
    st.integers(0, 2000), st.sampled_from([1, -1]), st.integers(-(2**64), 2**64),
)


def _edge_int(i: int) -> int:
    return EDGE_INTS[i]


edge_ints = st.integers(0, len(EDGE_INTS) - 1).map(_edge_int)

characters = st.one_of(
    st.characters(max_codepoint=0xFF),                  # kind 1
    st.characters(exclude_categories=()),               # anything
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF,
                  exclude_categories=()),               # lone surrogates
    st.characters(min_codepoint=0x10000, exclude_categories=()),  # non-BMP
)
texts = st.text(characters, max_size=24)

hashable_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    big_ints,
    edge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(SPECIAL_FLOATS),
    st.complex_numbers(allow_nan=True, allow_infinity=True),
    texts,
    st.binary(max_size=40),
)
scalars = hashable_scalars | st.binary(max_size=40).map(bytearray)

hashables = st.recursive(
    hashable_scalars,
    lambda inner: st.lists(inner, max_size=4).map(tuple)
    | st.frozensets(inner, max_size=4),
    max_leaves=8,
)

values = st.recursive(
    scalars | hashables,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.lists(inner, max_size=6).map(tuple),
        st.dictionaries(hashables, inner, max_size=6),
        st.sets(hashables, max_size=6),
        st.frozensets(hashables, max_size=6),
    ),
    max_leaves=40,
)


# --------------------------------------------------------------- round trips


@settings(max_examples=500, deadline=None)
@given(values)
def test_roundtrip_property(value):
    assert_roundtrips(value)


@pytest.mark.parametrize("value", EDGE_INTS)
def test_int_edges(value):
    assert_roundtrips(value)
    data = encode(value)
    # int64 values use the short form, the rest the big-int form
    assert data[:1] == (b"i" if -(2**63) <= value < 2**63 else b"I")


@pytest.mark.parametrize("value", SPECIAL_FLOATS, ids=lambda f: float_bits(f).hex())
def test_float_bits_survive(value):
    back = roundtrip(value)
    assert type(back) is float and float_bits(back) == float_bits(value)
    c = complex(value, -value)
    back = roundtrip(c)
    assert float_bits(back.real) == float_bits(c.real)
    assert float_bits(back.imag) == float_bits(c.imag)


@pytest.mark.parametrize(
    "text",
    [
        "", "a", "abc" * 100, "\xe9t\xe9", "\xff" * 7, "\u20ac", "\u0100\u00ff",
        "\U0001f600", "a\U0010ffff", "\ud800", "\udfff\ud800", "x\ud83dy",
        "\ud83d\ude00", "\x00" * 5, "\u20ac" * 100_001, "\U0001f600" * 100_001,
    ],
    ids=lambda s: repr(s[:8]),
)
def test_str_kinds(text):
    back = roundtrip(text)
    assert type(back) is str and back == text and hash(back) == hash(text)


def test_str_data_at_odd_addresses():
    # UCS-2/UCS-4 data at every alignment, and a payload that starts at an
    # odd address: decoding must not assume aligned code units.
    for pad in range(8):
        value = ("x" * pad, "\u20ac\u0101" * 9, "\U0001f600z" * 9)
        data = encode(value)
        assert same(decode(data), value)
        shifted = memoryview(b"\0" * (pad + 1) + data)[pad + 1:]
        assert same(decode(shifted), value)


def test_bytes_like_inputs():
    data = encode({"k": [1, 2.5, b"x"]})
    for form in (data, bytearray(data), memoryview(data)):
        assert decode(form) == {"k": [1, 2.5, b"x"]}
    with pytest.raises(TypeError):
        decode("not bytes")


def test_wire_format():
    # The tag table in codec.c, pinned.
    assert encode(None) == b"N"
    assert encode(False) == b"F"
    assert encode(True) == b"T"
    assert encode(0) == b"i\x00"
    assert encode(1) == b"i\x02"
    assert encode(-1) == b"i\x01"
    assert encode(300) == b"i\xd8\x04"
    assert encode(1.5) == b"f" + struct.pack("=d", 1.5)
    assert encode(2j) == b"c" + struct.pack("=dd", 0.0, 2.0)
    assert encode("ab") == b"s\x02ab"
    assert encode("\u20ac") == b"u\x01" + "\u20ac".encode("utf-16-le" if sys.byteorder == "little" else "utf-16-be")
    assert encode(b"ab") == b"b\x02ab"
    assert encode(bytearray(b"ab")) == b"B\x02ab"
    assert encode((1,)) == b"(\x01i\x02"
    assert encode([]) == b"[\x00"
    assert encode({"a": None}) == b"{\x01s\x01aN"
    assert encode({1}) == b"S\x01i\x02"
    assert encode(frozenset()) == b"Z\x00"
    assert encode(2**64)[:2] == b"I\x09"
    assert encode(Point(1, 2))[:1] == b"P"


def test_empty_containers_and_identity_of_singletons():
    for value in [(), [], {}, set(), frozenset(), "", b"", bytearray()]:
        assert_roundtrips(value)
    assert roundtrip(None) is None
    assert roundtrip(True) is True
    assert roundtrip(False) is False


def test_decoded_mutables_are_fresh():
    value = [bytearray(b"a"), {"k": []}, {1}]
    back = roundtrip(value)
    back[0].append(98)
    back[1]["k"].append(1)
    back[2].add(2)
    assert value == [bytearray(b"a"), {"k": []}, {1}]


def test_repeated_dict_keys_are_shared_and_correct():
    records = [{"id": i, "name": f"n{i}", "score": i / 2, "é": i} for i in range(300)]
    back = roundtrip(records)
    assert same(back, records)
    assert back[0].keys() == back[-1].keys()
    # The key cache hands out one object per distinct key.
    assert all(a is b for a, b in zip(back[1], back[-1]))
    # Many distinct keys (cache collisions and evictions) stay correct.
    many = [{f"k{i}": i, f"k{i + 1}": -i} for i in range(2000)]
    assert roundtrip(many) == many


# ------------------------------------------------------------------ nesting


def _cycle(*makers):
    state = {"i": 0}

    def make(v):
        state["i"] += 1
        return makers[state["i"] % len(makers)](v)

    return make


@pytest.mark.parametrize(
    "make",
    [
        lambda v: [v],
        lambda v: (v,),
        lambda v: {"k": v},
        lambda v: frozenset([v]),
        lambda v: [1, v, "x"],
        _cycle(lambda v: [v], lambda v: (v,), lambda v: {0: v}),
    ],
    ids=["list", "tuple", "dict", "frozenset", "wide-list", "mixed"],
)
def test_nesting_up_to_the_limit(make):
    for depth in (1, MAX_DEPTH - 1, MAX_DEPTH):
        value = nested(depth, make)
        assert same(roundtrip(value), value)
    for depth in (MAX_DEPTH + 1, 250, 10_000):
        with pytest.raises(ValueError, match="nested too deeply.*200"):
            encode(nested(depth, make))


def test_nesting_limit_counts_containers_only():
    assert MAX_DEPTH == 200
    value = nested(MAX_DEPTH, leaf=Point(1, 2))  # pickled leaf: not a level
    assert roundtrip(value) == value
    value = nested(MAX_DEPTH // 2, lambda v: [v], nested(MAX_DEPTH // 2, lambda v: {"x": v}))
    assert roundtrip(value) == value


def test_self_reference():
    # Recursive containers were refused ("nested too deeply") before the
    # memo; they now arrive with the same shape (see also test_memo_*).
    loop = []
    loop.append(loop)
    back = roundtrip(loop)
    assert type(back) is list and len(back) == 1 and back[0] is back
    d = {}
    d["self"] = d
    back = roundtrip(d)
    assert back["self"] is back
    mixed = [1, {"a": None}]
    mixed[1]["a"] = mixed
    back = roundtrip(mixed)
    assert back[0] == 1 and back[1]["a"] is back


def test_decode_depth_limit():
    ok = b"[\x01" * MAX_DEPTH + b"N"
    assert roundtrip(nested(MAX_DEPTH, leaf=None)) == decode(ok)
    for depth in (MAX_DEPTH + 1, 100_000):
        with pytest.raises(CodecError, match="nested deeper"):
            decode(b"[\x01" * depth + b"N")
    with pytest.raises(CodecError):
        decode(b"{\x01N" * (MAX_DEPTH + 1) + b"N")


# ---------------------------------------------------------- pickle fallback


@pytest.mark.parametrize(
    "value",
    [
        Point(1, "two"),
        decimal.Decimal("3.14159"),
        fractions.Fraction(1, 3),
        Color.RED,
        Flavour.SWEET,
        collections.OrderedDict([("b", 1), ("a", 2)]),
        collections.defaultdict(list, {"x": [1]}),
        collections.Counter("hello"),
        MyStr("sub"),
        MyInt(5),
        MyFloat(1.5),
        MyList([1, 2]),
        MyTuple((1, 2)),
        MyDict(a=1),
        datetime.datetime(2024, 1, 2, 3, 4, 5),
        range(3, 10, 2),
        slice(1, 2, 3),
        Ellipsis,
        NotImplemented,
        int,
        len,
    ],
    ids=lambda v: type(v).__name__,
)
def test_pickle_fallback_keeps_the_type(value):
    data = encode(value)
    assert data[:1] == b"P"
    back = decode(data)
    assert type(back) is type(value)
    assert back == value


def test_pickle_fallback_inside_native_containers():
    value = {"p": [Point(1, 2), (decimal.Decimal(1), Color.GREEN)], "n": 1}
    back = roundtrip(value)
    assert back == value
    assert type(back["p"][1][1]) is Color
    assert type(back["p"][1][0]) is decimal.Decimal


def test_defaultdict_factory_survives():
    back = roundtrip(collections.defaultdict(int, {"a": 1}))
    back["missing"] += 1
    assert back == {"a": 1, "missing": 1}


def _gen():
    yield 1


@pytest.mark.parametrize(
    "value, type_name",
    [
        (threading.Lock(), "_thread.lock"),
        (_gen(), "generator"),
    ],
    ids=["lock", "generator"],
)
def test_unpicklable_values_raise_type_error(value, type_name):
    for wrapped in (value, [1, {"k": value}]):
        with pytest.raises(TypeError) as info:
            encode(wrapped)
        message = str(info.value)
        assert f"cannot send a value of type '{type_name}'" in message
        assert "pickling failed" in message
        assert info.value.__cause__ is not None
        assert type(info.value.__cause__).__name__ in message


def test_lambdas_modules_and_local_classes_travel():
    # Issue 19: what pickle cannot find by name travels by value, modules by
    # name; decoded where they were made, they are the very objects.
    class Local:
        pass

    fn = lambda: None  # noqa: E731
    assert roundtrip(fn) is fn
    assert roundtrip(sys) is sys
    back = roundtrip([Local(), Local])
    assert type(back[0]) is Local and back[1] is Local


def test_reduce_errors():
    with pytest.raises(TypeError, match=r"RaisesOnReduce.*\(ZeroDivisionError: boom\)") as info:
        encode(RaisesOnReduce(ZeroDivisionError("boom")))
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    # Not about the value: passed through untouched.
    with pytest.raises(KeyboardInterrupt):
        encode([RaisesOnReduce(KeyboardInterrupt())])
    with pytest.raises(MemoryError):
        encode({"k": RaisesOnReduce(MemoryError())})


def test_container_mutated_while_encoding():
    lst = [1, 2]
    lst.append(ClearsOnReduce(lst))
    lst.append(3)
    with pytest.raises(RuntimeError, match="list changed size"):
        encode(lst)
    d = {"a": 1}
    d["b"] = ClearsOnReduce(d)
    d["c"] = 2
    with pytest.raises(RuntimeError, match="changed size"):
        encode(d)
    # Sets: the set iterator notices the change itself.
    s = {1, 2}

    class ClearsSet:
        def __reduce__(self):
            s.clear()
            return (int, (1,))

    s.add(ClearsSet())
    with pytest.raises(RuntimeError):
        encode(s)


# ------------------------------------------------------- shared references


def _recursive_samples():
    loop = []
    loop.append(loop)
    d = {"k": 1}
    d["self"] = d
    s = [1, "x"]
    t = ([],)
    t[0].append(t)
    p = Point(1, 2)
    fs = frozenset({(1, 2)})
    return {
        "loop": loop,
        "dict": d,
        "shared": [s, s, {"a": s}],
        "tuple": t,
        "pickled": [p, {"p": p}, (p,)],
        "frozenset": [fs, {fs: fs}, fs],
        "bytearray": [bytearray(b"ab")] * 3,
        "deep": nested(20, lambda v: [v, {"k": v}]),
    }


RECURSIVE = _recursive_samples()


def test_memo_wire_format():
    s = [1]
    assert encode([s, s]) == b"#[\x02[\x01i\x02*\x01"
    loop = []
    loop.append(loop)
    assert encode(loop) == b"#[\x01*\x00"
    # No reference written: no scope, the format of before.
    assert encode([[1], [1]]) == b"[\x02[\x01i\x02[\x01i\x02"
    assert encode({"a": [1]})[:1] == b"{"


@pytest.mark.parametrize("name", list(RECURSIVE))
def test_memo_roundtrips_identities(name):
    value = RECURSIVE[name]
    back = roundtrip(value)
    if name == "loop":
        assert back[0] is back
    elif name == "dict":
        assert back["self"] is back and back["k"] == 1
    elif name == "shared":
        assert back[0] is back[1] is back[2]["a"] and back[0] == [1, "x"]
    elif name == "tuple":
        assert type(back) is tuple and back[0][0] is back
    elif name == "pickled":
        assert back[0] == Point(1, 2) and back[0] is back[1]["p"] is back[2][0]
    elif name == "frozenset":
        assert back[0] is back[2] and back[1] == {back[0]: back[0]}
    elif name == "bytearray":
        assert back[0] is back[1] is back[2] and back[0] == bytearray(b"ab")
    elif name == "deep":
        assert back == value


def test_memo_scopes_are_independent():
    # Two encodings written one after the other (as a tuple's items may be)
    # each number their own objects.
    s, u = [1], [2]
    a, b = encode([s, s]), encode([u, u, u])
    data = b"(\x02" + a + b
    back = decode(data)
    assert back == ([[1], [1]], [[2], [2], [2]])
    assert back[0][0] is back[0][1] and back[1][0] is back[1][2]
    assert back[0][0] is not back[1][0]


def test_memo_costs_nothing_for_single_references():
    # Fresh containers held once are never looked up: the payload is the
    # same bytes as without a memo.
    doc = {"items": [{"id": i, "tags": ["a", "b"]} for i in range(50)]}
    assert encode(doc)[:1] == b"{"
    assert encode([[i] for i in range(100)])[:1] == b"["


def test_malformed_references():
    with pytest.raises(CodecError, match="names no object"):
        decode(b"*\x00")                    # outside a scope
    with pytest.raises(CodecError, match="names no object"):
        decode(b"#[\x01*\x01")              # forward reference
    with pytest.raises(CodecError, match="names no object"):
        decode(b"[\x02#[\x00*\x00")        # a scope's numbers end with it
    with pytest.raises(CodecError, match="truncated"):
        decode(b"#")
    with pytest.raises(CodecError, match="truncated"):
        decode(b"####")
    assert decode(b"###[\x01*\x00")[0] is not None
    # A reference to a tuple still being decoded, hashed as a key: a valid
    # (if odd) value, never a crash.
    decode_or_error(b"#(\x01{\x01*\x00N")
    decode_or_error(b"#Z\x01*\x00")
    decode_or_error(b"#(\x02S\x01*\x00*\x00")
    decode_or_error(b"#{\x01*\x00N")     # an unhashable key: TypeError


def test_memo_refuses_a_tuple_that_contains_itself_directly():
    # Python cannot build one (only through a mutable container), and
    # hashing it would recurse without end: refused, never a crash.
    for payload in (b"#(\x01*\x00", b"#(\x02i\x02(\x01*\x00", b"#Z\x01(\x02*\x01i\x02"):
        with pytest.raises(CodecError, match="contain itself"):
            decode(payload)
    back = decode(b"#(\x01[\x01*\x00")   # through a list: the recursive tuple pickle makes
    assert type(back) is tuple and back[0][0] is back


REF_PAYLOADS = [encode(v) for v in RECURSIVE.values()]


@pytest.mark.parametrize("index", range(len(REF_PAYLOADS)))
def test_memo_every_truncation_fails_cleanly(index):
    payload = REF_PAYLOADS[index]
    for cut in range(len(payload)):
        with pytest.raises(CodecError):
            decode(payload[:cut])


@pytest.mark.parametrize("name", ["loop", "dict", "shared", "tuple", "frozenset"])
def test_memo_every_single_byte_mutation(name):
    payload = encode(RECURSIVE[name])
    data = bytearray(payload)
    for i in range(len(data)):
        original = data[i]
        for value in range(256):
            data[i] = value
            decode_or_error(data)
        data[i] = original


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_memo_random_mutations(data):
    payload = bytearray(data.draw(st.sampled_from(REF_PAYLOADS)))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] = data.draw(st.sampled_from([0, 1, 2, 0x80, ord("*"), ord("#"),
                                                ord("("), ord("Z"), ord("{"),
                                                data.draw(st.integers(0, 255))]))
    decode_or_error(bytes(payload))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"#", b"*\x00", b"*\x01", b"(\x01", b"[\x01", b"{\x01",
                                 b"Z\x01", b"S\x01", b"N", b"i\x02", b"s\x01k"]),
                max_size=30))
def test_memo_random_token_streams(tokens):
    decode_or_error(b"".join(tokens))


def test_memo_no_leaks():
    loop = []
    loop.append(loop)
    s = [1]
    cases = {
        "encode-loop": lambda: encode(loop),
        "decode-loop": lambda: decode(encode(loop)),
        "shared": lambda: decode(encode([s, s, (s,)])),
        "bad-ref": _raises(decode, b"#[\x02[\x00*\x05"),
        "truncated-scope": _raises(decode, b"#[\x02[\x01*\x00"),
    }
    for name, fn in cases.items():
        growth = _traced_growth(fn)
        assert growth < 64 * 1024, f"{name}: memory grew by {growth} bytes"


# -------------------------------------------------------- malformed payloads

SAMPLES = [
    [1, -1, 2**70, -(2**70), 0.5, -0.0, math.nan, 1 + 2j, None, True, False],
    {"a": "text", "é": "\u20ac\u0101", "😀": "\U0001f600\ud800", b"k": bytearray(b"v")},
    ({1, 2, 3}, frozenset({"x", (1, 2)}), ((), [], {}), "x" * 200),
    [Point(1, 2), decimal.Decimal("1.5"), {"nested": [Color.RED, (None,)]}],
    nested(30, lambda v: [1, {"k": (v,)}]),
]
SAMPLE_PAYLOADS = [encode(v) for v in SAMPLES]
NATIVE_SAMPLES = [0, 1, 2, 4]  # indexes of the samples without pickled parts


def decode_or_error(data) -> None:
    """Decoding arbitrary bytes returns a value or raises an Exception."""
    try:
        decode(data)
    except Exception:
        pass


@pytest.mark.parametrize("index", range(len(SAMPLES)))
def test_every_truncation_fails_cleanly(index):
    payload = SAMPLE_PAYLOADS[index]
    assert same(decode(payload), SAMPLES[index])
    for cut in range(len(payload)):
        with pytest.raises(CodecError):
            decode(payload[:cut])


@pytest.mark.parametrize("index", NATIVE_SAMPLES)
def test_every_single_byte_mutation(index):
    # Exhaustive over native-only payloads: every position, every value.
    payload = SAMPLE_PAYLOADS[index]
    data = bytearray(payload)
    for i in range(len(data)):
        original = data[i]
        for value in range(256):
            data[i] = value
            decode_or_error(data)
        data[i] = original
    assert same(decode(data), decode(payload))


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_random_mutations_with_pickle_inside(data):
    payload = bytearray(data.draw(st.sampled_from(SAMPLE_PAYLOADS)))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] = data.draw(st.integers(0, 255))
    decode_or_error(bytes(payload))


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(data):
    decode_or_error(data)


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(list(TAGS + RESERVED_TAGS + HANDLE_TAG)), st.binary(max_size=100))
def test_random_bodies_after_a_valid_tag(tag, body):
    decode_or_error(bytes([tag]) + body)


@settings(max_examples=100, deadline=None)
@given(values, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_rejected(value, extra):
    with pytest.raises(CodecError):
        decode(encode(value) + extra)


def test_huge_claimed_lengths_fail_fast():
    huge = [2**62, 2**63 - 1, 2**64 - 1, 2**31, 10**12]
    start = time.perf_counter()
    for tag in b"IsuUbB([{SZP":
        for n in huge:
            for tail in (b"", b"x", b"N" * 16):
                with pytest.raises(CodecError, match="claims"):
                    decode(bytes([tag]) + varint(n) + tail)
    assert time.perf_counter() - start < 1.0


def test_malformed_varints():
    with pytest.raises(CodecError, match="64 bits"):
        decode(b"i" + b"\xff" * 10 + b"\x01")
    with pytest.raises(CodecError, match="64 bits"):
        decode(b"i" + b"\xff" * 9 + b"\x02")
    with pytest.raises(CodecError, match="truncated"):
        decode(b"i" + b"\x80" * 5)
    assert decode(b"i" + b"\xff" * 9 + b"\x01") == -(2**63)
    assert decode(b"i\x80\x80\x00") == 0  # over-long but in range: accepted


def test_unknown_and_reserved_tags():
    for tag in range(256):
        if tag in TAGS:
            continue
        with pytest.raises(CodecError) as info:
            decode(bytes([tag]) + b"\x00" * 16)
        if tag in RESERVED_TAGS:
            assert "cannot decode" in str(info.value)
        elif tag in HANDLE_TAG:
            assert "does not hold" in str(info.value)
        else:
            assert "unknown tag" in str(info.value)
    with pytest.raises(CodecError, match="truncated handle"):
        decode(b"H")
    with pytest.raises(CodecError, match="zero-copy buffer"):
        decode(b"M")


def test_empty_and_truncated_scalars():
    for data in [b"", b"f", b"f\x00" * 4, b"c" + b"\x00" * 15, b"s\x05abc", b"u\x02ab\x00",
                 b"U\x01\x00\x00\x00", b"(\x02N", b"{\x01N", b"I\x03\x01"]:
        with pytest.raises(CodecError):
            decode(data)


def test_crafted_unhashables_raise_type_error():
    with pytest.raises(TypeError):
        decode(b"{\x01[\x00N")          # {[]: None}
    with pytest.raises(TypeError):
        decode(b"S\x01{\x00")           # {{}}
    with pytest.raises(TypeError):
        decode(b"Z\x01B\x00")           # frozenset({bytearray()})
    with pytest.raises(TypeError):
        decode(b"[\x02i\x02{\x01(\x01[\x00N")  # [1, {([],): None}]


def test_non_canonical_strings_are_canonicalised():
    # kind-2 and kind-4 payloads holding narrow text give the narrow string
    # (so == and hash agree with literals).
    cases = {
        b"u\x02A\x00\xe9\x00": "A\xe9",
        b"U\x01A\x00\x00\x00": "A",
        b"U\x02\xac\x20\x00\x00\x00\xd8\x00\x00": "\u20ac\ud800",
        b"u\x00": "",
    }
    for data, text in cases.items():
        back = decode(data)
        assert back == text and hash(back) == hash(text)
        assert encode(back) == encode(text)
    with pytest.raises(CodecError, match="out of range"):
        decode(b"U\x01\x00\x00\x11\x00")    # U+110000
    with pytest.raises(CodecError, match="out of range"):
        decode(b"U\x02A\x00\x00\x00\xff\xff\xff\xff")


def test_non_canonical_ints():
    assert decode(b"I\x00") == 0
    assert decode(b"I\x01\xff") == -1
    assert decode(b"I\x02\x01\x00") == 1
    assert decode(b"i\x03") == -2


def test_pickle_payload_errors_propagate():
    with pytest.raises(Exception):
        decode(b"P\x03abc")
    with pytest.raises(CodecError):
        decode(b"P\x05abc")


# ------------------------------------------------------------------ leaks


def _traced_growth(fn, rounds=3000) -> int:
    for _ in range(200):
        fn()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(rounds):
            fn()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def _raises(fn, *args):
    def run():
        try:
            fn(*args)
        except BaseException:
            pass
        else:
            raise AssertionError("expected an error")
    return run


def test_no_leaks_on_success_and_error_paths():
    big = {"a": [1, 2**80, "x\u20ac", b"b", {1, 2}, (None, 1.5)], "b": Point(1, 2)}
    good = encode(big)
    bad_tail = good[:-3] + b"Q\x00\x00"
    cases = {
        "encode": lambda: encode(big),
        "decode": lambda: decode(good),
        "encode-unpicklable": _raises(encode, [1, "x", {"k": threading.Lock()}]),
        "encode-too-deep": _raises(encode, nested(MAX_DEPTH + 1, leaf="leaf")),
        "decode-truncated": _raises(decode, good[: len(good) // 2]),
        "decode-bad-tag": _raises(decode, bad_tail),
        "decode-unhashable": _raises(decode, b"[\x02s\x01x{\x01[\x00N"),
        "decode-too-deep": _raises(decode, b"[\x02s\x01x" * 300 + b"N"),
        "decode-trailing": _raises(decode, good + b"N"),
    }
    for name, fn in cases.items():
        growth = _traced_growth(fn)
        assert growth < 64 * 1024, f"{name}: memory grew by {growth} bytes"


def test_refcounts_unchanged():
    key, value = "some-key-object", threading.Lock()
    payload = [key, {"k": value}]
    before = sys.getrefcount(key), sys.getrefcount(value)
    for _ in range(100):
        with pytest.raises(TypeError):
            encode({key: threading.Lock()})
        with pytest.raises(TypeError):
            encode(payload)
    assert (sys.getrefcount(key), sys.getrefcount(value)) == before


# ----------------------------------------------------- across interpreters


def test_decode_in_another_interpreter():
    interpreters = pytest.importorskip(
        "concurrent.interpreters",
        reason="concurrent.interpreters is new in CPython 3.14: 3.13 has no public way to create one")
    value = {"ints": [1, -(2**100)], "text": "\u20ac\ud800", "set": {1.5}, "t": (b"x", None)}
    data = encode(value)
    interp = interpreters.create()
    try:
        interp.exec(
            "import interpool._core as c\n"
            f"v = c.decode({data!r})\n"
            f"assert v == {value!r}, v\n"
            "assert type(v['t'][0]) is bytes\n"
            f"assert c.encode(v) == {data!r}\n"
            "assert c.decode(c.encode(__import__('decimal').Decimal(2))) == 2\n"
        )
    finally:
        interp.close()
