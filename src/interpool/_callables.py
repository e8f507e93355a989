"""How a callable travels to a worker: by reference, never as an object.

A module-level function, class or builtin travels as (module, qualified name,
file); the worker imports it once and caches it.  Anything else that pickles
(a bound method of a picklable object, functools.partial of importable parts)
travels pickled.  Lambdas, closures and nested functions are refused here, at
the call site, with the reason and the fix.
"""

import inspect
import sys

Ref = tuple


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


def check_sendable(fn) -> None:
    """Refuse what can never travel (lambdas, nested functions, coroutine
    objects), without requiring fn to be reachable in its module yet (as
    when a decorator runs)."""
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
    qualname = getattr(fn, "__qualname__", None)
    if isinstance(qualname, str):
        if "<lambda>" in qualname:
            raise TypeError(
                f"cannot send the lambda {qualname!r} to a worker interpreter: "
                "functions travel by module and name, and a lambda has no name "
                "to import. Define it with `def` at module level instead."
            )
        if "<locals>" in qualname:
            raise TypeError(
                f"cannot send {qualname!r} to a worker interpreter: it is defined "
                "inside another function (a nested function or closure), so the "
                "worker cannot import it. Move it to module level and pass what "
                "it captures as arguments (or use functools.partial)."
            )


def describe(fn) -> Ref:
    """The reference workers load `fn` from; TypeError if it cannot travel."""
    _refuse_obvious(fn)
    module_name = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if isinstance(module_name, str) and isinstance(qualname, str):
        found = _lookup(module_name, qualname)
        # A decorator that wraps fn (functools.wraps) and replaces it in its
        # module: the worker imports the wrapper, which calls fn.
        if found is fn or (found is not None and getattr(found, "__wrapped__", None) is fn):
            path = _module_file(module_name)
            if module_name == "__main__" and path is None:
                raise TypeError(
                    f"cannot send {qualname!r} to a worker interpreter: it is "
                    "defined in an interactive __main__ with no file to load "
                    "it from. Put it in a module (or a script file) and import it."
                )
            return ("ref", module_name, qualname, path)
    import pickle

    try:
        return ("pickle", pickle.dumps(fn, 5))
    except Exception as exc:
        raise TypeError(
            f"cannot send {fn!r} to a worker interpreter: it cannot be imported "
            f"by module and name, and pickling it failed ({type(exc).__name__}: "
            f"{exc}). Use a function defined at module level."
        ) from exc
