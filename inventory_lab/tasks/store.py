"""Sharded task tables and every statement that moves a task between states.

A task is one accepted deduction waiting to be persisted. Its table is `tasks_<n>`, n chosen by
the order id (crc32 % shards), so one order's tasks always land in one shard and a hot SKU's
writes spread over all of them. Shards may live in one database or in several (one engine each).

Life cycle (the article's codes 0 and 100; the rest are the lab's):

    NEW 0 --claim--> LOCKED 100 --apply ok--> DONE 200
                        |  \\--apply fails--> FAILED 300 --backoff--> NEW 0 (attempts < K)
                        |                                 \\--------> DEAD 400 (attempts >= K)
                        \\--lease expired (unlock worker, start-up recovery)--> NEW 0

Claiming one task is `UPDATE … SET status = 100 … WHERE id = :id AND status = 0`: of two workers
racing for it, exactly one updates a row. Batch claiming on PostgreSQL and MariaDB takes
`SELECT … FOR UPDATE SKIP LOCKED` first. Completion is a compare-and-set on id, owner and
status, so a worker whose lease ran out cannot mark done a task another worker now holds.
Every claim, completion and unlock goes through `backends.in_transaction`, which re-runs a
transaction the database chose as a deadlock victim (MariaDB does, under SKIP LOCKED batches).
Times are epoch seconds (float) taken on this machine: the lab's workers share one clock.
"""

from __future__ import annotations

import enum
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from inventory_lab.backends import in_transaction
from inventory_lab.orders import Order
from inventory_lab.schema import key_string


class Status(enum.IntEnum):
    NEW = 0
    LOCKED = 100
    DONE = 200
    FAILED = 300
    DEAD = 400


PENDING = (Status.NEW, Status.LOCKED, Status.FAILED)


@dataclass(frozen=True, slots=True)
class Task:
    shard: int
    id: int
    order: Order
    attempts: int


def _task_table(metadata: sa.MetaData, shard: int) -> sa.Table:
    return sa.Table(
        f"tasks_{shard}",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("code", key_string(130), nullable=False, unique=True),  # order id:sku
        sa.Column("order_id", key_string(64), nullable=False),
        sa.Column("sku", key_string(64), nullable=False),
        sa.Column("qty", sa.Integer, nullable=False),
        sa.Column("status", sa.Integer, nullable=False, default=int(Status.NEW)),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("lock_owner", sa.String(64), nullable=True),
        sa.Column("created_time", sa.Double, nullable=False),
        sa.Column("modify_time", sa.Double, nullable=False),
        sa.Column("done_time", sa.Double, nullable=True),
        sa.Index(f"ix_tasks_{shard}_status", "status", "modify_time"),
    )


