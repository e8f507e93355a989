"""Check interpool's packaging as a user meets it (run by tools/check_wheel).

For each Python (3.14 and 3.15 by default), from a clean copy of the
repository (the files git knows of, without build products):

1. ``python -m build`` in a fresh venv (``build`` from PyPI, setuptools
   through build isolation): an sdist, then a wheel built from that sdist;
2. the wheel installed into another fresh venv;
3. the README's first two ``python`` code blocks, extracted from README.md
   now, run from a directory outside the repository with that venv's
   Python, their output compared with what they must print.

On 3.14 it also runs ``pip install .`` exactly as the README prints it, in a
fresh venv, and the same examples against that install.  Nothing here
depends on where the C sources live: setup.py and pyproject.toml decide.

    python tools/check_wheel.py [--python 3.14,3.15] [--pip-install-dot VERSION]
                                [--source CLEAN_COPY] [--keep]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What the README's two examples print (the second says so in its comment):
# sum(map(ord, "hello")) and (97 + 98 + 99) * 1000; then the link counts.
EXPECTED = ["532\n294000\n", "[1, 2]\n"]


class CheckFailed(Exception):
    pass


def log(msg: str) -> None:
    print(f"check_wheel: {msg}", flush=True)


def clean_env() -> dict[str, str]:
    """The environment for the venvs: nothing that points at the repository."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "INTERPOOL_", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_ROOT_USER_ACTION"] = "ignore"
    # A find-links directory of the host that does not exist here: drop it.
    links = [p for p in env.pop("PIP_FIND_LINKS", "").split() if os.path.exists(p)]
    if links:
        env["PIP_FIND_LINKS"] = " ".join(links)
    return env


def run(cmd: list[str], *, cwd: str, what: str, timeout: float = 600) -> str:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=clean_env(), capture_output=True, text=True,
                          timeout=timeout)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip().splitlines()
        raise CheckFailed(f"{what} failed (exit {proc.returncode}) in {cwd}:\n  $ "
                          + " ".join(cmd) + "\n" + "\n".join("  | " + ln for ln in out[-40:]))
    log(f"  {what}: ok ({dt:.1f}s)")
    return proc.stdout


def readme_examples(tree: str) -> list[str]:
    """The first two fenced ```python blocks of tree/README.md."""
    with open(os.path.join(tree, "README.md"), encoding="utf-8") as f:
        text = f.read()
    blocks = re.findall(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, flags=re.S | re.M)
    if len(blocks) < 2:
        raise CheckFailed(f"README.md has {len(blocks)} python code block(s), expected 2+")
    return blocks[:2]


