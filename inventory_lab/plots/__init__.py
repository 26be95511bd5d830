"""The few charts the notebooks share: a race timeline, throughput against concurrency, outcomes.

Each function takes a DataFrame the package produced — the per-attempt records of
`run_workload` (also `Experiment.records`), the rows of `experiment.sweep`, or report rows
(`RunReport.to_dict()`) — draws on the Axes it is given or on a new figure, and returns the Axes,
so that a notebook can put charts side by side and add to them. Colours are fixed per outcome, so
an outcome looks the same in every notebook. Every chart can carry a `source` line naming the
backend and machine its numbers came from; `throughput_vs_concurrency` writes it from the frame.
Nothing here computes a result: the checker and the experiment do, the charts only show them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import NullLocator

from inventory_lab.designs import TEACHING_ORDER
from inventory_lab.orders import Outcome
from inventory_lab.tasks.store import Status

OUTCOME_COLOURS: dict[str, str] = {
    Outcome.ACCEPTED.value: "#2a9d8f",
    Outcome.SOLD_OUT.value: "#b0b7bf",
    Outcome.DUPLICATE.value: "#457b9d",
    Outcome.REJECTED.value: "#e9c46a",
    Outcome.THROTTLED.value: "#f4a261",
    Outcome.ERROR.value: "#d62828",
    Outcome.UNKNOWN.value: "#7b2cbf",
}
# The report's count column for each outcome, in the order bars are stacked.
OUTCOME_COLUMNS: dict[str, str] = {
    Outcome.ACCEPTED.value: "accepted",
    Outcome.SOLD_OUT.value: "sold_out",
    Outcome.DUPLICATE.value: "duplicates",
    Outcome.REJECTED.value: "rejected",
    Outcome.THROTTLED.value: "throttled",
    Outcome.ERROR.value: "errors",
    Outcome.UNKNOWN.value: "unknown",
}
_RETRY_HATCH = "////"
_MARKERS = ["o", "s", "^", "D", "v", "P"]
_LINESTYLES = ["-", "--", ":", "-."]


def backend_label(url: str) -> str:
    """A short name for a (masked) database URL: 'sqlite', 'postgresql @127.0.0.1:5432', …"""
    parts = urlsplit(url)
    dialect = parts.scheme.split("+")[0] or url
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname:
        return dialect
    return f"{dialect} @{parts.hostname}" + (f":{port}" if port is not None else "")


def race_timeline(
    records: pd.DataFrame,
    ax: Axes | None = None,
    *,
    title: str | None = "Who was deducting when",
    source: str | None = None,
) -> Axes:
    """One horizontal bar per attempt, from its start to its end; one row per client thread.

    `records` has the columns of `workload.RECORD_COLUMNS` (client, start_s, end_s, outcome and,
    optionally, attempt). Bars are coloured by outcome; a client's retry of an order (attempt > 0)
    is hatched. Bars that overlap in time are attempts that were in flight together.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 0.45 * max(records["client"].nunique(), 2) + 1.6))
    clients = sorted(records["client"].unique())
    row_of = {client: row for row, client in enumerate(clients)}
    retries = records["attempt"] > 0 if "attempt" in records else pd.Series(False, records.index)
    bars = ax.barh(
        y=records["client"].map(row_of),
        width=(records["end_s"] - records["start_s"]) * 1000.0,
        left=records["start_s"] * 1000.0,
        height=0.7,
        color=records["outcome"].map(OUTCOME_COLOURS).fillna("black"),
        edgecolor="white",
        linewidth=0.4,
    )
    for bar, retry in zip(bars, retries, strict=True):
        if retry:  # one bar at a time: a list of hatches needs matplotlib 3.10
            bar.set_hatch(_RETRY_HATCH)
    ax.set_yticks(range(len(clients)), [f"client {c}" for c in clients])
    ax.set_ylim(len(clients) - 0.5, -0.5)  # client 0 on top
    ax.set_xlabel("time since the run started (ms)")
    ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    handles = [
        Patch(facecolor=OUTCOME_COLOURS.get(outcome, "black"), label=outcome)
        for outcome in _present(OUTCOME_COLOURS, records["outcome"])
    ]
    if retries.any():
        handles.append(Patch(facecolor="white", edgecolor="0.3", hatch=_RETRY_HATCH, label="retry"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _label(ax, title, source)
    return ax


def fault_windows(ax: Axes, history: pd.DataFrame) -> Axes:
    """Shade the nemesis's windows (start to end) and mark its instant strikes on a timeline
    in milliseconds (e.g. `race_timeline`'s). `history` is `Nemesis.history()`, on the same
    clock as the records (run_workload's `t0`)."""
    starts = history[history["event"] == "start"]["t_s"].tolist()
    ends = history[history["event"] == "end"]["t_s"].tolist()
    for n, (start, end) in enumerate(zip(starts, ends, strict=False)):
        label = f"{history['fault'].iloc[0]} (window)" if n == 0 else None
        ax.axvspan(start * 1000.0, end * 1000.0, color="0.25", alpha=0.13, lw=0, label=label)
    for n, t in enumerate(history[history["event"] == "strike"]["t_s"]):
        label = f"{history['fault'].iloc[0]} (strike)" if n == 0 else None
        ax.axvline(t * 1000.0, color="0.15", lw=1.5, ls="--", label=label)
    handles, _ = ax.get_legend_handles_labels()
    legend = ax.get_legend()
    if legend is not None:  # keep the outcome legend, add the nemesis's entries below it
        handles = [*legend.legend_handles, *handles]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return ax


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


def outcome_counts(
    frame: pd.DataFrame,
    ax: Axes | None = None,
    *,
    label: str = "design",
    title: str | None = "What the clients were told, and what the checker found",
    source: str | None = None,
) -> Axes:
    """One stacked bar per run: how many attempts were accepted, sold out, duplicates, …

    `frame` has one row per run with the report's count columns (accepted, sold_out,
    duplicates, rejected, errors) and a `label` column naming the run. When the frame has the
    checker's oversold and double_deducted columns, each bar is annotated with them.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 0.55 * max(len(frame), 2) + 1.4))
    rows = range(len(frame))
    left = pd.Series(0.0, index=frame.index)
    for outcome, column in OUTCOME_COLUMNS.items():
        if column not in frame or not frame[column].any():
            continue
        ax.barh(
            rows,
            frame[column],
            left=left,
            height=0.6,
            color=OUTCOME_COLOURS[outcome],
            label=outcome,
        )
        left = left + frame[column]
    findings = [name for name in ("oversold", "double_deducted") if name in frame]
    for row, (total, (_, run)) in enumerate(zip(left, frame.iterrows(), strict=True)):
        if findings:
            broken = any(int(run[name]) for name in findings)
            ax.annotate(
                ", ".join(f"{name.replace('_', ' ')} {int(run[name])}" for name in findings),
                xy=(total, row),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=9,
                color=OUTCOME_COLOURS[Outcome.ERROR.value] if broken else "0.3",
            )
    ax.set_yticks(list(rows), [str(value) for value in frame[label]])
    ax.set_ylim(len(frame) - 0.5, -0.5)  # first run on top
    ax.set_xlabel("attempts")
    ax.set_xlim(right=float(left.max()) * 1.5 if len(frame) else 1.0)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _label(ax, title, source)
    return ax


def _present(order: Iterable[str], values: pd.Series) -> list[str]:
    """The known values that occur, in the known order, then any unknown ones."""
    seen = set(values)
    known = [value for value in order if value in seen]
    return known + sorted(seen - set(known))


def _label(ax: Axes, title: str | None, source: str | None) -> None:
    if title:
        ax.set_title(title, loc="left")
    if source:
        # Below the x-axis label, so that a saved or pasted chart keeps its provenance.
        ax.annotate(
            source,
            xy=(0.0, 0.0),
            xycoords="axes fraction",
            xytext=(0, -38),
            textcoords="offset points",
            va="top",
            fontsize=8,
            color="0.35",
        )


# --- Redis designs (notebooks 03-05)

_HEAD_BOX = {"boxstyle": "round,pad=0.5", "facecolor": "#e8eef4", "edgecolor": "0.35"}
_NOTE_BOX = {"boxstyle": "round,pad=0.35", "facecolor": "#f4f1de", "edgecolor": "0.6"}
_LABEL_BOX = {"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"}


def sequence_diagram(
    steps: Iterable[tuple[str, str, str]],
    ax: Axes | None = None,
    *,
    participants: Iterable[str] | None = None,
    title: str | None = None,
    source: str | None = None,
) -> Axes:
    """A sequence diagram: one lifeline per participant, one numbered arrow per step, top down.

    A step is `(sender, receiver, message)`. An arrow to a participant further right is drawn
    solid (a request), one to the left dashed (a reply); a step whose sender is its receiver is a
    note on that lifeline (work done there). A message may span several lines. Participants stand
    left to right in the order given, or in the order they first appear in `steps`.
    """
    steps = list(steps)
    names = list(participants or dict.fromkeys(name for step in steps for name in step[:2]))
    unknown = {name for step in steps for name in step[:2]} - set(names)
    if unknown:
        raise ValueError(f"steps name participants not listed: {', '.join(sorted(unknown))}")
    column = {name: i for i, name in enumerate(names)}
    # The vertical unit is one text line: a step takes its message's lines plus one.
    heights = [str(message).count("\n") + 2 for _, _, message in steps]
    total = sum(heights) + 2
    if ax is None:
        _, ax = plt.subplots(figsize=(max(2.8 * len(names), 6), 0.2 * total + 1.2))
    for name, x in column.items():
        ax.plot([x, x], [0.5, total], color="0.6", linestyle=":", linewidth=1, zorder=0)
        ax.text(x, 0, name, ha="center", va="center", fontsize=10, weight="bold", bbox=_HEAD_BOX)
    y = 1.5
    for number, ((sender, receiver, message), height) in enumerate(
        zip(steps, heights, strict=True), start=1
    ):
        y += height
        x0, x1 = column[sender], column[receiver]
        text = f"{number}. {message}"
        if x0 == x1:
            ax.text(
                x0,
                y - height / 2 + 0.5,
                text,
                ha="center",
                va="center",
                fontsize=8.5,
                family="monospace",
                bbox=_NOTE_BOX,
                zorder=3,
            )
            continue
        request = x1 > x0
        ax.annotate(
            "",
            xy=(x1, y),
            xytext=(x0, y),
            arrowprops={
                "arrowstyle": "-|>",
                "color": "0.15" if request else "0.45",
                "linestyle": "-" if request else "--",
                "linewidth": 1.2,
                "shrinkA": 0,
                "shrinkB": 0,
            },
        )
        ax.text(
            min(x0, x1) + 0.06,
            y - 0.3,
            text,
            ha="left",
            va="bottom",
            fontsize=8.5,
            family="monospace",
            color="0.1" if request else "0.35",
            bbox=_LABEL_BOX,  # hides the lifelines a long message crosses
            zorder=2,
        )
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylim(total, -1)
    ax.axis("off")
    _label(ax, title, None)
    if source:  # no x-axis to clear: the source line sits right below the last step
        ax.annotate(
            source, xy=(0.0, 0.0), xycoords="axes fraction", va="top", fontsize=8, color="0.35"
        )
    return ax


# --- task engine (notebook 06)


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


def task_timeline(
    tasks: pd.DataFrame,
    ax: Axes | None = None,
    *,
    marked: pd.Series | None = None,
    marked_label: str = "marked",
    title: str | None = "Every task from accepted to persisted",
    source: str | None = None,
) -> Axes:
    """One thin horizontal bar per task, from its created_time to its done_time, grouped by shard.

    `tasks` is `TaskStore.frame()` (also `FailureRun.tasks`): shard, created_time, done_time (epoch
    seconds), status. Times are shown in ms since the first task was created. Colour tells the
    shard; tasks flagged True in `marked` (a boolean Series on the same index) are drawn in red
    and named `marked_label` in the legend. A task not yet done runs to its modify_time, hatched.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 5.5), layout="constrained")
    order = tasks.sort_values(["shard", "created_time"])
    t0 = float(order["created_time"].min())
    done = order["done_time"].notna()
    end = order["done_time"].where(done, order["modify_time"])
    rows = range(len(order))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    shard_colour = order["shard"].map(lambda s: colours[int(s) % len(colours)])
    flagged = (
        pd.Series(False, index=order.index)
        if marked is None
        else marked.reindex(order.index, fill_value=False).astype(bool)
    )
    bars = ax.barh(
        y=list(rows),
        width=(end - order["created_time"]) * 1000.0,
        left=(order["created_time"] - t0) * 1000.0,
        height=1.0,
        color=shard_colour.where(~flagged, OUTCOME_COLOURS[Outcome.ERROR.value]),
        linewidth=0,
    )
    for bar, finished in zip(bars, done, strict=True):
        if not finished:
            bar.set_hatch("xx")
    if flagged.any():  # one-row bars are thin: mark where the flagged ones end
        ax.plot(
            ((end - t0) * 1000.0)[flagged],
            [row for row, flag in zip(rows, flagged, strict=True) if flag],
            "<",
            color=OUTCOME_COLOURS[Outcome.ERROR.value],
            markersize=6,
        )
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
    handles = [Patch(facecolor=colours[int(s) % len(colours)], label=f"shard {s}") for s in shards]
    if flagged.any():
        handles.append(Patch(facecolor=OUTCOME_COLOURS[Outcome.ERROR.value], label=marked_label))
    if not done.all():
        handles.append(Patch(facecolor="white", edgecolor="0.3", hatch="xx", label="not done"))
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

    `frame` has one row per `tasks.runs.drain_rate` result: shards, workers, claim, rate (and db,
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
    """Histograms of lags in ms (e.g. `tasks.runs.lag_ms`), one outline per labelled run, on
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


# --- throttling (notebook 07)


def admitted_rate(
    admissions: pd.DataFrame,
    configured_per_s: float,
    ax: Axes | None = None,
    *,
    bucket_ms: float = 50,
    title: str | None = None,
    source: str | None = None,
) -> Axes:
    """Admissions per `bucket_ms` over time, stacked by app instance, against the configured limit.

    `admissions` is what `flash_sale.measure_admission` returns: one row per admission, with t_s
    (seconds since the instances started) and, optionally, instance. The dashed line is the
    configured limit per bucket: a per-process limiter's stack reaches about P times it, a
    cluster-wide one's stays at it whatever P is.
    """
    if bucket_ms <= 0 or configured_per_s <= 0:
        raise ValueError("bucket_ms and configured_per_s must be positive")
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.4), layout="constrained")
    bucket = (admissions["t_s"] * 1000.0 // bucket_ms).astype(int)
    instance = admissions["instance"] if "instance" in admissions else pd.Series(0, bucket.index)
    buckets = int(bucket.max()) + 1 if len(bucket) else 1
    counts = pd.crosstab(bucket, instance).reindex(range(buckets), fill_value=0)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lefts = [b * bucket_ms for b in counts.index]
    bottom = pd.Series(0, index=counts.index)
    for i, column in enumerate(counts.columns):
        ax.bar(
            lefts,
            counts[column].to_numpy(),
            width=bucket_ms,
            bottom=bottom.to_numpy(),
            align="edge",
            color=colours[i % len(colours)],
            edgecolor="white",
            linewidth=0.4,
            label=f"instance {column}",
        )
        bottom = bottom + counts[column]
    per_bucket = configured_per_s * bucket_ms / 1000.0
    ax.axhline(
        per_bucket,
        color="black",
        linestyle="--",
        linewidth=1.2,
        label=f"configured limit\n{configured_per_s:g}/s = {per_bucket:g} per {bucket_ms:g} ms",
    )
    ax.set_xlabel("time since the instances started (ms)")
    ax.set_ylabel(f"admissions per {bucket_ms:g} ms")
    ax.set_xlim(0, buckets * bucket_ms)
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    _label(ax, title, source)
    return ax


# --- faults and review (notebooks 08-09)

_CLEAN_COLOUR = "#d9efe3"
# A broken cell takes the colour of the worst invariant it broke, in this order (worst first).
_BROKEN_COLOURS = {
    "oversold": "#b2182b",
    "lost": "#d6604d",
    "double_deducted": "#ef8a62",
    "unaccounted": "#f6c58f",
    "converged": "#b8a4d4",
}
_INVARIANT_LABELS = {
    "oversold": "oversold",
    "double_deducted": "double",
    "lost": "lost",
    "unaccounted": "unacc.",
    "converged": "not converged",
}


def review_heatmap(
    frame: pd.DataFrame,
    ax: Axes | None = None,
    *,
    title: str | None = "What broke after reconciliation, design by fault",
    source: str | None = None,
) -> Axes:
    """The review matrix as a grid: one row per design, one column per fault.

    `frame` has one row per cell, as `review.review` returns it (or its cells read back from
    JSON): design, fault, broken (a sequence of invariant names), drift_before, and optionally
    applies, verdict and the invariants' counts (oversold, double_deducted, lost, unaccounted).
    A cell's colour tells the worst invariant still broken after reconciliation (oversold, then
    lost, double_deducted, unaccounted, converged; pale green: none), the same in every chart,
    and its text names every broken one with its count. "drift N" is the units by which Redis and
    the DB disagreed before the repair. A fault with nothing to act on in that design (applies
    False) is hatched; a cell whose verdict is not "as expected" gets a thick red border. Rows
    and columns keep the order of their first appearance; the source line comes from the frame's
    redis, db and machine columns unless `source` is given.
    """
    label = "row" if "row" in frame else "design"  # a review's rows: a design and its variant
    designs = list(dict.fromkeys(frame[label]))
    faults = list(dict.fromkeys(frame["fault"]))
    if ax is None:
        _, ax = plt.subplots(
            figsize=(1.3 * len(faults) + 4.0, 0.62 * len(designs) + 1.5), layout="constrained"
        )
    severity = list(_BROKEN_COLOURS)
    broken = frame["broken"].map(
        lambda names: sorted(names, key=lambda n: severity.index(n) if n in severity else 99)
    )
    worst = [names[0] if names else None for names in broken]
    unexpected = False
    for (_, cell), names, top in zip(frame.iterrows(), broken, worst, strict=True):
        x, y = faults.index(cell["fault"]), designs.index(cell[label])
        colour = _CLEAN_COLOUR if top is None else _BROKEN_COLOURS.get(top, "0.5")
        ax.add_patch(Rectangle((x, y), 1, 1, facecolor=colour, edgecolor="white", lw=2))
        if not cell.get("applies", True):
            ax.add_patch(Rectangle((x, y), 1, 1, fill=False, hatch="///", edgecolor="0.6", lw=0))
        if cell.get("verdict", "as expected") != "as expected":
            unexpected = True
            ax.add_patch(
                Rectangle((x + 0.04, y + 0.04), 0.92, 0.92, fill=False, edgecolor="red", lw=2.5)
            )
        lines = [
            _INVARIANT_LABELS.get(name, name) + (f" {int(cell[name])}" if name in cell else "")
            for name in names
        ]
        if int(cell["drift_before"]):
            lines.append(f"drift {int(cell['drift_before'])}")
        ax.text(
            x + 0.5,
            y + 0.5,
            "\n".join(lines) or "ok",
            ha="center",
            va="center",
            fontsize=7.5,
            color="0.1" if lines else "0.4",
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.6, "lw": 0}
            if lines
            else None,
        )
    ax.set_xlim(0, len(faults))
    ax.set_ylim(len(designs), 0)  # first design on top
    ax.set_xticks([i + 0.5 for i in range(len(faults))], faults, fontsize=8)
    ax.set_yticks([i + 0.5 for i in range(len(designs))], designs)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    handles = [Patch(facecolor=_CLEAN_COLOUR, label="nothing broke")]
    handles += [
        Patch(facecolor=colour, label=f"worst broken: {name}")
        for name, colour in _BROKEN_COLOURS.items()
        if name in set(worst)
    ]
    if "applies" in frame and not frame["applies"].all():
        handles.append(
            Patch(facecolor="white", edgecolor="0.6", hatch="///", label="fault does not apply")
        )
    if unexpected:
        handles.append(Patch(facecolor="white", edgecolor="red", lw=2, label="not as expected"))
    # drift_before is the review's sum over SKUs of |Redis - (DB - pending)|
    handles.append(
        Patch(
            facecolor="none",
            edgecolor="none",
            label="drift N: units by which\nRedis and DB disagreed\nbefore the repair",
        )
    )
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8
    )
    if source is None and {"redis", "db", "machine"} <= set(frame):
        first = frame.iloc[0]
        source = f"redis {first['redis']} + {first['db']}, {first['machine']}"
    _label(ax, title, source)
    return ax


# --- measuring (notebooks 02, 03, 09, 10)

# Raw ceilings are drawn dashed in black and grey, so that a design's line reads against them.
_CEILING_STYLES = {"raw_evalsha": ("0.15", "--"), "raw_sql": ("0.5", "--")}
_TOOL_MARKERS = {"pgbench": "X", "redis-benchmark": "*"}


def _design_colour(name: str, shown: list[str], colours: list[str]) -> str:
    """A design keeps its colour in every bench chart: its place in the teaching order."""
    order = TEACHING_ORDER if name in TEACHING_ORDER else shown
    return colours[order.index(name) % len(colours)]


def latency_timeline(
    records: pd.DataFrame,
    ax: Axes | None = None,
    *,
    window: tuple[float, float] | None = None,
    label: str | None = None,
    colour: str | None = None,
    title: str | None = None,
    source: str | None = None,
) -> Axes:
    """Each attempt's latency from its intended send (ms, log) against that intended time (s).

    `records` is a load run's (`LoadRun.records`: intended_s, end_s). In a closed loop the
    intended time is the actual send, so a stall shows as a gap with one slow answer per client;
    in an open loop the orders due during it queue, and their latency says so. `window`, in the
    run's time base (`measuring.stall_window`), is shaded. Call it twice on one Axes to compare.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4))
    latency_ms = ((records["end_s"] - records["intended_s"]) * 1000.0).clip(lower=1e-3)
    ax.scatter(records["intended_s"], latency_ms, s=5, alpha=0.6, color=colour, label=label)
    if window is not None and not any(
        patch.get_label() == "the stall" for patch in ax.patches
    ):  # shade once, however many runs share the Axes
        ax.axvspan(*window, color="#f4a261", alpha=0.2, label="the stall", zorder=0)
    ax.set_yscale("log")
    ax.set_xlabel("intended send time (s since the run's start)")
    ax.set_ylabel("latency from the intended send (ms, log)")
    ax.grid(alpha=0.3)
    if label:
        ax.legend(loc="upper right", frameon=False, markerscale=3)
    _label(ax, title, source)
    return ax


