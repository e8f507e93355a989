"""The scripts in examples/ run, print what they promise and exit cleanly.

Each example runs as its own process (``python examples/NAME.py --quick``)
with interpool's ``src`` directory on PYTHONPATH; stderr must stay empty: no
tracebacks, no warnings (ResourceWarning shown, for unclosed sockets), no
"remaining subinterpreters" complaints at interpreter exit.
"""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

import interpool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
SRC = os.path.dirname(os.path.dirname(os.path.abspath(interpool.__file__)))


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def run_example(name: str, *args: str, path_first: tuple[str, ...] = ()) -> str:
    """Run examples/<name>.py; assert exit 0 and an empty stderr; return stdout."""
    env = dict(os.environ)
    paths = [*path_first, SRC]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    proc = subprocess.run(
        [sys.executable, "-W", "default::ResourceWarning", os.path.join(EXAMPLES, name + ".py"),
         *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.stderr == "", proc.stderr
    return proc.stdout


def test_sum_of_squares_quick():
    out = run_example("sum_of_squares", "--quick")
    for label in ("sequential", "Pool.map", "Runner + asyncio"):
        assert re.search(rf"^{re.escape(label)} +\d+\.\d+ s", out, re.M), out
    assert len(re.findall(r"speedup x\d+\.\d+", out)) == 2, out
    assert "OK: all three agree" in out


def test_crawler_quick():
    out = run_example("crawler", "--quick")
    match = re.search(r"^total links: (\d+) \(server put (\d+)\): OK$", out, re.M)
    assert match and match[1] == match[2], out
    assert re.search(r"^serving 40 pages ", out, re.M), out
    assert re.search(r"^  /page/0: \d+ links$", out, re.M), out
    client = "httpx" if has("httpx") else "asyncio streams"
    parser = "bs4" if has("bs4") else "html.parser.HTMLParser"
    assert f"client: {client}; parser in workers: {parser}; on the loop: {parser}" in out
    # fetching and parsing in the workers' own event loops, one client each
    assert f"workers' own loops: client: {client}; parser: {parser}" in out
    assert "note:" not in out, out  # bs4 loads in subinterpreters when it loads at all
    assert re.search(r"^speedup \(loop / workers\): x\d+\.\d+$", out, re.M), out
    assert re.search(r"^speedup \(loop / workers' own loops\): x\d+\.\d+$", out, re.M), out
    timings = dict(re.findall(r"^(.+?): +\d+\.\d+ s  \((\d+) connections\)$", out, re.M))
    workers = os.cpu_count() or 2
    assert len(timings) == 4, out
    for label, conns in timings.items():
        # keep-alive clients: at most 16 connections per client (per worker
        # in the worker-loop mode), whatever the number of pages
        limit = 16 * workers if "own loops" in label else 16
        assert 1 <= int(conns) <= limit, (label, conns, out)


def test_crawler_without_httpx_and_bs4(tmp_path):
    # Packages that shadow the real ones and refuse to import: the crawler
    # must fall back to its asyncio-streams client and the stdlib parser,
    # in the workers too (they get the same sys.path).
    for name in ("httpx", "bs4"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('no {name} here')\n")
    out = run_example("crawler", "--pages", "12", path_first=(str(tmp_path),))
    assert "client: asyncio streams; parser in workers: html.parser.HTMLParser" in out, out
    assert "workers' own loops: client: asyncio streams; parser: html.parser.HTMLParser" in out, out
    # the streams client keeps its connections alive too: 12 pages, <= 16
    # connections per client, one client per worker in the worker-loop mode
    conns = re.findall(r"\((\d+) connections\)$", out, re.M)
    assert len(conns) == 4 and all(1 <= int(c) <= 16 * (os.cpu_count() or 2) for c in conns), out
    match = re.search(r"^total links: (\d+) \(server put (\d+)\): OK$", out, re.M)
    assert match and match[1] == match[2], out


@pytest.mark.parametrize("name", ["sum_of_squares", "crawler"])
def test_example_is_documented(name):
    with open(os.path.join(EXAMPLES, "README.md")) as f:
        assert f"tools/python examples/{name}.py" in f.read()
