"""The third-party peers' rows, one function per workload.

Each function adds the cases of aiointerpreters (the seed: its ``Runner``,
and its ``InterpreterThreadPoolExecutor`` + ``interpreter(fn)``),
aiomultiprocess (``Pool``, coroutines in child processes), pebble
(``ProcessPool``) and loky (``get_reusable_executor``) to the table that the
workload in run.py is building, with the same task, inputs and check, used
as each author documents.  A peer that cannot run a workload says why, on a
line of its own.  Peers that are not installed (``tools/peers``) or not
selected add nothing: ``b.case`` drops them.
"""

from __future__ import annotations

import asyncio
import gc
import time
from itertools import repeat

import workloads as W
from harness import MB, atimed, bounded_gather, child_pids, children_uss, on_loop, rss_bytes, timed

SEED = "aiointerpreters"
NO_CORO = "its workers run sync functions only (no event loop in the worker)"


def _seed(b):
    return b.peers[SEED]


# --------------------------------------------------------------- 1. tiny tasks


def tiny(b, items, check, rate) -> None:
    def runner(info):
        async def rep(r):
            return rate(await atimed(
                lambda: asyncio.gather(*[r.run(W.identity, i) for i in items]), check))
        yield from b.seed_runner_gen(rep)

    b.case("aiointerpreters.runner", "aiointerpreters Runner: gather(runner.run)", runner,
           baseline="stdlib-ipe.async")

    def itpe(info):
        fn = _seed(b).interpreter(W.identity)
        with b.itpe() as ex:
            while True:
                yield rate(timed(lambda: list(ex.map(fn, items)), check))

    b.case("aiointerpreters.itpe", "aiointerpreters InterpreterThreadPoolExecutor.map"
           "(interpreter(fn))", itpe)

    def amp(info):
        async def rep(pool):
            return rate(await atimed(lambda: pool.map(W.aidentity, list(items)), check))
        yield from b.aiomp_gen(rep)

    b.case("aiomultiprocess", "aiomultiprocess Pool.map (async twin of identity)", amp,
           baseline="stdlib-ipe.async")

    def pebble_schedule(info):
        with b.peer_pool("pebble") as pool:
            while True:
                yield rate(timed(lambda: [f.result() for f in
                                          [pool.schedule(W.identity, args=(i,)) for i in items]],
                                 check))

    def pebble_map(info):
        with b.peer_pool("pebble") as pool:
            def run(c):
                return list(pool.map(W.identity, items, chunksize=c).result())
            cs = b.best_chunksize(run, b.chunk_candidates, info)
            info["label"] = f"pebble ProcessPool.map (best chunksize={cs})"
            while True:
                yield rate(timed(lambda: run(cs), check))

    b.case("pebble.schedule", "pebble ProcessPool.schedule + result()", pebble_schedule)
    b.case("pebble.map-chunked", "pebble ProcessPool.map (best chunksize)", pebble_map)

    def loky_map(chunked: bool):
        def gen(info):
            with b.peer_pool("loky") as ex:
                cs = 1
                if chunked:
                    cs = b.best_chunksize(
                        lambda c: list(ex.map(W.identity, items, chunksize=c)),
                        b.chunk_candidates, info)
                    info["label"] = f"loky executor .map (best chunksize={cs})"
                while True:
                    yield rate(timed(lambda: list(ex.map(W.identity, items, chunksize=cs)),
                                     check))
        return gen

    b.case("loky", "loky executor .map (chunksize=1)", loky_map(False))
    b.case("loky-chunked", "loky executor .map (best chunksize)", loky_map(True))


# --------------------------------------------------------------- 2. latency


