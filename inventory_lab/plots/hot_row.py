"""The hot row as a queue (notebook 02): `db_only` on one row and spread over many, against the
number of clients, as the bench measured it on a server with row locks (PostgreSQL, MariaDB).

Three panels share the clients axis: accepted orders per second, the sessions waiting for a row
lock (the bench's `LockMeter`, averaged over the measured window) and the median latency. On one
row the waiting sessions grow with the clients while the rate does not: more clients add queue,
not work. Spread over many rows, almost no session waits for another.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import NullLocator

from inventory_lab.plots.common import _LINESTYLES, _MARKERS, _label, backend_label

# (column, y label) of each panel, left to right
HOT_ROW_PANELS = (
    ("accepted_per_s", "accepted orders/s"),
    ("lock_waiters", "sessions waiting for a row lock (average)"),
    ("p50_ms", "median latency (ms, log)"),
)


def hot_row_queue(
    cells: pd.DataFrame,
    axes: Sequence[Axes] | None = None,
    *,
    title: str | None = "db_only: one hot row against the same orders spread over many rows",
    source: str | None = None,
) -> list[Axes]:
    """One line per (database, scenario) in each of the three panels of `HOT_ROW_PANELS`.

    `cells` holds bench rows (`bench.run_cells`, or the `cells` of a bench file) with a `db`
    column naming the database each came from: scenario, clients, accepted_per_s,
    lock_waiters, p50_ms. Colour tells the database, line style and marker the scenario. The
    title goes above the first panel; the `source` line goes under the figure, across all three
    panels (an annotation under one panel would widen it in a constrained layout).
    """
    if axes is None:
        _, axes = plt.subplots(1, len(HOT_ROW_PANELS), figsize=(15, 4.4), layout="constrained")
    axes = list(axes)
    dbs = list(dict.fromkeys(cells["db"]))
    scenarios = list(dict.fromkeys(cells["scenario"]))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    clients = sorted(cells["clients"].unique())
    for ax, (column, ylabel) in zip(axes, HOT_ROW_PANELS, strict=True):
        for (db, scenario), points in cells.groupby(["db", "scenario"], sort=False):
            points = points.sort_values("clients")
            s = scenarios.index(scenario)
            ax.plot(
                points["clients"],
                points[column],
                color=colours[dbs.index(db) % len(colours)],
                linestyle=_LINESTYLES[s % len(_LINESTYLES)],
                marker=_MARKERS[s % len(_MARKERS)],
                label=f"{scenario} · {backend_label(db)}",
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(clients, [str(c) for c in clients])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("clients (all load processes)")
        ax.set_ylabel(ylabel)
        if column.endswith("_ms"):
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[1].plot(clients, clients, color="0.6", lw=0.8, ls=":", label="every client waiting")
    handles, labels = axes[1].get_legend_handles_labels()  # the lines and the diagonal
    axes[-1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _label(axes[0], title, None)
    if source:
        axes[0].figure.supxlabel(source, x=0.01, ha="left", fontsize=8, color="0.35")
    return axes
