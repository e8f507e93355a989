"""Recognise calls that asyncio wrapped before handing them to an executor."""

import contextvars
import functools
from typing import Any


def unwrap_context_run(fn: Any, args: tuple, kwargs: dict) -> tuple[Any, tuple, dict]:
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
