"""Task functions and inputs of interpool's benchmark suite.

Every function here is module-level so that worker interpreters, worker
processes and stdlib interpreters can all import it by name (the benchmark
directory is on ``sys.path``, and each system passes ``sys.path`` on).
Inputs are generated deterministically, in-process: no files, no network.
"""

from __future__ import annotations

import random
import time
from html.parser import HTMLParser

# --------------------------------------------------------------- tiny tasks


def identity(x):
    return x


def hold(seconds):
    """Keep a worker busy for a moment (used to start lazy executors' workers)."""
    time.sleep(seconds)
    return seconds


# --------------------------------------------------------------- payloads


def length(x):
    """The "send" task: the payload goes in, a small int comes back."""
    return len(x)


def echo(x):
    """The "echo" task: the payload goes in and comes back."""
    return x


def make_nested(target_size: int = 10 * 1024) -> dict:
    """A JSON-like dict/list document whose pickle is about ``target_size`` bytes."""
    import pickle

    rng = random.Random(1234)
    doc: dict = {"version": 3, "source": "bench", "items": []}
    while len(pickle.dumps(doc, protocol=5)) < target_size:
        i = len(doc["items"])
        doc["items"].append(
            {
                "id": i,
                "name": f"item-{i:05d}",
                "price": round(rng.uniform(1, 500), 2),
                "tags": [rng.choice(("red", "green", "blue", "new", "sale")) for _ in range(3)],
                "in_stock": rng.random() < 0.7,
                "dims": [rng.randint(1, 100), rng.randint(1, 100)],
            }
        )
    return doc


# --------------------------------------------------------------- the guard grid
#
# Advent of Code 2024 day 6 style: '#' obstacles, '^' the guard, who walks up
# and turns right in front of an obstacle until she leaves the grid.  The grid
# is one flat bytes object of SIZE rows of SIZE cells plus '\n', so a position
# is an int, "up" is -WIDTH and a step onto a '\n' (or past either end) leaves
# the grid.

SIZE = 130
WIDTH = SIZE + 1
HASH, NEWLINE = ord("#"), ord("\n")
DELTAS = (-WIDTH, 1, WIDTH, -1)  # up, right, down, left


