"""basedpyright, pinned, installed once apart from the system's packages.

    tools/python tools/basedpyright.py [basedpyright arguments...]
    tools/python tools/basedpyright.py --install      install only (idempotent)

basedpyright comes from PyPI as a wheel that brings its own Node.js.  The
pinned version is installed with ``pip --target`` into a cache directory of
its own (``$XDG_CACHE_HOME`` or ``~/.cache``, ``interpool/basedpyright-VERSION``;
INTERPOOL_PYRIGHT_DIR overrides), as ``tools/peers`` installs the
benchmark's peers: a fresh directory swapped in when pip succeeded, a stamp
written last, so a second run is a no-op and an interrupted one is redone.

Exit status: basedpyright's; 3 if it could not be installed (PyPI not
reachable): ``tests/test_typing.py`` skips then, or fails under CI=true.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

VERSION = "1.40.2"
STAMP = ".interpool-basedpyright"
NOT_INSTALLED = 3


def install_dir() -> str:
    env = os.environ.get("INTERPOOL_PYRIGHT_DIR")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "interpool", f"basedpyright-{VERSION}")


def _installed(path: str) -> bool:
    try:
        with open(os.path.join(path, STAMP)) as f:
            return f.read().strip() == VERSION
    except OSError:
        return False


def install() -> str | None:
    """The directory basedpyright is importable from, installing it first
    if needed; None (with pip's reason on stderr) if that failed."""
    path = install_dir()
    if _installed(path):
        return path
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(path) + ".", dir=parent)
    env = dict(os.environ)
    # A find-links directory of the host that does not exist here: pip would
    # warn about it at every run.
    links = [p for p in env.pop("PIP_FIND_LINKS", "").split() if os.path.exists(p)]
    if links:
        env["PIP_FIND_LINKS"] = " ".join(links)
    print(f"basedpyright: installing {VERSION} into {path}", file=sys.stderr)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-warn-script-location", "--no-compile", "--only-binary=:all:",
         "--root-user-action=ignore", "--target", tmp, f"basedpyright=={VERSION}"],
        env=env)
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"basedpyright: pip failed (exit {result.returncode})", file=sys.stderr)
        return None
    with open(os.path.join(tmp, STAMP), "w") as f:
        f.write(VERSION)
    if _installed(path):   # another run finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return path
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return path


def main(argv: list[str]) -> int:
    path = install()
    if path is None:
        return NOT_INSTALLED
    if argv[:1] == ["--install"]:
        return 0
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [path, env.get("PYTHONPATH")]))
    # basedpyright finds the packages to check on this interpreter's sys.path.
    return subprocess.run([sys.executable, "-m", "basedpyright",
                           "--pythonpath", sys.executable, *argv], env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
