"""Charts of who did what when, and what the clients were told (notebooks 01, 03, 04, 08).

`race_timeline` draws every attempt as a bar from its start to its end, one row per client, so
that attempts in flight together overlap; `outcome_counts` stacks, per run, how many attempts
were accepted, sold out, duplicates, …, annotated with what the checker found.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from inventory_lab.orders import Outcome
from inventory_lab.plots.common import OUTCOME_COLOURS, OUTCOME_COLUMNS, _label, _present

_RETRY_HATCH = "////"


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