def latency(b, sync_samples, async_samples, n: int) -> None:
    # The Runner's queues and aiomultiprocess's result loop poll (10 ms and
    # 5 ms sleeps): fewer calls keep their rows to seconds.
    few = min(n, 200)

    def runner(info):
        async def rep(r):
            return await async_samples(lambda i: r.run(W.identity, i), few)
        yield from b.seed_runner_gen(rep)

    b.case("aiointerpreters.runner", f"aiointerpreters Runner: await runner.run() ({few} calls)",
           runner, baseline="stdlib-ipe.async")

    def itpe(info):
        fn = _seed(b).interpreter(W.identity)
        with b.itpe() as ex:
            while True:
                yield sync_samples(lambda i: ex.submit(fn, i).result())

    b.case("aiointerpreters.itpe",
           "aiointerpreters InterpreterThreadPoolExecutor submit(interpreter(fn)).result()", itpe)

    def amp(info):
        async def rep(pool):
            return await async_samples(lambda i: pool.apply(W.aidentity, (i,)), few)
        yield from b.aiomp_gen(rep)

    b.case("aiomultiprocess", f"aiomultiprocess await pool.apply() ({few} calls)", amp,
           baseline="stdlib-ipe.async")

    def pebble(info):
        with b.peer_pool("pebble") as pool:
            while True:
                yield sync_samples(lambda i: pool.schedule(W.identity, args=(i,)).result())

    b.case("pebble", "pebble ProcessPool.schedule().result()", pebble)

    def loky(info):
        with b.peer_pool("loky") as ex:
            while True:
                yield sync_samples(lambda i: ex.submit(W.identity, i).result())

    b.case("loky", "loky executor submit().result()", loky)


# --------------------------------------------------------------- 3. start-up

PROBE_LABELS = {
    "aiointerpreters.runner": "aiointerpreters Runner(workers=n).start()",
    "aiointerpreters.itpe": "aiointerpreters InterpreterThreadPoolExecutor(n)",
    "aiomultiprocess": "aiomultiprocess Pool(n) (fresh loop)",
    "pebble": "pebble ProcessPool(n)",
    "loky": "loky get_reusable_executor(n)",
}


def probe(kind: str, n: int) -> dict:
    """One start-up measurement of a peer, in a fresh process (run.py --probe).

    "first": constructor to the first result of a trivial task; "mem": per
    worker, the RSS delta for interpreters and the USS of the child
    processes for process pools (helper processes included)."""
    from harness import load_peer

    name = kind.split(".")[0]
    peer, missing = load_peer(name)
    if peer is None:
        raise RuntimeError(missing)
    clock = time.perf_counter
    out: dict = {}
    gc.collect()
    if kind == "aiointerpreters.runner":
        async def go():
            rss0 = rss_bytes()
            t0 = clock()
            with peer.Runner(workers=n).start() as runner:
                await runner.run(W.identity, 1)
                out["first"] = (clock() - t0) * 1e3
                await asyncio.gather(*(runner.run(W.hold, 0.05) for _ in range(2 * n)))
                out["mem"] = (rss_bytes() - rss0) / MB / n
                t0 = clock()
            out["shutdown"] = (clock() - t0) * 1e3
        asyncio.run(go())
    elif kind == "aiointerpreters.itpe":
        rss0 = rss_bytes()
        t0 = clock()
        ex = peer.ITPE(n)
        ex.submit(peer.interpreter(W.identity), 1).result()
        out["first"] = (clock() - t0) * 1e3
        for f in [ex.submit(peer.interpreter(W.hold), 0.05) for _ in range(2 * n)]:
            f.result()
        out["mem"] = (rss_bytes() - rss0) / MB / n
        t0 = clock()
        ex.shutdown(wait=True)
        out["shutdown"] = (clock() - t0) * 1e3
    elif kind == "aiomultiprocess":
        async def go():
            before = child_pids()
            t0 = clock()
            pool = peer.Pool(processes=n)
            await pool.apply(W.aidentity, (1,))
            out["first"] = (clock() - t0) * 1e3
            await pool.map(W.ahold, [0.05] * (2 * n))
            mem, _ = children_uss(before)
            out["mem"] = mem / n
            t0 = clock()
            pool.close()
            await pool.join()
            out["shutdown"] = (clock() - t0) * 1e3
        asyncio.run(go())
    elif kind in ("pebble", "loky"):
        before = child_pids()
        t0 = clock()
        if kind == "pebble":
            ex = peer.ProcessPool(max_workers=n)
            ex.schedule(W.identity, args=(1,)).result()
        else:
            ex = peer.get_reusable_executor(max_workers=n)
            ex.submit(W.identity, 1).result()
        out["first"] = (clock() - t0) * 1e3
        if kind == "pebble":
            for f in [ex.schedule(W.hold, args=(0.05,)) for _ in range(2 * n)]:
                f.result()
        else:
            for f in [ex.submit(W.hold, 0.05) for _ in range(2 * n)]:
                f.result()
        mem, _ = children_uss(before)
        out["mem"] = mem / n
        out["mem_kind"] = "USS of the child processes / workers"
        t0 = clock()
        if kind == "pebble":
            ex.close()
            ex.join()
        else:
            ex.shutdown(wait=True)
        out["shutdown"] = (clock() - t0) * 1e3
    else:
        raise ValueError(f"unknown peer probe {kind!r}")
    return out


