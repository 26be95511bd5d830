"""The task engine's backlog chart draws what `task_runs.backlog_over_time` computed: accepted and
persisted as steps, the backlog shaded between them, the last acceptance marked."""

import matplotlib.pyplot as plt
import pandas as pd

from inventory_lab import plots
from inventory_lab.task_runs import backlog_over_time


def test_the_backlog_chart_marks_the_last_acceptance():
    tasks = pd.DataFrame({"created_time": [0.0, 0.01, 0.02], "done_time": [0.03, 0.05, 0.09]})
    ax = plots.backlog_chart(backlog_over_time(tasks))
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:2] == ["accepted (task row recorded)", "persisted (task applied)"]
    [last] = [line for line in ax.get_lines() if line.get_label() == "last order accepted"]
    assert list(last.get_xdata()) == [20.0, 20.0]  # ms since the first task was recorded
    assert len(ax.collections) == 1  # the shaded backlog
    plt.close("all")
