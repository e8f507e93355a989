"""Results of interpool's benchmark suite: tables, Markdown, JSON, chart, targets.

A run is a list of ``Table`` objects (one or more per workload), each a list
of ``Row`` objects holding every repetition of every metric of one system.
Figures shown are the median of the repetitions, with their min and max.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable

# --------------------------------------------------------------- data


@dataclass
class Metric:
    name: str           # key in Row.reps
    title: str          # column title
    unit: str           # "calls/s", "s", "us", "ms", "MB", "MB/s", "pages/s"
    higher_is_better: bool


@dataclass
class Row:
    key: str                              # system key, e.g. "interpool.map"
    label: str                            # what the table shows
    reps: dict[str, list[float]]          # metric name -> one value per repetition
    baseline: str | None = None           # key of the row its ratio is against
    info: dict[str, Any] = field(default_factory=dict)

    def median(self, metric: str) -> float | None:
        values = self.reps.get(metric)
        return statistics.median(values) if values else None


@dataclass
class Table:
    workload: str
    title: str
    metrics: list[Metric]
    note: str = ""
    rows: list[Row] = field(default_factory=list)
    baseline: str | None = "stdlib-ipe"   # default ratio baseline (a row key)
    baseline_title: str = "vs stdlib IPE"  # its column's title
    # Extra columns computed from the medians: (title, fn(table, row) -> str)
    derived: list[tuple[str, Callable[[Table, Row], str]]] = field(default_factory=list)

    @property
    def primary(self) -> Metric:
        return self.metrics[0]

    def row(self, key: str) -> Row | None:
        for r in self.rows:
            if r.key == key:
                return r
        return None

    def ratio(self, row: Row, against: str | None = None) -> float | None:
        """How many times better than the baseline row, on the primary metric."""
        base_key = against or row.baseline or self.baseline
        base = self.row(base_key) if base_key else None
        if base is None:
            return None
        m = self.primary
        a, b = row.median(m.name), base.median(m.name)
        if a is None or b is None or a <= 0 or b <= 0:
            return None
        return a / b if m.higher_is_better else b / a

    def to_json(self) -> dict:
        return {
            "title": self.title,
            "note": self.note,
            "metrics": [vars(m) for m in self.metrics],
            "baseline": self.baseline,
            "rows": [
                {
                    "key": r.key,
                    "label": r.label,
                    "baseline": r.baseline or self.baseline,
                    "reps": r.reps,
                    "median": {k: r.median(k) for k in r.reps},
                    "min": {k: min(v) for k, v in r.reps.items() if v},
                    "max": {k: max(v) for k, v in r.reps.items() if v},
                    "ratio_vs_baseline": self.ratio(r),
                    "info": r.info,
                }
                for r in self.rows
            ],
        }


# --------------------------------------------------------------- formatting


def fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if unit in ("calls/s", "pages/s"):
        suffix = "/s"
        if value >= 1e6:
            return f"{value / 1e6:.2f}M{suffix}"
        if value >= 1e4:
            return f"{value / 1e3:.1f}k{suffix}"
        if value >= 1e3:
            return f"{value / 1e3:.2f}k{suffix}"
        return f"{value:.1f}{suffix}"
    if unit == "s":
        if value < 1:
            return f"{value * 1e3:.1f} ms"
        return f"{value:.2f} s"
    if unit == "us":
        if value >= 1e4:
            return f"{value / 1e3:.1f} ms"
        if value >= 100:
            return f"{value:.0f} µs"
        return f"{value:.1f} µs"
    if unit == "ms":
        if value >= 100:
            return f"{value:.0f} ms"
        return f"{value:.2f} ms"
    if unit in ("MB", "MB/s"):
        if value >= 100:
            return f"{value:.0f} {unit}"
        return f"{value:.1f} {unit}"
    return f"{value:.3g} {unit}"


def fmt_range(values: list[float], unit: str) -> str:
    if not values:
        return "—"
    lo, hi = min(values), max(values)
    if len(values) == 1:
        return "(1 run)"
    return f"{fmt(lo, unit)} – {fmt(hi, unit)}"


def fmt_ratio(x: float | None) -> str:
    if x is None:
        return "—"
    if x >= 100:
        return f"{x:.0f}x"
    if x >= 10:
        return f"{x:.1f}x"
    return f"{x:.2f}x"


def table_cells(table: Table) -> tuple[list[str], list[list[str]]]:
    """Header and body cells of a table (shared by the terminal and Markdown)."""
    multi = len(table.metrics) > 1
    header = ["system"]
    for m in table.metrics:
        if multi:
            header += [m.title, "min – max"]
        else:
            header += [f"{m.title} (median)", "min – max"]
    for title, _ in table.derived:
        header.append(title)
    if table.baseline is not None:
        header.append(table.baseline_title)
    body = []
    for row in table.rows:
        cells = [row.label]
        for m in table.metrics:
            values = row.reps.get(m.name, [])
            cells.append(fmt(row.median(m.name), m.unit) if values else "—")
            cells.append(fmt_range(values, m.unit) if values else "")
        for _, fn in table.derived:
            try:
                cells.append(fn(table, row))
            except Exception:  # a derived column never breaks the report
                cells.append("—")
        if table.baseline is not None:
            base_key = row.baseline or table.baseline
            if row.key == base_key:
                cells.append("1.00x (baseline)")
            else:
                cells.append(fmt_ratio(table.ratio(row)))
        body.append(cells)
    return header, body


def direction(table: Table) -> str:
    m = table.primary
    return "higher is better" if m.higher_is_better else "lower is better"


def render_text(table: Table) -> str:
    header, body = table_cells(table)
    widths = [max(len(c) for c in col) for col in zip(header, *body)] if body else [len(h) for h in header]
    lines = [f"\n== {table.title} ({direction(table)}) =="]
    if table.note:
        lines.append(f"   {table.note}")
    fmt_line = lambda cells: "  ".join(  # noqa: E731
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
    )
    lines.append(fmt_line(header))
    lines.append("  ".join("-" * w for w in widths))
    if not body:
        lines.append("(no results)")
    for cells in body:
        lines.append(fmt_line(cells))
    return "\n".join(lines)


def render_markdown(table: Table) -> str:
    header, body = table_cells(table)
    lines = [f"### {table.title}", ""]
    if table.note:
        lines += [f"{table.note} ({direction(table)}).", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for cells in body:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if not body:
        lines.append("| (no results) |" + " |" * (len(header) - 1))
    return "\n".join(lines)


# --------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    passed: bool | None   # None: could not be evaluated
    measured: str

    def line(self) -> str:
        status = {True: "PASS", False: "MISS", None: "N/A "}[self.passed]
        return f"[{status}] {self.name}: {self.measured}"


# --------------------------------------------------------------- files


def write_json(path: str, machine: dict, config: dict, tables: list[Table],
               targets: list[Target], events: list[dict]) -> None:
    workloads: dict[str, list] = {}
    for t in tables:
        workloads.setdefault(t.workload, []).append(t.to_json())
    doc = {
        "machine": machine,
        "config": config,
        "workloads": {name: {"tables": ts} for name, ts in workloads.items()},
        "targets": [vars(t) for t in targets],
        "events": events,
    }
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, default=str)
        f.write("\n")


def write_markdown(path: str, machine: dict, config: dict, tables: list[Table],
                   targets: list[Target], events: list[dict]) -> None:
    lines = [
        "# interpool benchmarks",
        "",
        f"- date: {machine['date']}",
        f"- machine: {machine['cpu_count']} cores ({machine['cpu_model']}), "
        f"{machine['platform']}",
        f"- Python {machine['python']}, interpool {machine['interpool']}",
        *(["- peers: " + ", ".join(f"{k} {v}" for k, v in machine["peers"].items())]
          if machine.get("peers") else []),
        f"- command: `{config['command']}`",
        f"- workers: {config['workers']} per pool/executor; figures are the median of "
        f"{config['repeat']} repetition(s) with min – max; \"vs stdlib IPE\" is how many "
        "times better than `concurrent.futures.InterpreterPoolExecutor` in the same run "
        "(async rows against it through `loop.run_in_executor`).",
    ]
    if config.get("loadavg_before") is not None:
        lines.append(f"- load average (1 min) at the start: {config['loadavg_before']:.2f} "
                     "(other work on the machine makes parallel figures noisy; repetitions "
                     "are interleaved across systems so that it hits every system alike)")
    for e in events:
        if e["kind"] in ("skip", "error"):
            lines.append(f"- {e['kind']}: {e['system']}: {e['message']}")
    lines.append("")
    for t in tables:
        lines.append(render_markdown(t))
        lines.append("")
    if targets:
        lines += ["### Targets", "", "```"]
        lines += [t.line() for t in targets]
        lines += ["```", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


# --------------------------------------------------------------- chart

_COLORS = {
    "interpool": "#1f77b4",
    "stdlib-ipe": "#ff7f0e",
    "threads": "#2ca02c",
    "processes": "#d62728",
    "anyio": "#9467bd",
    "sequential": "#7f7f7f",
    "aiointerpreters": "#e377c2",
    "aiomultiprocess": "#bcbd22",
    "pebble": "#17becf",
    "loky": "#aec7e8",
    "bare": "#8c564b",
}


def _color(key: str) -> str:
    for prefix, color in _COLORS.items():
        if key.startswith(prefix):
            return color
    return "#17becf"


def _barh(ax, labels, values, keys, *, log=False, unit="", ref=None, ref_label=None):
    ys = list(range(len(labels)))[::-1]
    ax.barh(ys, values, color=[_color(k) for k in keys])
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=7)
    if log:
        ax.set_xscale("log")
    vmax = max(values) if values else 1
    for y, v in zip(ys, values):
        ax.text(v, y, " " + unit.format(v), va="center", fontsize=6.5)
    if log:
        ax.set_xlim(right=vmax * 12)
    else:
        ax.set_xlim(0, max(vmax, ref or 0) * 1.3)
    if ref is not None:
        ax.axvline(ref, color="black", linestyle="--", linewidth=0.8, label=ref_label)
        if ref_label:
            ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3)


def write_chart(path: str, tables: list[Table], machine: dict, workers: int) -> str | None:
    """A multi-panel PNG; returns None on success or the reason it was skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:  # pragma: no cover - matplotlib is installed in CI
        return f"matplotlib unavailable: {exc}"

    by_title = {t.title: t for t in tables}

    def find(prefix: str) -> Table | None:
        for title, t in by_title.items():
            if title.startswith(prefix):
                return t
        return None

    fig, axes = plt.subplots(3, 2, figsize=(15, 15))
    fig.suptitle(
        f"interpool benchmarks — {machine['cpu_count']} cores, Python {machine['python_short']}, "
        f"{workers} workers, {machine['date'][:10]}",
        fontsize=13,
    )
    panels = axes.flatten()

    def rows_of(t: Table | None, metric: str):
        if t is None:
            return [], [], []
        rs = [r for r in t.rows if r.median(metric)]
        return [r.label for r in rs], [r.median(metric) for r in rs], [r.key for r in rs]

    # 1. tiny tasks
    ax = panels[0]
    t = find("Tiny tasks")
    labels, values, keys = rows_of(t, "rate")
    if values:
        _barh(ax, labels, values, keys, log=True, unit="{:,.0f}/s")
    ax.set_title("Tiny tasks: identity() throughput (calls/s, log, higher is better)", fontsize=9)

    # 2. latency p50
    ax = panels[1]
    t = find("Round trip")
    labels, values, keys = rows_of(t, "p50")
    if values:
        _barh(ax, labels, values, keys, log=True, unit="{:.1f} µs")
    ax.set_title("One call at a time: round-trip p50 (µs, log, lower is better)", fontsize=9)

    # 3. grid speedup
    ax = panels[2]
    t = find("CPU-bound grid")
    if t is not None:
        seq = t.row("sequential")
        rs = [r for r in t.rows if r.median("time") and seq is not None]
        if rs:
            base = seq.median("time")
            _barh(ax, [r.label for r in rs], [base / r.median("time") for r in rs],
                  [r.key for r in rs], unit="{:.2f}x", ref=workers,
                  ref_label=f"ideal ({workers} workers)")
    ax.set_title("CPU-bound grid (guard loops): speedup over sequential (higher is better)",
                 fontsize=9)

    # 4. payload throughput
    ax = panels[3]
    payload_tables = [x for x in tables if x.workload == "payload"]
    if payload_tables:
        families = ["interpool", "stdlib-ipe", "threads", "processes"]
        names = {"interpool": "interpool", "stdlib-ipe": "stdlib IPE",
                 "threads": "threads", "processes": "processes"}
        width = 0.8 / len(families)
        for i, fam in enumerate(families):
            xs, ys = [], []
            for j, pt in enumerate(payload_tables):
                cands = [r for r in pt.rows if r.key.startswith(fam) and r.median("mbps")]
                if cands:
                    xs.append(j + (i - (len(families) - 1) / 2) * width)
                    ys.append(max(r.median("mbps") for r in cands))
            if xs:
                ax.bar(xs, ys, width=width, color=_color(fam), label=names[fam])
        ax.set_xticks(range(len(payload_tables)))
        ax.set_xticklabels(
            [pt.title.replace("Payload: ", "").split(" — ")[0].replace("bytes, ", "")
             .replace("nested dict/list", "nested").replace(" pickled", "")
             for pt in payload_tables],
            fontsize=7, rotation=15, ha="right",
        )
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    ax.set_title("Payload round trips: MB/s (log, higher is better; best variant per system,\n"
                 "interpool 1 MiB = zero-copy buffer)",
                 fontsize=9)

    # 5. start-up
    ax = panels[4]
    t = find("Start-up")
    if t is not None:
        labels, values, keys = [], [], []
        for r in t.rows:
            for metric, what in (("ready", "ready"), ("first", "first result"),
                                 ("create", "create+close")):
                v = r.median(metric)
                if v:
                    labels.append(f"{r.label}: {what}")
                    values.append(v)
                    keys.append(r.key)
        if values:
            _barh(ax, labels, values, keys, log=True, unit="{:.2f} ms")
    ax.set_title("Start-up: time to a ready pool / first result (ms, log, lower is better)",
                 fontsize=9)

    # 6. async mix
    ax = panels[5]
    t = find("Async mix")
    if t is not None:
        seq = t.row("sequential")
        rs = [r for r in t.rows if r.median("time") and seq is not None]
        if rs:
            base = seq.median("time")
            _barh(ax, [r.label for r in rs], [base / r.median("time") for r in rs],
                  [r.key for r in rs], unit="{:.2f}x", ref=workers,
                  ref_label=f"ideal ({workers} workers)")
    ax.set_title("Async mix (HTML parsing): speedup over the loop thread (higher is better)",
                 fontsize=9)

    for ax in panels:
        if not ax.has_data():
            ax.text(0.5, 0.5, "not measured in this run", ha="center", va="center",
                    transform=ax.transAxes, color="grey")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write_scaling_chart(path: str, tables: list[Table], machine: dict,
                        sweep: list[int]) -> str | None:
    """The seed's chart: time and speed-up against the number of workers,
    with the ideal line.  None on success, or why it was skipped."""
    t = next((x for x in tables if x.workload == "scaling"), None)
    if t is None:
        return "the scaling workload did not run"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:  # pragma: no cover - matplotlib is installed in CI
        return f"matplotlib unavailable: {exc}"
    seq = t.row("sequential")
    base = seq.median("w1") if seq else None
    fig, (ax_t, ax_s) = plt.subplots(1, 2, figsize=(15, 6))
    cpus = machine.get("process_cpu_count") or machine.get("cpu_count")
    fig.suptitle(f"{t.title}\n{machine['cpu_count']} cores ({machine['cpu_model']}), Python "
                 f"{machine['python_short']}, {machine['date'][:10]}", fontsize=10)
    styles = ["o-", "s-", "^-", "D-", "v-", "P-", "X-", "*-"]
    for i, row in enumerate(r for r in t.rows if r.key != "sequential"):
        xs = [w for w in sweep if row.median(f"w{w}")]
        ys = [row.median(f"w{w}") for w in xs]
        if not xs:
            continue
        style = dict(color=_color(row.key), label=row.label, markersize=5)
        ax_t.plot(xs, ys, styles[i % len(styles)], **style)
        if base:
            ax_s.plot(xs, [base / y for y in ys], styles[i % len(styles)], **style)
    if base:
        ax_t.axhline(base, color=_color("sequential"), linestyle="--", linewidth=0.8,
                     label="sequential")
        ideal = [min(w, cpus or w) for w in sweep]
        ax_s.plot(sweep, ideal, "k--", linewidth=0.8,
                  label="ideal (speed-up = workers, up to the CPUs)")
    for ax in (ax_t, ax_s):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sweep)
        ax.set_xticklabels([str(w) for w in sweep])
        ax.set_xlabel("workers")
        ax.grid(alpha=0.3)
        if cpus:
            ax.axvline(cpus, color="grey", linestyle=":", linewidth=0.8)
    ax_t.set_ylabel("time per run (s, lower is better)")
    ax_t.set_ylim(bottom=0)
    ax_s.set_ylabel("speed-up over sequential (higher is better)")
    ax_s.set_ylim(bottom=0)
    ax_s.set_title(f"dotted: the {cpus} CPUs this process may use", fontsize=8)
    ax_t.legend(fontsize=7, loc="upper right")
    ax_s.legend(fontsize=7, loc="upper left")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def ensure_dir(path: str) -> None:
    os.makedirs(path, exist_ok=True)
