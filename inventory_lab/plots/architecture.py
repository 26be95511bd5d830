"""The lab's architecture as one picture (notebook 00), drawn from the package itself: the
designs in the registry, the backends `backends` accepts, the checker's findings and the faults
the review strikes. Nothing in it is a hand-kept list, so it cannot fall behind: a design
registered tomorrow, a finding added to the checker's report or a fault added to the nemesis
shows up in the next drawing.

`architecture_parts` gathers the boxes' contents (what a test reads); `lab_architecture` draws
them as the data flows: the workload's client threads send orders to a design, the design
talks to the backends, the checker reads the backends' final state and the clients' records;
the faults strike the design and the backends while orders are in flight.
"""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import FancyBboxPatch

from inventory_lab.backends import FAKE_REDIS, SQL_DRIVERS
from inventory_lab.checker import CheckReport
from inventory_lab.designs import TEACHING_ORDER, design_class, design_names
from inventory_lab.plots.common import _label
from inventory_lab.workload import Workload

# The faults the workload itself makes (review.WORKLOAD_FAULTS); the nemesis's carry their own.
_WORKLOAD_FAULT_WHAT = {
    "duplicate": "clients resend orders, some while the first send is in flight",
    "lost_reply": "a reply is lost and the client resends",
}
# Per-SKU or per-run details of a report, not findings of their own.
_DETAILS = {"per_sku", "pending"}


def _designs() -> list[str]:
    """Registered designs: the teaching order first, then any the order does not know yet."""
    names = design_names()
    return [n for n in TEACHING_ORDER if n in names] + [n for n in names if n not in TEACHING_ORDER]


def _breaches() -> set[str]:
    """The findings that make `CheckReport.ok` false on their own (read from `ok` itself)."""
    clean = CheckReport(oversold=0, double_deducted=0, lost=0, unaccounted=0, converged=None)
    found = set()
    for field in dataclasses.fields(CheckReport):
        if field.name in _DETAILS or field.name == "drift":
            continue
        broken = False if field.name == "converged" else 1
        if not dataclasses.replace(clean, **{field.name: broken}).ok:
            found.add(field.name)
    return found


def architecture_parts() -> dict[str, list[str]]:
    """Each box's lines, read from the package: workload, designs, backends, checker, faults.

    A design is marked `(Redis)` when it keeps stock in Redis; a finding is marked `!` when it
    alone breaks `CheckReport.ok` (a safety breach), the others are reported beside them.
    """
    # Imported here, not at the top: the review brings duckdb and the nemesis, which every other
    # chart of `plots` (imported by every notebook) can do without.
    from inventory_lab import nemesis, review

    workload = [f.name for f in dataclasses.fields(Workload)] + ["C client threads"]
    designs = [f"{name} (Redis)" if design_class(name).uses_redis else name for name in _designs()]
    backends = [
        "Redis:",
        f"  {FAKE_REDIS} (fakeredis, in-process)",
        "  redis://host:port/db",
        "SQL:",
        *(f"  {driver}://" for driver in SQL_DRIVERS),
    ]
    breaches = _breaches()
    checker = [
        f"{field.name} !" if field.name in breaches else field.name
        for field in dataclasses.fields(CheckReport)
        if field.name not in _DETAILS
    ]
    faults = [
        f"{name}: {_WORKLOAD_FAULT_WHAT.get(name, '')}".rstrip(": ")
        for name in review.WORKLOAD_FAULTS
        if name != "none"
    ]
    faults += [f"{name}: {fault.what}" for name, fault in nemesis.FAULTS.items()]
    return {
        "workload": workload,
        "designs": designs,
        "backends": backends,
        "checker": checker,
        "faults": faults,
    }


_TITLES = {
    "workload": "workload",
    "designs": "designs (registry)",
    "backends": "backends",
    "checker": "checker (! = breaks ok)",
    "faults": "faults (workload and nemesis)",
}
_FILL = {
    "workload": "#e8f1f8",
    "designs": "#e6f4f1",
    "backends": "#f1f1f1",
    "checker": "#fdf3e1",
    "faults": "#fbe9e9",
}
_LINE = 1.0  # one line of text, in the picture's y units (lines, counted downward from 0)
_INCH_PER_LINE = 0.17  # at 8.5 pt, with some air


