"""A real third-party workload: pyflakes over the standard library.

Each task checks one module's source (sent with the call, as a user would
write it) with Debian's python3-pyflakes, which imports in subinterpreters;
the result is its warning count.  Every interpool front door runs it, and
ProcessPoolExecutor at the chunksize that suits it best (a user tunes it).
Modules go largest first, so that no big one is left for the end.
"""

from __future__ import annotations

import asyncio

import workloads as W
from bench_report import Metric, Row, Table, fmt_ratio
from harness import Failed, StdlibIPE, on_loop, atimed, timed


def wl_pyflakes(b) -> None:
    import importlib.util

    if importlib.util.find_spec("pyflakes") is None:
        b.event("skip", "pyflakes", "pyflakes is not installed (Debian's python3-pyflakes)",
                "pyflakes")
        return
    # Every 4th module (every 32nd with --quick): the whole library takes
    # ~30 s per run sequentially, too long to repeat for every system.
    sources = W.stdlib_sources(every=32 if b.quick else 4)
    paths = [p for _, p in sources]
    texts = [s for s, _ in sources]
    expected = sum(W.flake_count(s, p) for s, p in sources)
    mb = sum(len(s) for s in texts) / 1e6
    t = Table("pyflakes",
              f"pyflakes over the standard library: {len(sources):,} modules (every "
              f"{32 if b.quick else 4}th; {mb:.1f} MB of source, sent with each call)",
              [Metric("time", "time", "s", False)],
              note=f"{expected:,} warnings in all; one task per module", baseline="processes",
              baseline_title="vs ProcessPoolExecutor")

    def speedup(table: Table, row: Row) -> str:
        return fmt_ratio(table.row("sequential").median("time") / row.median("time"))

    t.derived = [("speedup vs sequential", speedup)]

    def check(result) -> None:
        if sum(result) != expected:
            raise Failed(f"wrong warning count {sum(result)} != {expected}")

    def sequential(info):
        while True:
            yield {"time": timed(lambda: [W.flake_count(s, p) for s, p in sources], check)}

    b.case("sequential", "sequential", sequential)

    def warm(ex) -> None:
        """pyflakes imported in every worker before the timing."""
        for f in [ex.submit(W.warm_pyflakes, 0.05) for _ in range(2 * b.workers)]:
            f.result()

    def pool_sync(run):
        def gen(info):
            with b.pool() as pool:
                warm(pool)
                while True:
                    yield {"time": timed(lambda: run(pool), check)}
        return gen

    b.case("interpool.map", "interpool Pool.map",
           pool_sync(lambda p: list(p.map(W.flake_count, texts, paths))))
    b.case("interpool.submit", "interpool submit all, then result()",
           pool_sync(lambda p: [f.result() for f in [p.submit(W.flake_count, s, path)
                                                     for s, path in sources]]))

    def pool_async(kind):
        def gen(info):
            with b.pool() as pool:
                warm(pool)

                async def rep():
                    if kind == "await":
                        return {"time": await atimed(lambda: asyncio.gather(
                            *[pool.run(W.flake_count, s, p) for s, p in sources]), check)}

                    async def amap():
                        return [x async for x in pool.amap(W.flake_count_star, sources)]
                    return {"time": await atimed(amap, check)}
                yield from on_loop(None, rep)
        return gen

    b.case("interpool.await", "interpool gather(await pool.run)", pool_async("await"))
    b.case("interpool.amap", "interpool pool.amap", pool_async("amap"))

    def executor(kind, chunked=False):
        def gen(info):
            with b.executor(kind) as ex:
                warm(ex)
                cs = 1
                if chunked:
                    cs = b.best_chunksize(lambda c: list(ex.map(W.flake_count, texts, paths,
                                                                chunksize=c)),
                                          (1, 4) if b.quick else (1, 4, 16), info)
                    info["label"] = f"ProcessPoolExecutor.map (best chunksize={cs})"
                while True:
                    yield {"time": timed(
                        lambda: list(ex.map(W.flake_count, texts, paths, chunksize=cs)), check)}
        return gen

    b.case("interpool.executor", "interpool.InterpreterPoolExecutor.map",
           executor("interpool.executor"))
    b.case("processes", "ProcessPoolExecutor.map (best chunksize)", executor("processes", True))
    if StdlibIPE is not None:
        b.case("stdlib-ipe", "stdlib InterpreterPoolExecutor.map", executor("stdlib-ipe"))
    b.measure(t)