def clean_copy(dest: str, source: str | None) -> None:
    """The files git tracks (or would: untracked but not ignored), as they are
    in the work tree, without build products (.so, build/, *.egg-info).

    With ``source`` (a copy tools/check_wheel made outside, where git runs),
    that copy instead."""
    if source:
        shutil.copytree(source, dest)
        log(f"clean copy: {source} -> {dest}")
        return
    files = subprocess.run(
        ["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True, capture_output=True).stdout.split(b"\0")
    count = 0
    for raw in files:
        if not raw:
            continue
        rel = os.fsdecode(raw)
        src = os.path.join(REPO, rel)
        if not os.path.isfile(src):  # deleted in the work tree
            continue
        dst = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)
        count += 1
    log(f"clean copy: {count} files in {dest}")


def venv(python: str, path: str) -> str:
    run([python, "-m", "venv", path], cwd=os.path.dirname(path), what=f"venv {path}")
    return os.path.join(path, "bin", "python")


def run_examples(py: str, workdir: str, label: str, tree: str) -> None:
    """The README examples with this venv's interpool, outside the repository."""
    where = run([py, "-c", "import interpool, sys; print(interpool.__file__)"],
                cwd=workdir, what=f"{label}: import interpool").strip()
    venv_root = os.path.dirname(os.path.dirname(py))
    if not where.startswith(venv_root + os.sep):
        raise CheckFailed(f"{label}: interpool imported from {where}, not from {venv_root}")
    for i, (code, expected) in enumerate(zip(readme_examples(tree), EXPECTED), 1):
        script = os.path.join(workdir, f"readme_example_{i}.py")
        with open(script, "w", encoding="utf-8") as f:
            f.write(code)
        out = run([py, script], cwd=workdir, what=f"{label}: README example {i}", timeout=120)
        if out != expected:
            raise CheckFailed(f"{label}: README example {i} printed {out!r}, expected "
                              f"{expected!r}")


def check_version(version: str, tmp: str, source: str | None, *,
                  pip_install_dot: bool) -> None:
    python = shutil.which(f"python{version}")
    if python is None:
        raise CheckFailed(f"python{version} not found")
    log(f"== Python {version} ({python})")
    base = os.path.join(tmp, version)
    os.makedirs(base)
    src = os.path.join(base, "src")
    clean_copy(src, source)
    outside = os.path.join(base, "elsewhere")
    os.makedirs(outside)

    # 1. python -m build: sdist, then the wheel from the sdist
    tool = venv(python, os.path.join(base, "build-venv"))
    run([tool, "-m", "pip", "install", "--quiet", "build"], cwd=base,
        what="pip install build (PyPI)")
    dist = os.path.join(base, "dist")
    run([tool, "-m", "build", "--outdir", dist, "."], cwd=src,
        what="python -m build (sdist, then wheel from it)")
    sdists = glob.glob(os.path.join(dist, "*.tar.gz"))
    wheels = glob.glob(os.path.join(dist, "*.whl"))
    if len(sdists) != 1 or len(wheels) != 1:
        raise CheckFailed(f"expected one sdist and one wheel in {dist}, got "
                          f"{sorted(os.listdir(dist))}")
    names = zipfile.ZipFile(wheels[0]).namelist()
    for needed in ("interpool/__init__.py", "interpool/py.typed"):
        if needed not in names:
            raise CheckFailed(f"{os.path.basename(wheels[0])} lacks {needed}")
    if not any(re.match(r"interpool/_core\..*\.so$", n) for n in names):
        raise CheckFailed(f"{os.path.basename(wheels[0])} has no compiled interpool/_core")
    log(f"  built {os.path.basename(sdists[0])} and {os.path.basename(wheels[0])}")

    # 2-3. the wheel in a fresh venv, the README examples outside the repository
    user = venv(python, os.path.join(base, "wheel-venv"))
    run([user, "-m", "pip", "install", "--quiet", "--no-index", wheels[0]], cwd=outside,
        what="pip install the wheel")
    run_examples(user, outside, f"{version} wheel", src)

    # The README's own install command, in a fresh venv.
    if pip_install_dot:
        readme_venv = venv(python, os.path.join(base, "readme-venv"))
        run([readme_venv, "-m", "pip", "install", "--quiet", "."], cwd=src,
            what="pip install . (as the README prints it)")
        run_examples(readme_venv, outside, f"{version} pip install .", src)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--python", default="3.14,3.15",
                   help="comma-separated versions (default 3.14,3.15)")
    p.add_argument("--pip-install-dot", default="3.14", metavar="VERSION",
                   help="also check `pip install .` on this version (default 3.14)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--source", default=None,
                   help="a clean copy of the repository to use (default: copy the files "
                        "git lists)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="interpool-wheel-check-")
    status = 0
    try:
        for version in (v.strip() for v in args.python.split(",") if v.strip()):
            check_version(version, tmp, args.source,
                          pip_install_dot=(version == args.pip_install_dot))
    except (CheckFailed, subprocess.TimeoutExpired) as exc:
        print(f"check_wheel: FAILED: {exc}", file=sys.stderr, flush=True)
        status = 1
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if status == 0:
        log(f"passed in {time.perf_counter() - t0:.0f}s")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
