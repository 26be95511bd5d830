"""Faults and the design review (notebooks 08, 09): the nemesis's windows and strikes on a race
timeline, and the review matrix as a grid of designs by faults, coloured by what each cell found.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class _Finding:
    colour: str
    text: str  # in the cell, followed by the count when the cell has one
    legend: str


# What a review cell (review.Cell) can find, worst first; a cell takes the colour of the worst it
# found and names every one in its text. First the state of the stock: reds, an invariant still
# broken after reconciliation (the cell's `broken`); purples, Redis and the DB disagreeing, dark
# when reconciliation left them apart, light when it repaired them (drift). Then what clients
# were told: blues, "duplicate" for an order that never persisted, "sold out" with stock left.
# Green only when the cell found none of these.
_FINDINGS: dict[str, _Finding] = {
    "oversold": _Finding("#b2182b", "oversold", "oversold N"),
    "lost": _Finding("#d6604d", "lost", "lost N: accepted, never persisted"),
    "double_deducted": _Finding("#ef8a62", "double", "double N: deducted twice"),
    "unaccounted": _Finding("#f6c58f", "unacc.", "unacc. N: stock the ledger\ncannot explain"),
    "converged": _Finding(
        "#762a83", "not converged", "not converged: Redis ≠ DB\nafter the repair"
    ),
    # drift_before is the review's sum over SKUs of |Redis - (DB - pending)| before the repair
    "drift_before": _Finding(
        "#c2a5cf", "drift", "drift N: Redis ≠ DB by N units,\nrepaired by reconciliation"
    ),
    "false_duplicates": _Finding(
        "#6fa8d6", "false dup.", 'false dup. N: told "duplicate",\nnothing persisted'
    ),
    "false_sold_out": _Finding(
        "#b4d4ec", "undersold", "undersold N: N units left unsold\nthat refused orders could take"
    ),
}
_SAFE_COLOUR = "#d9efe3"
_NOT_APPLICABLE_COLOUR = "#f4f4f4"
_UNKNOWN_COLOUR = "0.5"  # a finding this chart does not know yet


def _findings(cell: pd.Series) -> list[str]:
    """What one cell found, worst first: the invariants it broke, then the counts above zero."""
    counted = ("false_duplicates", "false_sold_out", "drift_before")
    found = set(cell["broken"]) | {
        name for name in counted if pd.notna(cell.get(name)) and cell[name] > 0
    }
    order = list(_FINDINGS)
    return sorted(found, key=lambda name: (order.index(name) if name in order else 99, name))


def review_heatmap(
    frame: pd.DataFrame,
    ax: Axes | None = None,
    *,
    title: str | None = "What each cell found, design by fault",
    source: str | None = None,
) -> Axes:
    """The review matrix as a grid: one row per design, one column per fault.

    `frame` has one row per cell, as `review.review` returns it (or its cells read back from
    JSON): design, fault, broken (a sequence of invariant names), drift_before, and optionally
    applies, verdict, false_duplicates, false_sold_out and the invariants' counts (oversold,
    double_deducted, lost, unaccounted). A cell's colour tells the worst it found, the same in
    every chart: an invariant still broken after reconciliation (oversold, lost,
    double_deducted, unaccounted, not converged), else drift (Redis and the DB disagreed before
    the repair), else a false "duplicate" or an undersell, else pale green: nothing found. Its
    text names every finding with its count; the legend lists them all. A fault with nothing to
    act on in that design (applies False) is grey and hatched; a cell whose verdict is not "as
    expected" gets a thick red border. Rows and columns keep the order of their first
    appearance; the source line comes from the frame's redis, db and machine columns unless
    `source` is given.
    """
    label = "row" if "row" in frame else "design"  # a review's rows: a design and its variant
    designs = list(dict.fromkeys(frame[label]))
    faults = list(dict.fromkeys(frame["fault"]))
    if ax is None:
        _, ax = plt.subplots(
            figsize=(1.3 * len(faults) + 4.0, 0.62 * len(designs) + 1.5), layout="constrained"
        )
    unexpected = False
    unknown: set[str] = set()
    for _, cell in frame.iterrows():
        x, y = faults.index(cell["fault"]), designs.index(cell[label])
        found = _findings(cell)
        applies = bool(cell.get("applies", True))
        if not applies:
            colour = _NOT_APPLICABLE_COLOUR
        elif not found:
            colour = _SAFE_COLOUR
        elif found[0] in _FINDINGS:
            colour = _FINDINGS[found[0]].colour
        else:
            colour = _UNKNOWN_COLOUR
        unknown |= set(found) - set(_FINDINGS)
        ax.add_patch(Rectangle((x, y), 1, 1, facecolor=colour, edgecolor="white", lw=2))
        if not applies:
            ax.add_patch(Rectangle((x, y), 1, 1, fill=False, hatch="///", edgecolor="0.6", lw=0))
        if cell.get("verdict", "as expected") != "as expected":
            unexpected = True
            ax.add_patch(
                Rectangle((x + 0.04, y + 0.04), 0.92, 0.92, fill=False, edgecolor="red", lw=2.5)
            )
        lines = [
            (_FINDINGS[name].text if name in _FINDINGS else name)
            + (f" {int(cell[name])}" if name in cell else "")
            for name in found
        ]
        ax.text(
            x + 0.5,
            y + 0.5,
            "\n".join(lines) or ("ok" if applies else "n/a"),
            ha="center",
            va="center",
            fontsize=7.5 if len(lines) <= 3 else 6.5,
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
    # Every finding, present or not: the key reads the same under every matrix.
    handles = [Patch(facecolor=f.colour, label=f.legend) for f in _FINDINGS.values()]
    if unknown:
        handles.append(Patch(facecolor=_UNKNOWN_COLOUR, label=", ".join(sorted(unknown))))
    handles.append(Patch(facecolor=_SAFE_COLOUR, label="nothing found"))
    if "applies" in frame and not frame["applies"].all():
        handles.append(
            Patch(
                facecolor=_NOT_APPLICABLE_COLOUR,
                edgecolor="0.6",
                hatch="///",
                label="fault does not apply",
            )
        )
    if unexpected:
        handles.append(Patch(facecolor="white", edgecolor="red", lw=2, label="not as expected"))
    ax.legend(
        handles=handles,
        title="worst finding (cell colour)",
        title_fontsize=8,
        alignment="left",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        fontsize=8,
    )
    if source is None and {"redis", "db", "machine"} <= set(frame):
        first = frame.iloc[0]
        source = f"redis {first['redis']} + {first['db']}, {first['machine']}"
    _label(ax, title, source)
    return ax
