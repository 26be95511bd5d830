"""Sequence diagrams: one order through the gates (notebook 03), and a schedule the explorer
found (notebook 13): one lifeline per participant (clients, the nemesis, Redis, the database),
one numbered arrow per step, drawn from a list of steps.
"""

from __future__ import annotations

from collections.abc import Iterable

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from inventory_lab.explorer import Execution, diagram_steps
from inventory_lab.plots.common import _label

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


def schedule_diagram(
    execution: Execution,
    ax: Axes | None = None,
    *,
    title: str | None = None,
    source: str | None = None,
) -> Axes:
    """One schedule of the explorer as a sequence diagram (notebook 13): the orders' clients on
    the left in order, then the nemesis (a fault's step is a note on it), then Redis and the
    database; one arrow per step, with what came back."""
    steps = diagram_steps(execution)
    seen = dict.fromkeys(name for step in steps for name in step[:2])
    order = [name for name in seen if name not in _SERVERS and name != "nemesis"]
    order += [name for name in ("nemesis", *_SERVERS) if name in seen]
    return sequence_diagram(steps, ax, participants=order, title=title, source=source)


_SERVERS = ("Redis", "database")
