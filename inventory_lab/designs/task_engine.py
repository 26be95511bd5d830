"""`task_engine`: gate 1 in Redis (the Lua script), then a task row; workers persist it later.

`deduct` answers `accepted` once the task is durably recorded in its shard — the database write
of the order path is one small insert into one of N tables instead of an update of the hot stock
row. The engine's executors apply tasks (gate 2: anti-repeat row + stock update + ledger row, one
transaction, idempotent) in the background; `drain()` starts the engine if needed and waits until
every task is applied. If the task insert fails, gate 1 is undone (stock given back, code freed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.exc import IntegrityError

from inventory_lab.backends import in_transaction
from inventory_lab.designs.base import register
from inventory_lab.designs.two_gate import DEFAULT_TTL_MS
from inventory_lab.designs.two_gate_lua import TwoGateLua
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome, Result
from inventory_lab.redis_stock import warm_up
from inventory_lab.tasks import TaskEngine, TaskStore


@register
class TaskEngineDesign(TwoGateLua):
    name = "task_engine"
    summary = "Lua gate 1, then a task row in a shard; workers persist to the DB asynchronously"

    def __init__(
        self,
        lab: Lab,
        *,
        ttl_ms: int = DEFAULT_TTL_MS,
        shards: int = 4,
        workers: int = 4,
        start_workers: bool = True,
        drain_timeout_s: float = 120.0,
        rewarm_minus_pending: bool = True,
        db_guard: bool = False,
        **engine_options: Any,
    ) -> None:
        super().__init__(lab, ttl_ms=ttl_ms, db_guard=db_guard)
        self.store = TaskStore(lab.engine, shards)
        self.engine = TaskEngine(self.store, self.apply, workers=workers, **engine_options)
        self.start_workers = start_workers
        self.drain_timeout_s = drain_timeout_s
        self.rewarm_minus_pending = rewarm_minus_pending

    def setup(self, initial: Mapping[str, int]) -> None:
        self.engine.stop()
        super().setup(initial)
        self.store.reset()
        if self.start_workers:
            self.engine.start()

    def gate_two(self, order: Order) -> Result:
        """Record the task; the deduction itself is persisted by a worker later."""
        try:
            self.store.add(order)
        except IntegrityError:
            # the same order line already has a task (its Redis code had expired)
            self.compensate(order)
            return Result(Outcome.DUPLICATE, "task exists")
        except Exception:
            self.compensate(order)
            self.lab.redis.delete(self.keys_for(order)[0])
            raise
        return Result(Outcome.ACCEPTED, "task recorded")

    def apply(self, order: Order) -> bool:
        """Gate 2 for one task: True if applied now, False if it had been applied before."""
        try:
            in_transaction(self.lab.engine, lambda conn: self._persist(conn, order))
        except IntegrityError:
            return False
        return True

    def drain(self) -> None:
        if not self.engine.running:
            self.engine.start()
        if not self.engine.wait_drained(self.drain_timeout_s):
            raise TimeoutError(f"tasks still pending after {self.drain_timeout_s} s")

    def rewarm(self) -> dict[str, int]:
        """Load Redis from the DB minus the pending tasks (`rewarm_minus_pending=False`: the DB
        alone, which hands out again the stock that pending tasks have already promised)."""
        # Pause the workers: a task applied between reading the pending tasks and reading the
        # DB would be subtracted twice.
        running = self.engine.running
        self.engine.stop()
        try:
            pending = self.pending() if self.rewarm_minus_pending else None
            return warm_up(self.lab, pending=pending)
        finally:
            if running:
                self.engine.start()

    def pending(self) -> dict[str, int]:
        return self.store.pending_by_sku()

    def close(self) -> None:
        self.engine.stop()
