"""`task_engine`: gate 1 in Redis (the Lua script), then a task row; workers persist it later.

`deduct` answers `accepted` once the task is durably recorded in its shard — the database write
of the order path is one small insert into one of N tables instead of an update of the hot stock
row. The task engine's executors (`task_engine`, not to be confused with `lab.engine`, the SQL
engine) apply tasks (gate 2: anti-repeat row + stock update + ledger row, one transaction,
idempotent) in the background; `drain()` starts the task engine if needed and waits until every
task is applied. If the task insert is refused, gate 1 is undone (stock given back, code
freed); if its outcome is unknown, it is resolved first (see `two_gate`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from inventory_lab.backends import in_transaction
from inventory_lab.designs.base import register
from inventory_lab.designs.two_gate import DEFAULT_TTL_MS, GuardRefused
from inventory_lab.designs.two_gate_lua import TwoGateLua
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome, Result
from inventory_lab.redis_stock import check_epoch, warm_up
from inventory_lab.tasks import TaskEngine, TaskStore
from inventory_lab.tasks.workers import TaskRefused


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
        as_written: bool = False,
        per_line_gate: bool = False,
        **engine_options: Any,
    ) -> None:
        super().__init__(
            lab,
            ttl_ms=ttl_ms,
            db_guard=db_guard,
            as_written=as_written,
            per_line_gate=per_line_gate,
        )
        self.store = self.make_store(shards)
        self.task_engine = self.make_task_engine(workers=workers, **engine_options)
        self.start_workers = start_workers
        self.drain_timeout_s = drain_timeout_s
        self.rewarm_minus_pending = rewarm_minus_pending

    def make_store(self, shards: int) -> TaskStore:
        """The task tables (a subclass may spread them over other databases)."""
        return TaskStore(self.lab.engine, shards)

    def make_task_engine(self, *, workers: int, **engine_options: Any) -> TaskEngine:
        """The executors and maintenance workers over `self.store` (a subclass may run others)."""
        return TaskEngine(self.store, self.apply, workers=workers, **engine_options)

    def setup(self, initial: Mapping[str, int]) -> None:
        self.task_engine.stop()
        super().setup(initial)
        self.store.reset()
        if self.start_workers:
            self.task_engine.start()

    def gate_two(self, order: Order, epoch: str | None = None) -> Result:
        """Record the task; the deduction itself is persisted by a worker later.

        The task insert is this design's gate 2: it is fenced by the epoch like `two_gate`'s
        deduction, and an error after it was sent is resolved by probing the task's code.
        """
        result = self.run_gate_two(order, epoch, self.recorder(((order, epoch),)))
        if result.outcome is Outcome.DUPLICATE:  # the order line already has a task
            return Result(Outcome.DUPLICATE, "task exists")
        if result.outcome is Outcome.ACCEPTED and not result.detail:
            return Result(Outcome.ACCEPTED, "task recorded")
        return result

    def gate_two_lines(self, admitted: Sequence[tuple[Order, str | None]]) -> Result:
        """A checkout's tasks, one per line, recorded in one transaction (its lines share the
        order id, hence one shard): accepted whole; each line is then applied on its own."""
        result = self.run_gate_two_lines(admitted, self.recorder(admitted))
        if result.outcome is Outcome.ACCEPTED and not result.detail:
            return Result(Outcome.ACCEPTED, "tasks recorded")
        return result

    def recorder(
        self, admitted: Sequence[tuple[Order, str | None]]
    ) -> Callable[[Connection], None]:
        """Gate 2's transaction on the lab's database for lines of one order: their tasks
        recorded (a subclass may record them in another database)."""

        def record(conn: Connection) -> None:
            for order, epoch in admitted:
                self._record_task(conn, order, epoch)

        return record

    def probe_for(self, order: Order) -> sa.Insert:
        """The task's insert, with its values: its unique code tells whether gate 2 committed."""
        return self.store.insert_statement(order)

    def _record_task(self, conn: Connection, order: Order, epoch: str | None) -> None:
        self.store.record(conn, order)
        if self.fenced:
            check_epoch(conn, order.sku, epoch)

    def apply(self, order: Order) -> bool:
        """Gate 2 for one task: True if applied now, False if it had been applied before."""
        try:
            in_transaction(
                self.lab.engine,
                lambda conn: self.persist_deduction(conn, order, None, fence=False),
            )
        except IntegrityError:
            return False
        except GuardRefused as exc:  # the stock is not there: retrying cannot help
            raise TaskRefused(f"the DB guard refused {exc}") from exc
        return True

    def drain(self, timeout_s: float = 30.0) -> None:
        """Settle the unknown outcomes (see `two_gate`), then wait until every task is applied."""
        super().drain(timeout_s)
        if not self.task_engine.running:
            self.task_engine.start()
        if not self.task_engine.wait_drained(self.drain_timeout_s):
            raise TimeoutError(f"tasks still pending after {self.drain_timeout_s} s")

    def rewarm(self) -> dict[str, int]:
        """Load Redis from the DB minus the tasks not yet applied, fenced (see
        `redis_stock.warm_up`): stock and tasks are read in one statement, so the executors
        need not stop. `rewarm_minus_pending=False`: the DB alone, which hands out again the
        stock that pending tasks have already promised."""
        return warm_up(self.lab, minus_pending=self.rewarm_minus_pending, fenced=self.fenced)

    def pending(self) -> dict[str, int]:
        return self.store.pending_by_sku()

    def close(self) -> None:
        self.task_engine.stop()
