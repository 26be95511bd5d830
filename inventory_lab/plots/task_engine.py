"""The task engine's charts (notebook 06): a task's life as a state diagram, orders accepted
against tasks persisted over one run (the backlog between them), every task of a run from
accepted to persisted, the drain rate against executors, and the accept-to-persisted lag.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from inventory_lab.orders import Outcome
from inventory_lab.plots.common import _LINESTYLES, _MARKERS, OUTCOME_COLOURS, _label, backend_label
from inventory_lab.tasks.store import Status


def task_state_diagram(ax: Axes | None = None, *, title: str | None = "A task's life") -> Axes:
    """The task life cycle of `tasks.store` as a state diagram: states with their status codes,
    and the transitions, each labelled with the statement or worker that makes it."""
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4.6), layout="constrained")
    where = {
        Status.NEW: (2.3, 3.0),
        Status.LOCKED: (6.0, 3.0),
        Status.DONE: (9.6, 3.0),
        Status.FAILED: (6.0, 0.6),
        Status.DEAD: (9.6, 0.6),
    }
    colours = {
        Status.NEW: "#dfe7ef",
        Status.LOCKED: "#f4d58d",
        Status.DONE: "#9fd8cf",
        Status.FAILED: "#f2b38b",
        Status.DEAD: "#c9c9c9",
    }
    boxes = {
        status: ax.text(
            x,
            y,
            f"{status.name}\n{int(status)}",
            ha="center",
            va="center",
            fontsize=11,
            fontweight="bold",
            bbox={"boxstyle": "round,pad=0.6", "facecolor": colours[status], "edgecolor": "0.3"},
            zorder=3,
        )
        for status, (x, y) in where.items()
    }

    # (from, to, label, arc, where the label goes); from None is the way in: an accepted order
    edges: list[tuple[Status | None, Status, str, float, tuple[float, float]]] = [
        (None, Status.NEW, "accepted:\ntask row\ninserted", 0.0, (0.55, 3.75)),
        (
            Status.NEW,
            Status.LOCKED,
            "claim\nSET status = 100\nWHERE id = :id AND status = 0",
            0.0,
            (4.15, 2.35),
        ),
        (
            Status.LOCKED,
            Status.DONE,
            "apply ok, then\ncompare-and-set on\nid, owner, status",
            0.0,
            (7.8, 2.35),
        ),
        (
            Status.LOCKED,
            Status.NEW,
            "lease expired (unlock worker)\nor start-up recovery",
            0.45,
            (4.15, 4.55),
        ),
        (Status.LOCKED, Status.FAILED, "apply\nraised", 0.0, (6.55, 1.8)),
        (Status.FAILED, Status.NEW, "backoff ran out,\nattempts < max", -0.3, (2.75, 0.85)),
        (Status.FAILED, Status.DEAD, "attempts ≥ max", 0.0, (7.8, 0.95)),
    ]
    for start, end, label, rad, at in edges:
        ax.annotate(
            "",
            xy=where[end],
            xytext=(0.0, where[end][1]) if start is None else where[start],
            arrowprops={
                "arrowstyle": "-|>",
                "color": "0.25",
                "lw": 1.3,
                "connectionstyle": f"arc3,rad={rad}",
                "patchA": None if start is None else boxes[start].get_bbox_patch(),
                "patchB": boxes[end].get_bbox_patch(),
                "shrinkA": 2,
                "shrinkB": 2,
            },
            zorder=2,
        )
        ax.text(*at, label, ha="center", va="center", fontsize=8.5, color="0.15")
    ax.set_xlim(-0.2, 10.6)
    ax.set_ylim(-0.1, 5.2)
    ax.set_axis_off()
    _label(ax, title, None)
    return ax


def backlog_chart(
    backlog: pd.DataFrame,
    ax: Axes | None = None,
    *,
    title: str | None = "Accepted now, persisted behind",
    source: str | None = None,
) -> Axes:
    """Orders accepted and tasks persisted over one run, cumulative, with the backlog between
    them shaded, and a dotted line where the last order was accepted.

    `backlog` is `task_runs.backlog_over_time(tasks)`: t_ms, accepted, persisted, backlog. The
    gap between the two steps at any moment is the number of tasks accepted and not yet in the
    database; right of the dotted line the clients are done and only the database is working.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4.2), layout="constrained")
    t = backlog["t_ms"].to_numpy()
    accepted = backlog["accepted"].to_numpy()
    persisted = backlog["persisted"].to_numpy()
    green = OUTCOME_COLOURS[Outcome.ACCEPTED.value]
    ax.step(t, accepted, where="post", color=green, lw=2, label="accepted (task row recorded)")
    ax.step(t, persisted, where="post", color="0.2", lw=2, label="persisted (task applied)")
    ax.fill_between(
        t, persisted, accepted, step="post", color=green, alpha=0.18, label="backlog", lw=0
    )
    if len(backlog):
        last = backlog.loc[backlog["accepted"].idxmax(), "t_ms"]  # first row at the final count
        ax.axvline(last, color="0.35", ls=":", lw=1.3, label="last order accepted")
    ax.set_xlabel("time since the first task was recorded (ms, database clock)")
    ax.set_ylabel("orders")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _label(ax, title, source)
    return ax


