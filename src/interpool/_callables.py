"""How a callable travels to a worker (caller side).

- By reference: a module-level function, class or builtin travels as
  (module, qualified name, file); the worker imports it once and caches it.
- By value: any other plain function (a lambda, a nested def, a closure)
  travels as its code object, as the stdlib's InterpreterPoolExecutor ships
  "stateless" functions.  Its globals are those of its defining module,
  imported by name in the worker (the caller's ``__main__`` script loads as
  ``__mp_main__``); code that reads no globals needs no import at all.
  The code is registered once per pool (per code object, so a lambda made
  anew at each call is not registered again); its defaults and captured
  values (closure cells) travel with each call, so the worker always runs
  their current values.
- Pickled: bound methods, ``functools.partial`` objects and callable
  objects are pickled at every call; plain functions inside them travel by
  value too.

What cannot travel (a local class, an object captured by a closure that
neither the codec nor pickle can send, a closure that assigns to a
variable it captures) is refused with a TypeError that says why and how to
fix it.
"""

import contextvars
import functools
import inspect
import os
import sys

Ref = tuple

_FunctionType = type(lambda: None)


class Travel:
    """How one call of a callable travels: the pool registers the reference
    once under `key` (None: not cached, a pickle made for this call);
    `state` (or None) goes with each call as its first argument."""

    __slots__ = ("key", "ref", "state", "_fn", "_what")

    def __init__(self, key, ref, state=None, fn=None, what=""):
        self.key = key
        self.ref = ref
        self.state = state
        self._fn = fn
        self._what = what

    def make_ref(self) -> Ref:
        """The reference workers load the callable from."""
        if self.ref is None:
            self.ref = _by_value_ref(self._fn, self._what, self.state is not None)
        return self.ref


def _lookup(module_name: str, qualname: str):
    module = sys.modules.get(module_name)
    if module is None:
        return None
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _module_file(module_name: str) -> str | None:
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    return path if isinstance(path, str) else None


# ------------------------------------------------------------ the caller's __main__


def describe_main() -> tuple | None:
    """How workers find the caller's ``__main__`` (sent once per pool):

    - ``("module", spec_name, file)``: run with ``python -m spec_name``;
    - ``("file", path)``: a script (any file name: runpy compiles it);
    - ``("none", why)``: no file to load (``-c``, stdin, the REPL, a
      notebook): functions defined there can travel by value only.
    """
    main = sys.modules.get("__main__")
    if main is None:
        return None
    spec = getattr(main, "__spec__", None)
    file = getattr(main, "__file__", None)
    if not isinstance(file, str) or not file:
        file = None
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name and name != "__main__":
        return ("module", name, os.path.abspath(file) if file else None)
    if file is not None and not (file.startswith("<") and file.endswith(">")):
        path = os.path.abspath(file)
        if os.path.isfile(path):
            return ("file", path)
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 == "-c":
        return ("none", "-c")
    if file == "<stdin>" or argv0 == "-":
        return ("none", "stdin")
    return ("none", "interactive")


_MAIN_WHERE = {
    "-c": "given with `python -c`",
    "stdin": "read from standard input",
    "interactive": "typed at the interactive prompt (or in a notebook)",
}


def _main_unloadable() -> str | None:
    """Why workers cannot load the caller's __main__, or None if they can."""
    info = describe_main()
    if info is None or info[0] != "none":
        return None
    return _MAIN_WHERE.get(info[1], _MAIN_WHERE["interactive"])


# ------------------------------------------------------------ refusals


def check_sendable(fn) -> None:
    """Refuse what can never travel (coroutine objects, non-callables, async
    generator functions), without requiring fn to be reachable in its
    module yet (as when a decorator runs)."""
    _refuse_obvious(fn)


def _refuse_obvious(fn) -> None:
    if inspect.iscoroutine(fn) or inspect.isgenerator(fn) or inspect.isasyncgen(fn):
        raise TypeError(
            f"expected a function, got a {type(fn).__name__} object; pass the "
            "function itself and its arguments separately (e.g. pool.run(fn, x), "
            "not pool.run(fn(x)))"
        )
    if not callable(fn):
        raise TypeError(f"{type(fn).__name__!r} object is not callable: {fn!r}")
    if inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"cannot run the async generator function {fn.__qualname__!r} as a task: "
            "a task returns one result. Collect its items in an `async def` "
            "function (or stream them through an interpool.Queue)."
        )


def _is_local_class(obj) -> bool:
    return isinstance(obj, type) and "<locals>" in getattr(obj, "__qualname__", "")


def _refuse_local_class(fn) -> None:
    """A class defined inside a function cannot be imported by a worker, and
    classes do not travel by value: say so (the callable itself, or the
    class of a bound method or callable object)."""
    cls = fn if isinstance(fn, type) else getattr(getattr(fn, "__self__", None), "__class__", None)
    if cls is None and not isinstance(fn, _FunctionType) and not inspect.isroutine(fn):
        cls = type(fn)
    if cls is not None and _is_local_class(cls):
        what = "the class" if cls is fn else f"{fn!r}: it belongs to the class"
        raise TypeError(
            f"cannot send {what} {cls.__qualname__!r} to a worker interpreter: it is "
            "defined inside a function, so a worker cannot import it (classes travel "
            "by module and name only). Define the class at module level."
        )


