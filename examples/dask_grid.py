"""Dask with interpool: N interpreters in one Dask worker process.

    tools/python examples/dask_grid.py [--quick] [--tasks N]

A CPU-bound pure-Python workload (counting primes by trial division over a
grid of ranges) on three local Dask clusters with the same 2 cores:

- 1 worker process x 2 threads: Dask's default. The threads share one GIL.
- the same, plus interpool.dask.InterpreterWorkerPlugin(workers=2): the
  tasks (annotated executor="interpool") run in 2 interpreters of that one
  process, each with its own GIL.
- 2 worker processes x 1 thread: parallel too, at the cost of a process
  per core.

Each run times the whole grid after a warm-up round (worker start-up and the
first imports are not counted) and checks that all three agree.
"""

import argparse
import logging
import time

import dask
from distributed import Client, LocalCluster

from interpool.dask import InterpreterWorkerPlugin

# Module level: only definitions.  Dask pickles count_primes by value (it
# lives in __main__), and the worker interpreters run that copy.

FULL = (32, 30_000)  # tasks, numbers per task: ~6 s on one core
QUICK = (8, 5_000)


def count_primes(lo: int, hi: int) -> int:
    """Primes in [lo, hi), by trial division: pure Python, no I/O."""
    count = 0
    for n in range(max(lo, 2), hi):
        d = 2
        while d * d <= n:
            if n % d == 0:
                break
            d += 1
        else:
            count += 1
    return count


def grid(tasks: int, width: int) -> list[tuple[int, int]]:
    return [(i * width, (i + 1) * width) for i in range(tasks)]


def run(label: str, cluster_kwargs: dict, ranges, plugin: bool) -> tuple[int, float]:
    with LocalCluster(processes=True, dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": ":0"},
                      silence_logs=logging.ERROR, **cluster_kwargs) as cluster, \
            Client(cluster) as client:
        annotations = {}
        if plugin:
            client.register_plugin(InterpreterWorkerPlugin(workers=2))
            annotations = {"executor": "interpool"}
        with dask.annotate(**annotations):
            lo, hi = zip(*ranges[:4])  # warm-up: start and import everywhere
            client.gather(client.map(count_primes, lo, hi, pure=False))
            start = time.perf_counter()
            lo, hi = zip(*ranges)
            total = sum(client.gather(client.map(count_primes, lo, hi, pure=False)))
            elapsed = time.perf_counter() - start
    print(f"{label:<44} {elapsed:6.2f} s   primes: {total}", flush=True)
    return total, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small, fast run")
    parser.add_argument("--tasks", type=int, help="number of tasks in the grid")
    args = parser.parse_args()
    tasks, width = QUICK if args.quick else FULL
    ranges = grid(args.tasks or tasks, width)
    print(f"{len(ranges)} tasks, counting primes below {ranges[-1][1]:,}")

    threads = run("1 process x 2 threads (one GIL)",
                  dict(n_workers=1, threads_per_worker=2), ranges, plugin=False)
    interps = run("1 process x 2 threads + 2 interpreters",
                  dict(n_workers=1, threads_per_worker=2), ranges, plugin=True)
    procs = run("2 processes x 1 thread",
                dict(n_workers=2, threads_per_worker=1), ranges, plugin=False)

    base = threads[1]
    print(f"speedup over threads: interpreters x{base / interps[1]:.2f}, "
          f"processes x{base / procs[1]:.2f}")
    if threads[0] == interps[0] == procs[0]:
        print("OK: all three agree")
    else:
        raise SystemExit("results differ")


if __name__ == "__main__":
    main()
