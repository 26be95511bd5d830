"""The charts the notebooks share, one module per chapter, so that a reader who opens a notebook
finds its charts next to it:

- `common`: what every chart shares: `OUTCOME_COLOURS` (an outcome looks the same everywhere),
  `backend_label`, and the title and source line every chart carries;
- `architecture` (00): `lab_architecture`, the lab drawn from its registry, backends, checker
  and faults;
- `races` (01, 03, 04, 08): `race_timeline`, `outcome_counts`;
- `sequence` (03, 13): `sequence_diagram`; `schedule_diagram`, a schedule the explorer found;
- `gate_one` (03, 05): `in_process_comparison`, the designs side by side in one process;
  `findings_by_variant`, a finding that should be zero, one bar per gate-1 variant;
- `throughput` (02, 06, 07): `throughput_vs_concurrency`, `throughput_by_design`;
- `hot_row` (02): `hot_row_queue`, the hot row's lock queue against the clients;
- `task_engine` (06): `task_state_diagram`, `backlog_chart`, `task_timeline`, `drain_rate_chart`,
  `lag_histogram`;
- `admission` (07): `admitted_rate`;
- `faults` (08, 09): `fault_windows`, `review_heatmap`;
- `measuring` (02, 03, 09, 10): `bench_by_clients`, `latency_timeline`, `throughput_latency`,
  `order_layers`.

Every chart is re-exported here: a notebook writes `from inventory_lab import plots` and
`plots.race_timeline(...)`. Each function takes a DataFrame the package produced — the
per-attempt records of `run_workload` (also `Experiment.records`), the rows of
`experiment.sweep`, report rows (`RunReport.to_dict()`), a review's cells — draws on the Axes it
is given or on a new figure, and returns the Axes, so that a notebook can put charts side by
side and add to them. Every chart can carry a `source` line naming the backend and machine its
numbers came from. Nothing here computes a result: the checker and the experiments do, the
charts only show them.
"""

from inventory_lab.plots.admission import admitted_rate
from inventory_lab.plots.architecture import lab_architecture
from inventory_lab.plots.common import OUTCOME_COLOURS, OUTCOME_COLUMNS, backend_label
from inventory_lab.plots.faults import fault_windows, review_heatmap
from inventory_lab.plots.gate_one import findings_by_variant, in_process_comparison
from inventory_lab.plots.hot_row import hot_row_queue
from inventory_lab.plots.measuring import (
    bench_by_clients,
    latency_timeline,
    order_layers,
    throughput_latency,
)
from inventory_lab.plots.races import outcome_counts, race_timeline
from inventory_lab.plots.sequence import schedule_diagram, sequence_diagram
from inventory_lab.plots.task_engine import (
    backlog_chart,
    drain_rate_chart,
    lag_histogram,
    task_state_diagram,
    task_timeline,
)
from inventory_lab.plots.throughput import throughput_by_design, throughput_vs_concurrency

__all__ = [
    "OUTCOME_COLOURS",
    "OUTCOME_COLUMNS",
    "admitted_rate",
    "backend_label",
    "backlog_chart",
    "bench_by_clients",
    "drain_rate_chart",
    "fault_windows",
    "findings_by_variant",
    "hot_row_queue",
    "in_process_comparison",
    "lab_architecture",
    "lag_histogram",
    "latency_timeline",
    "order_layers",
    "outcome_counts",
    "race_timeline",
    "review_heatmap",
    "schedule_diagram",
    "sequence_diagram",
    "task_state_diagram",
    "task_timeline",
    "throughput_by_design",
    "throughput_latency",
    "throughput_vs_concurrency",
]
