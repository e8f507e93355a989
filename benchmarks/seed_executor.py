"""The seed design, written as its author describes it: a peer for the
benchmarks, not part of interpool.

Worker interpreters (``concurrent.interpreters``), each on its own thread,
loop over one shared task queue and put results on one result queue; a
coordinator thread takes the results and resolves the caller's futures.
Data every task needs is bound once per interpreter with ``prepare_main``
(no pickle: a tuple of tuples of bools is natively shareable) and passed to
the task function before the task's own arguments.  Task functions are
named by module and attribute and imported in the worker.

    with SeedExecutor(2, bound=(grid,)) as ex:
        results = list(ex.map(check, blocks, starts))   # check(grid, block, start)

CPython 3.14+ (``concurrent.interpreters``).  The queues are the stdlib's:
their ``get()`` polls while empty (gh-143017), which is part of the design
measured here.
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import Future

# What each worker interpreter runs: import the function once, call it with
# the bound data first, put (seq, ok, value) on the result queue; None ends it.
_WORKER_LOOP = """
import importlib
_functions = {}
while True:
    item = tasks.get()
    if item is None:
        break
    seq, module, name, args = item
    fn = _functions.get((module, name))
    if fn is None:
        fn = _functions[(module, name)] = getattr(importlib.import_module(module), name)
    try:
        results.put((seq, True, fn(*bound, *args)))
    except Exception as exc:
        results.put((seq, False, f"{type(exc).__name__}: {exc}"))
"""


class SeedExecutor:
    def __init__(self, workers: int, bound: tuple = ()) -> None:
        from concurrent import interpreters

        self._tasks = interpreters.create_queue()
        self._results = interpreters.create_queue()
        self._futures: dict[int, Future] = {}
        self._lock = threading.Lock()
        self._seq = 0
        self._interps = []
        self._threads = []
        for _ in range(workers):
            interp = interpreters.create()
            interp.prepare_main(tasks=self._tasks, results=self._results, bound=bound)
            interp.exec(f"import sys; sys.path[:] = {sys.path!r}")
            thread = threading.Thread(target=interp.exec, args=(_WORKER_LOOP,), daemon=True)
            thread.start()
            self._interps.append(interp)
            self._threads.append(thread)
        self._coordinator = threading.Thread(target=self._resolve, daemon=True)
        self._coordinator.start()

    def _resolve(self) -> None:
        while True:
            item = self._results.get()
            if item is None:
                return
            seq, ok, value = item
            with self._lock:
                future = self._futures.pop(seq)
            if ok:
                future.set_result(value)
            else:
                future.set_exception(RuntimeError(value))

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        with self._lock:
            seq = self._seq = self._seq + 1
            self._futures[seq] = future
        self._tasks.put((seq, fn.__module__, fn.__qualname__, args))
        return future

    def map(self, fn, *iterables):
        futures = [self.submit(fn, *args) for args in zip(*iterables)]
        return (f.result() for f in futures)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._tasks.put(None)
        for thread in self._threads:
            thread.join()
        self._results.put(None)
        self._coordinator.join()
        for interp in self._interps:
            interp.close()

    def __enter__(self) -> SeedExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
