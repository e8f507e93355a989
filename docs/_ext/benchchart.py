"""The benchmarks page's chart, drawn from the page's own tables.

``docs/benchmarks.md`` holds the tables ``make bench`` printed; at each
build this extension reads the "vs stdlib IPE" column of two of them and
draws ``_static/benchmarks.svg`` (matplotlib), so the chart always shows the
figures of the tables next to it.
"""

import os
import re

# (table title, chart caption, log scale)
TABLES = (
    ("Tiny tasks", "Tiny tasks: 20,000 calls of identity(i), times the stdlib executor's "
     "throughput (log scale)", True),
    ("CPU-bound grid", "CPU-bound grid, times the stdlib executor's speed", False),
)


def _table(text: str, title: str) -> list[tuple[str, float]]:
    """(system, ratio) rows of the first table under a heading starting with title."""
    start = text.find(f"## {title}")
    if start < 0:
        raise ValueError(f"benchmarks.md has no table '{title}'")
    rows, header = [], None
    for line in text[start:].splitlines()[1:]:
        if line.startswith("## "):
            break
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
            continue
        match = re.match(r"([\d.]+)x", cells[header.index("vs stdlib IPE")])
        if match:
            rows.append((cells[0], float(match.group(1))))
    return rows


def draw(app, *_args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    src = os.path.join(app.srcdir, "benchmarks.md")
    with open(src, encoding="utf-8") as f:
        text = f.read()
    fig, axes = plt.subplots(len(TABLES), 1, figsize=(9, 10))
    for ax, (title, caption, log) in zip(axes, TABLES):
        rows = _table(text, title)
        labels = [label for label, _ in rows][::-1]
        values = [value for _, value in rows][::-1]
        colors = ["#1f77b4" if label.startswith("interpool") else "#aaaaaa" for label in labels]
        ax.barh(range(len(rows)), values, color=colors)
        ax.set_yticks(range(len(rows)), labels, fontsize=7)
        if log:
            ax.set_xscale("log")
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_title(caption, fontsize=9)
        for y, value in enumerate(values):
            ax.text(value, y, f" {value:g}x", va="center", fontsize=6.5)
    fig.tight_layout()
    out = os.path.join(app.srcdir, "_static", "benchmarks.svg")
    # svg.hashsalt: the same tables draw the same file (no churn in git).
    with matplotlib.rc_context({"svg.hashsalt": "interpool"}):
        fig.savefig(out, format="svg", metadata={"Date": None})
    plt.close(fig)


def setup(app):
    app.connect("builder-inited", draw)
    return {"parallel_read_safe": True, "version": "1"}
