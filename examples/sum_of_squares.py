"""CPU-bound pure Python, three ways: sequential, Pool.map, Runner + asyncio.

    tools/python examples/sum_of_squares.py [--quick] [--workers N]

The work is sum(i*i for i in range(start, stop)) over consecutive ranges
("chunks").  Each worker runs its chunks in its own subinterpreter with its
own GIL, so the chunks really run in parallel on separate cores.
"""

import argparse
import asyncio
import os
import time

import interpool

# Workers never run this script: sum_squares and the other task functions
# travel by value (their code and the globals they read).  The guard at the
# end only keeps the program importable without running it.

FULL = (40_000_000, 16)  # numbers, chunks: ~1.5 s sequential on one core
QUICK = (2_000_000, 8)


def sum_squares(start: int, stop: int) -> int:
    """The task.  Runs in a worker interpreter, so it must be module-level."""
    total = 0
    for i in range(start, stop):
        total += i * i
    return total


def chunks(n: int, parts: int) -> list[tuple[int, int]]:
    step = -(-n // parts)  # ceiling division
    return [(lo, min(lo + step, n)) for lo in range(0, n, step)]


class Clock:
    """Wall time, and CPU time of the whole process (all threads/workers)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def sequential(ranges):
    with Clock() as clock:
        result = [sum_squares(lo, hi) for lo, hi in ranges]
    return result, clock


def with_pool(ranges, workers):
    with interpool.Pool(workers) as pool:
        pool.wait_ready()  # time the work, not the interpreters' start-up
        with Clock() as clock:
            # map takes one iterable per parameter: all starts, all stops.
            starts, stops = zip(*ranges)
            result = list(pool.map(sum_squares, starts, stops))
    return result, clock


async def with_runner(ranges, workers):
    # start() returns once every worker interpreter is ready.
    with interpool.Runner(workers=workers).start() as runner:
        with Clock() as clock:
            result = await asyncio.gather(*(runner.run(sum_squares, lo, hi) for lo, hi in ranges))
    return result, clock


def report(label, clock, baseline=None):
    line = f"{label:<18} {clock.wall:7.3f} s"
    if baseline is not None:
        line += f"   speedup x{baseline.wall / clock.wall:.2f}"
    # CPU seconds per wall second: ~1 when sequential, ~workers when parallel
    # (less if other programs compete for the cores).
    line += f"   ({clock.cpu / clock.wall:.1f} cores busy)"
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small size (for CI)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    n, parts = QUICK if args.quick else FULL
    ranges = chunks(n, parts)
    print(f"sum of i*i for i < {n:,}: {len(ranges)} chunks, {args.workers} workers")

    expected, seq = sequential(ranges)
    report("sequential", seq)
    pooled, pool = with_pool(ranges, args.workers)
    report("Pool.map", pool, seq)
    ran, runner = asyncio.run(with_runner(ranges, args.workers))
    report("Runner + asyncio", runner, seq)

    # Parallelism must not change the answer.
    assert pooled == expected, "Pool.map results differ"
    assert ran == expected, "Runner results differ"
    print(f"total = {sum(expected):,}")
    print("OK: all three agree")


if __name__ == "__main__":
    main()
