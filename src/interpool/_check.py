"""Know before you run: can a module be imported in a worker interpreter?

``interpool.check_import(name)`` imports the module in a fresh isolated
subinterpreter (a worker of a one-worker pool that replaces its
interpreter after every task) and reports ``ok``, the extension module
that refused to load there, or another error, with any warning the import
emitted there (some packages load without their C parts and say so).
``python -m interpool check MODULE...`` prints one line per module and
exits with status 1 if any module was refused.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

from ._pool import Pool, cpu_count
from ._refusal import NOT_IN_SUBINTERPRETERS, probe_import

__all__ = ["ImportCheck", "check_import"]

Status = Literal["ok", "refused", "error"]


@dataclass(frozen=True)
class ImportCheck:
    """What importing ``module`` in a fresh isolated subinterpreter did.

    True (``bool(check)``) when the import worked.  ``status`` is ``"ok"``,
    ``"refused"`` (``refused_by`` names the extension module that does not
    support subinterpreters: such a package needs ``fallback=``) or
    ``"error"`` (``error`` holds the exception's type and first line; it
    would most likely fail in the main interpreter too).  ``warnings``:
    the warnings the import emitted there, as ``"Category: message"``.
    """

    module: str
    status: Status
    refused_by: str | None = None
    error: str | None = None
    warnings: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.status == "ok"

    def __str__(self) -> str:
        """One line, as ``python -m interpool check`` prints it."""
        if self.status == "refused":
            text = f"refused: {self.refused_by} {NOT_IN_SUBINTERPRETERS}"
        elif self.status == "error":
            text = f"error: {self.error}"
        else:
            text = "ok"
        if self.warnings:
            text += "; warned: " + " | ".join(self.warnings)
        return f"{self.module}: {text}"


def _check_all(names: Sequence[str], workers: int | None = None) -> list[ImportCheck]:
    """check_import for each name, several at a time, in the given order."""
    names = list(names)
    if not names:
        return []
    for name in names:
        _check_name(name)
    size = workers or min(len(names), cpu_count())
    # One task per interpreter: every module is imported in a fresh one.
    with Pool(size, max_tasks_per_worker=1, name="interpool-check") as pool:
        outcomes = list(pool.map(probe_import, names))
    checks = []
    for name, (status, detail, notes) in zip(names, outcomes):
        checks.append(ImportCheck(
            name, cast(Status, status),
            refused_by=detail if status == "refused" else None,
            error=detail if status == "error" else None,
            warnings=tuple(notes),
        ))
    return checks


def _check_name(name: object) -> None:
    if not isinstance(name, str):
        raise TypeError(f"a module name must be a str, not {type(name).__name__}")
    if not name or not all(part.isidentifier() for part in name.split(".")):
        raise ValueError(f"not a module name: {name!r}")


def check_import(name: str) -> ImportCheck:
    """Import module `name` in a fresh isolated subinterpreter and report
    how that went (see ImportCheck; true if the import worked).

    >>> interpool.check_import("json")
    ImportCheck(module='json', status='ok', refused_by=None, error=None, warnings=())
    >>> bool(interpool.check_import("numpy"))   # refused: use Pool(fallback=...)
    False
    """
    return _check_all([name])[0]


# ------------------------------------------------------------ the command

_USAGE = """\
usage: python -m interpool check [--markdown] MODULE...

Import each MODULE in a fresh isolated subinterpreter (as interpool's
workers are) and print, per module, "ok", the extension module that refused
to load there, or another error.  Exit status: 0 if every module imported,
1 if any was refused, 2 if any failed otherwise (and none was refused).
--markdown prints a Markdown table instead.
"""


def markdown(checks: Iterable[ImportCheck]) -> str:
    """The checks as a Markdown table (the README's compatibility section)."""
    lines = ["| module | in a worker interpreter | details |", "|---|---|---|"]
    for check in checks:
        if check.status == "refused":
            verdict, detail = "refused", f"`{check.refused_by}` {NOT_IN_SUBINTERPRETERS}"
        elif check.status == "error":
            verdict, detail = "error", str(check.error)
        else:
            verdict, detail = "ok", ""
        if check.warnings:
            detail = "; ".join(filter(None, [detail, "warned: " + " | ".join(check.warnings)]))
        lines.append(f"| `{check.module}` | {verdict} | {detail.replace('|', '/')} |")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """``python -m interpool check MODULE...``; returns the exit status."""
    args = list(argv)
    if not args or args[0] in ("-h", "--help") or args[0] != "check":
        print(_USAGE, end="", file=sys.stdout if args[:1] in (["-h"], ["--help"]) else sys.stderr)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    args = args[1:]
    as_markdown = "--markdown" in args
    names = [a for a in args if a != "--markdown"]
    if not names or any(a.startswith("-") for a in names):
        print(_USAGE, end="", file=sys.stderr)
        return 2
    try:
        checks = _check_all(names)
    except ValueError as exc:
        print(f"python -m interpool check: {exc}", file=sys.stderr)
        return 2
    if as_markdown:
        print(markdown(checks))
    else:
        width = max(len(c.module) for c in checks)
        for check in checks:
            print(f"{check.module:<{width}}  {str(check).partition(': ')[2]}")
    if any(c.status == "refused" for c in checks):
        return 1
    return 2 if any(c.status == "error" for c in checks) else 0
