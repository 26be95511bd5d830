"""Charts of the gate-1 designs side by side (notebooks 03, 05).

`in_process_comparison` draws `bench_in_process.compare`'s frame — the harness's view, every
client a thread of one process: each design's attempts/s against client threads with the raw
EVALSHA reference dashed, and beside it each design's ratio to `db_only` measured in the same
run. `findings_by_variant` draws, one bar per variant, a finding that should be zero (Redis
left short after crashes, units refused while stock was left), red where it is not.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from inventory_lab.plots.common import _label

_BROKEN, _CLEAN = "#d62828", "#2a9d8f"


def in_process_comparison(
    frame: pd.DataFrame,
    axes: Sequence[Axes] | None = None,
    *,
    title: str | None = None,
    source: str | None = None,
) -> Sequence[Axes]:
    """Left: attempts/s per design against client threads (log scales), raw EVALSHA dashed.
    Right: each design's throughput over db_only's at the same concurrency, a bar per design.

    `frame` is `bench_in_process.compare`'s (design, concurrency, throughput, raw_evalsha,
    vs_db_only); `db_only` is the reference on the right (its ratio is 1 by definition). The
    `source` line goes under both panels, so that a long one squeezes neither.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    left, right = axes
    threads = sorted(frame["concurrency"].unique())
    names = list(dict.fromkeys(frame["design"]))
    for name in names:
        rows = frame[frame["design"] == name].sort_values("concurrency")
        left.plot(rows["concurrency"], rows["throughput"], marker="o", label=name)
    raw = frame.drop_duplicates("concurrency").sort_values("concurrency")
    left.plot(raw["concurrency"], raw["raw_evalsha"], "k--", marker="x", label="raw EVALSHA")
    left.set_xscale("log", base=2)
    left.set_xticks(threads, [str(c) for c in threads])
    left.minorticks_off()
    left.set_yscale("log")
    left.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    left.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    left.yaxis.set_minor_formatter(NullFormatter())
    left.set_xlabel("client threads")
    left.set_ylabel("attempts/s (log scale)")
    left.grid(alpha=0.3)
    left.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    left.set_title("throughput", loc="left")
    compared = [name for name in names if name != "db_only"]
    width = 0.8 / max(len(compared), 1)
    for i, name in enumerate(compared):
        rows = frame[frame["design"] == name].sort_values("concurrency")
        offset = (i - (len(compared) - 1) / 2) * width
        xs = [threads.index(c) + offset for c in rows["concurrency"]]
        right.bar(xs, rows["vs_db_only"], width=width, label=name)
    right.axhline(1.0, color="0.3", linewidth=1)
    right.text(-0.45, 1.0, "db_only = 1", va="bottom", ha="left", fontsize=8)
    right.set_xticks(range(len(threads)), [str(c) for c in threads])
    right.set_xlabel("client threads")
    right.set_ylabel("throughput / db_only's")
    right.grid(axis="y", alpha=0.3)
    right.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    right.set_title("ratio to db_only, same run", loc="left")
    if title:
        left.figure.suptitle(title)
    if source:
        left.figure.supxlabel(source, x=0.01, ha="left", fontsize=8, color="0.35")
    return axes


def findings_by_variant(
    values: pd.Series,
    ax: Axes | None = None,
    *,
    xlabel: str,
    title: str | None = None,
    source: str | None = None,
) -> Axes:
    """One horizontal bar per variant (the Series' index) of a finding that should be zero:
    red and labelled with its signed value where it is not, green and labelled 0 where it is."""
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 0.45 * max(len(values), 2) + 1.4), layout="constrained")
    numbers = [int(value) for value in values]
    colours = [_BROKEN if number else _CLEAN for number in numbers]
    bars = ax.barh([str(name) for name in values.index], numbers, color=colours)
    signed = any(number < 0 for number in numbers)
    labels = [f"{n:+d}" if n and signed else str(n) for n in numbers]
    ax.bar_label(bars, labels=labels, padding=4, fontsize=9)
    ax.axvline(0, color="0.3", linewidth=1)
    ax.invert_yaxis()  # the first variant on top
    low, high = min([*numbers, 0]), max([*numbers, 0])
    pad = max(high - low, 1) * 0.15
    ax.set_xlim(low - (pad if low else 0), high + pad)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # units and orders: whole numbers
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    _label(ax, title, source)
    return ax
