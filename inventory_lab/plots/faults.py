"""Faults and the design review (notebooks 08, 09): the nemesis's windows and strikes on a race
timeline, and the review matrix as a grid of designs by faults, coloured by what each cell found.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch, Rectangle

from inventory_lab.plots.common import _label


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
