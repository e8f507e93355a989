"""The benchmark's third-party peers: pinned versions, installed apart.

``make bench`` runs ``tools/peers`` first, which runs ``python peers.py
install`` with the benchmark's own interpreter: pip installs the pinned
versions (and their dependencies) with ``--target`` into a cache directory
outside the system site-packages, so the Python that ``make test`` uses is
never touched.  A stamp written last records what was installed; a second
run with the same pins and Python does nothing.

``benchmarks/run.py`` calls ``activate()``: when the stamp matches, the
directory goes first on ``sys.path`` (and on ``PYTHONPATH``, for the worker
processes of process-pool peers), so the pinned versions win over any that
Debian packages.  Nothing here is needed by ``make test``: ``--quick`` runs
never load the peers.

    python benchmarks/peers.py install [--force]   install (idempotent)
    python benchmarks/peers.py status              what is installed, where
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

# name -> exact version.  Checked to install and import on CPython 3.14/3.15.
PINS: dict[str, str] = {
    "aiointerpreters": "0.6.0",   # the seed: Runner, InterpreterThreadPoolExecutor
    "aiomultiprocess": "0.9.1",   # process pool with an event loop per child
    "pebble": "5.2.3",            # ProcessPool.schedule(fn, args, kwargs, timeout)
    "loky": "3.7.0",              # get_reusable_executor
    "cloudpickle": "3.1.2",       # loky's dependency, pinned too
}

# The import name of each peer (for versions and availability).
MODULES: dict[str, str] = {
    "aiointerpreters": "aiointerpreters",
    "aiomultiprocess": "aiomultiprocess",
    "pebble": "pebble",
    "loky": "loky",
}

STAMP = ".interpool-peers.json"


def peers_dir() -> str:
    """Where the peers live for this Python (INTERPOOL_PEERS_DIR overrides)."""
    env = os.environ.get("INTERPOOL_PEERS_DIR")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    tag = f"{sys.implementation.cache_tag}-{sys.abiflags or 'std'}"
    return os.path.join(base, "interpool", "bench-peers", tag)


def wanted() -> dict:
    return {"pins": PINS, "python": sys.version.split()[0], "executable": sys.executable}


def installed(path: str | None = None) -> dict | None:
    """The stamp of a finished install at path, or None."""
    try:
        with open(os.path.join(path or peers_dir(), STAMP)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def is_current(path: str | None = None) -> bool:
    stamp = installed(path)
    return bool(stamp) and stamp.get("pins") == PINS and \
        stamp.get("python") == wanted()["python"]


def activate() -> str | None:
    """Put the installed peers first on sys.path and PYTHONPATH.

    Returns the directory, or None when nothing (current) is installed.
    """
    path = peers_dir()
    if not is_current(path):
        return None
    if path not in sys.path:
        sys.path.insert(0, path)
    old = os.environ.get("PYTHONPATH")
    parts = old.split(os.pathsep) if old else []
    if path not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([path, *parts])
    return path


def versions() -> dict[str, str | None]:
    """The version of each peer importable here (None: not importable)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for dist in MODULES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def install(force: bool = False) -> int:
    path = peers_dir()
    if not force and is_current(path):
        print(f"peers: already installed in {path}", file=sys.stderr)
        return 0
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    # Install into a fresh directory, then swap it in: an interrupted run
    # never leaves a half-installed directory with a stamp.
    tmp = tempfile.mkdtemp(prefix=os.path.basename(path) + ".", dir=parent)
    specs = [f"{name}=={version}" for name, version in PINS.items()]
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-warn-script-location", "--no-compile", "--only-binary=:all:",
           "--root-user-action=ignore", "--target", tmp, *specs]
    env = dict(os.environ)
    # A find-links directory of the host that does not exist here: drop it
    # (pip would warn about it on every run).
    links = [p for p in env.pop("PIP_FIND_LINKS", "").split() if os.path.exists(p)]
    if links:
        env["PIP_FIND_LINKS"] = " ".join(links)
    print(f"peers: installing {' '.join(specs)} into {path}", file=sys.stderr)
    result = subprocess.run(cmd, env=env)
    if result.returncode != 0:
        print(f"peers: pip failed (exit {result.returncode}); the benchmark will print "
              "SKIP lines for the missing peers", file=sys.stderr)
        subprocess.run(["rm", "-rf", tmp])
        return result.returncode
    check = subprocess.run(
        [sys.executable, "-c", "import sys, importlib; sys.path.insert(0, sys.argv[1]); "
         "[importlib.import_module(m) for m in sys.argv[2:]]", tmp, *MODULES.values()])
    if check.returncode != 0:
        print("peers: installed, but not importable (see above)", file=sys.stderr)
        subprocess.run(["rm", "-rf", tmp])
        return check.returncode
    with open(os.path.join(tmp, STAMP), "w") as f:
        json.dump(wanted(), f, indent=1)
    if os.path.exists(path):
        subprocess.run(["rm", "-rf", path], check=True)
    os.replace(tmp, path)
    print("peers: ready", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["install"]:
        return install(force="--force" in argv[1:])
    if argv[:1] == ["status"]:
        path = peers_dir()
        print(f"{path}: {'current' if is_current(path) else 'missing or stale'}")
        activate()
        for name, version in versions().items():
            print(f"  {name} {version or '(not importable)'}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
