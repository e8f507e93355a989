"""Worker side: a worker's sys.stdout/sys.stderr and its logging records,
forwarded to the caller's main interpreter (interpool._forwarding writes
them there).

Output travels as whole lines (or what is left at the end of a task) on one
interpool channel shared by the workers of every pool of the process, so
lines from different workers never tear.  Whatever a task printed is on the
channel before its result is delivered, and the caller writes the channel
out before it resolves a result: output printed by a task appears before
``result()`` returns.

Kept light: every worker imports it at start-up when forwarding is on;
``logging`` is imported only if a task imports it (interpool._worker_logging
installs the handler then).
"""

import io
import sys

from . import _core

_channel = None      # the caller's forwarding channel (an interpool._core.Queue)
worker_name = ""     # "<pool name>_<index>", put on forwarded log records
_streams: list = []  # this worker's forwarding streams


def _put(item) -> None:
    channel = _channel
    if channel is None:
        return
    try:
        channel.put(item)
    except Exception:
        pass  # the caller is gone: output has nowhere to go


class ForwardedStream(io.TextIOBase):
    """sys.stdout / sys.stderr of a worker: complete lines go to the caller
    at once; a partial line waits for its end, a flush, or the end of the
    task (the core flushes it before delivering the result)."""

    def __init__(self, kind: str, original) -> None:
        super().__init__()
        self._kind = kind
        self._original = original
        self._partial: list[str] = []

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if not s:
            return 0
        end = s.rfind("\n")
        if end < 0:
            self._partial.append(s)
            _core._set_output_pending(True)
            return len(s)
        head = s[: end + 1]
        if self._partial:
            self._partial.append(head)
            head = "".join(self._partial)
            self._partial.clear()
        tail = s[end + 1:]
        if tail:
            self._partial.append(tail)
            _core._set_output_pending(True)   # sent when the task ends, if not before
        _put((self._kind, head))
        return len(s)

    def flush(self) -> None:
        if self._partial:
            text = "".join(self._partial)
            self._partial.clear()
            _put((self._kind, text))

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        try:
            return self._original.isatty()
        except Exception:
            return False

    def fileno(self) -> int:
        # C code that writes to the file descriptor itself bypasses forwarding.
        return self._original.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._original, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str:
        return getattr(self._original, "errors", None) or "strict"

    @property
    def buffer(self):
        return self._original.buffer


def flush() -> None:
    """Send what every stream holds (the end of a task, the worker's exit)."""
    _core._set_output_pending(False)
    for stream in _streams:
        stream.flush()


class _LoggingWatch:
    """A meta path finder that waits for ``import logging`` in this worker,
    then installs the forwarding handler right after logging is loaded (so
    the first record of the first task is forwarded too), and removes
    itself.  Until then no import pays more than one name comparison."""

    def find_spec(self, name, path=None, target=None):
        if name != "logging":
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ThenInstall(spec.loader)
        return spec


class _ThenInstall:
    """The loader of ``logging``, and then the handler."""

    def __init__(self, loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = self._loader
        self._loader.exec_module(module)
        from . import _worker_logging

        _worker_logging.install(_put, worker_name)

    def __getattr__(self, name):
        return getattr(self._loader, name)


def install(channel, name: str, output: bool, logging: bool) -> None:
    """Forward this worker's output and/or logging records on `channel`."""
    global _channel, worker_name
    _channel = channel
    worker_name = name
    if output:
        for attr, kind in (("stdout", "out"), ("stderr", "err")):
            stream = ForwardedStream(kind, getattr(sys, attr))
            _streams.append(stream)
            setattr(sys, attr, stream)
    if logging:
        if "logging" in sys.modules:
            from . import _worker_logging

            _worker_logging.install(_put, worker_name)
        else:
            sys.meta_path.insert(0, _LoggingWatch())