# ------------------------------------------------------------ by value


def _by_value_key(fn, stateful: bool) -> tuple:
    return ("code", fn.__code__, fn.__module__, fn.__qualname__, stateful)


def _is_importable(fn) -> bool:
    module_name = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module_name, str) or not isinstance(qualname, str) or "<" in qualname:
        return False
    found = _lookup(module_name, qualname)
    # A decorator that wraps fn (functools.wraps) and replaces it in its
    # module: the worker imports the wrapper, which calls fn.
    return found is fn or (found is not None and getattr(found, "__wrapped__", None) is fn)


def _nested_code(code):
    stack = [code]
    while stack:
        co = stack.pop()
        yield co
        stack.extend(c for c in co.co_consts if hasattr(c, "co_code"))


_GLOBAL_OPS = frozenset((
    "LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL", "LOAD_NAME", "STORE_NAME",
    "DELETE_NAME", "LOAD_FROM_DICT_OR_GLOBALS",
))


def _global_names(code) -> set[str]:
    """Names the code (and code nested in it) reads or writes as globals."""
    import dis

    return {
        ins.argval
        for co in _nested_code(code)
        for ins in dis.get_instructions(co)
        if ins.opname in _GLOBAL_OPS
    }


def _assigned_free_vars(code) -> set[str]:
    """Captured variables the code (or code nested in it) assigns to
    (``nonlocal x; x = ...``): a copy sent to a worker cannot write back."""
    import dis

    free = set(code.co_freevars)
    return {
        ins.argval
        for co in _nested_code(code)
        for ins in dis.get_instructions(co)
        if ins.opname in ("STORE_DEREF", "DELETE_DEREF")
        and ins.argval in free and ins.argval in co.co_freevars
    }


_refs: dict[tuple, Ref] = {}   # by-value references, per code object (bounded by the program)


def _by_value_ref(fn, what: str, stateful: bool) -> Ref:
    """The reference workers rebuild fn from: its marshalled code, where its
    globals are (its module, or none when it reads no globals), and whether
    each call brings state (defaults, captured values) as its first argument."""
    key = _by_value_key(fn, stateful)
    ref = _refs.get(key)
    if ref is not None:
        return ref
    import builtins
    import marshal

    module_name = fn.__module__ if isinstance(fn.__module__, str) else None
    g = fn.__globals__
    names = _global_names(fn.__code__)
    needs_module = any(name in g or not hasattr(builtins, name) for name in names)
    path = None
    if needs_module:
        if module_name is None or module_name not in sys.modules:
            raise TypeError(
                f"cannot send {what} to a worker interpreter: it reads global names, "
                f"but its module {module_name!r} is not an imported module, so a "
                "worker cannot import it. Define the function in a module."
            )
        if module_name in ("__main__", "__mp_main__"):
            why = _main_unloadable()
            if why is not None:
                used = sorted(n for n in names if n in g) or sorted(names)
                raise TypeError(
                    f"cannot send {what} to a worker interpreter: it reads the global "
                    f"name(s) {', '.join(used)} of a __main__ {why}, which workers "
                    "cannot load (there is no file). Put the function in a module or "
                    "a script file, or make it read no globals (import inside it, "
                    "pass values as arguments)."
                )
        path = _module_file(module_name)
    package = g.get("__package__")
    ref = (
        "code",
        module_name,
        fn.__qualname__,
        path,
        marshal.dumps(fn.__code__),
        fn.__name__,
        needs_module,
        package if isinstance(package, str) else None,
        stateful,
    )
    _refs[key] = ref
    return ref


def _by_value_state(fn, what: str, closures: bool, seen: frozenset = frozenset()):
    """What travels with each call of fn: None if nothing, else (defaults,
    kwdefaults, captured values, indices of the cells that hold fn itself)."""
    closure = fn.__closure__
    defaults, kwdefaults = fn.__defaults__, fn.__kwdefaults__
    if closure is None and defaults is None and kwdefaults is None:
        return None
    values: list = []
    selfs: list[int] = []
    if closure:
        if not closures:
            raise TypeError(
                f"cannot send the closure {what} to a worker interpreter: this executor "
                "sends only functions that capture no variables, as the stdlib's "
                "InterpreterPoolExecutor does. Pass the captured values as arguments, "
                "or use interpool.Pool, which sends closures with their captured values."
            )
        assigned = _assigned_free_vars(fn.__code__)
        if assigned:
            raise TypeError(
                f"cannot send the closure {what} to a worker interpreter: it assigns to "
                f"the captured variable(s) {', '.join(sorted(assigned))} (nonlocal), and "
                "a worker gets copies of captured values, so the assignment could never "
                "reach the caller. Return the new value instead."
            )
        seen = seen | {id(fn)}
        for name, cell in zip(fn.__code__.co_freevars, closure):
            try:
                value = cell.cell_contents
            except ValueError:
                raise TypeError(
                    f"cannot send the closure {what} to a worker interpreter: its "
                    f"captured variable {name!r} has no value yet"
                ) from None
            if value is fn:
                selfs.append(len(values))
                value = None
            else:
                value = _captured(value, name, what, seen)
            values.append(value)
    return (defaults, kwdefaults, tuple(values), tuple(selfs))


