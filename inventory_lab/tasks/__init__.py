"""The task engine of the article's "Task Engine for Final Consistency".

After gate 1 passes, a deduction is recorded as a task row in a shard chosen by order id
(`store`); workers claim tasks with a conditional update, apply them to the stock table
(idempotently, through the anti-repeat row), retry failures with backoff, unlock tasks whose
lease ran out and pick up what a crashed process left (`workers`). Beyond the article, `merging`
applies one SKU's pending tasks as one transaction (one row lock and one commit per batch).
"""

from inventory_lab.tasks.merging import BatchApplied, MergingTaskEngine, apply_batch
from inventory_lab.tasks.store import Status, TaskStore
from inventory_lab.tasks.workers import EngineCounters, TaskEngine

__all__ = [
    "BatchApplied",
    "EngineCounters",
    "MergingTaskEngine",
    "Status",
    "TaskEngine",
    "TaskStore",
    "apply_batch",
]
