"""Task functions and types for tests/test_values.py (values arrive as what
was sent).  Workers import this module by name, so everything lives at
module level and the types can be unpickled there."""

import array
import ctypes


class Tagged(bytes):
    """A bytes subclass with an attribute."""

    tag = None


class Frame:
    """Exports a buffer (Python-level buffer protocol) and has attributes:
    not opted in, so it travels by pickle and arrives as a Frame."""

    def __init__(self, data, label):
        self.data = bytearray(data)
        self.label = label

    def __buffer__(self, flags):
        return memoryview(self.data)

    def __release_buffer__(self, view):
        view.release()


class SharedFrame(Frame):
    """The same, opted in to zero-copy sharing: the worker gets a
    memoryview on the caller's memory."""

    __interpool_zero_copy__ = True


class IntArray3(ctypes.Array):
    """A ctypes array type with a name pickle can find."""

    _type_ = ctypes.c_int
    _length_ = 3


class LabelledArray(array.array):
    """An array.array subclass with an attribute (not the listed type)."""

    label = None


def describe(x):
    """What arrived: its type, and what a test may want to check of it."""
    out = {"type": type(x).__qualname__, "module": type(x).__module__}
    if isinstance(x, memoryview):
        out.update(format=x.format, shape=x.shape, ndim=x.ndim, itemsize=x.itemsize,
                   readonly=x.readonly, raw=x.tobytes())
        try:
            out["items"] = x.tolist()
        except NotImplementedError:   # e.g. ctypes' '<i'
            pass
    if isinstance(x, bytes):
        out["decoded"] = x.decode()
    for name in ("tag", "label"):
        if hasattr(x, name):
            out[name] = getattr(x, name)
    if isinstance(x, Frame):
        out["data"] = bytes(x.data)
    if isinstance(x, ctypes.Array):
        out["items"] = list(x)
    if isinstance(x, array.array):
        out["items"] = x.tolist()
    return out


def write_at(view, index, value):
    """Write one item of a (possibly n-D) memoryview the caller passed."""
    view[index] = value
    return view[index]


def fill(buf, byte):
    m = memoryview(buf).cast("B")
    m[:] = bytes([byte]) * len(m)
    return len(m)


def identity(x):
    return x


def shape_of(x):
    """Identities inside what arrived: does the recursion/sharing hold?"""
    if isinstance(x, list) and x and x[0] is x:
        return "self-list"
    if isinstance(x, dict) and x.get("self") is x:
        return "self-dict"
    if isinstance(x, list) and len(x) >= 2:
        return [x[0] is x[i] for i in range(1, len(x))]
    return None
