"""The control workload: how fast running work can be stopped.

- control-stop: from a stop request on a task that spins in pure Python to
  the next task's result (its worker is free again).
- control-deadline: how far past its deadline a task's future fails with
  TimeoutError, and when its worker is free again, for a task spinning in
  pure Python and one stuck in a C call that holds its GIL.
- control-sigint: in a fresh process blocked in future.result() on such a
  task, from SIGINT to KeyboardInterrupt in the main thread, and to the end
  of the process (which must not wait for the task).

The stdlib executors and ThreadPoolExecutor cannot stop a running call;
their lines say so.  pebble stops a process (and starts a new one).
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import workloads as W
from bench_report import Metric, Table

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_after(stop, submit_next) -> float:
    """ms from stop() to the result of the next task."""
    t0 = time.perf_counter()
    stop()
    submit_next()
    return (time.perf_counter() - t0) * 1e3


def _pebble_pool(b):
    """pebble's ProcessPool with one (warm) worker."""
    import contextlib

    @contextlib.contextmanager
    def pool():
        p = b.peers["pebble"].ProcessPool(max_workers=1)
        try:
            p.schedule(W.identity, (0,)).result()
            yield p
        finally:
            p.stop()
            p.join()
    return pool()


def wl_control(b) -> None:
    import interpool

    t = Table("control-stop", "Stopping a running task: a worker spinning in pure Python",
              [Metric("free", "stop → worker free", "ms", False)],
              note="From the stop request to the result of the next task on the same "
                   "(only) worker", baseline=None)

    def started(fut, pool_like=None):
        deadline = time.monotonic() + 30
        while not fut.running() and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.02)  # inside the loop, not starting

    def interpool_cancel(info):
        with interpool.Pool(1) as pool:
            pool.submit(W.identity, 0).result()
            while True:
                f = pool.submit(W.spin)
                started(f)
                yield {"free": _free_after(lambda: f.cancel(interrupt=True),
                                           lambda: pool.submit(W.identity, 1).result())}

    b.case("interpool.cancel", "interpool future.cancel(interrupt=True)", interpool_cancel)

    def interpool_asyncio(info):
        with interpool.Pool(1) as pool:
            async def rep():
                fut = pool.run(W.spin)
                await asyncio.sleep(0.05)
                t0 = time.perf_counter()
                try:
                    async with asyncio.timeout(0):
                        await fut
                except TimeoutError:
                    pass
                await pool.run(W.identity, 1)
                return {"free": (time.perf_counter() - t0) * 1e3}

            loop = asyncio.new_event_loop()
            try:
                while True:
                    yield loop.run_until_complete(rep())
            finally:
                loop.close()

    b.case("interpool.asyncio", "interpool asyncio.timeout around await pool.run()",
           interpool_asyncio)

    def pebble_cancel(info):
        with _pebble_pool(b) as pool:
            while True:
                f = pool.schedule(W.spin)
                started(f)
                yield {"free": _free_after(f.cancel, lambda: pool.schedule(W.identity, (1,)).result())}

    if "pebble" in b.peers:
        b.case("pebble.cancel", "pebble ProcessPool future.cancel() (kills the process)",
               pebble_cancel)
    for system in ("stdlib-ipe", "threads", "processes"):
        if b.selected(system):
            b.event("skip", system, "cannot stop a running call (cancel() only drops queued ones)",
                    "control-stop")
    b.measure(t)

    t = Table("control-deadline", "Deadlines: schedule(timeout=0.1), in pure Python and in a C call",
              [Metric("late", "deadline → TimeoutError", "ms", False),
               Metric("free", "deadline → worker free", "ms", False)],
              note="A task that would run for an hour passes its 100 ms deadline: from the "
                   "deadline (schedule() + 100 ms) to its future's TimeoutError, and to the "
                   "result of the next task on the same (only) worker.  The C call holds its "
                   "GIL (as a backtracking regex does): interpool takes it over after its 100 ms "
                   "grace and a fresh worker replaces the stuck one; pebble kills the "
                   "process", baseline=None)

    def past_deadline(pool, fn, args=(), release=None):
        """Both pools spell it schedule(fn, args, timeout=...)."""
        while True:
            t0 = time.monotonic()
            f = pool.schedule(fn, args, timeout=0.1)
            try:
                f.result()
            except TimeoutError:
                pass
            late = time.monotonic() - t0 - 0.1
            pool.schedule(W.identity, (1,)).result()
            free = time.monotonic() - t0 - 0.1
            if release is not None:
                release()   # the stuck call returns; its set-aside thread ends
            yield {"late": late * 1e3, "free": free * 1e3}

    def interpool_deadline(stuck_in_c: bool):
        def gen(info):
            with interpool.Pool(1) as pool:
                pool.submit(W.identity, 0).result()
                if not stuck_in_c:
                    yield from past_deadline(pool, W.spin)
                    return
                workers = interpool._core.live_counts()["workers"]
                r, w = os.pipe()
                try:
                    yield from past_deadline(pool, W.block_holding_gil, (r,),
                                             lambda: os.write(w, b"x"))
                finally:
                    os.close(w)   # EOF: no call is left blocking on r
                    deadline = time.monotonic() + 30
                    while (interpool._core.live_counts()["workers"] > workers
                           and time.monotonic() < deadline):
                        time.sleep(0.01)   # set-aside threads end their interpreters
                    os.close(r)
        return gen

    b.case("interpool.schedule", "interpool Pool.schedule, pure Python",
           interpool_deadline(False))
    b.case("interpool.schedule-c", "interpool Pool.schedule, C call holding its GIL",
           interpool_deadline(True))

    def pebble_deadline(fn, args=()):
        def gen(info):
            with _pebble_pool(b) as pool:
                yield from past_deadline(pool, fn, args)
        return gen

    if "pebble" in b.peers:
        b.case("pebble.schedule", "pebble ProcessPool.schedule, pure Python",
               pebble_deadline(W.spin))
        b.case("pebble.schedule-c", "pebble ProcessPool.schedule, C call (a backtracking regex)",
               pebble_deadline(W.catastrophic, (40,)))
    b.measure(t)

    if b.quick:
        return  # the Ctrl-C table starts processes: the full run only
    t = Table("control-sigint", "Ctrl-C: SIGINT to a process blocked in future.result()",
              [Metric("exit", "SIGINT → process ended", "ms", False),
               Metric("kbi", "SIGINT → KeyboardInterrupt", "ms", False)],
              note="The future's task spins in pure Python for an hour; a process still "
                   "alive 10 s after SIGINT is killed and counted as 10 s")

    def sigint_case(make_executor: str):
        def gen(info):
            while True:
                yield sigint_once(make_executor)
        return gen

    b.case("interpool", "interpool Pool: submit(spin).result()", sigint_case(
        "interpool.Pool(1)"))
    b.case("interpool.executor", "interpool.InterpreterPoolExecutor: submit(spin).result()",
           sigint_case("interpool.InterpreterPoolExecutor(1)"))
    b.case("stdlib-ipe", "stdlib InterpreterPoolExecutor: submit(spin).result()", sigint_case(
        "concurrent.futures.InterpreterPoolExecutor(1)"))
    b.case("threads", "ThreadPoolExecutor: submit(spin).result()", sigint_case(
        "concurrent.futures.ThreadPoolExecutor(1)"))
    b.measure(t)


