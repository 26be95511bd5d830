"""`task_engine_merged`: `task_engine` whose executors apply one SKU's tasks as one transaction.

Beyond the article. The order path is `task_engine`'s unchanged (gate 1 in Lua, then a task row
in a shard); only the drain differs. Each executor claims up to `max_batch` NEW tasks of one SKU
in its shard and applies them together (`tasks.merging.apply_batch`): one summed
`UPDATE stock SET num = num - :sum`, multi-row INSERTs of their anti-repeat and ledger rows, and
the tasks marked DONE, all in one transaction — the merging of one hot row's updates that
AliSQL's inventory hint does inside the server (group commit), done here by the executor.

What it buys: one row lock and one commit per batch instead of per order, so a hot SKU's drain
is no longer bounded by the serialised per-order transactions on its stock row (nor by the
claim, renew and complete transactions each task takes in `task_engine`).
What it costs: a task waits for its batch (its accept-to-persist lag includes the batch's whole
transaction), and a batch that fails is redone task by task — a duplicate code, a refusal of the
DB guard or any error rolls the whole batch back first.

Why per-task idempotency holds: inside the transaction the executor first re-checks its lease on
every task (rows locked until commit; a task it lost is not touched), then reads which of the
batch's anti-repeat codes exist: those tasks were applied before (an executor that died after
its commit and before marking them, a task claimed again after its lease ran out) and are marked
DONE without deducting; only the others are inserted and summed. A code another transaction
commits after that read still hits the anti-repeat primary key: the batch rolls back whole and
is applied task by task through `task_engine`'s own `apply`, which deducts a task at most once.

`db_guard=True` keeps its meaning (never below zero): if the summed UPDATE would take the stock
below zero, the batch is applied task by task, so the tasks that fit are applied and the others
go DEAD, as in `task_engine`.

Checkouts (`place`, `takes_lines`) work through the parent's path unchanged: the checkout's lines
are recorded as tasks in one transaction, accepted whole; each line is then an ordinary task,
applied in its SKU's batch — as in `task_engine`, where each line is applied on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from inventory_lab.backends import in_transaction
from inventory_lab.designs.base import register
from inventory_lab.designs.task_engine import TaskEngineDesign
from inventory_lab.lab import Lab
from inventory_lab.tasks.merging import (
    DEFAULT_MAX_BATCH,
    BatchApplied,
    MergingTaskEngine,
    apply_batch,
    check_max_batch,
)
from inventory_lab.tasks.store import Task
from inventory_lab.tasks.workers import TaskEngine


@register
class TaskEngineMerged(TaskEngineDesign):
    name = "task_engine_merged"
    summary = "task_engine whose executors apply one SKU's tasks per transaction (merged UPDATE)"

    def __init__(self, lab: Lab, *, max_batch: int = DEFAULT_MAX_BATCH, **options: Any) -> None:
        # First: bad parameters are refused before anything is built.
        self.max_batch = check_max_batch(max_batch)
        super().__init__(lab, **options)

    def make_task_engine(self, *, workers: int, **engine_options: Any) -> TaskEngine:
        return MergingTaskEngine(
            self.store,
            self.apply,
            self.apply_tasks,
            workers=workers,
            max_batch=self.max_batch,
            **engine_options,
        )

    def apply_tasks(self, tasks: Sequence[Task], owner: str) -> BatchApplied:
        """Gate 2 for a batch of one SKU's claimed tasks: one transaction (see the module)."""
        if not tasks:
            return BatchApplied((), (), (), 0)
        engine = self.store.engine_of(tasks[0].shard)  # the lab's: the stock is there too
        return in_transaction(
            engine,
            lambda conn: apply_batch(
                conn, self.store, tasks, owner, design=self.name, guard=self.db_guard
            ),
        )
