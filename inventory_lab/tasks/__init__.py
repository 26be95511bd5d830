"""The task engine of the article's "Task Engine for Final Consistency".

After gate 1 passes, a deduction is recorded as a task row in a shard chosen by order id
(`store`); workers claim tasks with a conditional update, apply them to the stock table
(idempotently, through the anti-repeat row), retry failures with backoff, unlock tasks whose
lease ran out and pick up what a crashed process left (`workers`).
"""

from inventory_lab.tasks.store import Status, TaskStore
from inventory_lab.tasks.workers import EngineCounters, TaskEngine

__all__ = ["EngineCounters", "Status", "TaskEngine", "TaskStore"]
