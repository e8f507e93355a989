"""Smoke test of the benchmark suite: `benchmarks/run.py --quick` runs end to end.

`make test` already runs the quick benchmark directly (`make bench-quick`),
so this test is skipped unless INTERPOOL_BENCH_SMOKE=1: it exists to check
the suite from pytest (e.g. while working on benchmarks/) without running
the quick benchmark twice in CI.
"""

import json
import os
import subprocess
import sys

import pytest

import interpool

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(REPO, "benchmarks", "run.py")
WORKLOADS = {"tiny", "latency", "startup", "grid", "payload", "async", "coro", "control", "stream",
             "scaling", "serial", "pyflakes", "mixed"}

pytestmark = pytest.mark.skipif(
    os.environ.get("INTERPOOL_BENCH_SMOKE") != "1",
    reason="`make test` runs `benchmarks/run.py --quick` itself (make bench-quick); "
    "set INTERPOOL_BENCH_SMOKE=1 to run it from pytest too",
)


def test_quick_benchmark_runs_every_workload(tmp_path):
    src = os.path.dirname(os.path.dirname(interpool.__file__))
    env = dict(os.environ)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(
        [sys.executable, RUN, "--quick", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = f"stdout:\n{proc.stdout[-6000:]}\nstderr:\n{proc.stderr[-6000:]}"
    assert proc.returncode == 0, output
    assert proc.stderr == "", output  # no warnings, no tracebacks

    for name in ("results.json", "results.md", "chart.png", "scaling.png"):
        assert (tmp_path / name).stat().st_size > 0, name

    data = json.loads((tmp_path / "results.json").read_text())
    # Every workload ran (some name their tables by part: control-stop, map-first).
    assert set(data["config"]["workloads"]) == WORKLOADS
    assert len(data["workloads"]) >= len(WORKLOADS)
    for name, workload in data["workloads"].items():
        assert workload["tables"], name
        for table in workload["tables"]:
            keys = {row["key"] for row in table["rows"]}
            assert any(k.startswith("interpool") for k in keys), (name, table["title"], keys)
            for row in table["rows"]:
                assert all(row["reps"].values()), (name, row["label"])
    errors = [e for e in data["events"] if e["kind"] == "error"]
    assert not errors, errors
    assert data["targets"], "the targets section is missing"
    assert data["machine"]["interpool"] == interpool.__version__
    assert "interpool benchmarks" in (tmp_path / "results.md").read_text()