def startup(b, probes) -> None:
    """probes(kind) is run.py's repetition generator of fresh-process probes."""
    for key, label in PROBE_LABELS.items():
        b.case(key, label, probes(key))


# --------------------------------------------------------------- 4. the grid


def grid(b, grid_bytes, blocks, poss, dirs, check) -> None:
    """The bytes grid: per call where the peer has no initializer, else bound once."""
    cands = list(zip(blocks, poss, dirs))

    def runner(arg):
        def gen(info):
            async def rep(r):
                a = arg()
                return {"time": await atimed(lambda: asyncio.gather(
                    *[r.run(W.guard_loops, a, bl, p, d) for bl, p, d in cands]), check)}
            yield from b.seed_runner_gen(rep)
        return gen

    b.case("aiointerpreters.runner", "aiointerpreters Runner, grid per call (bytes)",
           runner(lambda: grid_bytes))
    b.case("aiointerpreters.runner-mv", "aiointerpreters Runner, grid as memoryview (shared)",
           runner(lambda: memoryview(grid_bytes)))

    def itpe(info):
        fn = _seed(b).interpreter(W.guard_loops_global)
        with b.itpe(initializer=W.set_grid, initargs=(grid_bytes,)) as ex:
            while True:
                yield {"time": timed(lambda: list(ex.map(fn, blocks, poss, dirs)), check)}

    b.case("aiointerpreters.itpe",
           "aiointerpreters InterpreterThreadPoolExecutor, grid via initializer", itpe)

    def amp(info):
        async def rep(pool):
            return {"time": await atimed(lambda: pool.starmap(W.aguard_loops_global, cands),
                                         check)}
        yield from b.aiomp_gen(rep, initializer=W.set_grid, initargs=(grid_bytes,))

    b.case("aiomultiprocess", "aiomultiprocess Pool.starmap, grid via initializer", amp)

    def process_pool(kind: str, label: str):
        def gen(info):
            with b.peer_pool(kind, initializer=W.set_grid, initargs=(grid_bytes,)) as ex:
                def run(c):
                    out = ex.map(W.guard_loops_global, blocks, poss, dirs, chunksize=c)
                    return list(out.result() if kind == "pebble" else out)
                cs = b.best_chunksize(run, (1, 64) if b.quick else (1, 16, 64, 256), info)
                info["label"] = f"{label}, chunksize={cs}"
                while True:
                    yield {"time": timed(lambda: run(cs), check)}
        return gen

    b.case("pebble", "pebble ProcessPool.map, grid via initializer",
           process_pool("pebble", "pebble ProcessPool.map, grid via initializer"))
    b.case("loky", "loky executor .map, grid via initializer",
           process_pool("loky", "loky executor .map, grid via initializer"))


# --------------------------------------------------------------- 5. payloads


