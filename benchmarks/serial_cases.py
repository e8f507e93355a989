"""Serial costs: what one caller thread and one task queue pay per task.

On a machine with many cores these cap the throughput whatever the number
of workers: one caller thread submits, wakes, decodes and resolves every
task, and every worker takes its tasks from one queue behind one lock.
Measured as CPU and counts, which other load on the machine hardly moves:

- caller CPU per task: ``time.thread_time()`` of the calling thread (for
  asyncio rows the loop's thread) over a run, divided by the tasks;
- caller context switches per task (voluntary + involuntary, from
  /proc/self/task/<tid>/status): each sleep that ended is one wake-up;
- the queue lock's hold time per operation (enqueue a batch, take a task)
  and how often an operation found it held, timed in the C core while the
  run lasts (``_core._lock_stats``).

"Workers one caller feeds" is the task time divided by the caller's CPU
per task: past that many workers the caller thread is the bottleneck.

Three floors no front door can go under, measured in the same run:

- what one wake-up costs the thread woken, on this machine:
  ``_core._wake_cost`` times it in C, with no interpool and no Python
  around it (a thread sleeping on a condition variable, signalled every
  ~200 µs by a thread that spins meanwhile).  With a core spare it is the
  cost of the sleep and the wake-up alone; with every core busy (as many
  spinning threads as workers) the woken thread also preempts one.
  "Net of wake-ups" subtracts switches per task times the every-core-busy
  figure from the caller's CPU, the floor measured as the workload runs
  (every worker busy, the woken caller preempting one): an estimate of
  interpool's own bookkeeping per task, the part a machine with cheaper
  wake-ups keeps (both figures are printed; the probe is as noisy as the
  machine);
- what asyncio itself costs per gathered future: ``asyncio.gather`` over
  plain loop futures, each set by a loop callback;
- what an event loop woken for each result costs it while 2 workers are busy:
  a worker writes an eventfd per result, the loop's reader callback sets
  a future its consumer awaits (amap streams, and is woken so).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import workloads as W
from bench_report import Metric, Row, Table, fmt_ratio
from harness import Failed, StdlibIPE

TASK_US = 200
# The floors the last wl_serial measured, for the targets (µs): "wake" (one
# wake-up, every worker busy) and "gather" (asyncio's own cost per future).
FLOORS: dict[str, float] = {}


def caller_switches() -> int:
    """Voluntary + involuntary context switches of this thread so far."""
    n = 0
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/status") as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    n += int(line.split()[1])
    except OSError:
        return 0
    return n


def measured(run, n: int, check, wake_us: float = 0.0) -> dict:
    """One run: wall time, and the calling thread's CPU and context switches
    per task (and the CPU net of `wake_us` per switch)."""
    import gc

    gc.collect()
    s0, c0, t0 = caller_switches(), time.thread_time(), time.perf_counter()
    result = run()
    t1, c1, s1 = time.perf_counter(), time.thread_time(), caller_switches()
    check(result)
    cpu, cs = (c1 - c0) / n * 1e6, (s1 - s0) / n
    return {"cpu": cpu, "cs": cs, "net": max(0.0, cpu - cs * wake_us), "time": t1 - t0}


def wake_floor(busy: int, quick: bool) -> float | None:
    """µs of CPU one sleep and wake-up costs the sleeper here, with `busy`
    threads spinning (median of 3; None if the core has no probe)."""
    from interpool import _core

    probe = getattr(_core, "_wake_cost", None)
    if probe is None:
        return None
    runs = sorted(probe(300 if quick else 1500, busy, TASK_US / 1e6) for _ in range(3))
    return runs[1] * 1e6


def gather_floor(n: int) -> float:
    """µs of the loop thread's CPU per future that asyncio.gather costs by
    itself: n plain loop futures, set from one loop callback (best of 3)."""
    best = float("inf")
    for _ in range(3):
        loop = asyncio.new_event_loop()
        try:
            futures = [loop.create_future() for _ in range(n)]

            def settle() -> None:
                for f in futures:
                    f.set_result(1)

            async def gathered() -> list[int]:
                loop.call_soon(settle)
                return await asyncio.gather(*futures)

            c0 = time.thread_time()
            loop.run_until_complete(gathered())
            best = min(best, (time.thread_time() - c0) / n * 1e6)
        finally:
            loop.close()
    return best


def stream_floor(pool, n: int, burn: int) -> float | None:
    """µs of the loop thread's CPU per result when an event loop is woken
    for each result while 2 workers are busy, and no interpool in between:
    one worker writes an eventfd after each ~half task (results come as
    often as from 2 workers), the other runs a long task meanwhile; the
    loop's reader callback sets a future its consumer awaits, as amap's
    does (median of 3).  Writes that land before the loop reads merge, as
    results arriving together would.  None where os.eventfd is missing."""
    import os

    if not hasattr(os, "eventfd"):
        return None
    runs = []
    for _ in range(3):
        loop = asyncio.new_event_loop()
        fd = os.eventfd(0, os.EFD_NONBLOCK)
        ticks = other = None
        try:
            seen = [0]
            waiter: list[asyncio.Future | None] = [None]

            def ready() -> None:
                try:
                    seen[0] += os.eventfd_read(fd)
                except BlockingIOError:
                    return
                if waiter[0] is not None and not waiter[0].done():
                    waiter[0].set_result(None)

            async def consume() -> None:
                got = 0
                while got < n:
                    if seen[0] > got:
                        got = seen[0]
                        continue
                    waiter[0] = loop.create_future()
                    await waiter[0]

            loop.add_reader(fd, ready)
            other = pool.submit(W.cpu_burn, burn * n // 2)   # the other core is busy meanwhile
            ticks = pool.submit(W.tick_eventfd, fd, n, burn // 2)
            c0 = time.thread_time()
            # (bounded: a worker that fails never writes the fd)
            loop.run_until_complete(asyncio.wait_for(consume(), 60 + n * TASK_US / 1e6))
            runs.append((time.thread_time() - c0) / n * 1e6)
            ticks.result(60)
            other.result(60)
        finally:
            loop.remove_reader(fd)
            loop.close()
            running = [f for f in (ticks, other) if f is not None and not f.done()]
            for f in running:   # (it failed: stop the writer before its fd closes)
                f.cancel(interrupt=True)
            concurrent.futures.wait(running, 10)
            if ticks is None or ticks.done():   # else leaked: a reused fd must not get its writes
                os.close(fd)
    return sorted(runs)[1]


def lock_stats(reset: bool = False) -> dict | None:
    from interpool import _core

    fn = getattr(_core, "_lock_stats", None)
    return fn(reset) if fn is not None else None


def wl_serial(b) -> None:
    n = 400 if b.quick else 3000
    w = b.workers
    with b.pool(1) as pool:   # ~200 µs of pure Python, calibrated where tasks run
        burn = pool.submit(W.calibrate_burn, TASK_US / 1e6).result()
    items = [burn] * n
    expected = W.cpu_burn(burn) * n
    wake, wake_busy = wake_floor(1, b.quick), wake_floor(w, b.quick)
    FLOORS.clear()
    FLOORS["gather"] = gather_floor(n)
    stream = None
    if w >= 2:
        with b.pool(2) as pool:
            stream = stream_floor(pool, n, burn)
    floor = ""
    if wake is not None and wake_busy is not None:
        FLOORS["wake"] = wake_busy
        floor = (f"; one wake-up costs the woken thread {wake:.1f} µs of CPU on this machine "
                 f"with a core spare, {wake_busy:.1f} µs with {w} threads busy (a bare "
                 f"condition variable, timed in C: the floor of a caller woken once per "
                 f"result); \"net\" = caller CPU - switches x {wake_busy:.1f} µs (every "
                 f"worker is busy here, as in that second figure)")
    floor += (f"; asyncio.gather by itself costs {FLOORS['gather']:.1f} µs per future "
              "(plain loop futures): the floor of gathered awaits")
    if stream is not None:
        floor += (f"; an event loop woken for each result while 2 workers are busy (an eventfd "
                  f"a worker writes, no interpool) costs it {stream:.1f} µs per "
                  "result: the floor of amap, which streams")
    t = Table("serial",
              f"Serial costs: {n:,} tasks of ~{TASK_US} µs of pure Python, {w} workers",
              [Metric("cpu", "caller CPU/task", "us", False),
               Metric("cs", "caller switches/task", "/task", False),
               Metric("net", "net of wake-ups", "us", False),
               Metric("time", "wall", "s", False)],
              note="the calling thread's CPU (time.thread_time) and context switches per task; "
                   "\"workers one caller feeds\" = task time / caller CPU per task" + floor,
              baseline=None)

    def vs_chunked(table: Table, row: Row) -> str:
        ref = table.row("interpool.map-64")
        return fmt_ratio(row.median("time") / ref.median("time"))

    def feeds(table: Table, row: Row) -> str:
        cpu = row.median("cpu")
        return f"{TASK_US / cpu:,.0f}" if cpu else "—"

    t.derived = [("wall vs map(chunksize=64)", vs_chunked), ("workers one caller feeds", feeds)]

    def check(result) -> None:
        if sum(result) != expected:
            raise Failed("wrong results")

    def pool_case(run):
        def gen(info):
            with b.pool() as pool:
                loop = asyncio.new_event_loop()
                try:
                    while True:
                        yield measured(lambda: run(pool, loop), n, check, FLOORS.get("wake", 0.0))
                finally:
                    loop.close()
        return gen

    async def gather(pool):
        return await asyncio.gather(*[pool.run(W.cpu_burn, x) for x in items])

    async def amap(pool):
        return [r async for r in pool.amap(W.cpu_burn, items)]

    b.case("interpool.map", "interpool Pool.map (chunksize=1)",
           pool_case(lambda p, loop: list(p.map(W.cpu_burn, items))))
    b.case("interpool.map-64", "interpool Pool.map (chunksize=64)",
           pool_case(lambda p, loop: list(p.map(W.cpu_burn, items, chunksize=64))))
    b.case("interpool.await", "interpool gather(await pool.run)",
           pool_case(lambda p, loop: loop.run_until_complete(gather(p))))
    b.case("interpool.submit", "interpool submit all, then result()",
           pool_case(lambda p, loop: [f.result() for f in [p.submit(W.cpu_burn, x)
                                                           for x in items]]))
    b.case("interpool.amap", "interpool pool.amap",
           pool_case(lambda p, loop: loop.run_until_complete(amap(p))))

    def executor_case(kind, chunked=False):
        def gen(info):
            with b.executor(kind) as ex:
                cs = 1
                if chunked:
                    cs = b.best_chunksize(lambda c: list(ex.map(W.cpu_burn, items, chunksize=c)),
                                          (16, 64) if b.quick else (4, 16, 64, 256), info)
                    info["label"] = f"ProcessPoolExecutor.map (best chunksize={cs})"
                while True:
                    yield measured(lambda: list(ex.map(W.cpu_burn, items, chunksize=cs)), n, check,
                                   FLOORS.get("wake", 0.0))
        return gen

    b.case("interpool.executor", "interpool.InterpreterPoolExecutor.map",
           executor_case("interpool.executor"))
    b.case("processes-chunked", "ProcessPoolExecutor.map (best chunksize)",
           executor_case("processes", chunked=True))
    if StdlibIPE is not None:
        b.case("stdlib-ipe", "stdlib InterpreterPoolExecutor.map", executor_case("stdlib-ipe"))
    b.measure(t)
    if lock_stats() is not None:
        queue_lock_table(b, items, check)


def queue_lock_table(b, items, check) -> None:
    """How long one operation holds the task queue's lock, and how often
    workers and the caller find it held, over a map of ~200-µs tasks and one
    of tiny tasks (where the lock is busiest)."""
    n_tiny = 2_000 if b.quick else 50_000
    tiny = list(range(n_tiny))
    t = Table("serial", f"The task queue's lock, {b.workers} workers",
              [Metric("enqueue", "hold per enqueue", "ns", False),
               Metric("pop", "hold per take", "ns", False),
               Metric("contended", "found it held", "%", False)],
              note="held: from acquiring the lock to releasing it (a clock read included, "
                   "~20-30 ns); found it held: the share of acquisitions that had to wait; "
                   "\"takes/s one lock serves\" = 1 s / hold per take (timing the lock "
                   "slows these runs: their rates are not the tiny-task rates)",
              baseline=None)

    def serves(table: Table, row: Row) -> str:
        pop = row.median("pop")
        return f"{1e9 / pop / 1e6:.1f}M/s" if pop else "—"

    t.derived = [("takes/s one lock serves", serves)]

    def lock_case(run):
        def gen(info):
            with b.pool() as pool:
                while True:
                    lock_stats(True)
                    run(pool)
                    s = lock_stats(False)
                    ops = max(1, s["enqueues"] + s["takes"])
                    yield {"enqueue": s["enqueue_ns"] / max(1, s["enqueues"]),
                           "pop": s["take_ns"] / max(1, s["takes"]),
                           "contended": 100 * s["contended"] / ops}
        return gen

    b.case("interpool.map", f"Pool.map, {len(items):,} tasks of ~{TASK_US} µs",
           lock_case(lambda p: check(list(p.map(W.cpu_burn, items)))))

    def tiny_map(p):
        if list(p.map(W.identity, tiny)) != tiny:
            raise Failed("wrong results")

    b.case("interpool.map-tiny", f"Pool.map, {n_tiny:,} tiny tasks (identity)",
           lock_case(tiny_map))
    b.measure(t)
