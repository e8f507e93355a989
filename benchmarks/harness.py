"""The harness of interpool's benchmark suite: systems, cases, repetitions.

``Bench`` holds the options of a run and the tables measured so far.  A
workload (a function in run.py, peer_cases.py or seed_grid.py) adds cases
with ``b.case(key, label, gen)`` and measures them with ``b.measure(table)``;
``gen(info)`` is a generator that sets a system up, yields one repetition's
metrics per ``next()`` and tears the system down when closed.  The helpers
here make the systems (``b.pool()``, ``b.executor(kind)``, the peers'
``b.seed_runner()``, ``b.peer_pool(kind)``) and time a repetition.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import contextlib
import gc
import importlib
import os
import shutil
import sys
import time
import traceback

import workloads as W
from bench_report import Row, Table, fmt

MB = 1024 * 1024

# The third-party peers, by family key (see peers.py for their pinned versions).
PEERS = ("aiointerpreters", "aiomultiprocess", "pebble", "loky")

StdlibIPE = getattr(cf, "InterpreterPoolExecutor", None)


def cpu_count() -> int:
    return (getattr(os, "process_cpu_count", None) or os.cpu_count)() or 1


# --------------------------------------------------------------- peers


def load_anyio():
    """anyio.to_interpreter (or None, with the reason)."""
    try:
        import anyio
        from anyio import to_interpreter
    except Exception as exc:
        return None, f"not importable ({exc.__class__.__name__}: {exc})"
    if not hasattr(to_interpreter, "run_sync"):
        return None, "anyio has no to_interpreter.run_sync"
    return (anyio, to_interpreter), None


def anyio_cleanup(to_interpreter) -> None:
    """Close the idle interpreters anyio keeps for the running loop.

    anyio keeps them per event loop until interpreter exit; each asyncio.run
    here has its own loop, so without this they would pile up.
    """
    try:
        idle = to_interpreter._idle_workers.get()
    except Exception:
        return
    try:
        to_interpreter._stop_workers(idle)
    except Exception:
        pass


def rss_bytes() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except Exception:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    return 0


def uss_bytes(pid: int) -> int:
    try:
        import psutil

        return psutil.Process(pid).memory_full_info().uss
    except Exception:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    return 0


def loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def load_peer(name: str):
    """A peer's entry points as a namespace (or None, with the reason)."""
    from types import SimpleNamespace

    try:
        if name == "aiointerpreters":
            from aiointerpreters.executors import InterpreterThreadPoolExecutor, interpreter
            from aiointerpreters.runner import Runner

            return SimpleNamespace(Runner=Runner, ITPE=InterpreterThreadPoolExecutor,
                                   interpreter=interpreter), None
        return importlib.import_module(name), None
    except Exception as exc:
        return None, f"not importable ({exc.__class__.__name__}: {exc})"


def children_uss(before: set[int] = frozenset()) -> tuple[float, int]:
    """USS (MB) of this process's child processes not in ``before``, and how many."""
    import psutil

    total, count = 0, 0
    for child in psutil.Process().children(recursive=True):
        if child.pid in before:
            continue
        try:
            total += child.memory_full_info().uss
            count += 1
        except psutil.Error:
            pass
    return total / MB, count


def child_pids() -> set[int]:
    try:
        import psutil

        return {c.pid for c in psutil.Process().children(recursive=True)}
    except Exception:
        return set()


