"""How a task's exception crosses interpreters: packed in the worker,
rebuilt in the caller.

The caller gets the same exception type where it can be rebuilt, with its
arguments and attributes: by unpickling it, or, when that fails (an
``__init__`` with another signature, keyword-only arguments, an attribute
pickle cannot take), by making the instance without calling ``__init__``
and restoring its ``args`` and attributes one by one.  An ExceptionGroup's
members are rebuilt the same way, each with its own worker-side traceback.
Whatever cannot be rebuilt, or whose rebuilding raises anything at all,
arrives as RemoteError.  The worker-side traceback is attached as
``__cause__`` (RemoteTraceback; for the drop-in executor, the stdlib's
ExecutionFailed).

Kept free of heavy imports: workers import it on their first failing task.
"""

from __future__ import annotations

# "pool", or "stdlib" in the workers of the drop-in executor (set by
# interpool._loading.worker_setup): causes are ExecutionFailed, and
# exceptions raised by the codec (a result it cannot send) are
# NotShareableError, as the stdlib's executor reports them.
# "multiprocessing" in those of interpool.multiprocessing.Pool: a result the
# codec cannot send is a MaybeEncodingError, as multiprocessing reports it.
style = "pool"

_MAX_MEMBERS_DEPTH = 8


def _traceback_text(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(exc))


def format_exception(exc: BaseException) -> str:
    """Worker side: the exception with its traceback, as text (the text of
    a pool's break: for the drop-in executor, worded as the stdlib's)."""
    text = _traceback_text(exc)
    if style == "stdlib":
        cls = type(exc)
        return (f"concurrent.interpreters.ExecutionFailed: {_type_name(cls.__module__, cls.__qualname__)}: "
                f"{_safe_str(exc)}\n\nUncaught in the interpreter:\n\n{text}")
    return text


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return "<exception str() failed>"


def _type_name(module: str, qualname: str) -> str:
    return qualname if module == "builtins" else f"{module}.{qualname}"


def _dumps(value) -> bytes | None:
    # By value where needed: an exception class of the caller's __main__
    # comes back as that very class.
    from ._byvalue import dumps

    try:
        return dumps(value)
    except Exception:
        return None


def _needs_recipe(cls: type) -> bool:
    """Whether unpickling may fail to rebuild cls (its __init__ or __new__
    takes other arguments than the ones it stores in ``args``)."""
    return any(
        ("__init__" in vars(c) or "__new__" in vars(c) or "__reduce__" in vars(c))
        for c in cls.__mro__
        if c.__module__ != "builtins"
    )


def pack_exception(exc: BaseException, depth: int = 0) -> tuple:
    """Worker side: (pickled exception or None, module, qualname, message,
    traceback text, recipe or None, style)."""
    if style == "stdlib" and depth == 0 and _from_codec(exc):
        exc = _result_not_shareable(exc)
    elif style == "multiprocessing" and depth == 0 and _from_codec(exc):
        exc = _maybe_encoding_error(exc)
    try:
        text = _traceback_text(exc)
    except Exception:
        text = ""
    data = _dumps(exc)
    cls = type(exc)
    recipe = None
    members = None
    if isinstance(exc, BaseExceptionGroup) and depth < _MAX_MEMBERS_DEPTH:
        members = [pack_exception(e, depth + 1) for e in exc.exceptions]
    if data is None or members is not None or _needs_recipe(cls):
        # A group's members travel one by one (in members), not in its args.
        args = (exc.message,) if members is not None else exc.args
        args_data = _dumps(args)
        if args_data is None:
            args_data = _dumps(tuple(a if _dumps(a) is not None else repr(a) for a in args))
        attrs = {}
        for name, value in getattr(exc, "__dict__", {}).items():
            blob = _dumps(value)
            if blob is not None:
                attrs[name] = blob
        # A class a worker rebuilt by value (from the caller's __main__,
        # exec'd code, a function's body) is found through its pickle.
        from ._byvalue import by_reference

        cls_data = None if by_reference(cls) else _dumps(cls)
        recipe = (args_data, attrs, members, cls_data)
    return (data, cls.__module__, cls.__qualname__, _safe_str(exc), text, recipe, style)


def _from_codec(exc: BaseException) -> bool:
    """Raised by the codec (a result it cannot send), not by the task."""
    return (type(exc) is TypeError and exc.__traceback__ is None
            and _safe_str(exc).startswith("cannot send a value of type"))


def _result_not_shareable(exc: BaseException) -> BaseException:
    try:
        from _interpreters import NotShareableError
    except ImportError:  # pragma: no cover
        return exc
    err = NotShareableError(f"object does not support cross-interpreter data: {exc}")
    err.__cause__ = exc
    return err