def _box(ax: Axes, x: float, top: float, width: float, part: str, lines: list[str]) -> float:
    """One titled box with its lines, hanging from `top`; returns its bottom edge."""
    bottom = top - _LINE * (len(lines) + 1.8)
    ax.add_patch(
        FancyBboxPatch(
            (x, bottom),
            width,
            top - bottom,
            boxstyle="round,pad=0.004",
            facecolor=_FILL[part],
            edgecolor="0.45",
        )
    )
    ax.text(x + 0.008, top - 0.3, _TITLES[part], weight="bold", fontsize=9.5, va="top")
    for i, line in enumerate(lines):
        ax.text(x + 0.01, top - 1.5 - i, line, fontsize=8.5, va="top", family="monospace")
    return bottom


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], text: str) -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "-|>", "color": "0.3"})
    middle = ((start[0] + end[0]) / 2 + 0.005, (start[1] + end[1]) / 2 + 0.3)
    ax.text(*middle, text, fontsize=8, ha="center", color="0.3")


# x and width of each box, as fractions of the picture's width
_COLUMNS = {
    "workload": (0.0, 0.13),
    "designs": (0.19, 0.2),
    "backends": (0.46, 0.19),
    "checker": (0.72, 0.28),
}


def lab_architecture(
    ax: Axes | None = None,
    *,
    title: str | None = "inventory_lab: what runs, on what, judged by what, under which faults",
    source: str | None = "drawn from the registry, backends, checker and nemesis of this package",
) -> Axes:
    """The lab as boxes in the order the data flows, with the faults that strike in flight.

    Each box lists what `architecture_parts` read from the package. Without `ax`, the figure's
    height follows the number of lines, so that nothing overlaps however many designs,
    findings or faults there are.
    """
    parts = architecture_parts()
    row = max(len(parts[p]) for p in _COLUMNS) + 1.8  # the tallest box of the top row
    height = row + 3.5 + len(parts["faults"]) + 1.8
    if ax is None:
        _, ax = plt.subplots(figsize=(15, _INCH_PER_LINE * (height + 4)))
    ax.set_axis_off()
    bottoms = {part: _box(ax, x, 0.0, w, part, parts[part]) for part, (x, w) in _COLUMNS.items()}
    for left, right, text in (
        ("workload", "designs", "orders"),
        ("designs", "backends", "reads, writes"),
        ("backends", "checker", "final state"),
    ):
        start = _COLUMNS[left][0] + _COLUMNS[left][1] + 0.005
        _arrow(ax, (start, -2.0), (_COLUMNS[right][0] - 0.005, -2.0), text)
    # What each client was told reaches the checker too, beside the final state: down from the
    # workload, along under the top row, up into the checker.
    told_y = -row - 1.2
    workload_x = _COLUMNS["workload"][0] + _COLUMNS["workload"][1] / 2
    checker_x = _COLUMNS["checker"][0] + _COLUMNS["checker"][1] / 2
    ax.plot(
        [workload_x, workload_x, checker_x],
        [bottoms["workload"] - 0.1, told_y, told_y],
        color="0.3",
        lw=1.0,
    )
    ax.annotate(
        "",
        xy=(checker_x, bottoms["checker"] - 0.1),
        xytext=(checker_x, told_y),
        arrowprops={"arrowstyle": "-|>", "color": "0.3"},
    )
    ax.text(
        checker_x + 0.01,
        told_y - 0.2,
        "what each client was told",
        fontsize=8,
        va="top",
        color="0.3",
    )
    faults_top = -row - 3.5
    x = _COLUMNS["designs"][0]
    width = _COLUMNS["backends"][0] + _COLUMNS["backends"][1] - x
    faults_bottom = _box(ax, x, faults_top, width, "faults", parts["faults"])
    for target in ("designs", "backends"):
        tx = _COLUMNS[target][0] + _COLUMNS[target][1] / 2
        _arrow(ax, (tx, faults_top + 0.1), (tx, bottoms[target] - 0.1), "strike in flight")
    ax.set_xlim(-0.005, 1.005)
    ax.set_ylim(faults_bottom - 0.5, 0.5)
    _label(ax, title, None)
    if source:
        ax.text(0.0, faults_bottom - 0.6, source, fontsize=8, color="0.35", va="top")
    return ax
