"""The seed's scaling chart: the AoC day-6 grid timed against the number of
workers (``--workers 1,2,4,...``; by default powers of two up to the
machine's CPUs, the CPU count itself, and twice it to show what
oversubscription costs).

The seed author drew it for 1 to 15 workers on an 11-core laptop; the same
command draws it on any machine.  Every system runs the same checks with
the grid as a tuple of tuples of bool: interpool's front doors pass it with
every call, as a user would first write it; processes and the stdlib
executor get it once per worker through an initializer (per call they
would only measure pickling), processes at the chunksize that suits them
best at that worker count; the seed's own design binds it with
``prepare_main``.  Each repetition times every worker count of a system in
a row (its pools made once, kept for all repetitions).
"""

from __future__ import annotations

import asyncio
from itertools import repeat

import seed_grid
import workloads as W
from bench_report import Metric, Row, Table, fmt_ratio
from harness import StdlibIPE, check_total, timed


def default_sweep(cpus: int) -> list[int]:
    """1, 2, 4, ... up to the CPUs, the CPU count, and twice it."""
    points, w = [], 1
    while w < cpus:
        points.append(w)
        w *= 2
    return sorted(set(points + [cpus, 2 * cpus]))


def metric(w: int) -> str:
    return f"w{w}"


def wl_scaling(b) -> None:
    sweep = b.sweep
    tt, cands = seed_grid.inputs(b.quick)
    cols = [list(x) for x in zip(*cands)]
    expected = sum(W.guard_loops_tt(tt, *c) for c in cands)
    t = Table("scaling",
              f"Scaling: the seed's AoC day-6 grid ({W.SIZE}x{W.SIZE} tuple of tuples), "
              f"{len(cands):,} checks, against workers ({', '.join(map(str, sweep))})",
              [Metric(metric(w), f"{w} workers", "s", False) for w in sweep],
              note="time per run at each worker count; speed-up is over the sequential loop "
                   "(ideal: the worker count, up to the CPUs)", baseline=None)

    def speedup(w: int):
        def fn(table: Table, row: Row) -> str:
            return fmt_ratio(table.row("sequential").median(metric(1)) / row.median(metric(w)))
        return fn

    t.derived = [(f"speed-up, {w}", speedup(w)) for w in sweep]

    check = check_total(expected)

    def sequential(info):
        while True:
            yield {metric(1): timed(lambda: [W.guard_loops_tt(tt, *c) for c in cands], check)}

    b.case("sequential", "sequential", sequential)

    def swept(make, run, label=None):
        """A case that keeps one system per worker count (make(w): a context
        manager) and times run(system, w) at each."""
        def gen(info):
            import contextlib

            with contextlib.ExitStack() as stack:
                systems = {w: stack.enter_context(make(w)) for w in sweep}
                if label is not None:
                    label(systems, info)
                while True:
                    yield {metric(w): run(systems[w], w) for w in sweep}
        return gen

    def pool_map(pool, w):
        return timed(lambda: list(pool.map(W.guard_loops_tt, repeat(tt), *cols)), check)

    def pool_gather(pool, w):
        async def go():
            return await asyncio.gather(*[pool.run(W.guard_loops_tt, tt, *c) for c in cands])
        return timed(lambda: asyncio.run(go()), check)

    def executor_map(ex, w):
        return timed(lambda: list(ex.map(W.guard_loops_tt, repeat(tt), *cols)), check)

    def bound_map(ex, w):
        return timed(lambda: list(ex.map(W.guard_loops_tt_bound, *cols)), check)

    chunks: dict[int, int] = {}

    def processes_map(ex, w):
        return timed(lambda: list(ex.map(W.guard_loops_tt_bound, *cols, chunksize=chunks[w])),
                     check)

    def calibrate(systems, info):
        """Processes: the best chunksize at each worker count."""
        for w, ex in systems.items():
            chunks[w] = b.best_chunksize(
                lambda c: list(ex.map(W.guard_loops_tt_bound, *cols, chunksize=c)),
                (16,) if b.quick else (1, 16, 64), {})
        info["chunksize"] = dict(chunks)

    bound = dict(initializer=W.set_tt_grid, initargs=(tt,))
    b.case("interpool.map", "interpool Pool.map, grid per call",
           swept(lambda w: b.pool(w), pool_map))
    b.case("interpool.await", "interpool gather(await pool.run), grid per call",
           swept(lambda w: b.pool(w), pool_gather))
    b.case("interpool.executor", "interpool.InterpreterPoolExecutor.map, grid per call",
           swept(lambda w: b.executor("interpool.executor", workers=w), executor_map))
    b.case("processes", "ProcessPoolExecutor, grid via initializer, best chunksize",
           swept(lambda w: b.executor("processes", workers=w, **bound), processes_map,
                 calibrate))
    if StdlibIPE is not None:
        b.case("stdlib-ipe", "stdlib InterpreterPoolExecutor, grid via initializer",
               swept(lambda w: b.executor("stdlib-ipe", workers=w, **bound), bound_map))

    def seed_design(w):
        from seed_executor import SeedExecutor

        ex = SeedExecutor(w, bound=(tt,))
        list(ex.map(W.guard_loops_tt, *[col[:4 * w] for col in cols]))   # warm every worker
        return ex

    def seed_map(ex, w):
        return timed(lambda: list(ex.map(W.guard_loops_tt, *cols)), check)

    b.case("seed-design", "the seed's design: interpreters on a queue, grid by prepare_main",
           swept(seed_design, seed_map))
    b.measure(t)
