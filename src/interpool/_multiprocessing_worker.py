"""The worker side of interpool.multiprocessing: what its workers run.

A module of its own, which imports nothing but ``sys``: every worker of an
``interpool.multiprocessing.Pool`` imports it (its initializer, chunked
tasks), and need not import the caller side.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False   # not from typing: see __init__.py
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any


def run_chunk(fn: Callable[[Any], Any], chunk: list[Any]) -> list[Any]:
    """One task of a chunked map: fn on each item."""
    return [fn(x) for x in chunk]


def run_star_chunk(fn: Callable[..., Any], chunk: list[Any]) -> list[Any]:
    """One task of a chunked starmap: fn on each args tuple."""
    return [fn(*args) for args in chunk]


def init_worker(authkey: bytes, initializer: Callable[..., object] | None, initargs: bytes) -> None:
    """Each worker's initializer: multiprocessing's authentication key is
    the caller's, as in a child process, so that Manager proxies passed to
    tasks (or in initargs, decoded only now) reach their manager; then the
    user's initializer."""
    from . import _core

    process = sys.modules.get("multiprocessing.process")
    if process is not None:
        process.current_process().authkey = authkey
    else:   # set when (if ever) a task imports multiprocessing: ~50 ms spared
        sys.meta_path.insert(0, _AuthkeyOnImport(authkey))
    if initializer is not None:
        initializer(*_core.decode(initargs))


class _AuthkeyOnImport:
    """An import hook: once ``multiprocessing.process`` is imported, its
    process's authentication key is the caller's."""

    def __init__(self, authkey: bytes) -> None:
        self.authkey = authkey

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "multiprocessing.process":
            return None
        sys.meta_path.remove(self)   # once
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            exec_module, authkey = spec.loader.exec_module, self.authkey

            def exec_then_set_key(module: ModuleType) -> None:
                exec_module(module)
                module.current_process().authkey = authkey

            spec.loader.exec_module = exec_then_set_key   # type: ignore[method-assign]
        return spec