class TaskStore:
    """The task tables of N shards, spread over one or more engines."""

    def __init__(self, engines: Engine | Sequence[Engine], shards: int = 4) -> None:
        if shards < 1:
            raise ValueError("shards must be >= 1")
        self.engines = [engines] if isinstance(engines, Engine) else list(engines)
        if not self.engines:
            raise ValueError("at least one engine is needed")
        self.shards = shards
        self.metadata = sa.MetaData()
        self.tables = [_task_table(self.metadata, n) for n in range(shards)]

    # --- layout -------------------------------------------------------------------------------

    def shard_of(self, order_id: str) -> int:
        return zlib.crc32(order_id.encode()) % self.shards

    def engine_of(self, shard: int) -> Engine:
        return self.engines[shard % len(self.engines)]

    def reset(self) -> None:
        """Drop and re-create every shard's table."""
        for shard, table in enumerate(self.tables):
            engine = self.engine_of(shard)
            table.drop(engine, checkfirst=True)
            table.create(engine)

    # --- writing tasks ------------------------------------------------------------------------

    def add(self, order: Order) -> int:
        """Record an accepted deduction as a NEW task; returns its shard. Durable on return."""
        shard = self.shard_of(order.order_id)
        now = time.time()
        with self.engine_of(shard).begin() as conn:
            conn.execute(
                self.tables[shard]
                .insert()
                .values(
                    code=order.anti_repeat_code,
                    order_id=order.order_id,
                    sku=order.sku,
                    qty=order.qty,
                    status=int(Status.NEW),
                    attempts=0,
                    created_time=now,
                    modify_time=now,
                )
            )
        return shard

    # --- claiming -----------------------------------------------------------------------------

    def new_ids(self, shard: int, limit: int) -> list[int]:
        table = self.tables[shard]
        query = (
            sa.select(table.c.id)
            .where(table.c.status == int(Status.NEW))
            .order_by(table.c.id)
            .limit(limit)
        )
        with self.engine_of(shard).connect() as conn:
            return list(conn.execute(query).scalars())

    def claim(self, shard: int, task_id: int, owner: str) -> Task | None:
        """The article's claim: `SET status = 100 WHERE id = :id AND status = 0`."""
        table = self.tables[shard]

        def work(conn: Connection) -> Task | None:
            claimed = conn.execute(
                sa.update(table)
                .where(table.c.id == task_id, table.c.status == int(Status.NEW))
                .values(status=int(Status.LOCKED), lock_owner=owner, modify_time=time.time())
            ).rowcount
            if claimed != 1:
                return None
            return self._load(conn, shard, [task_id])[0]

        return in_transaction(self.engine_of(shard), work)

    def claim_batch(self, shard: int, owner: str, limit: int) -> list[Task]:
        """Claim up to `limit` NEW tasks in one transaction with FOR UPDATE SKIP LOCKED.

        PostgreSQL and MariaDB 10.6+ only: SQLite has one writer and no SKIP LOCKED.
        """
        engine = self.engine_of(shard)
        if engine.dialect.name == "sqlite":
            raise NotImplementedError("SQLite has no SELECT … FOR UPDATE SKIP LOCKED")
        table = self.tables[shard]

        def work(conn: Connection) -> list[Task]:
            ids = list(
                conn.execute(
                    sa.select(table.c.id)
                    .where(table.c.status == int(Status.NEW))
                    .order_by(table.c.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                ).scalars()
            )
            if not ids:
                return []
            conn.execute(
                sa.update(table)
                .where(table.c.id.in_(ids))
                .values(status=int(Status.LOCKED), lock_owner=owner, modify_time=time.time())
            )
            return self._load(conn, shard, ids)

        return in_transaction(engine, work)

    def _load(self, conn: Connection, shard: int, ids: list[int]) -> list[Task]:
        table = self.tables[shard]
        rows = conn.execute(
            sa.select(table.c.id, table.c.order_id, table.c.sku, table.c.qty, table.c.attempts)
            .where(table.c.id.in_(ids))
            .order_by(table.c.id)
        ).all()
        return [Task(shard, r.id, Order(r.order_id, r.sku, r.qty), r.attempts) for r in rows]

    # --- finishing ----------------------------------------------------------------------------

    def _finish(self, task: Task, owner: str, **values: object) -> bool:
        """Compare-and-set on id, owner and LOCKED: false if the lease was lost meanwhile."""
        table = self.tables[task.shard]
        statement = (
            sa.update(table)
            .where(
                table.c.id == task.id,
                table.c.lock_owner == owner,
                table.c.status == int(Status.LOCKED),
            )
            .values(modify_time=time.time(), **values)
        )
        engine = self.engine_of(task.shard)
        return in_transaction(engine, lambda conn: conn.execute(statement).rowcount == 1)

    def complete(self, task: Task, owner: str) -> bool:
        now = time.time()
        return self._finish(task, owner, status=int(Status.DONE), done_time=now, lock_owner=None)

    def fail(self, task: Task, owner: str, error: str) -> bool:
        return self._finish(
            task,
            owner,
            status=int(Status.FAILED),
            attempts=task.attempts + 1,
            last_error=error[:200],
            lock_owner=None,
        )

    # --- the maintenance workers' statements -----------------------------------------------------

    def unlock_expired(self, lease_s: float, *, node: str | None = None, boot: str = "") -> int:
        """Return to NEW every task LOCKED for longer than `lease_s`.

        With `node`, only that node's tasks from boots other than `boot`: start-up recovery,
        where the node knows its previous process is dead and need not wait for the lease.
        """
        cutoff = time.time() - lease_s
        unlocked = 0
        for shard, table in enumerate(self.tables):
            condition = [table.c.status == int(Status.LOCKED), table.c.modify_time <= cutoff]
            if node is not None:
                condition.append(table.c.lock_owner.like(f"{node}:%"))
                condition.append(table.c.lock_owner.not_like(f"{node}:{boot}:%"))
            statement = (
                sa.update(table)
                .where(*condition)
                .values(status=int(Status.NEW), lock_owner=None, modify_time=time.time())
            )
            unlocked += in_transaction(
                self.engine_of(shard), lambda conn, st=statement: conn.execute(st).rowcount
            )
        return unlocked

    def retry_failed(self, *, max_attempts: int, backoff_s: float) -> tuple[int, int]:
        """FAILED tasks whose backoff (backoff_s * 2**(attempts-1)) ran out: retry or bury.

        Returns (retried, dead).
        """
        now = time.time()
        retried = dead = 0
        for shard, table in enumerate(self.tables):
            with self.engine_of(shard).begin() as conn:
                dead += conn.execute(
                    sa.update(table)
                    .where(table.c.status == int(Status.FAILED), table.c.attempts >= max_attempts)
                    .values(status=int(Status.DEAD), modify_time=now)
                ).rowcount
                rows = conn.execute(
                    sa.select(table.c.id, table.c.attempts, table.c.modify_time).where(
                        table.c.status == int(Status.FAILED)
                    )
                ).all()
                due = [
                    r.id for r in rows if now - r.modify_time >= backoff_s * 2 ** (r.attempts - 1)
                ]
                if due:
                    retried += conn.execute(
                        sa.update(table)
                        .where(table.c.id.in_(due), table.c.status == int(Status.FAILED))
                        .values(status=int(Status.NEW), modify_time=now)
                    ).rowcount
        return retried, dead

    # --- reading ------------------------------------------------------------------------------

    def frame(self) -> pd.DataFrame:
        """Every task of every shard, with its shard number (for reports and plots)."""
        frames = []
        for shard, table in enumerate(self.tables):
            with self.engine_of(shard).connect() as conn:
                rows = conn.execute(sa.select(table)).mappings().all()
            frame = pd.DataFrame(rows, columns=[c.name for c in table.columns])
            frame.insert(0, "shard", shard)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def counts(self) -> dict[Status, int]:
        totals = dict.fromkeys(Status, 0)
        for shard, table in enumerate(self.tables):
            with self.engine_of(shard).connect() as conn:
                for status, n in conn.execute(
                    sa.select(table.c.status, sa.func.count()).group_by(table.c.status)
                ):
                    totals[Status(status)] += n
        return totals

    def pending_by_sku(self) -> dict[str, int]:
        """Units accepted but not yet persisted (NEW, LOCKED or FAILED tasks), per SKU."""
        pending: dict[str, int] = {}
        for shard, table in enumerate(self.tables):
            with self.engine_of(shard).connect() as conn:
                for sku, qty in conn.execute(
                    sa.select(table.c.sku, sa.func.sum(table.c.qty))
                    .where(table.c.status.in_([int(s) for s in PENDING]))
                    .group_by(table.c.sku)
                ):
                    pending[sku] = pending.get(sku, 0) + int(qty)
        return pending
