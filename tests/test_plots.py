"""The measuring charts draw what they are given: one line or bar per target, shaded stalls."""

import matplotlib.pyplot as plt
import pandas as pd

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
