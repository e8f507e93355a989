"""Worker side: how a worker finds what the caller named (functions by
reference or by value, modules, the caller's __main__).

Kept free of heavy imports: every worker imports it at start-up.
"""

import sys

# How to load the caller's __main__ (interpool._callables.describe_main),
# set by worker_setup: ("module", spec name, file), ("file", path) or
# ("none", why).
_main_info = None
_main_loaded = None
# True while this worker runs the caller's script as __mp_main__: a Pool
# created then would recurse (the script's unguarded top-level code).
loading_main = False
# The drop-in executor: failures to load a callable are reported as the
# stdlib's executor reports them (NotShareableError).
stdlib_errors = False
# This interpreter is a pool's worker (set by worker_setup).
in_worker = False

_SOURCE_SUFFIXES = (".py", ".pyw", ".pyc")


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
    """Load the file at `path` as module `name` (a fresh copy per worker).
    Any file name works: a script without a .py suffix is compiled as
    runpy would."""
    if not path.endswith(_SOURCE_SUFFIXES):
        import io

        with io.open_code(path) as f:
            source = f.read()
        code = compile(source, path, "exec", dont_inherit=True)
        return _exec_as(name, code, {"__file__": path, "__spec__": None, "__loader__": None,
                                     "__package__": None if name == "__mp_main__" else ""})
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


_MAIN_WHERE = {
    "-c": "given with `python -c`",
    "stdin": "read from standard input",
    "interactive": "typed at the interactive prompt (or in a notebook)",
}


def _no_main_message(why: str) -> str:
    return (
        "cannot load the caller's __main__ in a worker interpreter: it was "
        f"{_MAIN_WHERE.get(why, _MAIN_WHERE['interactive'])}, so there is no file to "
        "load. Put the functions and classes that tasks use in a module (or a "
        "script file) and import them.")


def _main_module(path: str | None = None):
    # Like multiprocessing's spawn: the script runs as "__mp_main__", so its
    # `if __name__ == "__main__":` block does not run, and pickles that name
    # __main__ (or __mp_main__) resolve to it.
    global loading_main, _main_loaded
    module = _main_loaded
    if module is not None:
        return module
    info = _main_info or (("file", path) if path else ("none", "interactive"))
    if info[0] == "none":
        raise ImportError(_no_main_message(info[1]))
    loading_main = True
    try:
        if info[0] == "module":
            module = _load_spec_module(info[1])
        else:
            module = _load_file_module("__mp_main__", info[1])
    except ImportError as exc:
        what = (f"your module {info[1]} (run with `python -m {info[1]}`)"
                if info[0] == "module" else f"your script {info[1]}")
        explained = explain_import_error(exc, what, script=True)
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
        return _main_module(path)
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
    subinterpreter and the two fixes, or None if that is not the problem."""
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
            f"or import {top} under `if __name__ == \"__main__\":` in the script "
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


class _Rebuilt:
    """A function that travelled by value and has per-call state (defaults,
    captured values): rebuilt at each call from its cached code, so it runs
    the caller's current values."""

    __slots__ = ("code", "globals", "name", "qualname")

    def __init__(self, code, globals_, name, qualname):
        self.code = code
        self.globals = globals_
        self.name = name
        self.qualname = qualname

    def make(self, state):
        from types import CellType, FunctionType

        defaults, kwdefaults, values, selfs = state
        cells = tuple(CellType(v) for v in values) if values or selfs else None
        fn = FunctionType(self.code, self.globals, self.name, defaults, cells)
        fn.__qualname__ = self.qualname
        if kwdefaults is not None:
            fn.__kwdefaults__ = kwdefaults
        for i in selfs:
            cells[i].cell_contents = fn
        return fn

    def __call__(self, state, /, *args, **kwargs):
        return self.make(state)(*args, **kwargs)


_code_cache: dict[bytes, _Rebuilt] = {}
_NO_STATE = (None, None, (), ())


def _function_from_ref(ref) -> _Rebuilt:
    """A function that travels by value: ("code", module name, qualname,
    file, marshalled code, name, needs its module, package, has state)."""
    _, module_name, qualname, path, code_bytes, name, needs_module, package, _ = ref
    import marshal

    code = marshal.loads(code_bytes)
    if needs_module:
        globals_ = _import(module_name, path).__dict__
    else:
        # Reads no globals: no need to import (or even be able to import)
        # its module; enough for relative imports inside it.
        import builtins

        globals_ = {"__name__": module_name, "__package__": package, "__spec__": None,
                    "__builtins__": builtins}
    return _Rebuilt(code, globals_, name, qualname)


def rebuild_function(ref, state):
    """Unpickling a function that travelled by value inside a pickle or a
    closure (interpool._callables._FunctionValue); its code is cached."""
    rebuilt = _code_cache.get(ref[4])
    if rebuilt is None:
        rebuilt = _code_cache[ref[4]] = _function_from_ref(ref)
    return rebuilt.make(_NO_STATE if state is None else state)


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

    named = ref[0] in ("ref", "code")
    err = refusal(exc, "load", ref[2] if named else None, ref[1] if named else None)
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
    if kind == "code":
        rebuilt = _function_from_ref(ref)
        # Without defaults or captured values the function itself is cached:
        # no per-call cost.  Otherwise they come first in each call's args.
        return rebuilt if ref[8] else rebuilt.make(_NO_STATE)
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
    """The worker's __main__ until the caller's script is needed: the first
    attribute it lacks (e.g. a class named by a pickled argument) loads the
    script as __mp_main__, as multiprocessing's spawn would."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if _main_info is not None and _main_info[0] == "none":
            raise AttributeError(f"{name!r}: {_no_main_message(_main_info[1])}", name=name, obj=self)
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
    if main:
        _main_info = main
        sys.modules["__main__"] = _LazyMain("__main__")
