"""The measuring charts (notebooks 02, 03, 09, 10): a bench's rate against clients with the raw
ceilings and the tools' numbers, latency from the intended send over time and against the
achieved rate, and where one order's time goes, layer by layer. A design keeps its colour in
every one of them: its place in the teaching order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import NullLocator

from inventory_lab.designs import TEACHING_ORDER
from inventory_lab.plots.common import _label

_CEILING_STYLES = {
    "raw_evalsha": ("0.15", "--"),
    "raw_merged": ("0.3", ":"),
    "raw_sql": ("0.5", "--"),
}
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
    clients and the value. Raw ceilings (`raw_evalsha`, `raw_merged`, `raw_sql`) are dashed or
    dotted; `ceilings` (tool, clients, rate: pgbench, redis-benchmark) are drawn as markers where
    they were measured.
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