def _maybe_encoding_error(exc: BaseException) -> BaseException:
    """multiprocessing's error for a result it cannot send back (the value
    itself is gone by now: the codec's message names its type)."""
    from multiprocessing.pool import MaybeEncodingError

    err = MaybeEncodingError(exc.__cause__ or exc, _safe_str(exc))
    err.__cause__ = exc
    return err


# ------------------------------------------------------------------ caller side


def unpack_exception(packed: tuple) -> BaseException:
    """Caller side: the same exception type where it can be rebuilt, else a
    RemoteError; never raises (not even what a hostile class raises)."""
    try:
        return _unpack(packed)
    except BaseException:  # noqa: BLE001 - a rebuild must never escape as itself
        return _remote_error(packed)


def _remote_error(packed: tuple) -> BaseException:
    from ._errors import RemoteError, RemoteTraceback

    module, qualname, message, text = (str(x) if x is not None else "" for x in packed[1:5])
    exc = RemoteError(_type_name(module, qualname), message, text)
    if text:
        exc.__cause__ = RemoteTraceback(text)
    return exc


def _find_class(module: str, qualname: str):
    import importlib

    from ._byvalue import MODULE_ALIASES

    obj = importlib.import_module(MODULE_ALIASES.get(module, module))
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _set_cause(exc: BaseException, cause: BaseException) -> None:
    # Through the descriptor: a class's own __setattr__ does not run.
    BaseException.__cause__.__set__(exc, cause)  # type: ignore[attr-defined]


def _cause_for(packed: tuple) -> BaseException | None:
    module, qualname, message, text = packed[1:5]
    if not text:
        return None
    if len(packed) > 6 and packed[6] == "stdlib":
        failed = _execution_failed(module, qualname, message, text)
        if failed is not None:
            return failed
    from ._errors import RemoteTraceback

    return RemoteTraceback(text)


def _execution_failed(module: str, qualname: str, message: str, text: str) -> BaseException | None:
    """The stdlib executor's cause: concurrent.interpreters.ExecutionFailed."""
    try:
        from concurrent.interpreters import ExecutionFailed
    except ImportError:  # pragma: no cover
        return None
    from types import SimpleNamespace

    name = qualname.rpartition(".")[2]
    excinfo = SimpleNamespace(
        type=SimpleNamespace(__name__=name, __qualname__=qualname, __module__=module),
        msg=message,
        formatted=f"{_type_name(module, qualname)}: {message}" if message else _type_name(module, qualname),
        errdisplay=text.rstrip("\n"),
    )
    return ExecutionFailed(excinfo)


def _unpack(packed: tuple) -> BaseException:
    data, module, qualname, message, text = packed[:5]
    recipe = packed[5] if len(packed) > 5 else None
    members = recipe[2] if recipe is not None else None
    exc = None
    if data is not None:
        import pickle

        try:
            exc = pickle.loads(data)
        except Exception:  # e.g. __init__ wants other arguments: rebuild without it
            exc = None
        # (anything else, KeyboardInterrupt or SystemExit from a hostile
        # class, ends in unpack_exception: a RemoteError)
        if not isinstance(exc, BaseException):
            exc = None
    if exc is None and recipe is not None:
        exc = _rebuild(module, qualname, recipe)
    if exc is None:
        return _remote_error(packed)
    if members is not None and isinstance(exc, BaseExceptionGroup):
        # Each member keeps its own worker-side traceback.
        for member, member_packed in zip(exc.exceptions, members):
            cause = _cause_for(member_packed)
            if cause is not None and member.__cause__ is None:
                _set_cause(member, cause)
    cause = _cause_for(packed)
    if cause is not None:
        _set_cause(exc, cause)
    return exc


def _rebuild(module: str, qualname: str, recipe: tuple) -> BaseException | None:
    """Make the instance without calling __init__, then restore its args
    and attributes (those that could be pickled)."""
    import pickle

    args_data, attrs, members = recipe[:3]
    cls_data = recipe[3] if len(recipe) > 3 else None
    cls = pickle.loads(cls_data) if cls_data is not None else _find_class(module, qualname)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        return None
    args = pickle.loads(args_data) if args_data is not None else ()
    if not isinstance(args, tuple):
        return None
    if members is not None and issubclass(cls, BaseExceptionGroup):
        rebuilt = [unpack_exception(m) for m in members]
        exc = cls.__new__(cls, args[0] if args else "", rebuilt)
        BaseException.__init__(exc, args[0] if args else "", rebuilt)
    else:
        exc = cls.__new__(cls, *args)
        BaseException.__init__(exc, *args)   # args as the worker had them (no class __init__)
    if not isinstance(exc, cls):
        return None
    state = getattr(exc, "__dict__", None)
    for name, blob in attrs.items():
        try:
            value = pickle.loads(blob)
        except Exception:
            continue
        if state is not None:
            state[name] = value
        else:
            try:
                object.__setattr__(exc, name, value)
            except Exception:
                pass
    return exc