def bench_by_clients(
    cells: pd.DataFrame,
    ax: Axes | None = None,
    *,
    scenario: str,
    value: str = "decisions_per_s",
    targets: Iterable[str] | None = None,
    ceilings: pd.DataFrame | None = None,
    title: str | None = None,
    source: str | None = None,
) -> Axes:
    """One scenario of a bench: `value` against total clients, one line per target.

    `cells` is `bench.run_bench`'s frame (or the `cells` of a bench file): scenario, target,
    clients and the value. Raw ceilings (`raw_evalsha`, `raw_sql`) are dashed; `ceilings` (tool,
    clients, rate: pgbench, redis-benchmark) are drawn as markers where they were measured.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    rows = cells[cells["scenario"] == scenario]
    names = list(targets) if targets is not None else list(dict.fromkeys(rows["target"]))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    designs = [name for name in names if name not in _CEILING_STYLES]
    for name in names:
        points = rows[rows["target"] == name].sort_values("clients")
        if points.empty:
            continue
        if name in _CEILING_STYLES:
            colour, style = _CEILING_STYLES[name]
            ax.plot(
                points["clients"], points[value], color=colour, ls=style, marker="x", label=name
            )
        else:
            colour = _design_colour(name, designs, colours)
            ax.plot(points["clients"], points[value], color=colour, marker="o", label=name)
    if ceilings is not None and not ceilings.empty:
        for tool, points in ceilings.dropna(subset=["rate"]).groupby("tool", sort=False):
            points = points.sort_values("clients")
            marker = _TOOL_MARKERS.get(str(tool), "P")
            ax.plot(
                points["clients"],
                points["rate"],
                ls="",
                marker=marker,
                ms=9,
                color="0.3",
                label=tool,
            )
    clients = sorted(rows["clients"].unique())
    ax.set_xscale("log", base=2)
    if clients:
        ax.set_xticks(clients, [str(c) for c in clients])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_yscale("log")
    ax.set_xlabel("clients (all load processes)")
    ax.set_ylabel(value.replace("_per_s", "/s").replace("_ms", " (ms)") + ", log scale")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    _label(ax, title if title is not None else scenario, source)
    return ax


def throughput_latency(
    curves: pd.DataFrame,
    ax: Axes | None = None,
    *,
    percentile: str = "p99_ms",
    title: str | None = "Latency against achieved rate (open loop)",
    source: str | None = None,
) -> Axes:
    """Latency from the intended send against the achieved rate, one line per target.

    `curves` is `measuring.throughput_latency`'s frame (several targets concatenated): its
    open-loop rows are the line, its closed-loop row the target's capacity, a dotted vertical.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = list(dict.fromkeys(curves["target"]))
    for name, rows in curves.groupby("target", sort=False):
        colour = _design_colour(str(name), names, colours)
        opened = rows[rows["arrivals"] == "open loop"].sort_values("offered_per_s")
        ax.plot(opened["achieved_per_s"], opened[percentile], marker="o", color=colour, label=name)
        for _, row in opened.iterrows():
            ax.annotate(
                f"{row['fraction']:.0%}",
                xy=(row["achieved_per_s"], row[percentile]),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=7,
                color=colour,
            )
        for capacity in rows.loc[rows["arrivals"] == "closed loop", "achieved_per_s"]:
            ax.axvline(capacity, color=colour, ls=":", lw=1.2)
    ax.set_yscale("log")
    ax.set_xlim(left=0)
    ax.set_xlabel("achieved rate (attempts/s); dotted: closed-loop capacity")
    ax.set_ylabel(f"{percentile.replace('_ms', '')} from the intended send (ms, log)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", frameon=False)
    _label(ax, title, source)
    return ax


