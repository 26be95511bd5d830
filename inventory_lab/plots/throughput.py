"""Throughput charts (notebooks 02, 06, 07): attempts per second against client threads, one
line per workload and database, and one bar per design at the median of its runs.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import NullLocator

from inventory_lab.plots.common import _LINESTYLES, _MARKERS, _label, backend_label


def throughput_vs_concurrency(
    frame: pd.DataFrame,
    ax: Axes | None = None,
    *,
    title: str | None = "Throughput against client threads",
    source: str | None = None,
) -> Axes:
    """Throughput (attempts/s) against concurrency, one line per (workload label, database).

    `frame` is what `experiment.sweep` returns, or several such frames concatenated: columns
    workload, db, concurrency, throughput (and machine, which becomes the source line unless
    `source` is given). Colour tells the database, line style and marker the workload.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4.8))
    dbs = list(dict.fromkeys(frame["db"]))
    workloads = list(dict.fromkeys(frame["workload"]))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (db, workload), points in frame.groupby(["db", "workload"], sort=False):
        points = points.sort_values("concurrency")
        w = workloads.index(workload)
        ax.plot(
            points["concurrency"],
            points["throughput"],
            color=colours[dbs.index(db) % len(colours)],
            linestyle=_LINESTYLES[w % len(_LINESTYLES)],
            marker=_MARKERS[w % len(_MARKERS)],
            label=f"{workload} · {backend_label(db)}",
        )
    concurrencies = sorted(frame["concurrency"].unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(concurrencies, [str(c) for c in concurrencies])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("client threads (concurrency)")
    ax.set_ylabel("throughput (attempts/s)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if source is None and "machine" in frame:
        source = "machine: " + "; ".join(dict.fromkeys(frame["machine"]))
    _label(ax, title, source)
    return ax


def throughput_by_design(
    frame: pd.DataFrame,
    ax: Axes | None = None,
    *,
    value: str = "throughput",
    label: str = "design",
    title: str | None = "Throughput by design",
    source: str | None = None,
) -> Axes:
    """One bar per design at the median of its runs, with every run as a dot.

    `frame` has one row per run: a `label` column naming the design and a `value` column
    (attempts/s for report rows). Designs keep the order of their first appearance.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.6 * max(frame[label].nunique(), 2) + 1.4))
    names = list(dict.fromkeys(frame[label]))
    medians = frame.groupby(label, sort=False)[value].median().reindex(names)
    ax.barh(range(len(names)), medians, height=0.6, color="#8ab6d6")
    for row, name in enumerate(names):
        runs = frame.loc[frame[label] == name, value]
        ax.plot(runs, [row] * len(runs), "o", color="0.2", markersize=4)
        ax.annotate(
            f"{medians[name]:,.0f}",
            xy=(float(runs.max()), row),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=9,
        )
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlabel(f"{value} (median bar, one dot per run)")
    ax.set_xlim(0, float(frame[value].max()) * 1.2)
    ax.grid(axis="x", alpha=0.3)
    _label(ax, title, source)
    return ax
