"""What the integrations with other libraries (interpool.dask,
interpool.joblib) share.  Imported by worker interpreters too (they import
those modules to find the task wrappers), so it imports nothing at top
level."""

from __future__ import annotations

TYPE_CHECKING = False   # not from typing: see __init__.py
if TYPE_CHECKING:
    from concurrent.futures import Future
    from typing import Any


def in_subinterpreter() -> bool:
    """Whether this code runs outside the main interpreter (where the
    integrated library itself cannot be imported)."""
    import _interpreters

    return _interpreters.get_current()[0] != 0


def cancel_interrupting(future: Future[Any]) -> bool:
    """Cancel a future; interrupt it if it is already running, where its
    executor supports that (interpool's ``cancel(interrupt=True)``; a
    fallback's plain futures only cancel queued work)."""
    try:
        return future.cancel(interrupt=True)  # type: ignore[call-arg]
    except TypeError:
        return future.cancel()