def sigint_once(make_executor: str) -> dict:
    script = textwrap.dedent(f"""\
        import concurrent.futures, signal, sys, time
        # Ctrl-C as at a terminal, however the benchmark was started (a
        # shell's background job starts with SIGINT ignored)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.path.insert(0, {HERE!r})
        import interpool, workloads
        if __name__ == "__main__":
            ex = {make_executor}
            ex.submit(workloads.identity, 0).result()
            f = ex.submit(workloads.spin)
            print("ready", flush=True)
            try:
                f.result()
            except KeyboardInterrupt:
                print(time.monotonic(), flush=True)
                raise
        """)
    env = dict(os.environ)  # the stdlib's interpreters find `workloads` through it
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        if proc.stdout.readline() != "ready\n":
            raise RuntimeError("the child did not start")
        time.sleep(0.2)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        # (a child that never reports is counted as 10 s, not waited for)
        readable, _, _ = select.select([proc.stdout], [], [], 10)
        line = proc.stdout.readline() if readable else ""
        kbi = (float(line) - sent) * 1e3 if line.strip() else 10_000.0
        try:
            proc.wait(timeout=10)
            ended = (time.monotonic() - sent) * 1e3
        except subprocess.TimeoutExpired:
            ended = 10_000.0
        return {"kbi": kbi, "exit": ended}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
