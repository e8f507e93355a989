"""Imports that a subinterpreter refuses: the extension module that refused,
found in an exception's chain, and the error that says what to do about it
(SubinterpreterImportError).

CPython refuses to load an extension module that does not declare support
for subinterpreters ("module X does not support loading in
subinterpreters"); packages such as numpy re-raise that inside their own,
misleading, "bad install" message, so the whole chain is searched.

Used on both sides: a worker turns such an ImportError into a
SubinterpreterImportError (interpool._loading for the function's own
module, the pack_exception hook for an argument or an import made while
running); the caller routes tasks that failed with it to a pool's fallback;
``interpool.check_import`` reports it.  Imports nothing heavy at top level.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False   # not from typing: see __init__.py
if TYPE_CHECKING:
    from typing import Literal

    Stage = Literal["load", "argument", "run"]

NOT_IN_SUBINTERPRETERS = "does not support loading in subinterpreters"


class SubinterpreterImportError(ImportError):
    """A task needs a module that cannot be imported in a subinterpreter.

    Raised in place of the import's own error (which is its ``__cause__`` in
    the worker-side traceback).  ``name`` is the package to import (e.g.
    ``"numpy"``), ``module`` the extension module that refused
    (``"numpy._core._multiarray_umath"``), ``function`` the task's function
    (qualified name) when known, and ``stage`` where the import happened:
    ``"load"`` (the module that defines the function imports it),
    ``"argument"`` (an argument, or a class or function it holds, comes from
    it) or ``"run"`` (the function imported it while running).

    A pool made with ``fallback="processes"`` or ``"threads"`` runs such
    tasks there instead of raising it.
    """

    def __init__(
        self,
        message: str = "",
        *,
        name: str | None = None,
        module: str | None = None,
        function: str | None = None,
        stage: str | None = None,
    ) -> None:
        super().__init__(message, name=name)
        self.module = module
        self.function = function
        self.stage = stage


def refusing_module(exc: BaseException) -> str | None:
    """The extension module named by CPython's "module X does not support
    loading in subinterpreters" in exc's chain (its causes and contexts;
    the deepest one, CPython's own, where wrappers repeat it), or None."""
    import re

    pattern = re.compile(r"module ([\w.]+) " + NOT_IN_SUBINTERPRETERS)
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    found = None
    while pending:
        e = pending.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, SubinterpreterImportError) and e.module:
            return e.module
        try:
            text = str(e)
        except Exception:
            text = ""
        match = pattern.search(text)
        if match:
            found = match.group(1)
        pending += [e.__context__, e.__cause__]
    return found


_FIX = 'pass fallback="processes" (or "threads") to the pool to run it there'


def _message(stage: str, package: str, module: str, function: str | None,
             where: str | None) -> str:
    """One line: what failed, why, and the fixes (last, where they are seen)."""
    why = f"{package} cannot be imported in a subinterpreter ({module} {NOT_IN_SUBINTERPRETERS})"
    fn = f"{function}()" if function else "the task's function"
    if stage == "load":
        if where == "":   # a function that travelled by value: it reads the package itself
            return (f"cannot run {fn} in a worker interpreter: it uses {package}, and {why}. "
                    f"Fix: {_FIX}, or call it outside the pool.")
        if where is not None and where.partition(".")[0] == package:
            return f"cannot run {fn} in a worker interpreter: {why}. Fix: {_FIX}."
        if where in (None, "__main__", "__mp_main__"):
            home, keep = "your script", "out of the script's top level"
        else:
            home, keep = f"its module {where}", f"out of {where}"
        return (f"cannot run {fn} in a worker interpreter: {home} imports {package}, and "
                f"{why}. Fix: {_FIX}, or keep the {package} import {keep}.")
    if stage == "run":
        return f"{fn} imported {package} in a worker interpreter, and {why}. Fix: {_FIX}."
    return (f"cannot send this task's arguments to a worker interpreter: they hold an "
            f"object of {package} (or a function of a module that imports it), and {why}. "
            f"Fix: pass plain values instead (an array as memoryview(a), zero-copy, or "
            f"a.tolist()), or {_FIX}.")


def refusal(exc: BaseException, stage: str, function: str | None = None,
            where: str | None = None) -> SubinterpreterImportError | None:
    """The SubinterpreterImportError for `exc` (raise it from exc), or None
    when no module in exc's chain refused subinterpreters.  `where`: the
    module of the function, where known ("": the function travelled by
    value)."""
    if isinstance(exc, SubinterpreterImportError):
        return None
    module = refusing_module(exc)
    if module is None:
        return None
    package = _imported_package(exc, where) or module.partition(".")[0]
    return SubinterpreterImportError(
        _message(stage, package, module, function, where),
        name=package, module=module, function=function, stage=stage,
    )


def _imported_package(exc: BaseException, where: str | None) -> str | None:
    """The package whose import led to the refusal, as the user's code named
    it ("regex", where the extension that refused is "_regex"): the first
    module being imported, in the tracebacks of exc's chain, that is not
    the function's own package, the caller's script or interpool."""
    skip = {"__main__", "__mp_main__", "interpool", (where or "").partition(".")[0]}
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        e = pending.pop(0)   # outermost first: its traceback has the whole path
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        tb = e.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if frame.f_code.co_name == "<module>":
                top = str(frame.f_globals.get("__name__", "")).partition(".")[0]
                if top and top not in skip:
                    return top
            tb = tb.tb_next
        pending += [e.__cause__, e.__context__]
    return None


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_ASYNCIO_DIR = os.path.join(os.path.dirname(os.__file__), "asyncio") + os.sep


def from_task(exc: BaseException) -> BaseException:
    """Worker side, for a task's exception (hook pack_exception): an
    ImportError that a refusal caused becomes a SubinterpreterImportError
    chained from it; anything else is returned as is.

    Where it happened is read from the traceback: its first frame outside
    interpool is the task's function ("run": an import in its body), or
    the import machinery itself, called by unpickling an argument before
    the function ran ("argument")."""
    if not isinstance(exc, ImportError) or isinstance(exc, SubinterpreterImportError):
        return exc
    tb = exc.__traceback__
    skip = (_PACKAGE_DIR, _ASYNCIO_DIR)   # (a coroutine runs under the worker's loop)
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(skip):
        tb = tb.tb_next
    code = tb.tb_frame.f_code if tb is not None else None
    # (a module's own top level: imported while unpickling, e.g. the
    # caller's script for a class defined there)
    if code is None or code.co_filename.startswith("<frozen importlib") or code.co_name == "<module>":
        err = refusal(exc, "argument")
    else:
        where = tb.tb_frame.f_globals.get("__name__") if tb is not None else None
        err = refusal(exc, "run", getattr(code, "co_qualname", code.co_name), where)
    if err is None:
        return exc
    err.__cause__ = exc
    return err


def probe_import(name: str) -> tuple[str, str | None, tuple[str, ...]]:
    """Worker side (interpool.check_import): import module `name` here and
    report ("ok" | "refused" | "error", the refusing module or the error
    text, the warnings its import emitted)."""
    import importlib
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            importlib.import_module(name)
        except Exception as exc:
            first = next((line for line in str(exc).splitlines() if line.strip()), "")
            outcome: tuple[str, str | None] = ("error", f"{type(exc).__name__}: {first.strip()}")
            module = refusing_module(exc)
            if module is not None:
                outcome = ("refused", module)
        else:
            outcome = ("ok", None)
    notes = tuple(f"{w.category.__name__}: {w.message}" for w in caught)
    return (*outcome, notes)