def make_grid(seed: int = 2024, density: float = 0.10, path_cells: int = 4500) -> bytes:
    """A deterministic SIZE x SIZE grid whose guard visits >= ``path_cells`` cells.

    Random obstacles alone trap the guard (or let her out) within a couple
    of hundred cells, so her path is laid first: from a start near the
    middle she walks an outward, irregular rectangular spiral (each arm 2-5
    cells longer than the previous parallel one, an obstacle just past each
    arm's end), then straight out of the grid.  The cells she never steps on
    then get seeded-random obstacles up to ``density``: they do not change
    her path, only where a detour leads.
    """
    n = WIDTH * SIZE
    rng = random.Random(seed)
    cells = bytearray(b"." * n)
    for r in range(SIZE):
        cells[r * WIDTH + SIZE] = NEWLINE
    start = (SIZE // 2 + rng.randint(-3, 3)) * WIDTH + SIZE // 2 + rng.randint(-3, 3)
    pos, d = start, 0
    path = {start}
    arms = [rng.randint(1, 3), rng.randint(1, 3)]  # vertical, horizontal arm lengths

    def inside(p: int) -> bool:
        return 0 <= p < n and cells[p] != NEWLINE

    while len(path) < path_cells:
        delta = DELTAS[d]
        length = arms[d & 1]
        end = pos + delta * length
        beyond = end + 2 * delta
        if not (inside(end + delta) and inside(beyond)
                and (d & 1 == 0 or beyond // WIDTH == pos // WIDTH)):
            break  # no room in the grid (or this row) for the arm and its obstacle
        for _ in range(length):
            pos += delta
            path.add(pos)
        cells[pos + delta] = HASH
        arms[d & 1] += rng.randint(2, 5)
        d = (d + 1) & 3
    while inside(pos + DELTAS[d]):  # straight out
        pos += DELTAS[d]
        path.add(pos)
    for c in range(n):
        if cells[c] == 46 and c not in path and rng.random() < density:
            cells[c] = HASH
    cells[start] = ord("^")
    grid = bytes(cells)
    walked = guard_path(grid)
    assert walked is not None and len(walked) == len(path), "grid generator bug"
    return grid


def guard_path(grid) -> dict[int, tuple[int, int]] | None:
    """Cells the guard visits, each mapped to the state (pos, dir) just before
    she first steps onto it; None if she loops."""
    pos = bytes(grid).index(b"^")
    d = 0
    n = len(grid)
    first: dict[int, tuple[int, int]] = {pos: (-1, -1)}
    seen = set()
    while True:
        nxt = pos + DELTAS[d]
        if nxt < 0 or nxt >= n or grid[nxt] == NEWLINE:
            return first
        if grid[nxt] == HASH:
            state = pos * 4 + d
            if state in seen:
                return None
            seen.add(state)
            d = (d + 1) & 3
            continue
        if nxt not in first:
            first[nxt] = (pos, d)
        pos = nxt


def grid_candidates(grid) -> list[tuple[int, int, int]]:
    """One task per cell of the guard's path (but her start): (block, pos, dir)
    where (pos, dir) is her state just before she would first step on block."""
    path = guard_path(grid)
    assert path is not None
    return [(cell, pos, d) for cell, (pos, d) in path.items() if pos >= 0]


def guard_loops(grid, block: int, pos: int, d: int) -> bool:
    """The per-task work: with an extra obstacle at ``block``, does the guard,
    starting at ``pos`` facing ``d``, walk in a loop?

    ``grid`` is any indexable of byte values (bytes, memoryview).  Only
    turning states are remembered: a loop must repeat a turn.
    """
    n = len(grid)
    delta = DELTAS[d]
    seen = set()
    while True:
        nxt = pos + delta
        if nxt < 0 or nxt >= n:
            return False
        c = grid[nxt]
        if c == HASH or nxt == block:
            state = pos * 4 + d
            if state in seen:
                return True
            seen.add(state)
            d = (d + 1) & 3
            delta = DELTAS[d]
        elif c == NEWLINE:
            return False
        else:
            pos = nxt


_GRID = None


def set_grid(grid) -> None:
    """Initializer: the grid arrives once per process or interpreter.

    It sets the global through the module imported by name, so it also works
    where an initializer runs in another namespace (the stdlib's
    interpreter executors ship a module-level function by value)."""
    import workloads

    workloads._GRID = grid


def guard_loops_global(block: int, pos: int, d: int) -> bool:
    """guard_loops on the grid the initializer installed."""
    return guard_loops(_GRID, block, pos, d)


def guard_loops_chunk(grid, chunk) -> int:
    """Count loops over several candidates (block, pos, dir)."""
    return sum(guard_loops(grid, b, p, d) for b, p, d in chunk)


# --------------------------------------------------------------- the seed's grid
#
# The same puzzle as the seed author ran it: the grid is a tuple of SIZE
# tuples of SIZE bools (True: an obstacle), positions are (row, col), and
# the check function takes the grid.  The cells and the guard's path are
# those of make_grid(), so both grid workloads have the same answer.

DIRS_RC = ((-1, 0), (0, 1), (1, 0), (0, -1))  # up, right, down, left


def to_tuple_grid(grid: bytes) -> tuple[tuple[bool, ...], ...]:
    """make_grid()'s bytes grid as a tuple of tuples of bool."""
    return tuple(tuple(grid[r * WIDTH + c] == HASH for c in range(SIZE)) for r in range(SIZE))


def tuple_candidates(grid: bytes) -> list[tuple[int, int, int, int, int]]:
    """grid_candidates() in (row, col) form: (block_r, block_c, r, c, dir)."""
    return [(b // WIDTH, b % WIDTH, p // WIDTH, p % WIDTH, d)
            for b, p, d in grid_candidates(grid)]


def guard_loops_tt(grid, block_r: int, block_c: int, r: int, c: int, d: int) -> bool:
    """With an extra obstacle at (block_r, block_c), does the guard, starting
    at (r, c) facing d, walk in a loop?  ``grid`` is a tuple of tuples of bool."""
    rows, cols = len(grid), len(grid[0])
    dr, dc = DIRS_RC[d]
    seen = set()
    while True:
        nr, nc = r + dr, c + dc
        if not (0 <= nr < rows and 0 <= nc < cols):
            return False
        if grid[nr][nc] or (nr == block_r and nc == block_c):
            state = (r, c, d)
            if state in seen:
                return True
            seen.add(state)
            d = (d + 1) & 3
            dr, dc = DIRS_RC[d]
        else:
            r, c = nr, nc


def guard_loops_tt_star(args) -> bool:
    """guard_loops_tt(*args): for one-argument front doors (amap)."""
    return guard_loops_tt(*args)


_TT_GRID = None


def set_tt_grid(grid) -> None:
    """Initializer: bind the tuple grid once per worker.

    It imports this module by name and sets the global there, so it works
    where an initializer runs in another namespace (the stdlib executor
    ships a module-level function by value to some interpreters).
    """
    import workloads

    workloads._TT_GRID = grid


def guard_loops_tt_bound(block_r: int, block_c: int, r: int, c: int, d: int) -> bool:
    """guard_loops_tt on the grid bound once per worker by set_tt_grid."""
    grid = _TT_GRID
    if grid is None:
        raise RuntimeError("no grid bound in this worker: the initializer did not run here")
    return guard_loops_tt(grid, block_r, block_c, r, c, d)


def guard_loops_tt_lazy(block_r: int, block_c: int, r: int, c: int, d: int) -> bool:
    """guard_loops_tt on the grid this worker built on first use (tt_grid_here)."""
    return guard_loops_tt(tt_grid_here(), block_r, block_c, r, c, d)


def tt_grid_here():
    """Build the tuple grid in this interpreter, once (module cache).

    This is how data is bound once per interpreter with the seed's Runner,
    which has no initializer: the worker module loads it on first use.
    """
    global _TT_GRID
    if _TT_GRID is None:
        _TT_GRID = to_tuple_grid(make_grid())
    return _TT_GRID


def warm_tt_grid(seconds: float) -> int:
    """Warm-up task: build the bound grid here, then hold the worker a moment."""
    tt_grid_here()
    time.sleep(seconds)
    return SIZE


# --------------------------------------------------------------- crawler pages


def make_pages(count: int, seed: int = 6) -> list[str]:
    """``count`` generated HTML pages of ~6-12 KB, each with 20-80 links."""
    rng = random.Random(seed)
    words = (
        "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
        "incididunt ut labore et dolore magna aliqua interpreter pool worker queue"
    ).split()
    pages = []
    for p in range(count):
        parts = [
            "<!DOCTYPE html><html><head><meta charset='utf-8'>",
            f"<title>Page {p}</title><link rel='stylesheet' href='/s.css'></head><body>",
            f"<nav><a href='/'>home</a> <a href='/page/{(p + 1) % count}'>next</a></nav>",
        ]
        for _ in range(rng.randint(20, 80)):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(8, 25)))
            kind = rng.random()
            if kind < 0.6:
                target = rng.randint(0, count - 1)
                parts.append(
                    f"<p class='t'>{text} <a href='/page/{target}' title='p{target}'>"
                    f"page {target}</a> <em>{rng.choice(words)}</em></p>"
                )
            elif kind < 0.8:
                parts.append(f"<div><span>{text}</span><a name='anchor{p}'>no href</a></div>")
            else:
                parts.append(
                    f"<ul><li><a href='https://example.org/{rng.randint(0, 999)}'>ext</a></li>"
                    f"<li>{text}</li></ul>"
                )
        parts.append("<footer><a href='/about'>about</a></footer></body></html>")
        pages.append("\n".join(parts))
    return pages


class _LinkCounter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links = 0

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            for name, value in attrs:
                if name == "href" and value:
                    self.links += 1
                    break


def count_links(html: str) -> int:
    """Links (<a href=...>) in an HTML page, with the stdlib html.parser."""
    parser = _LinkCounter()
    parser.feed(html)
    parser.close()
    return parser.links

# ---------------------------------------------------------------- coroutines


def cpu_burn(n: int) -> int:
    """Pure-Python CPU work: n loop iterations."""
    s = 0
    for k in range(n):
        s += k
    return s


def calibrate_burn(seconds: float) -> int:
    """How many cpu_burn iterations take about `seconds` here."""
    import time

    n = 10_000
    while True:
        t = time.perf_counter()
        cpu_burn(n)
        dt = time.perf_counter() - t
        if dt > 0.02:
            return max(1, int(n * seconds / dt))
        n *= 2


async def io_then_cpu(i: int, n: int) -> int:
    """A task mixing I/O and CPU: wait 10 ms, then ~1 ms of CPU work."""
    import asyncio

    await asyncio.sleep(0.01)
    cpu_burn(n)
    return i


# ---------------------------------------------------------------- async twins
#
# aiomultiprocess runs coroutine functions only: these are the same tasks as
# ``async def``s (no await inside: the work stays the same).


async def ahold(seconds):
    return hold(seconds)


async def aidentity(x):
    return x


async def alength(x):
    return len(x)


async def aecho(x):
    return x


async def acount_links(html: str) -> int:
    return count_links(html)


async def aguard_loops_global(block: int, pos: int, d: int) -> bool:
    return guard_loops_global(block, pos, d)


def spin(seconds: float = 3600.0) -> float:
    """Pure Python that runs for `seconds` (a task to stop)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return seconds


def tick_eventfd(fd: int, n: int, burn: int) -> int:
    """n times: cpu_burn(burn), then write 1 to the eventfd `fd` (a process
    resource, so a worker can wake the caller's event loop with no
    interpool in between: the serial workload's floor under amap)."""
    import os

    for _ in range(n):
        cpu_burn(burn)
        os.eventfd_write(fd, 1)
    return n


# ---------------------------------------------------------------- pyflakes


def stdlib_sources(every: int = 1) -> list[tuple[str, str]]:
    """(source, path) of the standard library's modules (tests and
    site-packages left out), largest first; every `every`-th one."""
    import os
    import sysconfig

    root = sysconfig.get_path("stdlib")
    skip = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
    paths = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in skip)
        paths += [os.path.join(folder, f) for f in sorted(files) if f.endswith(".py")]
    sources = []
    for path in paths[::every]:
        try:
            with open(path, encoding="utf-8") as f:
                sources.append((f.read(), path))
        except (OSError, UnicodeDecodeError):
            continue
    sources.sort(key=lambda s: -len(s[0]))
    return sources


def flake_count(source: str, path: str) -> int:
    """pyflakes' warnings for one module's source (the report itself is dropped)."""
    import io

    from pyflakes import api, reporter

    out = io.StringIO()
    return api.check(source, path, reporter.Reporter(out, out))


def flake_count_star(item: tuple[str, str]) -> int:
    """flake_count(*item): for one-argument front doors (amap)."""
    return flake_count(*item)


def warm_pyflakes(seconds: float) -> int:
    """Warm-up task: import pyflakes here, then hold the worker a moment
    (so that each worker of a pool takes one)."""
    flake_count("import os\n", "warm.py")
    time.sleep(seconds)
    return 0


# ----------------------------------------------------------- mixed workload


class _LinkTargets(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.targets: list[int] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            for name, value in attrs:
                if name == "href" and value and value.startswith("/page/"):
                    self.targets.append(int(value[6:]))
                    break


def link_targets(html: str) -> list[int]:
    """The page numbers an HTML page links to (stdlib html.parser: pure Python)."""
    parser = _LinkTargets()
    parser.feed(html)
    parser.close()
    return parser.targets


# ----------------------------------------------------------- stuck in C


def block_holding_gil(fd: int) -> bytes:
    """A C call that holds its interpreter's GIL until a byte arrives on fd
    (as a regex that backtracks for minutes does): a task to stop that no
    bytecode-level stop reaches."""
    import ctypes

    buf = ctypes.create_string_buffer(1)
    ctypes.PyDLL(None).read(fd, buf, 1)
    return buf.raw


def catastrophic(n: int = 40) -> bool:
    """A regex that backtracks 2**n times in one C call (for a process a
    deadline kills)."""
    import re

    return re.match(r"(a+)+$", "a" * n + "b") is not None
