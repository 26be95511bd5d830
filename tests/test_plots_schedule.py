"""Tests for plots.sequence.schedule_diagram: a schedule the explorer found, drawn."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from inventory_lab.explorer import SAFETY, Spec, explore
from inventory_lab.plots import schedule_diagram


def test_a_failing_schedule_is_drawn_clients_then_nemesis_then_servers():
    result = explore(Spec("two_gate_lua", faults=("lost_ack",), as_written=True), find=SAFETY)
    assert result.shrunk is not None
    ax = schedule_diagram(result.shrunk, title="lost ack", source="test")
    heads = [
        t.get_text()
        for t in ax.texts
        if t.get_text() in {"o-1", "o-2", "nemesis", "Redis", "database"}
    ]
    assert heads == ["o-1", "o-2", "nemesis", "Redis", "database"]
    numbered = [t.get_text() for t in ax.texts if t.get_text()[:1].isdigit()]
    assert len(numbered) == len(result.shrunk.steps)
    assert any("lost_ack" in text for text in numbered)  # the fault's step, a note
    plt.close(ax.figure)
