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
    if module_name == "__mp_main__" and path is not None:
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


def call_pickled(data: bytes, /, *args, **kwargs):
    """Trampoline for callables that travel pickled (bound methods, partials,
    callable objects): unpickled at every call, so their state is current."""
    import pickle

    return pickle.loads(data)(*args, **kwargs)


class _LazyMain(type(sys)):
    """The worker's __main__ until the caller's script is needed: the first
    attribute it lacks (e.g. a class named by a pickled argument) loads the
    script as __mp_main__, as multiprocessing's spawn would."""

    def __getattr__(self, name: str):
        path = self.__dict__.get("_interpool_main_path")
        if path is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(_main_module(path), name)


def worker_setup(config, index: int) -> None:
    """Runs first in every worker (config: a dict made by Pool)."""
    name = config.get("name")
    if name:
        import _thread

        _thread.set_name(f"{name}_{index}")  # as the stdlib executors name their threads
    path = config.get("main_path")
    if path:
        lazy = _LazyMain("__main__")
        lazy._interpool_main_path = path
        sys.modules["__main__"] = lazy


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


_logged_breaks: set[str] = set()


def broken_error(message: str) -> BaseException:
    from ._errors import BrokenPool

    log_break(message)
    return BrokenPool(message)


def log_break(message: str) -> None:
    """Log why a pool broke, once, like the stdlib executors log a failing
    initializer ('Exception in initializer:' on concurrent.futures)."""
    if message in _logged_breaks:
        return
    _logged_breaks.add(message)
    import logging

    what = "Exception in initializer:" if "initializer" in message else "interpool pool broke:"
    logging.getLogger("concurrent.futures").critical("%s\n%s", what, message)


def shutdown_error(when=None) -> BaseException:
    from ._errors import PoolShutdownError

    if when == "running":
        return PoolShutdownError("the pool shut down while this coroutine was running")
    return PoolShutdownError("the pool was shut down before this task started")


def run_coroutine(ctx, wt, coro):
    from ._serve import run_coroutine

    return run_coroutine(ctx, wt, coro)


def serve(ctx) -> None:
    from ._serve import serve

    serve(ctx)


def worker_exit() -> None:
    """Called by the worker before its interpreter ends."""
    serve_mod = sys.modules.get("interpool._serve")
    if serve_mod is not None:
        serve_mod.close_loop()


def __getattr__(name: str):
    # The Queue class workers wrap queues in (imported on first use).
    if name == "queue_type":
        from ._queue import Queue

        return Queue
    raise AttributeError(name)
