"""`task_engine_sharded_db` (and its merged twin): the task engine's shards in several databases.

The article persists each task "to the appropriate sharded database". Here shard n lives in
database n % D (`shard_databases`): database 0 is the lab's (the stock row, the anti-repeat rows,
the ledger and the epoch rows live there, with every D-th task table), databases 1 … D-1 hold
task tables only — by default one database beside the lab's (a second SQLite file, or
`<db>_shards` on the same server), or the `shard_urls` given (another server). A shard in the
lab's database works exactly as in `task_engine`; what follows is about the others.

Once a task's table lives in another database than the stock, no step that touches both is one
local transaction, and there is no two-phase commit here. Each step is ordered so that every
failure window leaves a state the next step repairs, never a unit sold twice or deducted twice:

Gate 2 (recording the task). The main database's transaction is opened first and takes the
SKU's epoch row in share mode (on SQLite, the one writer's lock); the task is inserted and
committed in the shard's database inside it; then the main transaction, which wrote nothing,
commits. A re-warm's epoch bump waits for that lock, so it reads the shard only after every
order admitted by the old Redis copy has committed its task (or, blocked behind the bump, is
refused as stale before inserting it).
- Error before the shard's COMMIT was sent: nothing was recorded; gate 1 is undone.
- The shard's COMMIT was sent and no reply came: an *unknown* outcome, resolved by probing the
  task's unique code in the *shard's* database (`probe_engine`), as `two_gate` does.
- The shard committed and then the main transaction failed (it only held a lock): the order is
  accepted; if the transaction is re-run (a deadlock victim) it does not insert again.

Applying a task (executor). Claim, lease renewal and completion stay in the shard's database;
the apply is `task_engine`'s own transaction in the main one (anti-repeat row + stock update +
ledger row). The task is marked DONE in its shard only after the main transaction committed:
- Crash or error before the main COMMIT: nothing applied; the task is retried (lease, FAILED).
- Crash after the main COMMIT, before DONE: the task stays LOCKED (or its completion fails);
  its lease runs out (or start-up recovery frees it at once), it is claimed again, and the
  second apply hits the anti-repeat row: a no-op that still completes the task. Never deducted
  twice (the anti-repeat primary key), never lost (the task row still exists).
- Two executors applying one task (a lease lost while stalled): one anti-repeat row wins, the
  other's apply is a no-op, and the loser's completion is a compare-and-set that fails.
The merged executors use the same order in three transactions (`tasks.merging.
apply_batch_across`): hold the batch's leases in the shard, apply the batch in the main database,
complete in the shard.

Reading what is pending (re-warm, the checker, `pending()`). A task is pending while its shard
says NEW/LOCKED/FAILED *and* its anti-repeat row is absent — a join across two databases. The
shards elsewhere are read first, then the main database in one statement: stock, its own
shards and which of those codes were applied (`TaskStore.stock_and_unapplied`). A task applied
between the two reads is counted pending although the stock already shows it: Redis is copied
that many units low (an undersell until the next re-warm or reconciliation), never high. Callers
outside the design pass `task_store=design.store` to `check_lab` and `redis_stock.redis_target`.

No transaction waits for a lock in one database while holding one the other needs in the order
that could close a cycle: only gate 2 and the re-warm nest (main, then shard: an insert, a plain
read), and nothing holds a shard lock while waiting for the main database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from inventory_lab import schema
from inventory_lab.designs.base import register
from inventory_lab.designs.task_engine import TaskEngineDesign
from inventory_lab.designs.task_engine_merged import TaskEngineMerged
from inventory_lab.lab import Lab
from inventory_lab.orders import Order
from inventory_lab.redis_stock import check_epoch, warm_up
from inventory_lab.shard_databases import shard_engines
from inventory_lab.tasks import TaskStore
from inventory_lab.tasks.merging import BatchApplied, apply_batch_across
from inventory_lab.tasks.store import Task

# SQLite's SELECT takes no lock: a no-op write takes the one writer's lock of the main database
# instead, so that a re-warm's bump (a write) and gate 2 exclude each other as FOR SHARE does.
_TAKE_EPOCH_ROW = (
    sa.update(schema.redis_epoch)
    .where(schema.redis_epoch.c.sku == sa.bindparam("epoch_sku"))
    .values(epoch=schema.redis_epoch.c.epoch)
)


class ShardsInDatabases(TaskEngineDesign):
    """What both sharded-database designs add to theirs (see the module docstring)."""

    def __init__(
        self, lab: Lab, *, shard_urls: Sequence[str] | None = None, **options: Any
    ) -> None:
        pool = lab.engine.pool.size() if hasattr(lab.engine.pool, "size") else 16
        # Before the parent builds the store on them; bad URLs are refused before any is made.
        self.shard_engines: list[Engine] = shard_engines(lab.engine, shard_urls, pool_size=pool)
        try:
            super().__init__(lab, **options)
        except BaseException:
            self._dispose()
            raise

    def make_store(self, shards: int) -> TaskStore:
        """Shard n in database n % D: the lab's first, then each of `shard_engines`."""
        return TaskStore([self.lab.engine, *self.shard_engines], shards)

    def recorder(
        self, admitted: Sequence[tuple[Order, str | None]]
    ) -> Callable[[Connection], None]:
        """Gate 2 for lines of one order (one shard): in the lab's database when the shard is
        there; otherwise fenced in the main database and committed in the shard's inside it."""
        shard = self.store.shard_of(admitted[0][0].order_id)
        if self.store.in_main(shard):
            return super().recorder(admitted)
        shard_engine = self.store.engine_of(shard)
        committed = False

        def record(conn: Connection) -> None:  # `conn`: the main database's transaction
            nonlocal committed
            if committed:  # re-run after the shard committed: the task stands, insert nothing
                return
            if self.fenced:
                for order, epoch in admitted:
                    if conn.dialect.name == "sqlite":
                        conn.execute(_TAKE_EPOCH_ROW, {"epoch_sku": order.sku})
                    check_epoch(conn, order.sku, epoch)
            with shard_engine.begin() as shard_conn:
                for order, _ in admitted:
                    self.store.record(shard_conn, order)
            committed = True

        return record

    def probe_engine(self, order: Order) -> Engine:
        """The task's code is probed where the task was recorded: its shard's database."""
        return self.store.engine_of(self.store.shard_of(order.order_id))

    def rewarm(self) -> dict[str, int]:
        """`task_engine`'s re-warm, reading the pending tasks of every database (module
        docstring: never too high)."""
        return warm_up(
            self.lab,
            minus_pending=self.rewarm_minus_pending,
            fenced=self.fenced,
            task_store=self.store,
        )

    def close(self) -> None:
        super().close()
        self._dispose()

    def _dispose(self) -> None:
        for engine in self.shard_engines:
            engine.dispose()


@register
class TaskEngineShardedDb(ShardsInDatabases):
    name = "task_engine_sharded_db"
    summary = "task_engine with its task shards spread over databases (shard n in database n % D)"


@register
class TaskEngineMergedShardedDb(ShardsInDatabases, TaskEngineMerged):
    name = "task_engine_merged_sharded_db"
    summary = "task_engine_merged with its task shards spread over databases (n % D)"

    def apply_tasks(self, tasks: Sequence[Task], owner: str) -> BatchApplied:
        """A batch from a shard beside the stock: one transaction (`task_engine_merged`); from
        another database: hold, apply, complete (`apply_batch_across`)."""
        if not tasks or self.store.in_main(tasks[0].shard):
            return super().apply_tasks(tasks, owner)
        return apply_batch_across(
            self.lab.engine, self.store, tasks, owner, design=self.name, guard=self.db_guard
        )
