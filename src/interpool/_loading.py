"""Worker side: how a worker finds what the caller named (functions by
reference or by value, modules, and the caller's __main__ after
``python -m``).

Kept free of heavy imports: every worker imports it at start-up.
"""

import sys

# The caller ran ``python -m spec_name``: ("module", spec_name, file), set
# by worker_setup (what its __main__ defines at module level travels by
# reference and loads from here).  Otherwise None: the caller's script
# never runs in a worker (its functions travel by value).
_main_info = None
_main_loaded = None
# True while this worker runs the caller's module as __mp_main__: a Pool
# created then would recurse (its unguarded top-level code).
loading_main = False
# The drop-in executor: failures to load a callable are reported as the
# stdlib's executor reports them (NotShareableError).
stdlib_errors = False
# This interpreter is a pool's worker (set by worker_setup).
in_worker = False


def _exec_as(name: str, code, attrs: dict):
    """Run `code` as a fresh module `name` (registered in sys.modules)."""
    module = type(sys)(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except BaseException:
        if sys.modules.get(name) is module:
            del sys.modules[name]
        raise
    return module


def _load_file_module(name: str, path: str):
    """Load the file at `path` as module `name` (a fresh copy per worker)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path!r} in a worker interpreter")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if sys.modules.get(name) is module:
            del sys.modules[name]
        raise
    return module


def _load_spec_module(spec_name: str):
    """Run the module the caller started with ``python -m spec_name`` as
    __mp_main__, found by its spec name, with its package set (relative
    imports work), as runpy and multiprocessing do."""
    import importlib.util

    spec = importlib.util.find_spec(spec_name)
    if spec is None or spec.loader is None or not hasattr(spec.loader, "get_code"):
        raise ImportError(
            f"cannot find the module {spec_name!r} (the caller's `python -m "
            f"{spec_name}`) from a worker interpreter", name=spec_name)
    code = spec.loader.get_code(spec_name)
    return _exec_as("__mp_main__", code, {
        "__file__": spec.origin,
        "__spec__": spec,
        "__loader__": spec.loader,
        "__package__": spec.parent,
        "__cached__": spec.cached,
    })


def _main_module():
    # Like multiprocessing's spawn: the module runs as "__mp_main__", so its
    # `if __name__ == "__main__":` block does not run, and pickles that name
    # __main__ (or __mp_main__) resolve to it.
    global loading_main, _main_loaded
    module = _main_loaded
    if module is not None:
        return module
    info = _main_info
    if info is None:
        raise ImportError(
            "the caller's __main__ is not loaded in worker interpreters: what it "
            "defines travels by value", name="__main__")
    loading_main = True
    try:
        module = _load_spec_module(info[1])
    except ImportError as exc:
        explained = explain_import_error(
            exc, f"your module {info[1]} (run with `python -m {info[1]}`)", script=True)
        if explained is None:
            raise
        raise explained from exc
    finally:
        loading_main = False
    sys.modules["__main__"] = module
    _main_loaded = module
    return module


def _import(module_name: str, path: str | None):
    if module_name in ("__main__", "__mp_main__"):
        return _main_module()
    import importlib

    try:
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Not on this worker's sys.path (e.g. loaded by path in the caller).
            if path is None or exc.name not in (module_name, module_name.partition(".")[0]):
                raise
            return _load_file_module(module_name, path)
    except ImportError as exc:
        explained = explain_import_error(exc, f"the module {module_name}", script=False)
        if explained is None:
            raise
        raise explained from exc


# ------------------------------------------------------------ import failures

def _incompatible_module(exc: BaseException) -> str | None:
    from ._refusal import refusing_module

    return refusing_module(exc)


def _script_line(exc: BaseException, path: str | None) -> str | None:
    """The line of the script (or module) whose import failed, if found."""
    if not path:
        return None
    import linecache

    tb, line = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            text = linecache.getline(path, tb.tb_lineno).strip()
            if text:
                line = f"line {tb.tb_lineno}: {text}"
        tb = tb.tb_next
    return line


def explain_import_error(exc: BaseException, what: str, script: bool) -> ImportError | None:
    """An ImportError that names the module that cannot load in a
    subinterpreter and the fixes, or None if that is not the problem."""
    module = _incompatible_module(exc)
    if module is None:
        return None
    top = module.partition(".")[0]
    where = _script_line(exc, (_main_info or ("", ""))[-1] if script else None)
    via = f" ({where})" if where else ""
    from ._refusal import NOT_IN_SUBINTERPRETERS

    package = f"{top} (its extension module {module} {NOT_IN_SUBINTERPRETERS})" if top != module \
        else f"{top}, an extension module that {NOT_IN_SUBINTERPRETERS}"
    if script:
        fixes = (
            f"Either move the task functions into a module that does not import {top}, "
            f"or import {top} under `if __name__ == \"__main__\":` in that module "
            "(workers load it as __mp_main__, so that block does not run there)."
        )
    else:
        fixes = (
            f"Either move the task functions into a module that does not import {top}, "
            f"or import {top} only inside the functions that run in the main interpreter."
        )
    err = ImportError(
        f"cannot load {what} in a worker interpreter: it imports {package}{via}, and "
        f"{top} cannot be imported in a subinterpreter. {fixes}",
        name=top,
    )
    return err


# ------------------------------------------------------------ callables


def _not_shareable(exc: BaseException) -> BaseException:
    """The drop-in executor: a callable that cannot be loaded fails as the
    stdlib's executor fails it, NotShareableError('args not shareable')
    caused by NotShareableError('object could not be unpickled')."""
    try:
        from _interpreters import NotShareableError
    except ImportError:  # pragma: no cover - CPython without subinterpreters
        return exc
    inner = NotShareableError("object could not be unpickled")
    inner.__cause__ = exc
    outer = NotShareableError("args not shareable")
    outer.__cause__ = inner
    return outer


def fail_unsendable(message: str, /, *args, **kwargs):
    """Stands in for a callable the drop-in executor cannot send: the task
    (or initializer) fails in the worker with NotShareableError, reported
    through its future as the stdlib's executor reports it."""
    try:
        from _interpreters import NotShareableError
    except ImportError:  # pragma: no cover - CPython without subinterpreters
        raise TypeError(message) from None
    raise NotShareableError(message)


def load_callable(ref):
    """Turn a reference made by interpool._callables into a callable."""
    try:
        return _load_callable(ref)
    except Exception as exc:
        err = _refused(exc, ref)
        if err is None:
            if not stdlib_errors:
                raise
            err = _not_shareable(exc)
    raise err


def _refused(exc: BaseException, ref) -> BaseException | None:
    """A SubinterpreterImportError if loading failed because some module
    refuses subinterpreters (whatever the pool's flavor: the fix is the
    same), chained from exc; else None."""
    from ._refusal import refusal

    kind = ref[0]
    if kind in ("ref", "code"):
        function, where = ref[2], ref[1]
        if where in ("__main__", "__mp_main__") and _main_info:
            where = _main_info[1]   # python -m pkg.mod: name the module
    elif kind == "value":   # ("value", uid, stateful, repr(qualname)): it reads the module itself
        what = ref[3]
        function, where = (what[1:-1] if what[:1] in "'\"" else what), ""
    else:
        function = where = None
    err = refusal(exc, "load", function, where)
    if err is not None:
        err.__cause__ = exc
    return err


def _load_callable(ref):
    kind = ref[0]
    if kind == "ref":
        _, module_name, qualname, path = ref
        obj = _import(module_name, path)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj
    if kind == "value":
        # A function that travelled by value (interpool._byvalue): loaded
        # once per worker.  With per-call state (defaults, captured values,
        # globals that travel again), that state comes first in each call.
        _, uid, stateful, what = ref
        from . import _byvalue

        # (A refusal to import what it reads becomes a SubinterpreterImportError
        # in load_callable, naming `what`.)
        return _byvalue.callable_of(uid, stateful)
    if kind == "pickle":
        import pickle

        return pickle.loads(ref[1])
    raise ValueError(f"unknown callable reference {kind!r}")


def call_pickled(data: bytes, /, *args, **kwargs):
    """Trampoline for callables that travel pickled (bound methods, partials,
    callable objects): unpickled at every call, so their state is current."""
    import pickle

    try:
        fn = pickle.loads(data)
    except Exception as exc:
        err = _refused(exc, ("pickle",))
        if err is None:
            if not stdlib_errors:
                raise
            err = _not_shareable(exc)
    else:
        return fn(*args, **kwargs)
    raise err


class _LazyMain(type(sys)):
    """The worker's __main__ after ``python -m``, until the caller's module
    is needed: the first attribute it lacks (e.g. a class named by a pickled
    argument) loads it as __mp_main__, as multiprocessing's spawn would."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(_main_module(), name)


def _set_thread_name(name: str) -> None:
    """Name the calling OS thread (as seen by ps, top and gdb)."""
    import _thread

    if hasattr(_thread, "set_name"):  # CPython 3.14+
        _thread.set_name(name)
        return
    # CPython 3.13: the kernel's own interface; the name fits in 15 bytes,
    # cut on a character boundary, as _thread.set_name does.
    data = name.encode(errors="replace")[:15].decode(errors="ignore").encode()
    try:
        with open(f"/proc/self/task/{_thread.get_native_id()}/comm", "wb") as f:
            f.write(data)
    except OSError:
        pass  # no /proc: the thread keeps its name


def worker_setup(config, index: int) -> None:
    """Runs first in every worker (config: a dict made by Pool)."""
    global _main_info, stdlib_errors, in_worker
    in_worker = True
    name = config.get("name")
    if name:
        _set_thread_name(f"{name}_{index}")  # as the stdlib executors name their threads
    channel = config.get("output")
    if channel is not None:
        from . import _worker_output

        _worker_output.install(channel, f"{name}_{index}", bool(config.get("forward_output")),
                               bool(config.get("forward_logging")))
    flavor = config.get("flavor")
    if flavor == "stdlib":
        stdlib_errors = True
    if flavor in ("stdlib", "multiprocessing"):   # the drop-ins report errors as theirs
        from . import _remote

        _remote.style = flavor
    main = config.get("main")
    if main:   # python -m: what __main__ defines loads from its module
        _main_info = main
        sys.modules["__main__"] = _LazyMain("__main__")
