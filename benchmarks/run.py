#!/usr/bin/env python3
"""interpool's benchmark suite (``make bench``; ``make bench-quick`` in CI).

Runs the same workloads through interpool's front doors and through its
peers (the stdlib InterpreterPoolExecutor, ThreadPoolExecutor,
ProcessPoolExecutor, anyio.to_interpreter, plain sequential code, and the
third-party aiointerpreters, aiomultiprocess, pebble and loky), with the
same number of workers, in one process, and writes

    <out>/results.json   every repetition, machine info, peer versions
    <out>/results.md     the tables in Markdown
    <out>/chart.png      a multi-panel chart
    <out>/scaling.png    time and speed-up against the number of workers

Usage: tools/python benchmarks/run.py [--quick] [--workers N | N,N,...] [--repeat N]
           [--workloads tiny,latency,startup,grid,payload,async,coro,control,stream,
                        scaling,serial,pyflakes,mixed]
           [--systems interpool,stdlib-ipe,threads,processes,anyio,sequential,
                      aiointerpreters,aiomultiprocess,pebble,loky]
           [--out DIR] [--timeout SECONDS] [--progress auto|tty|lines|off]

Where things are: the workloads (and interpool's and the stdlib's rows) in
this file, one function each; the harness (Bench, cases, repetitions,
systems) in harness.py; the mixed workload (interpreters plus numpy through
the fallback) in mixed_cases.py; the third-party peers' rows in peer_cases.py, one
function per workload; the seed's own comparison (the AoC day-6 grid as a
tuple of tuples, part of the grid workload) in seed_grid.py; task functions
and inputs in workloads.py; tables and files in bench_report.py.

The third-party peers are pinned in peers.py and installed apart from the
system's packages by ``tools/peers`` (``make bench`` runs it first); --quick
never loads them.  A peer that is missing prints one SKIP line; one that
cannot run a workload says why on its own line.

Each figure is the median of --repeat repetitions (with min and max).  The
repetitions of the systems in one table are interleaved (round robin, in
alternating order), so that other load on the machine hits them alike and
the ratios stay meaningful.

Nothing here asserts speed: the "targets" section at the end is
informational.  The exit status is non-zero only when interpool itself
failed (an error, or a wrong answer), the report could not be written, or
the run hung (a faulthandler watchdog dumps the threads and exits 1).
A peer that fails prints an ERROR line.
Set INTERPOOL_BENCH_TRACEBACK=1 to print the tracebacks of failures.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import datetime
import faulthandler
import gc
import json
import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
from itertools import repeat

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # workers import `workloads` by name through sys.path
    sys.path.insert(0, HERE)

import peer_cases as PC  # noqa: E402
import control_cases as CC  # noqa: E402
import pyflakes_cases  # noqa: E402
import scaling_cases  # noqa: E402
import serial_cases  # noqa: E402
import mixed_cases as MC  # noqa: E402
import stream_cases as SC  # noqa: E402
import seed_grid  # noqa: E402
import workloads as W  # noqa: E402
from bench_report import (  # noqa: E402
    Metric,
    Row,
    Table,
    Target,
    ensure_dir,
    fmt,
    fmt_ratio,
    render_text,
    write_chart,
    write_json,
    write_scaling_chart,
    write_markdown,
)
from harness import (  # noqa: E402
    MB,
    PEERS,
    Bench,
    Failed,
    StdlibIPE,
    anyio_cleanup,
    atimed,
    check_sum,
    check_total,
    cpu_count,
    load_anyio,
    loadavg,
    on_loop,
    percentile,
    rss_bytes,
    timed,
    uss_bytes,
)

def main_identity(x):
    """identity, defined in this script: run as `python benchmarks/run.py`,
    it is a __main__ function, which travels by value (W.identity, of an
    importable module, travels by reference)."""
    return x


WORKLOADS = ("tiny", "latency", "startup", "grid", "payload", "async", "coro", "control", "stream",
             "scaling", "serial", "pyflakes", "mixed")
FAMILIES = ("interpool", "stdlib-ipe", "threads", "processes", "anyio", "sequential",
            "seed-design", *PEERS)


# --------------------------------------------------------------- 1. tiny tasks


def wl_tiny(b: Bench) -> None:
    n = 2_000 if b.quick else 20_000
    t = Table("tiny", f"Tiny tasks: {n:,} calls of identity(i)",
              [Metric("rate", "throughput", "calls/s", True)],
              note="Throughput in calls/s")
    items = range(n)
    check = check_sum(n)

    def rate(seconds: float) -> dict:
        return {"rate": n / seconds, "time": seconds}

    def sequential(info):
        while True:
            yield rate(timed(lambda: [W.identity(i) for i in items], check))

    b.case("sequential", "sequential (plain loop)", sequential)

    def pool_map(chunked: bool):
        def gen(info):
            with b.pool() as pool:
                cs = 1
                if chunked:
                    cs = b.best_chunksize(
                        lambda c: list(pool.map(W.identity, items, chunksize=c)),
                        b.chunk_candidates, info)
                    info["label"] = f"interpool Pool.map (best chunksize={cs})"
                while True:
                    yield rate(timed(
                        lambda: list(pool.map(W.identity, items, chunksize=cs)), check))
        return gen

    b.case("interpool.map", "interpool Pool.map (chunksize=1)", pool_map(False))
    b.case("interpool.map-chunked", "interpool Pool.map (best chunksize)", pool_map(True))

    def warm_main(pool) -> None:
        # As b.pool() imports `workloads` in every worker: each worker loads
        # the definition (once) before the timing starts.
        for f in [pool.submit(main_identity, 0) for _ in range(2 * b.workers)]:
            f.result()

    def pool_submit(fn):
        def gen(info):
            with b.pool() as pool:
                warm_main(pool)
                while True:
                    yield rate(timed(
                        lambda: [f.result() for f in [pool.submit(fn, i) for i in items]],
                        check))
        return gen

    b.case("interpool.submit", "interpool Pool.submit + result()", pool_submit(W.identity))

    # The same calls of a function defined in the script (__main__, by
    # value), against the module-level one (by reference), same run.
    def pool_map_main(info):
        with b.pool() as pool:
            warm_main(pool)
            while True:
                yield rate(timed(lambda: list(pool.map(main_identity, items)), check))

    if main_identity.__module__ == "__main__":
        b.case("interpool.map.main", "interpool Pool.map (chunksize=1), a __main__ function",
               pool_map_main, baseline="interpool.map")
        b.case("interpool.submit.main", "interpool Pool.submit + result(), a __main__ function",
               pool_submit(main_identity), baseline="interpool.submit")

    def pool_async(kind: str):
        def gen(info):
            with b.pool() as pool:
                async def setup():
                    await pool.run(W.identity, 0)

                async def rep():
                    if kind == "await":
                        return rate(await atimed(
                            lambda: asyncio.gather(*[pool.run(W.identity, i) for i in items]),
                            check))
                    window = 1024 if kind == "amap-wide" else None

                    async def amap():
                        return [x async for x in pool.amap(W.identity, items, window=window)]
                    return rate(await atimed(amap, check))

                yield from on_loop(setup, rep)
        return gen

    b.case("interpool.await", "interpool gather(await pool.run)", pool_async("await"),
           baseline="stdlib-ipe.async")
    b.case("interpool.amap", "interpool pool.amap (default window)", pool_async("amap"),
           baseline="stdlib-ipe.async")
    b.case("interpool.amap-wide", "interpool pool.amap (window=1024)", pool_async("amap-wide"),
           baseline="stdlib-ipe.async")

    def exec_map(kind: str, chunked: bool = False):
        def gen(info):
            with b.executor(kind) as ex:
                cs = 1
                if chunked:
                    cs = b.best_chunksize(
                        lambda c: list(ex.map(W.identity, items, chunksize=c)),
                        b.chunk_candidates, info)
                    info["label"] = (f"ProcessPoolExecutor.map (best chunksize={cs} of "
                                     f"{'/'.join(map(str, b.chunk_candidates))})")
                while True:
                    yield rate(timed(
                        lambda: list(ex.map(W.identity, items, chunksize=cs)), check))
        return gen

    def exec_async(kind: str):
        def gen(info):
            with b.executor(kind) as ex:
                async def rep():
                    loop = asyncio.get_running_loop()
                    return rate(await atimed(lambda: asyncio.gather(
                        *[loop.run_in_executor(ex, W.identity, i) for i in items]), check))
                yield from on_loop(None, rep)
        return gen

    b.case("interpool.executor", "interpool.InterpreterPoolExecutor.map",
           exec_map("interpool.executor"))
    b.case("interpool.executor.async", "interpool.InterpreterPoolExecutor run_in_executor",
           exec_async("interpool.executor"), baseline="stdlib-ipe.async")
    b.case("stdlib-ipe", "stdlib InterpreterPoolExecutor.map", exec_map("stdlib-ipe"))
    b.case("stdlib-ipe.async", "stdlib InterpreterPoolExecutor run_in_executor",
           exec_async("stdlib-ipe"), baseline="stdlib-ipe.async")
    b.case("threads", "ThreadPoolExecutor.map", exec_map("threads"))
    b.case("processes", "ProcessPoolExecutor.map (chunksize=1)", exec_map("processes"))
    b.case("processes-chunked", "ProcessPoolExecutor.map (best chunksize)",
           exec_map("processes-chunked", chunked=True))

    def anyio_gather(info):
        async def rep(run):
            return rate(await atimed(
                lambda: asyncio.gather(*[run(W.identity, i) for i in items]), check))
        yield from b.anyio_gen(rep)

    b.case("anyio", "anyio.to_interpreter.run_sync (gathered, bounded)", anyio_gather,
           baseline="stdlib-ipe.async")
    PC.tiny(b, items, check, rate)
    b.measure(t)


# --------------------------------------------------------------- 2. latency


def wl_latency(b: Bench) -> None:
    n = 100 if b.quick else 2_000
    t = Table("latency", f"Round trip, one call at a time ({n:,} calls of identity)",
              [Metric("p50", "p50", "us", False), Metric("p99", "p99", "us", False)],
              note="Per-call latency in µs: sync `submit(...).result()`, async `await`; "
                   "ratio on p50")
    clock = time.perf_counter_ns

    def stats(samples: list[int]) -> dict:
        s = sorted(samples)
        return {"p50": percentile(s, 0.50) / 1e3, "p99": percentile(s, 0.99) / 1e3}

    def sync_samples(call) -> dict:
        gc.collect()
        s = []
        for i in range(n):
            t0 = clock()
            if call(i) != i:
                raise Failed("wrong result")
            s.append(clock() - t0)
        return stats(s)

    async def async_samples(call, count: int = n) -> dict:
        gc.collect()
        s = []
        for i in range(count):
            t0 = clock()
            if await call(i) != i:
                raise Failed("wrong result")
            s.append(clock() - t0)
        return stats(s)

    def sequential(info):
        while True:
            yield sync_samples(W.identity)

    b.case("sequential", "sequential (direct call)", sequential)

    def pool_sync(info):
        with b.pool() as pool:
            while True:
                yield sync_samples(lambda i: pool.submit(W.identity, i).result())

    def pool_await(info):
        with b.pool() as pool:
            async def setup():
                await pool.run(W.identity, 0)
            yield from on_loop(setup, lambda: async_samples(lambda i: pool.run(W.identity, i)))

    b.case("interpool.submit", "interpool submit().result()", pool_sync)
    b.case("interpool.await", "interpool await pool.run()", pool_await,
           baseline="stdlib-ipe.async")

    def exec_sync(kind):
        def gen(info):
            with b.executor(kind) as ex:
                while True:
                    yield sync_samples(lambda i: ex.submit(W.identity, i).result())
        return gen

    def exec_async(kind):
        def gen(info):
            with b.executor(kind) as ex:
                def call(i):
                    return asyncio.get_running_loop().run_in_executor(ex, W.identity, i)
                yield from on_loop(None, lambda: async_samples(call))
        return gen

    b.case("interpool.executor", "interpool.InterpreterPoolExecutor submit().result()",
           exec_sync("interpool.executor"))
    b.case("interpool.executor.async", "interpool.InterpreterPoolExecutor run_in_executor",
           exec_async("interpool.executor"), baseline="stdlib-ipe.async")
    b.case("stdlib-ipe", "stdlib InterpreterPoolExecutor submit().result()",
           exec_sync("stdlib-ipe"))
    b.case("stdlib-ipe.async", "stdlib InterpreterPoolExecutor run_in_executor",
           exec_async("stdlib-ipe"), baseline="stdlib-ipe.async")
    b.case("threads", "ThreadPoolExecutor submit().result()", exec_sync("threads"))
    b.case("processes", "ProcessPoolExecutor submit().result()", exec_sync("processes"))

    def anyio_lat(info):
        yield from b.anyio_gen(lambda run: async_samples(lambda i: run(W.identity, i)))

    b.case("anyio", "anyio.to_interpreter.run_sync (await)", anyio_lat,
           baseline="stdlib-ipe.async")
    PC.latency(b, sync_samples, async_samples, n)
    b.measure(t)


# --------------------------------------------------------------- 3. start-up


def probe(kind: str, n: int, quick: bool = False) -> dict:
    """One start-up measurement in a fresh process (run.py --probe KIND)."""
    if kind == "seq-tt":
        return seed_grid.fresh_sequential(quick)
    if kind in PC.PROBE_LABELS:
        return PC.probe(kind, n)
    from concurrent import interpreters

    import interpool

    interpool.Pool  # load the caller-side API
    # Pay process-wide first-interpreter costs outside every timed section.
    interpreters.create().close()
    gc.collect()
    clock = time.perf_counter
    out: dict = {}

    def warm_all(ex) -> None:
        for f in [ex.submit(W.hold, 0.05) for _ in range(2 * n)]:
            f.result()

    if kind == "bare":
        rss0 = rss_bytes()
        t0 = clock()
        interp = interpreters.create()
        t1 = clock()
        rss1 = rss_bytes()
        t2 = clock()
        interp.close()
        t3 = clock()
        out = {"create": (t1 - t0 + t3 - t2) * 1e3, "mem": (rss1 - rss0) / MB}
    elif kind in ("interpool", "interpool.executor"):
        def make():
            if kind == "interpool":
                return interpool.Pool(n)
            return interpool.InterpreterPoolExecutor(n)

        def ready(ex):
            (ex if kind == "interpool" else ex.pool).wait_ready()

        if kind == "interpool":  # how creation scales: one worker alone
            t0 = clock()
            one = interpool.Pool(1)
            one.wait_ready()
            out["ready1"] = (clock() - t0) * 1e3
            one.shutdown(wait=True)
            gc.collect()
        rss0 = rss_bytes()
        t0 = clock()
        ex = make()
        ready(ex)
        out["ready"] = (clock() - t0) * 1e3
        warm_all(ex)
        out["mem"] = (rss_bytes() - rss0) / MB / n
        ex.shutdown(wait=True)
        t0 = clock()
        ex = make()
        ex.submit(W.identity, 1).result()
        out["first"] = (clock() - t0) * 1e3
        t0 = clock()
        ex.shutdown(wait=True)
        out["shutdown"] = (clock() - t0) * 1e3
    elif kind in ("stdlib-ipe", "threads", "processes"):
        def make():
            if kind == "stdlib-ipe":
                return StdlibIPE(n)
            if kind == "threads":
                return cf.ThreadPoolExecutor(n)
            return cf.ProcessPoolExecutor(n)

        t0 = clock()
        ex = make()
        ex.submit(W.identity, 1).result()
        out["first"] = (clock() - t0) * 1e3
        t0 = clock()
        ex.shutdown(wait=True)
        out["shutdown"] = (clock() - t0) * 1e3
        gc.collect()
        rss0 = rss_bytes()
        ex = make()
        warm_all(ex)
        if kind == "processes":
            pids = list(getattr(ex, "_processes", {}) or {})
            out["mem"] = sum(uss_bytes(p) for p in pids) / MB / max(1, len(pids))
            out["mem_kind"] = "USS of each worker process"
        else:
            out["mem"] = (rss_bytes() - rss0) / MB / n
        ex.shutdown(wait=True)
    elif kind == "anyio":
        (anyio, ti), missing = load_anyio()
        if anyio is None:
            raise RuntimeError(missing)

        async def go():
            limiter = anyio.CapacityLimiter(n)
            sem = asyncio.Semaphore(n)

            async def run(fn, *args):
                async with sem:
                    return await ti.run_sync(fn, *args, limiter=limiter)

            try:
                t0 = clock()
                await run(W.identity, 1)
                out["first"] = (clock() - t0) * 1e3
                anyio_cleanup(ti)
                gc.collect()
                rss0 = rss_bytes()
                await asyncio.gather(*(run(W.hold, 0.05) for _ in range(2 * n)))
                out["mem"] = (rss_bytes() - rss0) / MB / n
            finally:
                anyio_cleanup(ti)

        asyncio.run(go())
    else:
        raise ValueError(f"unknown probe {kind!r}")
    return out


def run_probe(kind: str, n: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--probe", kind, "--workers", str(n)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or proc.stderr.strip():
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        raise RuntimeError(f"probe {kind} exited {proc.returncode}: {' | '.join(tail)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def wl_startup(b: Bench) -> None:
    t = Table("startup", f"Start-up: {b.workers} workers, each repetition a fresh process",
              [Metric("first", "first result", "ms", False),
               Metric("ready", "ready pool", "ms", False),
               Metric("mem", "memory/worker", "MB", False),
               Metric("create", "create+close", "ms", False)],
              note="Time from constructor to the first result of a trivial task, to every "
                   "worker ready (interpool: Pool(n) + wait_ready(); the stdlib executors are "
                   "lazy), memory per worker (RSS delta / workers; processes: USS per worker)")

    def probes(kind: str):
        def gen(info):
            while True:
                out = run_probe(kind, b.workers)
                for k in [k for k, v in out.items() if not isinstance(v, (int, float))]:
                    info[k] = out.pop(k)
                yield out
        return gen

    b.case("bare-interpreter", "1 bare interpreter: interpreters.create()+close()",
           probes("bare"))
    for key, label in (
        ("interpool", "interpool Pool(n) + wait_ready()"),
        ("interpool.executor", "interpool.InterpreterPoolExecutor(n)"),
        ("stdlib-ipe", "stdlib InterpreterPoolExecutor(n)"),
        ("threads", "ThreadPoolExecutor(n)"),
        ("processes", "ProcessPoolExecutor(n)"),
        ("anyio", "anyio.to_interpreter (fresh loop)"),
    ):
        b.case(key, label, probes(key))
    PC.startup(b, probes)
    b.measure(t)


# --------------------------------------------------------------- 4. the grid


def wl_grid(b: Bench) -> None:
    grid = W.make_grid()
    cands = W.grid_candidates(grid)
    if b.quick:
        cands = cands[::8]  # spread over the path: inner cells walk longer
    blocks, poss, dirs = (list(x) for x in zip(*cands))
    expected = sum(W.guard_loops(grid, bl, p, d) for bl, p, d in cands)
    n = len(cands)
    w = b.workers
    t = Table("grid",
              f"CPU-bound grid: {n:,} guard-loop checks on a {W.SIZE}x{W.SIZE} grid "
              f"({len(grid):,} bytes)",
              [Metric("time", "time", "s", False)],
              note=f"One task per candidate obstacle (answer: {expected:,} loop); the same "
                   "function everywhere, only how the grid arrives differs")

    def speedup(table: Table, row: Row) -> str:
        seq = table.row("sequential")
        return fmt_ratio(seq.median("time") / row.median("time"))

    def efficiency(table: Table, row: Row) -> str:
        seq = table.row("sequential")
        return f"{seq.median('time') / row.median('time') / w * 100:.0f}%"

    t.derived = [("speedup vs sequential", speedup), (f"efficiency ({w} workers)", efficiency)]

    check = check_total(expected)

    def sequential(info):
        while True:
            yield {"time": timed(
                lambda: [W.guard_loops(grid, bl, p, d) for bl, p, d in cands], check)}

    b.case("sequential", "sequential", sequential)

    def pool_variant(how: str, chunked: bool = False):
        def gen(info):
            with b.pool() as pool:
                handle = None
                if how == "share":
                    handle = arg = pool.share(grid)
                elif how == "memoryview":
                    arg = memoryview(grid)
                else:
                    arg = grid
                try:
                    def run(c):
                        return list(pool.map(W.guard_loops, repeat(arg), blocks, poss, dirs,
                                             chunksize=c))
                    cs = 1
                    if chunked:
                        cs = b.best_chunksize(run, (8, 32, 128), info)
                        info["label"] = f"interpool map, grid via share(), chunksize={cs}"
                    while True:
                        yield {"time": timed(lambda: run(cs), check)}
                finally:
                    if handle is not None:
                        handle.release()
        return gen

    b.case("interpool.map", "interpool map, grid per call (17 KB bytes arg)",
           pool_variant("per-call"))
    b.case("interpool.share", "interpool map, grid via pool.share()", pool_variant("share"))
    b.case("interpool.memoryview", "interpool map, grid as memoryview (zero-copy)",
           pool_variant("memoryview"))
    b.case("interpool.share-chunked", "interpool map, grid via share(), best chunksize",
           pool_variant("share", chunked=True))

    def exec_per_call(kind):
        def gen(info):
            with b.executor(kind) as ex:
                while True:
                    yield {"time": timed(
                        lambda: list(ex.map(W.guard_loops, repeat(grid), blocks, poss, dirs)),
                        check)}
        return gen

    b.case("stdlib-ipe", "stdlib InterpreterPoolExecutor, grid per call",
           exec_per_call("stdlib-ipe"))
    b.case("threads", "ThreadPoolExecutor, grid per call", exec_per_call("threads"))

    def processes(info):
        with b.executor("processes", initializer=W.set_grid, initargs=(grid,)) as ex:
            def run(c):
                return list(ex.map(W.guard_loops_global, blocks, poss, dirs, chunksize=c))
            cs = b.best_chunksize(run, (1, 64) if b.quick else (1, 16, 64, 256), info)
            info["label"] = f"ProcessPoolExecutor, grid via initializer, chunksize={cs}"
            while True:
                yield {"time": timed(lambda: run(cs), check)}

    b.case("processes", "ProcessPoolExecutor, grid via initializer", processes)
    PC.grid(b, grid, blocks, poss, dirs, check)
    b.measure(t)
    seed_grid.seed_table(b)


# --------------------------------------------------------------- 5. payloads


def wl_payload(b: Bench) -> None:
    import pickle

    q = b.quick
    nested = W.make_nested()
    nested_size = len(pickle.dumps(nested, protocol=5))
    cases = [
        # (title, fn, payload size or None for the nested document, ways, calls)
        ("1 KiB bytes, send", W.length, 1024, 1, 500 if q else 10_000),
        ("1 KiB bytes, echo", W.echo, 1024, 2, 500 if q else 10_000),
        ("64 KiB bytes, send", W.length, 64 * 1024, 1, 200 if q else 4_000),
        ("64 KiB bytes, echo", W.echo, 64 * 1024, 2, 200 if q else 4_000),
        ("1 MiB, send", W.length, MB, 1, 30 if q else 1_000),
        (f"nested dict/list (~{nested_size / 1024:.0f} KiB pickled), echo", W.echo, None, 2,
         200 if q else 4_000),
    ]

    for title, fn, size, ways, n in cases:
        value = bytes(range(256)) * (size // 256) if size else nested
        per_call = (size or nested_size) * ways
        # interpool copies a bytes argument into the task when it is queued:
        # map() without buffersize would hold n copies at once (1 GB for 1 MiB
        # x 1,000), so big copied payloads go through a bounded window.
        window = 16 * b.workers if size and size >= 64 * 1024 else None
        windowed = f" (buffersize={window})" if window else ""
        t = Table("payload", f"Payload: {title} — {n:,} calls",
                  [Metric("rate", "calls/s", "calls/s", True),
                   Metric("mbps", "throughput", "MB/s", True)],
                  note=f"`{fn.__name__}(x)`; MB/s counts the payload bytes carried "
                       f"({'both ways' if ways == 2 else 'one way'})")
        expect = size if fn is W.length else value

        def check(result, expect=expect, n=n) -> None:
            if len(result) != n or result[-1] != expect or result[0] != expect:
                raise Failed("wrong results")

        def metrics(seconds, n=n, per_call=per_call) -> dict:
            return {"rate": n / seconds, "mbps": n * per_call / seconds / 1e6}

        def pool_row(arg, window=None, n=n, fn=fn, check=check, metrics=metrics):
            def gen(info):
                with b.pool() as pool:
                    a = arg() if callable(arg) else arg
                    while True:
                        yield metrics(timed(
                            lambda: list(pool.map(fn, repeat(a, n), buffersize=window)), check))
            return gen

        def exec_row(kind, window=None, n=n, fn=fn, value=value, check=check, metrics=metrics):
            def gen(info):
                with b.executor(kind) as ex:
                    kw = {"buffersize": window} if window else {}
                    while True:
                        yield metrics(timed(
                            lambda: list(ex.map(fn, repeat(value, n), **kw)), check))
            return gen

        if size == MB:
            def shared_buffer(value=value):
                import interpool

                sb = interpool.SharedBuffer(MB)
                sb[:] = value
                return sb

            b.case("interpool.zero-copy", "interpool map, 1 MiB bytearray (zero-copy)",
                   pool_row(lambda value=value: bytearray(value)))
            b.case("interpool.zero-copy-mv", "interpool map, 1 MiB memoryview (zero-copy)",
                   pool_row(lambda value=value: memoryview(value)))
            b.case("interpool.sharedbuffer", "interpool map, 1 MiB SharedBuffer",
                   pool_row(shared_buffer))
            b.case("interpool.map", f"interpool map, 1 MiB bytes (copied){windowed}",
                   pool_row(value, window))
            b.case("stdlib-ipe", "stdlib InterpreterPoolExecutor, 1 MiB bytes",
                   exec_row("stdlib-ipe"))
            b.case("threads", "ThreadPoolExecutor, 1 MiB bytes", exec_row("threads"))
            b.case("processes", "ProcessPoolExecutor, 1 MiB bytes", exec_row("processes"))
        else:
            b.case("interpool.map", f"interpool Pool.map{windowed}", pool_row(value, window))
            b.case("interpool.executor", f"interpool.InterpreterPoolExecutor.map{windowed}",
                   exec_row("interpool.executor", window))
            b.case("stdlib-ipe", "stdlib InterpreterPoolExecutor.map", exec_row("stdlib-ipe"))
            b.case("threads", "ThreadPoolExecutor.map", exec_row("threads"))
            b.case("processes", "ProcessPoolExecutor.map", exec_row("processes"))
        PC.payload(b, fn, value, n, window, check, metrics)
        b.measure(t)


# --------------------------------------------------------------- 6. async mix


def wl_async(b: Bench) -> None:
    count = 40 if b.quick else 300
    pages = W.make_pages(count)
    expected = sum(W.count_links(p) for p in pages)
    kb = sum(len(p) for p in pages) / 1024
    t = Table("async",
              f"Async mix: count links in {count} generated HTML pages ({kb:,.0f} KB) "
              "from asyncio",
              [Metric("time", "time", "s", False), Metric("rate", "pages/s", "pages/s", True)],
              note=f"stdlib html.parser; {expected:,} links in all", baseline="stdlib-ipe.async")

    def speedup(table: Table, row: Row) -> str:
        seq = table.row("sequential")
        return fmt_ratio(seq.median("time") / row.median("time"))

    t.derived = [("speedup vs loop thread", speedup)]

    def check(result) -> None:
        if sum(result) != expected:
            raise Failed(f"wrong link count {sum(result)} != {expected}")

    def metrics(seconds) -> dict:
        return {"time": seconds, "rate": count / seconds}

    def sequential(info):
        async def parse_here():
            return [W.count_links(p) for p in pages]

        async def rep():
            return metrics(await atimed(parse_here, check))
        yield from on_loop(None, rep)

    b.case("sequential", "parse on the loop thread", sequential)

    def pool_async(kind):
        def gen(info):
            with b.pool() as pool:
                async def setup():
                    await pool.run(W.identity, 0)

                async def rep():
                    if kind == "await":
                        return metrics(await atimed(lambda: asyncio.gather(
                            *[pool.run(W.count_links, p) for p in pages]), check))

                    async def amap():
                        return [x async for x in pool.amap(W.count_links, pages)]
                    return metrics(await atimed(amap, check))
                yield from on_loop(setup, rep)
        return gen

    b.case("interpool.await", "interpool gather(await pool.run)", pool_async("await"))
    b.case("interpool.amap", "interpool pool.amap", pool_async("amap"))

    def exec_async(kind):
        def gen(info):
            with b.executor(kind) as ex:
                async def rep():
                    loop = asyncio.get_running_loop()
                    return metrics(await atimed(lambda: asyncio.gather(
                        *[loop.run_in_executor(ex, W.count_links, p) for p in pages]), check))
                yield from on_loop(None, rep)
        return gen

    b.case("interpool.executor.async", "interpool.InterpreterPoolExecutor run_in_executor",
           exec_async("interpool.executor"))
    b.case("stdlib-ipe.async", "stdlib InterpreterPoolExecutor run_in_executor",
           exec_async("stdlib-ipe"))
    b.case("threads.async", "ThreadPoolExecutor run_in_executor", exec_async("threads"))
    b.case("processes.async", "ProcessPoolExecutor run_in_executor", exec_async("processes"))

    def anyio_gather(info):
        async def rep(run):
            return metrics(await atimed(
                lambda: asyncio.gather(*[run(W.count_links, p) for p in pages]), check))
        yield from b.anyio_gen(rep)

    b.case("anyio", "anyio.to_interpreter.run_sync (gathered, bounded)", anyio_gather)
    PC.async_mix(b, pages, check, metrics)
    b.measure(t)


def wl_coro(b: Bench) -> None:
    """Coroutines inside the workers: I/O waits and CPU work mixed per task."""
    count = 200 if b.quick else 2_000
    burn = W.calibrate_burn(0.001)  # loop count for ~1 ms of CPU here
    concurrency = 16
    t = Table("coro",
              f"Coroutines: {count:,} tasks of `await asyncio.sleep(0.01)` then ~1 ms of CPU",
              [Metric("time", "time", "s", False), Metric("rate", "tasks/s", "tasks/s", True)],
              note=f"{b.workers} workers; interpool runs {concurrency} coroutines per worker",
              baseline="sequential")

    def speedup(table: Table, row: Row) -> str:
        return fmt_ratio(table.row("sequential").median("time") / row.median("time"))

    t.derived = [("speedup vs one loop", speedup)]

    def check(result) -> None:
        if sorted(result) != list(range(count)):
            raise Failed("wrong results")

    def metrics(seconds) -> dict:
        return {"time": seconds, "rate": count / seconds}

    def one_loop(info):
        async def rep():
            return metrics(await atimed(lambda: asyncio.gather(
                *[W.io_then_cpu(i, burn) for i in range(count)]), check))
        yield from on_loop(None, rep)

    b.case("sequential", "all coroutines on one event loop", one_loop)

    def main_loop_stdlib(info):
        with b.executor("stdlib-ipe") as ex:
            async def task(i):
                await asyncio.sleep(0.01)
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(ex, W.cpu_burn, burn)
                return i

            async def setup():
                await asyncio.get_running_loop().run_in_executor(ex, W.cpu_burn, 1)

            async def rep():
                return metrics(await atimed(lambda: asyncio.gather(
                    *[task(i) for i in range(count)]), check))
            yield from on_loop(setup, rep)

    b.case("stdlib-ipe.async", "coroutines on the main loop, CPU in stdlib InterpreterPoolExecutor",
           main_loop_stdlib)

    def pool_coro(info):
        import interpool

        with interpool.Pool(b.workers, concurrency=concurrency) as pool:
            async def setup():
                await pool.run(W.io_then_cpu, 0, 1)

            async def rep():
                return metrics(await atimed(lambda: asyncio.gather(
                    *[pool.run(W.io_then_cpu, i, burn) for i in range(count)]), check))
            yield from on_loop(setup, rep)

    b.case("interpool.coro", f"interpool Pool(concurrency={concurrency}): coroutines in the workers",
           pool_coro)
    PC.coro(b, count, burn, concurrency, check, metrics)
    b.measure(t)


# --------------------------------------------------------------- targets


def evaluate_targets(b: Bench) -> list[Target]:
    tables = {tb.workload + ":" + tb.title: tb for tb in b.tables}

    def table(workload: str, startswith: str = "") -> Table | None:
        for name, tb in tables.items():
            if name.startswith(workload + ":" + startswith):
                return tb
        return None

    def med(tb: Table | None, key: str, metric: str) -> float | None:
        r = tb.row(key) if tb else None
        return r.median(metric) if r else None

    out: list[Target] = []

    def add(name: str, value: float | None, goal: float, measured: str, *, at_most=False):
        if value is None:
            out.append(Target(name, None, "not measured in this run"))
        else:
            ok = value <= goal if at_most else value >= goal
            out.append(Target(name, ok, measured))

    tiny = table("tiny")
    ipe = med(tiny, "stdlib-ipe", "rate")
    ipe_async = med(tiny, "stdlib-ipe.async", "rate")
    cs1 = med(tiny, "interpool.map", "rate")
    best = med(tiny, "interpool.map-chunked", "rate")
    best_row = tiny.row("interpool.map-chunked") if tiny else None
    ppe = max(filter(None, [med(tiny, "processes", "rate"), med(tiny, "processes-chunked", "rate")]),
              default=None)
    best_map = max(filter(None, [cs1, best]), default=None)
    if best_map and ipe:
        detail = f"{best_map / ipe:.0f}x ({fmt(best_map, 'calls/s')} vs {fmt(ipe, 'calls/s')}"
        if best_row:
            detail += f"; best chunksize={best_row.info.get('chunksize')}"
        if cs1:
            detail += f"; chunksize=1: {cs1 / ipe:.0f}x"
        add("tiny tasks via map >= 100x stdlib IPE", best_map / ipe, 100, detail + ")")
    else:
        add("tiny tasks via map >= 100x stdlib IPE", None, 100, "")
    if best_map and ppe:
        add("tiny tasks via map >= 2x ProcessPoolExecutor at its best chunksize",
            best_map / ppe, 2,
            f"{best_map / ppe:.2f}x ({fmt(best_map, 'calls/s')} vs {fmt(ppe, 'calls/s')})")
    else:
        add("tiny tasks via map >= 2x ProcessPoolExecutor at its best chunksize", None, 2, "")
    for how in ("map", "submit"):
        name = f"per-call cost of a __main__ function via {how} <= 1.2x a module-level one's"
        by_ref, by_value = med(tiny, f"interpool.{how}", "rate"), med(tiny, f"interpool.{how}.main", "rate")
        if by_ref and by_value:
            add(name, by_ref / by_value, 1.2,
                f"{by_ref / by_value:.2f}x ({fmt(by_value, 'calls/s')} vs {fmt(by_ref, 'calls/s')})",
                at_most=True)
        else:
            add(name, None, 1.2, "")
    gathered = med(tiny, "interpool.await", "rate")
    if gathered and ipe_async:
        add("gathered awaits >= 20x stdlib IPE via run_in_executor", gathered / ipe_async, 20,
            f"{gathered / ipe_async:.1f}x ({fmt(gathered, 'calls/s')} vs "
            f"{fmt(ipe_async, 'calls/s')})")
    else:
        add("gathered awaits >= 20x stdlib IPE via run_in_executor", None, 20, "")

    lat = table("latency")
    a, sa = med(lat, "interpool.await", "p50"), med(lat, "stdlib-ipe.async", "p50")
    s, ss = med(lat, "interpool.submit", "p50"), med(lat, "stdlib-ipe", "p50")
    if a and sa:
        sync = (f"; sync submit().result(): {fmt(s, 'us')} vs {fmt(ss, 'us')} = {s / ss:.2f}"
                if s and ss else "")
        add("round-trip p50 (await) <= 1/5 of stdlib IPE's", a / sa, 0.2,
            f"{fmt(a, 'us')} vs {fmt(sa, 'us')} = {a / sa:.2f} of stdlib's{sync}", at_most=True)
    else:
        add("round-trip p50 (await) <= 1/5 of stdlib IPE's", None, 0.2, "")

    grid = table("grid", "CPU-bound grid")
    seq = med(grid, "sequential", "time")
    w = b.workers
    scale = w / 2  # the targets are stated for 2 workers: keep the same efficiency
    goal_best, goal_each = 1.85 * scale, 1.8 * scale
    sh, mv = med(grid, "interpool.share", "time"), med(grid, "interpool.memoryview", "time")
    shc = med(grid, "interpool.share-chunked", "time")
    variants = {"share()": sh, "memoryview": mv}
    shc_row = grid.row("interpool.share-chunked") if grid else None
    if shc and shc_row:
        variants[f"share() + chunksize={shc_row.info.get('chunksize')}"] = shc
    variants = {k: v for k, v in variants.items() if v}
    best_name = min(variants, key=variants.get) if variants else ""
    shared_best = variants.get(best_name)
    if seq and shared_best:
        add(f"grid, shared: >= {goal_best:.2f}x over sequential with {w} workers",
            seq / shared_best, goal_best,
            f"{seq / shared_best:.3f}x (best shared-grid variant: {best_name}; chunksize=1: "
            f"share() {seq / sh if sh else float('nan'):.2f}x, "
            f"memoryview {seq / mv if mv else float('nan'):.2f}x)")
    else:
        add(f"grid, shared: >= {goal_best:.2f}x over sequential", None, goal_best, "")
    for key, what in (("interpool.share", "share()"), ("interpool.memoryview", "memoryview")):
        v = med(grid, key, "time")
        if seq and v:
            add(f"grid via {what} >= {goal_each:.2f}x over sequential", seq / v, goal_each,
                f"{seq / v:.3f}x ({fmt(v, 's')} vs sequential {fmt(seq, 's')}, chunksize=1)")
        else:
            add(f"grid via {what} >= {goal_each:.2f}x over sequential", None, goal_each, "")

    st = table("startup")
    ready, bare = med(st, "interpool", "ready"), med(st, "bare-interpreter", "create")
    ready1 = med(st, "interpool", "ready1")
    if ready and bare:
        one = f"; Pool(1) ready: {fmt(ready1, 'ms')}" if ready1 else ""
        add(f"ready pool of {w} workers <= 1.5x the time to create one interpreter",
            ready / bare, 1.5,
            f"{ready / bare:.2f}x ({fmt(ready, 'ms')} vs {fmt(bare, 'ms')} for create+close{one})",
            at_most=True)
    else:
        add(f"ready pool of {w} workers <= 1.5x one interpreter", None, 1.5, "")

    mib = table("payload", "Payload: 1 MiB")
    zc, ref = med(mib, "interpool.zero-copy", "rate"), med(mib, "stdlib-ipe", "rate")
    if zc and ref:
        add("1 MiB buffer round trips (zero-copy) >= 50x stdlib IPE with 1 MiB bytes",
            zc / ref, 50,
            f"{zc / ref:.0f}x ({fmt(zc, 'calls/s')} vs {fmt(ref, 'calls/s')})")
    else:
        add("1 MiB zero-copy >= 50x stdlib IPE", None, 50, "")
    serial = table("serial", "Serial costs")
    ref = med(serial, "interpool.map-64", "time")
    for key, what in (("interpool.map", "Pool.map"), ("interpool.await", "gather"),
                      ("interpool.submit", "submit/result"), ("interpool.executor", "drop-in")):
        cpu, wall = med(serial, key, "cpu"), med(serial, key, "time")
        add(f"caller CPU per 200-µs task via {what} <= 5 µs", cpu, 5,
            f"{fmt(cpu, 'us')} ({med(serial, key, 'cs') or 0:.2f} switches/task)" if cpu else "",
            at_most=True)
        add(f"{what} wall <= 1.05x map(chunksize=64)", wall / ref if wall and ref else None,
            1.05, f"{wall / ref:.2f}x" if wall and ref else "", at_most=True)
        # The proxy this machine can show: the caller's CPU net of its
        # wake-ups at the wake-up cost measured in the same run (a streaming
        # caller is woken once per result it waits for; on a VM one wake-up
        # costs more than the whole target).
        # Gathered awaits also pay asyncio's own per-future cost (measured
        # on plain loop futures in the same run): the proxy is interpool's part.
        net, cs = med(serial, key, "net"), med(serial, key, "cs")
        wake = serial_cases.FLOORS.get("wake")
        aio = serial_cases.FLOORS.get("gather", 0.0) if key == "interpool.await" else 0.0
        ours = max(0.0, net - aio) if net is not None and wake is not None else None
        add(f"proxy: caller CPU per task via {what}, net of its wake-ups"
            + (" and of asyncio's own cost" if aio else "") + ", <= 5 µs", ours, 5,
            f"{fmt(ours, 'us')} ({fmt(cpu, 'us')} - {cs or 0:.2f} wake-ups x {fmt(wake, 'us')}"
            + (f" - asyncio {fmt(aio, 'us')}" if aio else "") + ")"
            if ours is not None else "", at_most=True)
    seed = table("grid", "The seed's comparison")
    best_ppe = med(seed, "processes.init", "time")
    ppe_row = seed.row("processes.init") if seed else None
    seed_design = med(seed, "seed-design", "time")
    for key, what in (("interpool.map", "Pool.map"), ("interpool.await", "gather"),
                      ("interpool.executor", "drop-in")):
        v = med(seed, key, "time")
        cs = ppe_row.info.get("chunksize") if ppe_row else None
        add(f"seed grid per call via {what} >= ProcessPoolExecutor+initializer at its best "
            "chunksize", best_ppe / v if v and best_ppe else None, 1,
            f"{best_ppe / v:.2f}x ({fmt(v, 's')} vs {fmt(best_ppe, 's')}, chunksize={cs})"
            if v and best_ppe else "")
        add(f"seed grid per call via {what} >= the seed's design (prepare_main)",
            seed_design / v if v and seed_design else None, 1,
            f"{seed_design / v:.2f}x ({fmt(v, 's')} vs {fmt(seed_design, 's')})"
            if v and seed_design else "")
    flakes = table("pyflakes")
    ppe = med(flakes, "processes", "time")
    for key, what in (("interpool.map", "Pool.map"), ("interpool.await", "gather"),
                      ("interpool.submit", "submit/result"), ("interpool.amap", "amap"),
                      ("interpool.executor", "drop-in")):
        v = med(flakes, key, "time")
        add(f"pyflakes over the stdlib via {what} >= ProcessPoolExecutor at its best chunksize",
            ppe / v if v and ppe else None, 1,
            f"{ppe / v:.2f}x ({fmt(v, 's')} vs {fmt(ppe, 's')})" if v and ppe else "")
    coro = table("coro")
    one_loop, in_workers = med(coro, "sequential", "time"), med(coro, "interpool.coro", "time")
    if one_loop and in_workers:
        add("coroutines in workers (2 workers, concurrency 16) well under one loop's time",
            one_loop / in_workers, 1.5,
            f"{one_loop / in_workers:.2f}x faster ({in_workers:.2f} s vs {one_loop:.2f} s on one loop)")
    else:
        add("coroutines in workers well under one loop's time", None, 1.5, "")
    return out


# --------------------------------------------------------------- main


def machine_info() -> dict:
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import interpool

        version = interpool.__version__
    except Exception as exc:
        version = f"unavailable ({exc})"
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "process_cpu_count": cpu_count(),
        "cpu_model": model or "unknown",
        "python": sys.version.replace("\n", " "),
        "python_short": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "interpool": version,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="interpool benchmark suite")
    p.add_argument("--quick", action="store_true",
                   help="small sizes, 1 repetition: every workload and system, briefly")
    p.add_argument("--workers", default=None,
                   help="workers per pool/executor (default: os.process_cpu_count()); a "
                        "comma-separated list (e.g. 1,2,4,8,16) is the scaling workload's "
                        "sweep (default: powers of two up to the CPUs, the CPU count and "
                        "twice it), the others then use its largest count within the CPUs")
    p.add_argument("--repeat", type=int, default=None,
                   help="repetitions per figure (default 5; 1 with --quick)")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma-separated, of: {','.join(WORKLOADS)}")
    p.add_argument("--systems", default=None,
                   help=f"comma-separated families or row keys, of: {','.join(FAMILIES)} "
                        "(default: all)")
    p.add_argument("--out", default="bench-results", help="output directory")
    p.add_argument("--timeout", type=float, default=None,
                   help="dump every thread's traceback and exit 1 after this many seconds "
                        "(default: 300 with --quick, 1800 otherwise)")
    p.add_argument("--progress", choices=("auto", "tty", "lines", "off"), default="auto",
                   help="a line on stderr saying which workload, system and repetition runs: "
                        "redrawn in place on a terminal, plain lines otherwise (auto; off for "
                        "--quick when stderr is not a terminal)")
    p.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cpus = cpu_count()
    try:
        counts = [int(w) for w in args.workers.split(",")] if args.workers else []
    except ValueError:
        p.error("--workers takes a number or a comma-separated list of numbers")
    if any(w < 1 for w in counts):
        p.error("--workers must be >= 1")
    if not counts:
        args.workers, args.sweep = cpus, scaling_cases.default_sweep(cpus)
    elif len(counts) == 1:
        args.workers, args.sweep = counts[0], sorted({1, counts[0]})
    else:
        args.sweep = sorted(set(counts))
        args.workers = max([w for w in args.sweep if w <= cpus] or args.sweep[:1])
    if args.repeat is None:
        args.repeat = 1 if args.quick else 5
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in args.workloads if w not in WORKLOADS]
    if bad:
        p.error(f"unknown workload(s) {', '.join(bad)}; choose from {', '.join(WORKLOADS)}")
    if args.systems is not None:
        args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.probe:
        import peers

        peers.activate()
        print(json.dumps(probe(args.probe, args.workers, args.quick)))
        return 0

    # A hang (in a pool, an executor, or at interpreter exit) must fail CI,
    # not stall it: the watchdog stays armed through exit on purpose.
    timeout = args.timeout or (300.0 if args.quick else 1800.0)
    faulthandler.dump_traceback_later(timeout, exit=True)

    b = Bench(args)
    machine = machine_info()
    command = "tools/python benchmarks/run.py" + "".join(" " + shlex.quote(a) for a in argv)
    config = {
        "command": command,
        "argv": argv,
        "workers": b.workers,
        "sweep": b.sweep,
        "repeat": b.repeat,
        "quick": b.quick,
        "workloads": args.workloads,
        "systems": args.systems or "all",
        "loadavg_before": loadavg(),
    }
    print(f"interpool benchmarks — {machine['date']}")
    print(f"  {machine['cpu_count']} cores ({machine['cpu_model']}), Python "
          f"{machine['python_short']}, interpool {machine['interpool']}")
    print(f"  workers={b.workers} repeat={b.repeat}{' quick' if b.quick else ''}; "
          f"output in {args.out}/")

    # Peers that cannot run here: say so once.
    if StdlibIPE is None and b.selected("stdlib-ipe"):
        b.event("skip", "stdlib-ipe", "concurrent.futures.InterpreterPoolExecutor is missing "
                "(Python < 3.14): no ratios against it")
    if b.anyio is None and b.selected("anyio"):
        b.event("skip", "anyio", f"anyio.to_interpreter {b.anyio_missing}")
    if b.quick:
        print("  peers (aiointerpreters, aiomultiprocess, pebble, loky): not loaded with "
              "--quick (full `make bench` only)")
    elif any(b.selected(p) for p in PEERS):
        where = b.load_peers()
        found = ", ".join(f"{k} {v}" for k, v in b.peer_versions.items() if v)
        if found:
            print(f"  peers: {found} (from {where})")
        for name, why in b.peers_missing.items():
            if b.selected(name):
                b.event("skip", name, why)
    machine["peers"] = {k: v for k, v in b.peer_versions.items() if v and k in b.peers}

    busy = loadavg()
    if busy is not None and busy > 0.5 * (os.cpu_count() or 1):
        print(f"  note: load average {busy:.2f} on {os.cpu_count()} cores before starting: "
              "other work is running, parallel figures will be noisy")
    runners = {"tiny": wl_tiny, "latency": wl_latency, "startup": wl_startup,
               "grid": wl_grid, "payload": wl_payload, "async": wl_async, "coro": wl_coro,
               "control": CC.wl_control, "stream": SC.wl_stream,
               "scaling": scaling_cases.wl_scaling, "serial": serial_cases.wl_serial,
               "pyflakes": pyflakes_cases.wl_pyflakes, "mixed": MC.wl_mixed}
    t_start = time.perf_counter()
    for name in args.workloads:
        print(f"\n[{name}]", flush=True)
        before = len(b.tables)
        t0 = time.perf_counter()
        try:
            runners[name](b)
        except Exception as exc:
            b._cases.clear()  # cases added before the failure: never measured
            b.interpool_failed = True
            detail = "".join(traceback.format_exception_only(exc)).strip()
            b.event("error", "workload", detail, name)
            traceback.print_exc(file=sys.stdout)
        for tb in b.tables[before:]:
            print(render_text(tb), flush=True)
        elapsed = time.perf_counter() - t0
        load = loadavg()
        # (includes this benchmark's own workers: informational, JSON only)
        config.setdefault("loadavg_after", {})[name] = load
        print(f"  [{name}: {elapsed:.1f}s]", flush=True)

    targets = evaluate_targets(b)
    print("\n== Targets (informational; from this run) ==")
    for tg in targets:
        print(tg.line())

    config["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    ensure_dir(args.out)
    status = 0
    try:
        write_json(os.path.join(args.out, "results.json"), machine, config, b.tables,
                   targets, b.events)
        write_markdown(os.path.join(args.out, "results.md"), machine, config, b.tables,
                       targets, b.events)
        reason = write_chart(os.path.join(args.out, "chart.png"), b.tables, machine, b.workers)
        if reason:
            print(f"  chart skipped: {reason}")
        reason = write_scaling_chart(os.path.join(args.out, "scaling.png"), b.tables, machine,
                                     b.sweep)
        if reason:
            print(f"  scaling chart skipped: {reason}")
    except Exception:
        traceback.print_exc(file=sys.stdout)
        status = 1
    print(f"\nwrote {args.out}/results.json, results.md, chart.png, scaling.png "
          f"in {config['elapsed_s']:.0f}s")
    if b.interpool_failed:
        print("FAILED: interpool itself failed (see the ERROR lines above)")
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