def payload(b, fn, value, n: int, window: int | None, check, metrics) -> None:
    """One payload table: fn(value), a quarter of the table's calls (the
    rates compare; the run stays minutes shorter).  With a window, big
    copied payloads are never all in flight at once (as for interpool)."""
    afn = {W.length: W.alength, W.echo: W.aecho}[fn]
    k = max(50, n // 4)
    calls = f"{k:,} calls"
    win = window or 16 * b.workers
    note = f", at most {win} in flight" if window else ""

    def checked(result):
        return check(result, n=k)

    def rate(seconds):
        return metrics(seconds, n=k)

    def runner(info):
        async def rep(r):
            return rate(await atimed(lambda: bounded_gather(
                (lambda: r.run(fn, value) for _ in range(k)), win), checked))
        yield from b.seed_runner_gen(rep)

    b.case("aiointerpreters.runner", f"aiointerpreters Runner: runner.run ({calls}{note})",
           runner)

    def itpe(info):
        ifn = _seed(b).interpreter(fn)
        with b.itpe() as ex:
            kw = {"buffersize": window} if window else {}
            while True:
                yield rate(timed(lambda: list(ex.map(ifn, repeat(value, k), **kw)), checked))

    buffered = f", buffersize={window}" if window else ""
    b.case("aiointerpreters.itpe", "aiointerpreters InterpreterThreadPoolExecutor.map"
           f"(interpreter(fn)) ({calls}{buffered})", itpe)

    def amp(info):
        async def rep(pool):
            if window:
                return rate(await atimed(lambda: bounded_gather(
                    (lambda: pool.apply(afn, (value,)) for _ in range(k)), win), checked))
            return rate(await atimed(lambda: pool.map(afn, [value] * k), checked))
        yield from b.aiomp_gen(rep)

    b.case("aiomultiprocess", "aiomultiprocess " + (f"pool.apply ({calls}{note})" if window
                                                     else f"Pool.map ({calls})"), amp)

    def pebble(info):
        with b.peer_pool("pebble") as pool:
            while True:
                yield rate(timed(lambda: list(pool.map(fn, repeat(value, k)).result()),
                                 checked))

    def loky(info):
        with b.peer_pool("loky") as ex:
            while True:
                yield rate(timed(lambda: list(ex.map(fn, repeat(value, k))), checked))

    b.case("pebble", f"pebble ProcessPool.map ({calls})", pebble)
    b.case("loky", f"loky executor .map ({calls})", loky)


# --------------------------------------------------------------- 6. async mix


def async_mix(b, pages, check, metrics) -> None:
    def runner(info):
        async def rep(r):
            return metrics(await atimed(lambda: asyncio.gather(
                *[r.run(W.count_links, p) for p in pages]), check))
        yield from b.seed_runner_gen(rep)

    b.case("aiointerpreters.runner", "aiointerpreters Runner: gather(runner.run)", runner)

    def itpe(info):
        fn = _seed(b).interpreter(W.count_links)
        with b.itpe() as ex:
            async def setup():
                ex.set_as_event_loop_default()

            async def rep():
                return metrics(await atimed(lambda: asyncio.gather(
                    *[asyncio.to_thread(fn, p) for p in pages]), check))
            yield from on_loop(setup, rep)

    b.case("aiointerpreters.itpe", "aiointerpreters ITPE as loop default: "
           "asyncio.to_thread(interpreter(fn))", itpe)

    def amp(info):
        async def rep(pool):
            return metrics(await atimed(lambda: pool.map(W.acount_links, pages), check))
        yield from b.aiomp_gen(rep)

    b.case("aiomultiprocess", "aiomultiprocess Pool.map (async twin of count_links)", amp)

    def pebble(info):
        with b.peer_pool("pebble") as pool:
            async def rep():
                return metrics(await atimed(lambda: asyncio.gather(
                    *[asyncio.wrap_future(pool.schedule(W.count_links, args=(p,)))
                      for p in pages]), check))
            yield from on_loop(None, rep)

    b.case("pebble", "pebble ProcessPool.schedule, wrap_future gathered", pebble)

    def loky(info):
        with b.peer_pool("loky") as ex:
            async def rep():
                loop = asyncio.get_running_loop()
                return metrics(await atimed(lambda: asyncio.gather(
                    *[loop.run_in_executor(ex, W.count_links, p) for p in pages]), check))
            yield from on_loop(None, rep)

    b.case("loky", "loky executor run_in_executor", loky)


# --------------------------------------------------------------- 7. coroutines


def coro(b, count: int, burn: int, concurrency: int, check, metrics) -> None:
    def amp(info):
        async def rep(pool):
            return metrics(await atimed(lambda: pool.starmap(
                W.io_then_cpu, [(i, burn) for i in range(count)]), check))
        yield from b.aiomp_gen(rep, childconcurrency=concurrency)

    b.case("aiomultiprocess", f"aiomultiprocess Pool(childconcurrency={concurrency}): "
           "coroutines in child processes", amp)
    b.peer_cannot(SEED, "coro", f"Runner and InterpreterThreadPoolExecutor: {NO_CORO}")
    b.peer_cannot("pebble", "coro", f"ProcessPool: {NO_CORO}")
    b.peer_cannot("loky", "coro", f"executor: {NO_CORO}")
