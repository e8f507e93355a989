"""How a callable travels to a worker (caller side).

- By reference: a function, class or builtin of an importable module
  travels as (module, qualified name, file); the worker imports it once
  and caches it.
- By value: any other plain function (one defined in ``__main__``: a
  script, ``python -c``, stdin, exec'd code, a notebook; a lambda, a nested
  def, a closure) travels as its definition (interpool._byvalue): its code
  and the globals it reads, registered once per pool (and again when the
  caller rebinds one of those globals), so a worker never runs the
  caller's script.  Its defaults and captured values go with each call.
  (``python -m pkg.mod``: what ``__main__`` defines at module level travels
  by reference, as pkg.mod, loaded by workers as ``__mp_main__``.)
- Pickled: bound methods, ``functools.partial`` objects, callable objects
  and classes that are not importable are pickled at every call (by value
  where needed).

What cannot travel (a closure that assigns to a variable it captures, a
global that cannot be pickled) is refused with a TypeError that says why
and how to fix it.
"""

import contextvars
import functools
import inspect
import os
import sys

from . import _byvalue

Ref = tuple
_recent = _byvalue._recent.get   # plan's fast path: functions sent by value lately

_FunctionType = type(lambda: None)


class Travel:
    """How one call of a callable travels: the pool registers the reference
    once under `key` (None: not cached, a pickle made for this call);
    `state` (or None) goes with each call as its first argument."""

    __slots__ = ("key", "ref", "state", "_export")

    def __init__(self, key, ref, state=None, export=None):
        self.key = key
        self.ref = ref
        self.state = state
        self._export = export

    def holds(self, fn) -> bool:
        """Whether a call of `fn` travels as this by-value travel without
        state (plan()'s fast path): same code, no defaults or captured
        values, no global it read rebound since.  A pool that has seen fn
        checks its code, its defaults and `freshness()` instead of calling
        plan() again."""
        export = self._export
        return (self.state is None and export is not None and export.travel is self
                and export.code is fn.__code__ and fn.__closure__ is None
                and fn.__defaults__ is None and fn.__kwdefaults__ is None
                and not export.absent and (not export.checks or export.fresh()))

    def freshness(self):
        """What tells whether the globals the definition read are still
        bound to the values it read (None: it read none)."""
        export = self._export
        return export.fresh if export is not None and export.checks else None

    def make_ref(self) -> Ref:
        """The reference workers load the callable from."""
        if self.ref is None:
            export = self._export
            self.ref = ("value", export.uid, self.state is not None, export.what)
        return self.ref


def _module_file(module_name: str) -> str | None:
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    return path if isinstance(path, str) else None


def describe_main() -> tuple | None:
    """How workers find the caller's ``__main__`` (sent once per pool):
    ``("module", spec_name, file)`` after ``python -m spec_name`` (what it
    defines at module level travels by reference, workers load it as
    ``__mp_main__``); None otherwise (its functions and classes travel by
    value: workers never load it)."""
    if not _byvalue.main_is_a_module():
        return None
    main = sys.modules["__main__"]
    file = getattr(main, "__file__", None)
    return ("module", main.__spec__.name,
            os.path.abspath(file) if isinstance(file, str) and file else None)


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
    """The drop-in executor, as the stdlib's: a class defined inside a
    function (the callable itself, or the class of a bound method or
    callable object) cannot be sent."""
    cls = fn if isinstance(fn, type) else getattr(getattr(fn, "__self__", None), "__class__", None)
    if cls is None and not isinstance(fn, _FunctionType) and not inspect.isroutine(fn):
        cls = type(fn)
    if cls is not None and _is_local_class(cls):
        what = "the class" if cls is fn else f"{fn!r}: it belongs to the class"
        raise TypeError(
            f"cannot send {what} {cls.__qualname__!r} to a worker interpreter: it is "
            "defined inside a function, and this executor sends classes by module and "
            "name only, as the stdlib's does. Define the class at module level, or use "
            "interpool.Pool, which sends it by value."
        )


# ------------------------------------------------------------ by reference


def _is_importable(fn) -> bool:
    """fn travels by reference: a worker imports it from its module by name
    (not what ``__main__`` defines, unless run with ``python -m``)."""
    module_name = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module_name, str) or not isinstance(qualname, str) or "<" in qualname:
        return False
    if module_name == "__main__" and not _byvalue.main_is_a_module():
        return False
    found = _byvalue.lookup(module_name, qualname)
    # A decorator that wraps fn (functools.wraps) and replaces it in its
    # module: the worker imports the wrapper, which calls fn.
    return found is fn or (found is not None and getattr(found, "__wrapped__", None) is fn)


# ------------------------------------------------------------ by value


def _by_value(fn, export, closures: bool) -> Travel:
    if fn.__closure__ is not None:
        if not closures:
            raise TypeError(
                f"cannot send the closure {export.what} to a worker interpreter: this "
                "executor sends only functions that capture no variables, as the stdlib's "
                "InterpreterPoolExecutor does. Pass the captured values as arguments, "
                "or use interpool.Pool, which sends closures with their captured values."
            )
        if export.assigns_free is None:
            export.assigns_free = sorted(_byvalue.assigned_free_vars(fn.__code__))
        if export.assigns_free:
            raise TypeError(
                f"cannot send the closure {export.what} to a worker interpreter: it assigns "
                f"to the captured variable(s) {', '.join(export.assigns_free)} (nonlocal), "
                "and a worker gets copies of captured values, so the assignment could never "
                "reach the caller. Return the new value instead."
            )
    state = export.call_state(fn)
    if state is None:
        travel = export.travel
        if travel is None:
            travel = export.travel = Travel(("value", export.uid, False), None, None, export)
        return travel
    return Travel(("value", export.uid, True), None, state, export)


# ------------------------------------------------------------ pickled


def _pickled(fn) -> Travel:
    try:
        data = _byvalue.dumps(fn)
    except Exception as exc:
        raise TypeError(
            f"cannot send {fn!r} to a worker interpreter: it cannot be imported "
            f"by module and name, and pickling it failed ({type(exc).__name__}: "
            f"{exc}). Use a plain function, and pass what it needs as arguments."
        ) from exc
    return Travel(None, ("pickle", data))


# ------------------------------------------------------------ the entry point


def plan(fn, closures: bool = True, anything: bool = False) -> Travel:
    """How `fn` travels; TypeError if it cannot (nothing else raises it here).

    ``closures=False`` refuses closures and local classes (the stdlib's
    rule); ``anything=True`` sends a non-callable object pickled, so that
    it fails in the worker as with the stdlib executor.  A by-value
    Travel's ref is computed by ``travel.make_ref()`` (only when the pool
    has not registered its key).
    """
    if type(fn) is _FunctionType:
        # Sent by value before: the fast path.  Nothing travels with a call
        # of a function without defaults or captured values whose globals
        # were not rebound since.
        export = _recent(fn)
        if export is not None and export.travel is not None and export.travel.holds(fn):
            return export.travel
        export = _byvalue.cached_template(fn)
        if export is not None:
            return _by_value(fn, export, closures)
    if anything and not callable(fn) and not (
        inspect.iscoroutine(fn) or inspect.isgenerator(fn) or inspect.isasyncgen(fn)
    ):
        return _pickled(fn)
    _refuse_obvious(fn)
    if _is_importable(fn):
        module_name = fn.__module__
        return Travel(fn, ("ref", module_name, fn.__qualname__, _module_file(module_name)))
    if type(fn) is _FunctionType:
        return _by_value(fn, _byvalue.template(fn), closures)
    if not closures:
        _refuse_local_class(fn)
    return _pickled(fn)


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
