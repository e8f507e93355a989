"""Reference-leak check, in the style of CPython's `regrtest -R`.

Runs under a debug CPython (Debian's python3.14-dbg, which has
sys.gettotalrefcount):

    PYTHON_VERSION=3.14-dbg tools/python tools/refleak.py    (make refleak)

Each scenario runs warm-up rounds (workers load functions, fill caches),
then two windows of ROUNDS measured rounds.  sys.gettotalrefcount() counts
the references of every interpreter in the process (the workers' too).  A
scenario leaks when every round of the second window adds references
(CPython's rule: all deltas >= 1) and the second window grew at least
half as much as the first: a leak grows at a steady rate, a cache that is
still filling slows down.  The pools are made once, outside the rounds.

Two things that are not interpool's are kept out of the measure:
- Scenarios whose tasks raise warm up for WARMUP_FAILURES rounds.
  Unpickling exceptions on a thread other than the main one makes
  CPython's own accounting grow for hundreds of rounds, slower and slower,
  before it levels off (measured 50-300 references in all, with this code,
  with the code before the layering, and with no interpool at all: a
  thread that only calls pickle.loads on a pickled ValueError).
- CPython's type-attribute cache keeps a reference to the name it was
  asked for, keyed by the name's address.  A Task woken by a Future
  subclass (pool.run returns one) asks for its result with
  PyObject_CallMethod(fut, "result"), a new "result" string each time, so
  the cache gains one reference per fresh address until the addresses
  repeat (about 60; seen with gdb, and with no interpool at all).  Each
  settle clears the internal caches first, as regrtest -R does.  (This
  cache was also what an earlier version of this check took for a leak
  in asyncio.gather: with the caches cleared, gather measures flat.)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import threading
import time

import interpool

WARMUP = 6
WARMUP_FAILURES = 100   # see the docstring
ROUNDS = 8


# ----------------------------------------------------------------- task functions
# (defined in this script: they travel to workers by value)

def identity(x):
    return x


def fail(i):
    raise ValueError("task failed")   # one message: the caches level off sooner


class CustomError(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.code = code


def fail_custom(i):
    raise CustomError(i)


def total(data, i):
    return sum(data["values"]) + i


def length(buf):
    return len(buf)


def echo_queue(q, n):
    for _ in range(n):
        q.put(q.get())
    return n


async def coro(x):
    await asyncio.sleep(0)
    return x


# ----------------------------------------------------------------- scenarios

async def await_all(futures):
    """Wait for every future, each in turn (pool.run's futures are also
    coroutines, which asyncio.wait refuses); all are queued already."""
    for f in futures:
        try:
            await f
        except Exception:
            pass


def scenarios(pool: interpool.Pool, coro_pool: interpool.Pool, loop: asyncio.AbstractEventLoop):
    def map_tiny():
        assert sum(pool.map(identity, range(200))) == sum(range(200))

    def map_chunked():
        assert sum(pool.map(identity, range(500), chunksize=32)) == sum(range(500))

    def submit_result():
        futures = [pool.submit(identity, i) for i in range(100)]
        assert [f.result() for f in futures] == list(range(100))

    def failing_tasks():
        futures = [pool.submit(fail, i) for i in range(20)]
        for f in futures:
            assert isinstance(f.exception(), ValueError)

    def failing_custom_tasks():
        futures = [pool.submit(fail_custom, i) for i in range(20)]
        for i, f in enumerate(futures):
            assert f.exception().code == i

    def map_raises():
        try:
            list(pool.map(fail, range(10)))
        except ValueError:
            pass
        else:
            raise AssertionError("map did not raise")

    def share_release():
        handle = pool.share({"values": list(range(100))})
        assert list(pool.map(total, [handle] * 10, range(10)))[0] == 4950
        handle.release()

    def zero_copy_buffers():
        data = bytearray(4096)
        assert list(pool.map(length, [memoryview(data)] * 20)) == [4096] * 20

    def queue_round_trip():
        q = interpool.Queue()
        for i in range(50):
            q.put(i)
        assert pool.submit(echo_queue, q, 50).result() == 50
        assert sorted(q.get() for _ in range(50)) == list(range(50))

    def asyncio_run_many():
        async def main():
            futures = [pool.run(identity, i) for i in range(100)]
            await await_all(futures)
            return [f.result() for f in futures]

        assert loop.run_until_complete(main()) == list(range(100))

    def asyncio_gather():
        async def main():
            return await asyncio.gather(*[pool.run(identity, i) for i in range(100)])

        assert loop.run_until_complete(main()) == list(range(100))

    def asyncio_amap():
        async def main():
            return [x async for x in pool.amap(identity, range(100))]

        assert loop.run_until_complete(main()) == list(range(100))

    def asyncio_failures():
        async def main():
            futures = [pool.run(fail, i) for i in range(20)]
            await await_all(futures)
            return [f.exception() for f in futures]

        assert all(isinstance(e, ValueError) for e in loop.run_until_complete(main()))

    def coroutine_tasks():
        assert list(coro_pool.map(coro, range(50))) == list(range(50))

    def cancel_queued():
        futures = [pool.submit(identity, i) for i in range(200)]
        for f in futures[100:]:
            f.cancel()
        for f in futures:
            if not f.cancelled():
                f.result()

    def map_fed_by_the_pool():
        # Past the first window: the feeder thread and its marker tasks.
        assert sum(pool.map(identity, range(3000))) == sum(range(3000))

    def done_callbacks():
        done = threading.Event()
        seen = []

        def callback(f):
            seen.append(f.result())
            if len(seen) == 50:
                done.set()

        for i in range(50):
            pool.submit(identity, i).add_done_callback(callback)
        assert done.wait(60)

    def asyncio_amap_async_source():
        async def source():
            for i in range(50):
                await asyncio.sleep(0)
                yield i

        async def main():
            return [x async for x in pool.amap(identity, source())]

        assert loop.run_until_complete(main()) == list(range(50))

    return [v for k, v in locals().items() if callable(v) and not k.startswith("_")]


def measure(fn, pools) -> tuple[list[int], list[int]]:
    """Refcount deltas of the two measured windows."""
    del pools   # (kept for scenarios that need the workers settled too)

    def settle() -> int:
        time.sleep(0.02)   # workers finish releasing what they just sent back
        sys._clear_internal_caches()   # see the docstring
        gc.collect()
        return sys.gettotalrefcount()

    raising = "fail" in fn.__name__ or "raise" in fn.__name__
    for _ in range(WARMUP_FAILURES if raising else WARMUP):
        fn()
    windows: tuple[list[int], list[int]] = ([], [])
    before = settle()
    for deltas in windows:
        for _ in range(ROUNDS):
            fn()
            after = settle()
            deltas.append(after - before)
            before = after
    return windows


def leaks(first: list[int], second: list[int]) -> bool:
    return all(d >= 1 for d in second) and sum(second) >= sum(first) / 2


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-k", help="run only scenarios whose name contains this")
    args = parser.parse_args(argv)
    if not hasattr(sys, "gettotalrefcount"):
        print("refleak: needs a debug CPython (sys.gettotalrefcount); "
              "run: PYTHON_VERSION=3.14-dbg tools/python tools/refleak.py", file=sys.stderr)
        return 2
    leaked_names = []
    loop = asyncio.new_event_loop()
    # One worker each: every cache a scenario fills is filled in one
    # interpreter, so warm-up ends sooner and the deltas are steadier.
    with interpool.Pool(1) as pool, interpool.Pool(1, concurrency=4) as coro_pool:
        pool.wait_ready()
        coro_pool.wait_ready()
        for fn in scenarios(pool, coro_pool, loop):
            if args.k and args.k not in fn.__name__:
                continue
            first, second = measure(fn, (pool, coro_pool))
            leaked = leaks(first, second)
            print(f"refleak: {fn.__name__:24} {'LEAK' if leaked else 'ok  '} "
                  f"deltas {first} then {second}", flush=True)
            if leaked:
                leaked_names.append(fn.__name__)
    loop.close()
    if leaked_names:
        print(f"refleak: {len(leaked_names)} scenario(s) leak references: {', '.join(leaked_names)}")
        return 1
    print("refleak: no scenario leaks references")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