def order_layers(
    profiles: Mapping[str, pd.DataFrame],
    ax: Axes | None = None,
    *,
    title: str | None = "Where one order's time goes",
    source: str | None = None,
) -> Axes:
    """One stacked horizontal bar per design: µs per order in each layer.

    `profiles` maps a design to `order_profile.profile_orders`'s frame (layer, us_per_order).
    Layers keep one colour across designs, in the order they first appear.
    """
    names = list(profiles)
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.7 * len(names) + 1.6))
    layers = list(dict.fromkeys(layer for frame in profiles.values() for layer in frame["layer"]))
    colours = plt.get_cmap("tab10").colors
    left = [0.0] * len(names)
    for j, layer in enumerate(layers):
        widths = []
        for name in names:
            frame = profiles[name]
            widths.append(float(frame.loc[frame["layer"] == layer, "us_per_order"].sum()))
        ax.barh(
            range(len(names)), widths, left=left, height=0.6, color=colours[j % 10], label=layer
        )
        left = [a + b for a, b in zip(left, widths, strict=True)]
    for row, total in enumerate(left):
        ax.annotate(
            f"{total:,.0f} µs",
            xy=(total, row),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlim(0, max(left, default=1.0) * 1.15)
    ax.set_xlabel("µs per order, by layer (wall time in the client, cProfile)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    _label(ax, title, source)
    return ax