class Progress:
    """One line saying what runs now: redrawn in place (``\\r``) on a
    terminal, plain lines otherwise; on stderr, so stdout keeps the tables."""

    def __init__(self, mode: str) -> None:
        self.stream = sys.stderr
        if mode == "auto":
            mode = "tty" if self.stream.isatty() else "lines"
        self.mode = mode
        self.shown = False
        self.t0 = time.perf_counter()

    def show(self, text: str) -> None:
        if self.mode == "off":
            return
        elapsed = int(time.perf_counter() - self.t0)
        line = f"[bench {elapsed // 60}:{elapsed % 60:02d}] {text}"
        if self.mode == "tty":
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r\x1b[K" + line[:width])
            self.shown = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[i]


# --------------------------------------------------------------- the harness


class Failed(Exception):
    """A system produced a wrong answer."""


class Case:
    """One system in one table: ``gen(info)`` is a generator that sets the
    system up, then yields one repetition's {metric: value} per next();
    closing it tears the system down."""

    def __init__(self, key: str, label: str, gen, baseline: str | None) -> None:
        self.key, self.label, self.gen_fn, self.baseline = key, label, gen, baseline
        self.info: dict = {}
        self.reps: dict[str, list[float]] = {}
        self.it = None
        self.failed = False
        self.wall = 0.0


def timed(run, check=None) -> float:
    """Seconds for one run() (check(result) validates it, untimed)."""
    gc.collect()
    t0 = time.perf_counter()
    result = run()
    dt = time.perf_counter() - t0
    if check is not None:
        check(result)
    return dt


async def atimed(run, check=None) -> float:
    gc.collect()
    t0 = time.perf_counter()
    result = await run()
    dt = time.perf_counter() - t0
    if check is not None:
        check(result)
    return dt


def on_loop(setup, rep, teardown=None):
    """A repetition generator for an async system, on one event loop kept for
    all its repetitions: setup() and teardown() are coroutine functions,
    rep() a coroutine function returning one repetition's metrics."""
    loop = asyncio.new_event_loop()
    try:
        if setup is not None:
            loop.run_until_complete(setup())
        while True:
            yield loop.run_until_complete(rep())
    finally:
        try:
            if teardown is not None:
                loop.run_until_complete(teardown())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.workers: int = args.workers
        self.sweep: list[int] = getattr(args, "sweep", None) or [1, args.workers]
        self.repeat: int = args.repeat
        self.quick: bool = args.quick
        self.systems: list[str] | None = args.systems
        self.tables: list[Table] = []
        self.events: list[dict] = []
        self.interpool_failed = False
        self.anyio, self.anyio_missing = load_anyio()
        self._cases: list[Case] = []
        # Third-party peers: name -> entry points; missing ones: name -> reason.
        self.peers: dict[str, object] = {}
        self.peers_missing: dict[str, str] = {}
        self.peer_versions: dict[str, str | None] = {}
        mode = getattr(args, "progress", "auto")
        if mode == "auto" and self.quick and not sys.stderr.isatty():
            mode = "off"  # CI logs (make bench-quick) stay as they were
        self.progress = Progress(mode)

    def load_peers(self) -> str | None:
        """Find the pinned peers installed by tools/peers; None if there are none."""
        import peers

        where = peers.activate()
        self.peer_versions = peers.versions() if where else {}
        for name in PEERS:
            if where is None:
                self.peers_missing[name] = ("not installed: `tools/peers` installs it "
                                            "(`make bench` runs it first)")
                continue
            entry, missing = load_peer(name)
            if entry is None:
                self.peers_missing[name] = missing
            else:
                self.peers[name] = entry
        return where

    # ---- selection, events

    def selected(self, key: str) -> bool:
        if self.systems is None:
            return True
        if key == "bare-interpreter":  # the reference of a start-up target
            key = "interpool.bare"
        return any(key == s or key.startswith(s + ".") or key.startswith(s + "-")
                   for s in self.systems)

    def event(self, kind: str, system: str, message: str, workload: str = "") -> None:
        self.progress.clear()
        self.events.append({"kind": kind, "system": system, "workload": workload,
                            "message": message})
        where = f" [{workload}]" if workload else ""
        print(f"  {'SKIP ' if kind == 'skip' else 'ERROR'} {system}{where}: {message}",
              flush=True)

    def available(self, key: str) -> bool:
        if key.startswith("stdlib-ipe") and StdlibIPE is None:
            return False
        if key.startswith("anyio") and self.anyio is None:
            return False
        for name in PEERS:
            if key.startswith(name) and name not in self.peers:
                return False
        return True

    def peer_cannot(self, name: str, workload: str, why: str) -> None:
        """Say, on its own line, why a peer has no row in this workload."""
        if name in self.peers and self.selected(name):
            self.event("skip", name, why, workload)

    # ---- measuring

    def case(self, key: str, label: str, gen, *, baseline: str | None = None) -> None:
        """Add a system to the table being measured (see Case)."""
        if self.selected(key) and self.available(key):
            self._cases.append(Case(key, label, gen, baseline))

    def _fail(self, table: Table, c: Case, exc: BaseException) -> None:
        c.failed = True
        if c.key.startswith("interpool"):
            self.interpool_failed = True
        detail = "".join(traceback.format_exception_only(exc)).strip()
        self.event("error", c.label, detail, table.workload)
        if os.environ.get("INTERPOOL_BENCH_TRACEBACK"):
            traceback.print_exception(exc, file=sys.stdout)
        self._close(table, c)

    def _close(self, table: Table, c: Case) -> None:
        it, c.it = c.it, None
        if it is None:
            return
        try:
            it.close()
        except Exception as exc:
            if not c.failed:
                self._fail(table, c, exc)

    def measure(self, table: Table) -> None:
        """Run the cases added since the last call, then add their rows.

        Repetitions are interleaved (round r runs every system once, in
        alternating order), so that load from elsewhere on the machine
        lands on all systems alike rather than on whichever ran then.
        """
        cases, self._cases = self._cases, []
        self.tables.append(table)
        for r in range(self.repeat):
            for c in (cases if r % 2 == 0 else cases[::-1]):
                if c.failed:
                    continue
                self.progress.show(f"{table.workload}: {c.label} — repetition "
                                   f"{r + 1}/{self.repeat}")
                t0 = time.perf_counter()
                try:
                    if c.it is None:
                        c.it = c.gen_fn(c.info)
                    out = next(c.it)
                except StopIteration:
                    self._fail(table, c, RuntimeError("the case ended early"))
                except Exception as exc:
                    self._fail(table, c, exc)
                else:
                    for k, v in out.items():
                        c.reps.setdefault(k, []).append(v)
                c.wall += time.perf_counter() - t0
        self.progress.clear()
        for c in reversed(cases):  # tear down, newest first
            t0 = time.perf_counter()
            self._close(table, c)
            c.wall += time.perf_counter() - t0
        for c in cases:
            if c.failed:
                continue
            label = c.info.pop("label", c.label)
            c.info["wall_s"] = round(c.wall, 3)
            table.rows.append(Row(c.key, label, c.reps, baseline=c.baseline, info=c.info))
            m = next((m for m in table.metrics if c.reps.get(m.name)), table.primary)
            print(f"  · {label:<56} {fmt(table.rows[-1].median(m.name), m.unit):>14}"
                  f"   ({c.wall:.1f}s)", flush=True)

    # ---- systems

    def warm(self, ex, workers: int | None = None) -> None:
        """Start every worker of a (lazy) executor and import `workloads` in it."""
        for f in [ex.submit(W.hold, 0.02) for _ in range(2 * (workers or self.workers))]:
            f.result()

    @contextlib.contextmanager
    def pool(self, workers: int | None = None, **options):
        import interpool

        pool = interpool.Pool(workers or self.workers, **options)
        try:
            pool.wait_ready()
            self.warm(pool, workers)
            yield pool
        finally:
            pool.shutdown(wait=True)

    @contextlib.contextmanager
    def executor(self, kind: str, initializer=None, initargs=(), workers: int | None = None):
        n = workers or self.workers
        if kind.startswith("interpool"):
            import interpool

            ex = interpool.InterpreterPoolExecutor(n, initializer=initializer, initargs=initargs)
        elif kind.startswith("stdlib-ipe"):
            ex = StdlibIPE(n, initializer=initializer, initargs=initargs)
        elif kind.startswith("threads"):
            ex = cf.ThreadPoolExecutor(n, initializer=initializer, initargs=initargs)
        elif kind.startswith("processes"):
            ex = cf.ProcessPoolExecutor(n, initializer=initializer, initargs=initargs)
        else:
            raise ValueError(kind)
        try:
            self.warm(ex, n)
            yield ex
        finally:
            ex.shutdown(wait=True)

    def best_chunksize(self, run, candidates, info: dict) -> int:
        """The chunksize among candidates with the shortest run (best of 2)."""
        trials: dict[int, float] = {}
        for cs in candidates:
            for _ in range(1 if self.quick else 2):
                dt = timed(lambda: run(cs))
                trials[cs] = min(dt, trials.get(cs, dt))
        best = min(trials, key=trials.get)
        info.update(chunksize=best, calibration_s=trials)
        return best

    @property
    def chunk_candidates(self) -> tuple[int, ...]:
        return (16, 256) if self.quick else (16, 256, 1024)

    def anyio_gen(self, rep, setup_extra=None):
        """on_loop() for anyio.to_interpreter: rep(run) gets a run(fn, *args)
        coroutine bounded to `workers` calls at once (an outer semaphore:
        anyio alone would create one interpreter per pending call)."""
        anyio, ti = self.anyio
        state: dict = {}

        async def setup():
            limiter = anyio.CapacityLimiter(self.workers)
            sem = asyncio.Semaphore(self.workers)

            async def run(fn, *args):
                async with sem:
                    return await ti.run_sync(fn, *args, limiter=limiter)

            state["run"] = run
            await asyncio.gather(*(run(W.hold, 0.02) for _ in range(2 * self.workers)))

        async def teardown():
            anyio_cleanup(ti)

        return on_loop(setup, lambda: rep(state["run"]), teardown)

    # ---- the third-party peers (present only when b.load_peers() found them)

    def seed_runner_gen(self, rep, warm=W.hold, hold: float = 0.02):
        """on_loop() for aiointerpreters' Runner, the seed design: rep(runner)
        is a coroutine function.  Its workers share one task queue, so the
        warm-up sends two tasks per worker that each hold one a moment."""
        seed = self.peers["aiointerpreters"]
        with seed.Runner(workers=self.workers).start() as runner:
            async def setup():
                await asyncio.gather(*(runner.run(warm, hold) for _ in range(2 * self.workers)))
            yield from on_loop(setup, lambda: rep(runner))

    @contextlib.contextmanager
    def itpe(self, initializer=None, initargs=()):
        """aiointerpreters' InterpreterThreadPoolExecutor, every worker warm."""
        seed = self.peers["aiointerpreters"]
        ex = seed.ITPE(self.workers, initializer=initializer, initargs=initargs)
        try:
            hold = seed.interpreter(W.hold)
            for f in [ex.submit(hold, 0.02) for _ in range(2 * self.workers)]:
                f.result()
            yield ex
        finally:
            ex.shutdown(wait=True)

    @contextlib.contextmanager
    def peer_pool(self, kind: str, initializer=None, initargs=()):
        """A started, warm process pool of pebble (ProcessPool) or loky
        (get_reusable_executor; idle workers kept for the whole run)."""
        n = self.workers
        if kind.startswith("pebble"):
            pool = self.peers["pebble"].ProcessPool(max_workers=n, initializer=initializer,
                                                    initargs=initargs)
            try:
                for f in [pool.schedule(W.hold, args=(0.02,)) for _ in range(2 * n)]:
                    f.result()
                yield pool
            finally:
                pool.close()
                pool.join()
        elif kind.startswith("loky"):
            ex = self.peers["loky"].get_reusable_executor(
                max_workers=n, timeout=3600, initializer=initializer, initargs=initargs)
            try:
                self.warm(ex)
                yield ex
            finally:
                ex.shutdown(wait=True)
        else:
            raise ValueError(kind)

    def aiomp_gen(self, rep, *, childconcurrency: int | None = None, initializer=None,
                  initargs=()):
        """on_loop() for an aiomultiprocess Pool (made on that loop, as it
        must be): rep(pool) is a coroutine function."""
        amp = self.peers["aiomultiprocess"]
        state: dict = {}

        async def setup():
            options = {} if childconcurrency is None else {"childconcurrency": childconcurrency}
            pool = amp.Pool(processes=self.workers, initializer=initializer, initargs=initargs,
                            **options)
            state["pool"] = pool
            await pool.map(W.ahold, [0.02] * (2 * self.workers))

        async def teardown():
            pool = state.get("pool")
            if pool is not None:
                pool.close()
                await pool.join()

        return on_loop(setup, lambda: rep(state["pool"]), teardown)


async def bounded_gather(calls, window: int) -> list:
    """await every ``call()`` of the iterable ``calls``, at most ``window``
    at a time, results in order (big payloads: never all in flight)."""
    sem = asyncio.Semaphore(window)

    async def one(call):
        async with sem:
            return await call()

    return await asyncio.gather(*(one(c) for c in calls))


def check_total(expected: int, what: str = "loops"):
    """A check that the results add up to `expected`."""
    def check(result) -> None:
        got = sum(result)
        if got != expected:
            raise Failed(f"wrong answer: {got} {what}, expected {expected}")

    return check


def check_sum(n: int):
    expected = n * (n - 1) // 2

    def check(result) -> None:
        got = sum(result)
        if got != expected:
            raise Failed(f"wrong results: sum {got} != {expected}")

    return check
