"""The gate-1 charts draw what they are given: a line per design plus the raw EVALSHA reference
and a ratio bar per design and concurrency (db_only is the reference, not a bar); one bar per
variant, red exactly where the finding is not zero."""

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.colors import to_hex

from inventory_lab import plots


def _compare_frame() -> pd.DataFrame:
    rows = []
    for concurrency, raw in ((1, 1000.0), (4, 800.0)):
        for name, throughput in (("two_gate", 300.0), ("two_gate_lua", 250.0), ("db_only", 500.0)):
            rows.append(
                {
                    "design": name,
                    "concurrency": concurrency,
                    "throughput": throughput,
                    "raw_evalsha": raw,
                    "vs_db_only": throughput / 500.0,
                }
            )
    return pd.DataFrame(rows)


def test_in_process_comparison_draws_each_design_and_the_ratios_to_db_only():
    left, right = plots.in_process_comparison(_compare_frame(), source="fake + sqlite")
    labels = [line.get_label() for line in left.get_lines()]
    assert labels == ["two_gate", "two_gate_lua", "db_only", "raw EVALSHA"]
    heights = sorted(round(bar.get_height(), 2) for bar in right.patches)
    assert heights == [0.5, 0.5, 0.6, 0.6]  # two designs x two concurrencies, no db_only bar
    plt.close("all")


def test_findings_by_variant_colours_only_the_nonzero_bars_red():
    drift = pd.Series({"two_gate": -110, "two_gate_watch": 0, "two_gate_lua": 0})
    ax = plots.findings_by_variant(drift, xlabel="drift (units)", title="crashes")
    colours = [to_hex(bar.get_facecolor()) for bar in ax.patches]
    assert colours == ["#d62828", "#2a9d8f", "#2a9d8f"]
    assert [text.get_text() for text in ax.texts] == ["-110", "0", "0"]
    left, right = ax.get_xlim()
    assert left < -110 and right > 0  # room for every label
    plt.close("all")
