"""The mixed workload: a pure-Python step that runs in interpreters, then a
numpy step (numpy cannot load in a subinterpreter), as real programs mix
them.

interpool runs the first step in its worker interpreters and the second
through the pool's fallback (``Pool(fallback="processes")`` or
``"threads"``), in the same pool; ProcessPoolExecutor runs both steps in
its processes.  Both maps use the default chunksize (1), as written first.
"""

from __future__ import annotations

import math
import warnings

import numpy_step as NS
import workloads as W
from bench_report import Metric, Row, Table, fmt_ratio
from harness import Failed, timed


def wl_mixed(b) -> None:
    count = 40 if b.quick else 300
    pages = W.make_pages(count)
    expected = [NS.link_spectrum(W.link_targets(p)) for p in pages]
    t = Table("mixed",
              f"Mixed: parse {count} HTML pages (pure Python), then a numpy step on each",
              [Metric("time", "time", "s", False), Metric("rate", "pages/s", "pages/s", True)],
              note="step 1 html.parser link extraction; step 2 a numpy FFT of 32,768 points "
                   "per page; interpool runs step 2 through its fallback",
              baseline=None)

    def faster_than(key: str):
        def ratio(table: Table, row: Row) -> str:
            return fmt_ratio(table.row(key).median("time") / row.median("time"))
        return ratio

    t.derived = [("speedup vs sequential", faster_than("sequential")),
                 ("vs ProcessPoolExecutor", faster_than("processes.mixed"))]

    def check(result) -> None:
        if len(result) != count or not all(math.isclose(a, b_, rel_tol=1e-9)
                                           for a, b_ in zip(result, expected)):
            raise Failed("wrong spectra")

    def metrics(seconds: float) -> dict:
        return {"time": seconds, "rate": count / seconds}

    def sequential(info):
        while True:
            yield metrics(timed(lambda: [NS.link_spectrum(W.link_targets(p)) for p in pages],
                                check))

    b.case("sequential", "sequential (both steps in this thread)", sequential)

    def pool_case(kind):
        def gen(info):
            with b.pool(fallback=kind) as pool:
                with warnings.catch_warnings():   # "link_spectrum() runs in the fallback"
                    warnings.simplefilter("ignore", RuntimeWarning)
                    pool.submit(NS.link_spectrum, [1]).result()
                # Every fallback process started (and numpy imported), as below.
                list(pool.map(NS.link_spectrum, [[1]] * (2 * b.workers)))
                while True:
                    yield metrics(timed(lambda: list(pool.map(
                        NS.link_spectrum, pool.map(W.link_targets, pages))), check))
        return gen

    b.case("interpool.mixed", 'interpool Pool(fallback="processes"): parse in interpreters, '
           "numpy in processes", pool_case("processes"))
    b.case("interpool.mixed-threads", 'interpool Pool(fallback="threads"): parse in '
           "interpreters, numpy in threads", pool_case("threads"))

    def executor(kind):
        def gen(info):
            with b.executor(kind) as ex:
                ex.submit(NS.link_spectrum, [1]).result()   # numpy imported in every worker
                list(ex.map(NS.link_spectrum, [[1]] * (2 * b.workers)))
                while True:
                    yield metrics(timed(lambda: list(ex.map(
                        NS.link_spectrum, list(ex.map(W.link_targets, pages)))), check))
        return gen

    b.case("processes.mixed", "ProcessPoolExecutor: both steps in processes", executor("processes"))
    b.case("threads.mixed", "ThreadPoolExecutor: both steps in threads", executor("threads"))
    b.measure(t)
