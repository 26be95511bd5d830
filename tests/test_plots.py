"""The charts draw what they are given: one line or bar per target, shaded stalls, a colour per
review finding (drift is not "nothing broke"), one line per task (not one block per shard)."""

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.patches import Rectangle

from inventory_lab import plots


def test_a_latency_timeline_shades_the_stall_once():
    records = pd.DataFrame({"intended_s": [0.0, 0.1, 0.2], "end_s": [0.5, 0.5, 0.21]})
    ax = plots.latency_timeline(records, window=(0.0, 0.5), label="open loop")
    plots.latency_timeline(records, ax, window=(0.0, 0.5), label="closed loop")
    assert [p.get_label() for p in ax.patches].count("the stall") == 1
    assert len(ax.collections) == 2
    plt.close("all")


def test_bench_by_clients_draws_a_line_per_target_and_the_tools():
    cells = pd.DataFrame(
        [
            {"scenario": "one-row", "target": t, "clients": c, "decisions_per_s": r * c}
            for t, r in (("db_only", 100.0), ("raw_sql", 300.0))
            for c in (1, 4)
        ]
    )
    ceilings = pd.DataFrame([{"tool": "pgbench", "clients": 4, "rate": 2000.0, "note": ""}])
    ax = plots.bench_by_clients(cells, scenario="one-row", ceilings=ceilings)
    assert [line.get_label() for line in ax.get_lines()] == ["db_only", "raw_sql", "pgbench"]
    plt.close("all")


def test_throughput_latency_and_order_layers():
    curves = pd.DataFrame(
        [
            {"target": "db_only", "arrivals": "closed loop", "fraction": None,
             "offered_per_s": None, "achieved_per_s": 100.0, "p99_ms": 5.0},
            {"target": "db_only", "arrivals": "open loop", "fraction": 0.5,
             "offered_per_s": 50.0, "achieved_per_s": 50.0, "p99_ms": 2.0},
        ]
    )  # fmt: skip
    ax = plots.throughput_latency(curves)
    assert len(ax.get_lines()) == 2  # the curve and its capacity
    layers = pd.DataFrame({"layer": ["a", "b"], "us_per_order": [10.0, 30.0]})
    ax = plots.order_layers({"db_only": layers, "two_gate_lua": layers.iloc[:1]})
    assert len(ax.patches) == 4  # two designs x two layers (an absent layer is a 0-wide bar)
    plt.close("all")


def _cell(fault: str, **found) -> dict:
    """One review cell of design `d` under `fault`: nothing found unless `found` says so."""
    cell = {
        "design": "d",
        "fault": fault,
        "broken": [],
        "oversold": 0,
        "double_deducted": 0,
        "lost": 0,
        "unaccounted": 0,
        "false_duplicates": 0,
        "false_sold_out": 0,
        "drift_before": 0,
    }
    return cell | found


def _fill_of(ax, x: int) -> tuple:
    """The colour the heatmap filled the cell in column `x` (row 0) with."""
    (fill,) = [
        patch
        for patch in ax.patches
        if isinstance(patch, Rectangle) and patch.get_fill() and patch.get_xy() == (x, 0)
    ]
    return fill.get_facecolor()


def test_the_review_heatmap_gives_each_finding_its_own_colour_and_a_legend_entry():
    cells = pd.DataFrame(
        [
            _cell("safe"),
            _cell("drifted", drift_before=5),  # Redis and DB disagreed; reconciliation repaired
            _cell("undersold", false_sold_out=3),
            _cell("lied", false_duplicates=2),
            _cell("oversold", broken=["oversold"], oversold=4, drift_before=4),
        ]
    )
    ax = plots.review_heatmap(cells)
    fills = [_fill_of(ax, x) for x in range(len(cells))]
    assert len(set(fills)) == len(cells), fills  # a drifted cell is not "nothing broke"
    legend = {
        tuple(handle.get_facecolor()): text.get_text()
        for handle, text in zip(ax.get_legend().legend_handles, ax.get_legend().texts, strict=True)
    }
    assert all(fill in legend for fill in fills), (fills, legend)
    texts = [text.get_text() for text in ax.texts]
    assert any("drift 5" in text for text in texts)
    assert any("3" in text and "undersold" in text for text in texts)
    plt.close("all")


def test_the_task_timeline_draws_each_task_as_a_line_apart_from_its_neighbours():
    created = [float(n) for n in range(40)]
    tasks = pd.DataFrame(
        {
            "shard": [n % 2 for n in range(40)],
            "created_time": created,
            "done_time": [t + 5.0 for t in created[:-1]] + [None],
            "modify_time": [t + 5.0 for t in created],
            "status": [200] * 39 + [100],
        }
    )
    _, ax = plt.subplots(figsize=(8, 4))
    plots.task_timeline(tasks, ax, marked=tasks["created_time"] == 0.0)
    assert not [patch for patch in ax.patches if isinstance(patch, Rectangle)]  # no bars
    every_task, marked = ax.collections  # a line per task, and the marked one drawn over it
    assert len(every_task.get_segments()) == len(tasks)
    assert len(marked.get_segments()) == 1
    row_pt = ax.bbox.height / ax.figure.dpi * 72.0 / len(tasks)
    assert max(every_task.get_linewidths()) < row_pt  # neighbours apart: 40 lines, not a block
    assert sum(style is not None for _, style in every_task.get_linestyles()) == 1  # not done
    plt.close("all")
