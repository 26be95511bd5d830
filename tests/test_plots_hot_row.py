"""The hot-row chart draws one line per database and scenario in each panel, and the diagonal
where every client would be waiting."""

import matplotlib.pyplot as plt
import pandas as pd

from inventory_lab import plots
from inventory_lab.plots.hot_row import HOT_ROW_PANELS


def test_one_line_per_database_and_scenario_in_every_panel():
    cells = pd.DataFrame(
        [
            {
                "db": db,
                "scenario": scenario,
                "clients": clients,
                "accepted_per_s": 100.0 * clients,
                "lock_waiters": waiting * clients,
                "p50_ms": 1.0 + clients,
            }
            for db in ("postgresql+psycopg://u@h:5432/d", "mysql+pymysql://u@h:3306/d")
            for scenario, waiting in (("one-row", 0.8), ("spread", 0.0))
            for clients in (1, 4, 16)
        ]
    )
    axes = plots.hot_row_queue(cells, source="made up")
    assert len(axes) == len(HOT_ROW_PANELS)
    lines = ["one-row · postgresql @h:5432", "spread · postgresql @h:5432"]
    lines += ["one-row · mysql @h:3306", "spread · mysql @h:3306"]
    for ax in axes:
        drawn = [line.get_label() for line in ax.get_lines()]
        assert drawn[:4] == lines
    assert "every client waiting" in [line.get_label() for line in axes[1].get_lines()]
    assert [ax.get_ylabel() for ax in axes] == [label for _, label in HOT_ROW_PANELS]
    plt.close("all")