def task_timeline(
    tasks: pd.DataFrame,
    ax: Axes | None = None,
    *,
    marked: pd.Series | None = None,
    marked_label: str = "marked",
    title: str | None = "Every task from accepted to persisted",
    source: str | None = None,
) -> Axes:
    """One horizontal line per task, from its created_time to its done_time, grouped by shard.

    `tasks` is `TaskStore.frame()` (also `FailureRun.tasks`): shard, created_time, done_time (epoch
    seconds), status. Times are shown in ms since the first task was created. Colour tells the
    shard; tasks flagged True in `marked` (a boolean Series on the same index) are drawn over in
    red, thicker, with a marker where they end, and named `marked_label` in the legend. A task
    not yet done runs to its modify_time, dashed. Each line is thinner than its row, so that a
    task reads as an interval of its own and neighbours never merge into one block.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 5.5), layout="constrained")
    order = tasks.sort_values(["shard", "created_time"])
    t0 = float(order["created_time"].min())
    done = order["done_time"].notna()
    end = order["done_time"].where(done, order["modify_time"])
    rows = list(range(len(order)))
    starts_ms = ((order["created_time"] - t0) * 1000.0).to_numpy()
    ends_ms = ((end - t0) * 1000.0).to_numpy()
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    shard_colour = order["shard"].map(lambda s: colours[int(s) % len(colours)])
    flagged = (
        pd.Series(False, index=order.index)
        if marked is None
        else marked.reindex(order.index, fill_value=False).astype(bool)
    )
    # A row's height in points, as the Axes stands now: the line takes about half of it.
    row_pt = ax.get_position().height * ax.figure.get_figheight() * 72.0 / max(len(order), 1)
    width = min(max(0.5 * row_pt, 0.3), 3.0)
    ax.hlines(
        rows,
        starts_ms,
        ends_ms,
        colors=shard_colour.tolist(),
        linewidths=width,
        linestyles=["solid" if finished else (0, (2, 1)) for finished in done],
    )
    red = OUTCOME_COLOURS[Outcome.ERROR.value]
    if flagged.any():  # over the shard's line, thicker, and marked where it ends
        picked = flagged.to_numpy()
        picked_rows = [row for row, flag in zip(rows, picked, strict=True) if flag]
        ax.hlines(
            picked_rows,
            starts_ms[picked],
            ends_ms[picked],
            colors=red,
            linewidths=max(2.0 * width, 1.5),
            zorder=3,
        )
        ax.plot(ends_ms[picked], picked_rows, "<", color=red)
    shards = list(dict.fromkeys(order["shard"]))
    positions = order["shard"].reset_index(drop=True)
    centres = [float(positions[positions == s].index.to_series().mean()) for s in shards]
    ax.set_yticks(centres, [f"shard {s}" for s in shards])
    for s in shards[1:]:
        ax.axhline(float(positions[positions == s].index.min()) - 0.5, color="0.6", lw=0.6)
    ax.set_ylim(len(order) - 0.5, -0.5)  # shard 0 on top, earliest first
    ax.set_xlabel("time since the first task was created (ms)")
    ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    handles = [
        Line2D([], [], color=colours[int(s) % len(colours)], lw=2, label=f"shard {s}")
        for s in shards
    ]
    if flagged.any():
        handles.append(Line2D([], [], color=red, lw=2.5, marker="<", label=marked_label))
    if not done.all():
        handles.append(Line2D([], [], color="0.3", lw=2, ls=(0, (2, 1)), label="not done"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _label(ax, title, source)
    return ax


def drain_rate_chart(
    frame: pd.DataFrame,
    ax: Axes | None = None,
    *,
    title: str | None = "Drain rate against executors",
    source: str | None = None,
) -> Axes:
    """Tasks applied per second against executor threads, one line per (shards, claim mode).

    `frame` has one row per `task_runs.drain_rate` result: shards, workers, claim, rate (and db,
    named in each line's label when the frame holds more than one database). Colour tells the
    number of shards (picked by its log2, so that 1, 2, 4, 8 shards keep their colours from chart
    to chart), line style and marker the claim mode.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    claims = list(dict.fromkeys(frame["claim"]))
    several_dbs = "db" in frame and frame["db"].nunique() > 1
    keys = ["db", "claim", "shards"] if several_dbs else ["claim", "shards"]
    for key, points in frame.groupby(keys, sort=False):
        *db, claim, shards = key
        points = points.sort_values("workers")
        c = claims.index(claim)
        label = f"{shards} shard{'s' if shards > 1 else ''}, claim={claim}"
        ax.plot(
            points["workers"],
            points["rate"],
            color=colours[(int(shards).bit_length() - 1) % len(colours)],
            linestyle=_LINESTYLES[c % len(_LINESTYLES)],
            marker=_MARKERS[c % len(_MARKERS)],
            label=f"{label} · {backend_label(db[0])}" if db else label,
        )
    workers = sorted(frame["workers"].unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(workers, [str(w) for w in workers])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("executor threads")
    ax.set_ylabel("drain rate (tasks/s)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _label(ax, title, source)
    return ax


def lag_histogram(
    lags: Mapping[str, pd.Series],
    ax: Axes | None = None,
    *,
    bins: int = 40,
    log_x: bool = False,
    title: str | None = "Accept-to-persisted lag",
    source: str | None = None,
) -> Axes:
    """Histograms of lags in ms (e.g. `task_runs.lag_ms`), one outline per labelled run, on
    shared bins; each run's p50 and p99 are marked with dotted and dashed lines of its colour.

    `log_x`: logarithmic bins and axis, so that a few lease-long outliers do not squash the body.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 4.2), layout="constrained")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    values = pd.concat(list(lags.values()), ignore_index=True)
    top = float(values.max()) * 1.02 if len(values) else 1.0
    if log_x:
        positive = values[values > 0]
        bottom = float(positive.min()) / 1.02 if len(positive) else top / 1000.0
        edges = [bottom * (top / bottom) ** (i / bins) for i in range(bins + 1)]
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter("{x:g}")
    else:
        edges = [top * i / bins for i in range(bins + 1)]
    for i, (label, lag) in enumerate(lags.items()):
        colour = colours[i % len(colours)]
        p50, p99 = float(lag.quantile(0.50)), float(lag.quantile(0.99))
        ax.hist(
            lag,
            bins=edges,
            histtype="step",
            linewidth=1.6,
            color=colour,
            label=f"{label}: p50 {p50:.0f} ms, p99 {p99:.0f} ms",
        )
        ax.axvline(p50, color=colour, linestyle=":", linewidth=1.2)
        ax.axvline(p99, color=colour, linestyle="--", linewidth=1.2)
    ax.set_xlabel("accept-to-persisted lag (ms)")
    ax.set_ylabel("tasks")
    ax.set_xlim(left=edges[0])
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _label(ax, title, source)
    return ax
