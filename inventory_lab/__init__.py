"""inventory_lab: run, measure and break the article's high-concurrency inventory design.

The public face: `open_lab()` connects to the backends (fakeredis + SQLite by default),
`run_experiment()` runs a workload against a design and checks the invariants, and the `Design`
protocol with its registry (`design_names()`, `design_class()`) holds the designs themselves.
"""

from inventory_lab.checker import CheckReport, check, check_lab
from inventory_lab.designs import Design, design_class, design_names
from inventory_lab.errors import BackendError, InvalidOrder, LabError
from inventory_lab.experiment import Experiment, RunReport, run_experiment
from inventory_lab.lab import Lab, open_lab
from inventory_lab.orders import Order, Outcome, Result
from inventory_lab.workload import Workload, run_workload

__all__ = [
    "BackendError",
    "CheckReport",
    "Design",
    "Experiment",
    "InvalidOrder",
    "Lab",
    "LabError",
    "Order",
    "Outcome",
    "Result",
    "RunReport",
    "Workload",
    "check",
    "check_lab",
    "design_class",
    "design_names",
    "open_lab",
    "run_experiment",
    "run_workload",
]
