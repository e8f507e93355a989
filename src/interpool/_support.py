"""Helpers the C core calls by name, in workers and in the caller.

Kept free of heavy imports: every worker imports this module at start-up.
"""

import sys

_main_modules: dict[str, object] = {}
# True while this worker runs the caller's script as __mp_main__: a Pool
# created then would recurse (the script's unguarded top-level code).
loading_main = False


def _load_file_module(name: str, path: str):
    """Load the module at `path` under `name` (a fresh copy per worker)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path!r} in a worker interpreter")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _main_module(path: str):
    # Like multiprocessing's spawn: the script runs as "__mp_main__", so its
    # `if __name__ == "__main__":` block does not run, and pickles that name
    # __main__ resolve to it.
    global loading_main
    module = _main_modules.get(path)
    if module is None:
        loading_main = True
        try:
            module = _load_file_module("__mp_main__", path)
        finally:
            loading_main = False
        sys.modules["__main__"] = module
        _main_modules[path] = module
    return module


def _import(module_name: str, path: str | None):
    if module_name == "__main__":
        if path is None:
            raise ImportError("the caller's __main__ has no file to load")
        return _main_module(path)
    import importlib

    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Not on this worker's sys.path (e.g. loaded by path in the caller).
        if path is None or exc.name not in (module_name, module_name.partition(".")[0]):
            raise
        return _load_file_module(module_name, path)


def load_callable(ref):
    """Turn a reference made by interpool._callables.describe into a callable."""
    kind = ref[0]
    if kind == "ref":
        _, module_name, qualname, path = ref
        obj = _import(module_name, path)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj
    if kind == "pickle":
        import pickle

        return pickle.loads(ref[1])
    raise ValueError(f"unknown callable reference {kind!r}")


def pack_exception(exc: BaseException):
    """Worker side: (pickled exception or None, module, qualname, message, traceback)."""
    import traceback

    try:
        text = "".join(traceback.format_exception(exc))
    except Exception:
        text = ""
    try:
        import pickle

        data = pickle.dumps(exc, 5)
    except Exception:
        data = None
    try:
        message = str(exc)
    except Exception:
        message = "<exception str() failed>"
    cls = type(exc)
    return (data, cls.__module__, cls.__qualname__, message, text)


def unpack_exception(packed) -> BaseException:
    """Caller side: the same exception type where it can be rebuilt, else a
    RemoteError; the worker's traceback text is attached as __cause__."""
    from ._errors import RemoteError, RemoteTraceback

    data, module, qualname, message, text = packed
    exc = None
    if data is not None:
        import pickle

        try:
            exc = pickle.loads(data)
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        name = qualname if module == "builtins" else f"{module}.{qualname}"
        exc = RemoteError(name, message, text)
    if text:
        exc.__cause__ = RemoteTraceback(text)
    return exc


def broken_error(message: str) -> BaseException:
    from ._errors import BrokenPool

    return BrokenPool(message)


def shutdown_error(_=None) -> BaseException:
    from ._errors import PoolShutdownError

    return PoolShutdownError("the pool was shut down before this task started")


def __getattr__(name: str):
    # The Queue class workers wrap queues in (imported on first use).
    if name == "queue_type":
        from ._queue import Queue

        return Queue
    raise AttributeError(name)
