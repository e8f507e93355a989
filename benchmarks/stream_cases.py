"""The stream workload: how map hands results back.

- map-first: time from map() to its first result, for 20 tasks of 50 ms on
  the pool's workers (a map that streams answers after ~50 ms; one that
  holds results back answers when they are all done).
- map-memory: peak memory of a map of 4,000 arguments of 16 KiB each, in a
  fresh process (RSS high-water mark less the process's before the map),
  with and without buffersize.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import subprocess
import sys
import textwrap
import time

import workloads as W
from bench_report import Metric, Table

HERE = os.path.dirname(os.path.abspath(__file__))


def wl_stream(b) -> None:
    n, seconds = (8, 0.02) if b.quick else (20, 0.05)
    t = Table("map-first", f"map: time to the first of {n} results of {seconds * 1e3:.0f} ms tasks",
              [Metric("first", "first result", "ms", False), Metric("all", "all results", "ms", False)],
              note=f"{b.workers} workers; the first task ends after {seconds * 1e3:.0f} ms")

    def measure(make_iter):
        t0 = time.perf_counter()
        it = make_iter()
        next(it)
        first = (time.perf_counter() - t0) * 1e3
        for _ in it:
            pass
        return {"first": first, "all": (time.perf_counter() - t0) * 1e3}

    def pool_map(info):
        with b.pool() as pool:
            while True:
                yield measure(lambda: pool.map(W.hold, [seconds] * n))

    def pool_unordered(info):
        with b.pool() as pool:
            while True:
                yield measure(lambda: pool.map(W.hold, [seconds] * n, ordered=False))

    def executor_map(kind):
        def gen(info):
            with b.executor(kind) as ex:
                while True:
                    yield measure(lambda: ex.map(W.hold, [seconds] * n))
        return gen

    b.case("interpool.map", "interpool Pool.map", pool_map)
    b.case("interpool.unordered", "interpool Pool.map(ordered=False)", pool_unordered)
    b.case("interpool.executor", "interpool.InterpreterPoolExecutor.map", executor_map("interpool"))
    b.case("stdlib-ipe", "stdlib InterpreterPoolExecutor.map", executor_map("stdlib-ipe"))
    b.case("threads", "ThreadPoolExecutor.map", executor_map("threads"))
    b.case("processes", "ProcessPoolExecutor.map", executor_map("processes"))
    b.measure(t)

    if b.quick:
        return  # fresh processes per repetition: the full run only
    t = Table("map-memory", "map of 4,000 arguments of 16 KiB: peak memory of the caller's process",
              [Metric("peak", "peak RSS growth", "MB", False)],
              note="Each repetition a fresh process; RSS high-water mark during the map less "
                   "before it (the arguments themselves, 63 MB, are alive throughout)")
    for key, label, how in [
        ("interpool", "interpool Pool.map", "pool.map(workloads.length, args)"),
        ("interpool.buffersize", "interpool Pool.map(buffersize=32)",
         "pool.map(workloads.length, args, buffersize=32)"),
        ("stdlib-ipe", "stdlib InterpreterPoolExecutor.map", "ex.map(workloads.length, args)"),
        ("processes", "ProcessPoolExecutor.map", "ex.map(workloads.length, args)"),
    ]:
        def gen(info, how=how, key=key):
            while True:
                yield {"peak": peak_rss_mb(key, how, b.workers)}
        b.case(key, label, gen)
    b.measure(t)


def peak_rss_mb(kind: str, how: str, workers: int) -> float:
    make = {
        "interpool": "interpool.Pool({n})",
        "stdlib-ipe": "concurrent.futures.InterpreterPoolExecutor({n})",
        "processes": "concurrent.futures.ProcessPoolExecutor({n})",
    }[kind.split(".")[0]].format(n=workers)
    script = textwrap.dedent(f"""\
        import concurrent.futures, sys

        def hwm_kib():
            # VmHWM, not ru_maxrss: Linux starts a child's ru_maxrss at its
            # parent's size (the forked copy's high-water mark survives
            # exec), which hid every figure under the benchmark's own size.
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        sys.path.insert(0, {HERE!r})
        import interpool, workloads
        if __name__ == "__main__":
            args = [bytes([i % 251]) * 16384 for i in range(4000)]
            with {make} as pool:
                ex = pool
                list(ex.map(workloads.length, args[:8]))   # warm
                before = hwm_kib()
                assert sum({how}) == 4000 * 16384
                after = hwm_kib()
            print((after - before) / 1024)
        """)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, env.get("PYTHONPATH")) if p)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=600)
    if out.returncode:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr else "failed")
    return float(out.stdout.strip().splitlines()[-1])
