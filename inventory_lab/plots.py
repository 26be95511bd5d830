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

from collections.abc import Iterable
from urllib.parse import urlsplit

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator

from inventory_lab.orders import Outcome

OUTCOME_COLOURS: dict[str, str] = {
    Outcome.ACCEPTED.value: "#2a9d8f",
    Outcome.SOLD_OUT.value: "#b0b7bf",
    Outcome.DUPLICATE.value: "#457b9d",
    Outcome.REJECTED.value: "#e9c46a",
    Outcome.ERROR.value: "#d62828",
}
# The report's count column for each outcome, in the order bars are stacked.
OUTCOME_COLUMNS: dict[str, str] = {
    Outcome.ACCEPTED.value: "accepted",
    Outcome.SOLD_OUT.value: "sold_out",
    Outcome.DUPLICATE.value: "duplicates",
    Outcome.REJECTED.value: "rejected",
    Outcome.ERROR.value: "errors",
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