class _FunctionValue:
    """A function captured by a closure that travels by value itself: the
    codec pickles it as a call that rebuilds it in the worker."""

    __slots__ = ("ref", "state")

    def __init__(self, ref, state):
        self.ref = ref
        self.state = state

    def __reduce__(self):
        from ._loading import rebuild_function

        return rebuild_function, (self.ref, self.state)


def _captured(value, name: str, what: str, seen: frozenset):
    """A captured value as it travels; refuse what never can, naming the
    variable (the codec names the type of anything else it cannot send)."""
    fix = None
    if type(value) is _FunctionType and not _is_importable(value):
        if id(value) in seen:
            kind = f"the function {value.__qualname__!r}, which captures this one in turn"
            fix = "define one of them at module level"
        else:
            inner = repr(value.__qualname__)
            state = _by_value_state(value, inner, True, seen)
            return _FunctionValue(_by_value_ref(value, inner, state is not None), state)
    elif inspect.ismodule(value):
        kind = f"the module {value.__name__}"
        fix = f"import {value.__name__} inside the function instead"
    elif _is_local_class(value) or _is_local_class(type(value)):
        cls = value if isinstance(value, type) else type(value)
        kind = f"{'the' if cls is value else 'an instance of the'} local class {cls.__qualname__!r}"
        fix = "define the class at module level"
    if fix is None:
        return value
    raise TypeError(
        f"cannot send the closure {what} to a worker interpreter: its captured "
        f"variable {name!r} holds {kind}, which cannot travel; {fix}."
    )


# ------------------------------------------------------------ pickled


def _pickle(obj) -> bytes:
    """Pickle a callable object; plain functions in it that cannot be
    imported by name travel by value."""
    import io
    import pickle

    class Pickler(pickle.Pickler):
        def reducer_override(self, value):
            if type(value) is _FunctionType and not _is_importable(value):
                what = repr(value.__qualname__)
                state = _by_value_state(value, what, True)
                return _FunctionValue(_by_value_ref(value, what, state is not None), state).__reduce__()
            return NotImplemented

    out = io.BytesIO()
    Pickler(out, 5).dump(obj)
    return out.getvalue()


def _pickled(fn) -> Travel:
    try:
        data = _pickle(fn)
    except Exception as exc:
        raise TypeError(
            f"cannot send {fn!r} to a worker interpreter: it cannot be imported "
            f"by module and name, and pickling it failed ({type(exc).__name__}: "
            f"{exc}). Use a function defined at module level."
        ) from exc
    return Travel(None, ("pickle", data))


# ------------------------------------------------------------ the entry point


def plan(fn, *, closures: bool = True, anything: bool = False) -> Travel:
    """How `fn` travels; TypeError if it cannot (nothing else raises it here).

    ``closures=False`` refuses closures (the stdlib's rule); ``anything=True``
    sends a non-callable object pickled, so that it fails in the worker as
    with the stdlib executor.  A by-value Travel's ref is computed by
    ``travel.make_ref()`` (only when the pool has not registered its key).
    """
    if anything and not callable(fn) and not (
        inspect.iscoroutine(fn) or inspect.isgenerator(fn) or inspect.isasyncgen(fn)
    ):
        return _pickled(fn)
    _refuse_obvious(fn)
    if _is_importable(fn):
        module_name, qualname = fn.__module__, fn.__qualname__
        if module_name != "__main__" or _main_unloadable() is None:
            return Travel(fn, ("ref", module_name, qualname, _module_file(module_name)))
        if type(fn) is not _FunctionType:
            raise TypeError(
                f"cannot send {qualname!r} to a worker interpreter: it is defined in a "
                f"__main__ {_main_unloadable()}, which workers cannot load (there is "
                "no file). Put it in a module (or a script file) and import it."
            )
    if type(fn) is _FunctionType:
        qualname = fn.__qualname__
        what = repr(qualname if isinstance(qualname, str) else fn.__name__)
        state = _by_value_state(fn, what, closures)
        return Travel(_by_value_key(fn, state is not None), None, state, fn, what)
    _refuse_local_class(fn)
    return _pickled(fn)


def describe(fn) -> Ref:
    """The reference workers load `fn` from; TypeError if it cannot travel."""
    return plan(fn).make_ref()


def unwrap_context_run(fn, args: tuple, kwargs: dict) -> tuple:
    """``asyncio.to_thread(f, *a)`` submits ``partial(ctx.run, f, *a)``; a
    Context cannot cross into another interpreter, so send ``f(*a)`` itself."""
    if (
        type(fn) is functools.partial
        and not args
        and not kwargs
        and fn.args
        and isinstance(getattr(fn.func, "__self__", None), contextvars.Context)
        and getattr(fn.func, "__name__", None) == "run"
    ):
        return fn.args[0], fn.args[1:], dict(fn.keywords)
    return fn, args, kwargs
