"""The seed's comparison: the AoC 2024 day-6 guard grid, as the seed author ran it.

The grid is a tuple of 130 tuples of 130 bools and the check function takes
it (``workloads.guard_loops_tt``), one call per candidate obstacle.  Every
system runs it twice: (a) with the grid passed with every call, and (b) with
the grid bound once per worker, each system its own way (an initializer,
``pool.share()``; aiointerpreters' Runner has no initializer, so its worker
module builds the grid on first use, the way a Runner user binds data once
per interpreter).  Sequential figures: in this process (where the other
systems' pools and threads are alive, between repetitions) and in a fresh
process that does nothing else, the fairer baseline.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from itertools import repeat

import workloads as W
from bench_report import Metric, Row, Table, fmt_ratio
from harness import atimed, check_total, on_loop, timed

RUN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run.py")


def inputs(quick: bool):
    grid = W.make_grid()
    tt = W.to_tuple_grid(grid)
    cands = W.tuple_candidates(grid)
    if quick:
        cands = cands[::16]  # spread over the path: inner cells walk longer
    return tt, cands


# With --quick (CI), one row per code path, not every front door.
QUICK = {"sequential", "sequential.fresh", "interpool.map", "interpool.await.share",
         "interpool.amap", "interpool.map.init", "interpool.runner.init", "stdlib-ipe",
         "stdlib-ipe.init", "processes.init", "seed-design"}


def fresh_sequential(quick: bool) -> dict:
    """run.py --probe seq-tt: the sequential loop in this fresh process.

    Two passes, the second timed (the in-process figure is warm too)."""
    tt, cands = inputs(quick)
    timed(lambda: [W.guard_loops_tt(tt, *c) for c in cands])
    return {"time": timed(lambda: [W.guard_loops_tt(tt, *c) for c in cands])}


def seed_table(b) -> None:
    tt, cands = inputs(b.quick)
    cols = [list(x) for x in zip(*cands)]  # block_r, block_c, r, c, d
    expected = sum(W.guard_loops_tt(tt, *c) for c in cands)
    n = len(cands)
    t = Table("grid",
              f"The seed's comparison: AoC day-6 grid as a tuple of tuples of bool "
              f"({W.SIZE}x{W.SIZE}), {n:,} checks, one call each",
              [Metric("time", "time", "s", False)],
              note=f"answer: {expected:,} loops; (a) grid passed with every call, (b) grid "
                   "bound once per worker; ratios of (b) rows are against stdlib IPE's (b). "
                   "The in-process sequential loop shares its GIL with the other systems' "
                   "idle threads (alive between repetitions; the Runner's coordinator polls "
                   "every 10 ms): the fresh-process figure is the fairer baseline")

    def speedup(key: str):
        def fn(table: Table, row: Row) -> str:
            return fmt_ratio(table.row(key).median("time") / row.median("time"))
        return fn

    if b.quick:
        add = b.case

        def case(key, *a, **kw):
            if key in QUICK:
                add(key, *a, **kw)
    else:
        case = b.case

    t.derived = [("speedup vs sequential", speedup("sequential")),
                 ("vs sequential, fresh process", speedup("sequential.fresh"))]

    check = check_total(expected)

    def seconds(dt: float) -> dict:
        return {"time": dt}

    a, bb = "(a) per call", "(b) bound once"

    # ---- sequential

    def sequential(info):
        while True:
            yield seconds(timed(lambda: [W.guard_loops_tt(tt, *c) for c in cands], check))

    def sequential_fresh(info):
        cmd = [sys.executable, RUN, "--probe", "seq-tt"] + (["--quick"] if b.quick else [])
        while True:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if proc.returncode != 0 or proc.stderr.strip():
                tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
                raise RuntimeError(f"probe exited {proc.returncode}: {' | '.join(tail)}")
            yield json.loads(proc.stdout.strip().splitlines()[-1])

    case("sequential", "sequential, in this process", sequential)
    case("sequential.fresh", "sequential, fresh process (second of two passes)",
           sequential_fresh)

    # ---- interpool's front doors

    def pool_map(how: str):
        def gen(info):
            options = {}
            if how == "init":
                options = dict(initializer=W.set_tt_grid, initargs=(tt,))
            with b.pool(**options) as pool:
                if how == "init":
                    def run():
                        return list(pool.map(W.guard_loops_tt_bound, *cols))
                    while True:
                        yield seconds(timed(run, check))
                handle = pool.share(tt) if how == "share" else None
                arg = handle if handle is not None else tt
                try:
                    while True:
                        yield seconds(timed(
                            lambda: list(pool.map(W.guard_loops_tt, repeat(arg), *cols)), check))
                finally:
                    if handle is not None:
                        handle.release()
        return gen

    def pool_async(door: str, share: bool):
        def gen(info):
            with b.pool() as pool:
                handle = pool.share(tt) if share else None
                arg = handle if share else tt
                try:
                    async def rep():
                        if door == "await":
                            return seconds(await atimed(lambda: asyncio.gather(
                                *[pool.run(W.guard_loops_tt, arg, *c) for c in cands]), check))

                        async def amap():
                            return [x async for x in pool.amap(
                                W.guard_loops_tt_star, ((arg, *c) for c in cands))]
                        return seconds(await atimed(amap, check))
                    yield from on_loop(None, rep)
                finally:
                    if handle is not None:
                        handle.release()
        return gen

    def interpool_runner(bound: bool):
        def gen(info):
            import interpool

            options = dict(initializer=W.set_tt_grid, initargs=(tt,)) if bound else {}
            fn = W.guard_loops_tt_bound if bound else W.guard_loops_tt
            head = () if bound else (tt,)
            with interpool.Runner(workers=b.workers, **options) as runner:
                async def rep():
                    return seconds(await atimed(lambda: asyncio.gather(
                        *[runner.run(fn, *head, *c) for c in cands]), check))
                yield from on_loop(None, rep)
        return gen

    def executor(kind: str, bound: bool):
        def gen(info):
            options = dict(initializer=W.set_tt_grid, initargs=(tt,)) if bound else {}
            with b.executor(kind, **options) as ex:
                def run(c):
                    if bound:
                        return list(ex.map(W.guard_loops_tt_bound, *cols, chunksize=c))
                    return list(ex.map(W.guard_loops_tt, repeat(tt), *cols, chunksize=c))
                cs = 1
                if kind == "processes":   # a user tunes it: its best chunksize
                    cs = b.best_chunksize(run, (1, 16) if b.quick else (1, 4, 16, 64, 256),
                                          info)
                    info["label"] = (f"{bb if bound else a}: ProcessPoolExecutor"
                                     f"{', initializer' if bound else ''}, best chunksize={cs}")
                while True:
                    yield seconds(timed(lambda: run(cs), check))
        return gen

    def seed_design(info):
        from seed_executor import SeedExecutor

        with SeedExecutor(b.workers, bound=(tt,)) as ex:
            list(ex.map(W.guard_loops_tt, *[col[:4 * b.workers] for col in cols]))   # warm
            while True:
                yield seconds(timed(lambda: list(ex.map(W.guard_loops_tt, *cols)), check))

    case("interpool.map", f"{a}: interpool Pool.map", pool_map("per-call"))
    case("interpool.await", f"{a}: interpool gather(await pool.run)",
           pool_async("await", False))
    case("interpool.amap", f"{a}: interpool pool.amap", pool_async("amap", False))
    case("interpool.executor", f"{a}: interpool.InterpreterPoolExecutor.map",
           executor("interpool.executor", False))
    case("interpool.runner", f"{a}: interpool.Runner gather(runner.run)",
           interpool_runner(False))
    case("stdlib-ipe", f"{a}: stdlib InterpreterPoolExecutor.map", executor("stdlib-ipe", False))
    case("threads", f"{a}: ThreadPoolExecutor.map", executor("threads", False))
    case("processes", f"{a}: ProcessPoolExecutor.map, best chunksize",
         executor("processes", False))

    base = "stdlib-ipe.init"
    case("interpool.map.share", f"{bb}: interpool Pool.map, pool.share(grid)",
           pool_map("share"), baseline=base)
    case("interpool.map.init", f"{bb}: interpool Pool.map, initializer",
           pool_map("init"), baseline=base)
    case("interpool.await.share", f"{bb}: interpool gather(await pool.run), pool.share(grid)",
           pool_async("await", True), baseline=base)
    case("interpool.amap.share", f"{bb}: interpool pool.amap, pool.share(grid)",
           pool_async("amap", True), baseline=base)
    case("interpool.executor.init", f"{bb}: interpool.InterpreterPoolExecutor, initializer",
           executor("interpool.executor", True), baseline=base)
    case("interpool.runner.init", f"{bb}: interpool.Runner, initializer",
           interpool_runner(True), baseline=base)
    case("stdlib-ipe.init", f"{bb}: stdlib InterpreterPoolExecutor, initializer",
           executor("stdlib-ipe", True), baseline=base)
    case("threads.init", f"{bb}: ThreadPoolExecutor, initializer",
           executor("threads", True), baseline=base)
    case("processes.init", f"{bb}: ProcessPoolExecutor, initializer, best chunksize",
           executor("processes", True), baseline=base)
    case("seed-design", f"{bb}: the seed's design (interpreters on a queue, prepare_main; "
         "seed_executor.py)", seed_design, baseline=base)

    # ---- the seed: aiointerpreters

    def seed_runner(bound: bool):
        def gen(info):
            fn = W.guard_loops_tt_lazy if bound else W.guard_loops_tt
            head = () if bound else (tt,)

            async def rep(runner):
                return seconds(await atimed(lambda: asyncio.gather(
                    *[runner.run(fn, *head, *c) for c in cands]), check))
            # bound: the warm-up builds the grid in every worker (held 0.1 s
            # each, so that each worker takes some), outside the timing
            yield from b.seed_runner_gen(rep, warm=W.warm_tt_grid if bound else W.hold,
                                         hold=0.1 if bound else 0.02)
        return gen

    def seed_itpe(bound: bool):
        def gen(info):
            interp = b.peers["aiointerpreters"].interpreter
            options = dict(initializer=W.set_tt_grid, initargs=(tt,)) if bound else {}
            with b.itpe(**options) as ex:
                while True:
                    if bound:
                        run = lambda: list(ex.map(interp(W.guard_loops_tt_bound), *cols))  # noqa: E731
                    else:
                        run = lambda: list(ex.map(interp(W.guard_loops_tt), repeat(tt), *cols))  # noqa: E731
                    yield seconds(timed(run, check))
        return gen

    case("aiointerpreters.runner", f"{a}: aiointerpreters Runner gather(runner.run)",
           seed_runner(False))
    case("aiointerpreters.itpe", f"{a}: aiointerpreters InterpreterThreadPoolExecutor.map",
           seed_itpe(False))
    case("aiointerpreters.runner.bound",
           f"{bb}: aiointerpreters Runner, grid built per worker on first use (no initializer)",
           seed_runner(True), baseline=base)
    case("aiointerpreters.itpe.init",
           f"{bb}: aiointerpreters InterpreterThreadPoolExecutor, initializer",
           seed_itpe(True), baseline=base)
    b.measure(t)
    t.rows.sort(key=_order)


def _order(row: Row) -> tuple[int, int]:
    """Sequential first, then the (a) rows, then the (b) rows (stable within)."""
    if row.key.startswith("sequential"):
        return (0, 0)
    return (1, 1 if row.label.startswith("(b)") else 0)
