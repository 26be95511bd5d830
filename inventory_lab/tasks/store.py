"""Sharded task tables and every statement that moves a task between states.

A task is one accepted deduction waiting to be persisted. Its table is `tasks_<n>`, n chosen by
the order id (crc32 % shards), so one order's tasks always land in one shard and a hot SKU's
writes spread over all of them. Shards may live in one database or in several (one engine each):
shard n lives in engine n % E, and the first engine is the *main* database, the one that holds the
stock, the anti-repeat rows and the ledger (the others hold task tables only).

Life cycle (the article's codes 0 and 100; the rest are the lab's):

    NEW 0 --claim--> LOCKED 100 --apply ok--> DONE 200
                        |  \\--apply fails--> FAILED 300 --backoff--> NEW 0 (attempts < K)
                        |                                 \\--------> DEAD 400 (attempts >= K)
                        \\--lease expired (unlock worker, start-up recovery)--> NEW 0
    a row that is not a valid order (a poison task) --claim--> DEAD 400 with its error

Claiming one task is `UPDATE … SET status = 100 … WHERE id = :id AND status = 0`: of two workers
racing for it, exactly one updates a row. Batch claiming on PostgreSQL and MariaDB takes
`SELECT … FOR UPDATE SKIP LOCKED` first. `claim_sku_batch` claims the NEW tasks of one SKU
together, for the executors that apply them as one transaction (`tasks.merging`); `hold` and
`complete_held` are that transaction's lease check and completion, run inside it. Completion is a
compare-and-set on id, owner and status, so a worker whose lease ran out cannot mark done a task
another worker now holds; `renew` is the same compare-and-set, run before applying, so a worker
never applies a task it lost.
Every claim, completion and unlock goes through `backends.in_transaction`, which re-runs a
transaction the database chose as a deadlock victim (MariaDB does, under SKIP LOCKED batches).

Times are epoch seconds on the *database's* clock (`backends.db_now`): leases and backoffs compare
times that different workers wrote, and a worker whose clock runs fast must not steal a task.
Owners are `node:boot:worker` and start-up recovery matches its node and boot exactly (a prefix
compared byte for byte, never a LIKE pattern: `_` and `%` are legal in a node name).

"Pending" means *not yet applied*: a NEW, LOCKED or FAILED task whose anti-repeat row is not in
the database. A task can be applied and still look NEW (its worker lost the lease while applying,
so its completion failed); counting it as pending would subtract it twice from Redis at re-warm.
With shards in other databases, the task rows and the anti-repeat rows cannot be joined in one
statement: `stock_and_unapplied` reads the other databases' pending rows first, then the main
database's stock, its own shards and the anti-repeat rows of those tasks in one statement (one
snapshot). Read in that order, a task applied in between is still counted pending: Redis is
then copied a little low (an undersell until the next re-warm), never high.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from inventory_lab import schema
from inventory_lab.backends import db_now, in_transaction
from inventory_lab.errors import InvalidOrder
from inventory_lab.orders import Order


class Status(enum.IntEnum):
    NEW = 0
    LOCKED = 100
    DONE = 200
    FAILED = 300
    DEAD = 400


PENDING = (Status.NEW, Status.LOCKED, Status.FAILED)
# The kinds of row `TaskStore.stock_and_unapplied` reads in its one statement on the main database.
_KINDS = ("stock", "task", "applied")


@dataclass(frozen=True, slots=True)
class Task:
    shard: int
    id: int
    order: Order
    attempts: int


def unapplied_tasks_query(tables: Sequence[sa.Table]) -> sa.Subquery | None:
    """One subquery over every shard: (order_id, sku, qty) of each task not yet applied.

    One statement is one snapshot, so it can be read together with the stock (see
    `redis_stock.redis_target`). Needs the anti-repeat table in the shards' database.
    """
    if not tables:
        return None
    code = schema.anti_repeat.c.code
    parts = [
        sa.select(t.c.order_id, t.c.sku, t.c.qty).where(
            t.c.status.in_([int(s) for s in PENDING]),
            ~sa.exists().where(code == t.c.code),
        )
        for t in tables
    ]
    return sa.union_all(*parts).subquery("unapplied")


def unapplied_tasks(conn: Connection, tables: Sequence[sa.Table]) -> pd.DataFrame:
    query = unapplied_tasks_query(tables)
    rows = [] if query is None else conn.execute(query.select()).all()
    return pd.DataFrame(rows, columns=["order_id", "sku", "qty"])


def units_by_sku(tasks: pd.DataFrame) -> dict[str, int]:
    return {sku: int(qty) for sku, qty in tasks.groupby("sku")["qty"].sum().items() if qty}


def _task_values(order: Order) -> dict[str, Any]:
    """The order's values in its task row."""
    return {
        "code": order.anti_repeat_code,
        "order_id": order.order_id,
        "sku": order.sku,
        "qty": order.qty,
    }


def _task_insert(table: sa.Table, values: dict[str, Any]) -> sa.Insert:
    """A NEW task row stamped on the database's clock, with the order's `values`: bind
    parameters (the statement the order path reuses) or an order's own (a probe)."""
    return table.insert().values(
        **values,
        status=int(Status.NEW),
        attempts=0,
        created_time=db_now(),
        modify_time=db_now(),
    )


_BOUND_TASK_VALUES = {name: sa.bindparam(name) for name in ("code", "order_id", "sku", "qty")}


class TaskStore:
    """The task tables of N shards, spread over one or more engines (the first: the main one)."""

    def __init__(self, engines: Engine | Sequence[Engine], shards: int = 4) -> None:
        if shards < 1:
            raise ValueError("shards must be >= 1")
        self.engines = [engines] if isinstance(engines, Engine) else list(engines)
        if not self.engines:
            raise ValueError("at least one engine is needed")
        self.shards = shards
        self.metadata = sa.MetaData()
        self.tables = [schema.task_table(self.metadata, n) for n in range(shards)]
        # Recording a task is on the order path: its insert is built once per shard.
        self._inserts = [_task_insert(table, _BOUND_TASK_VALUES) for table in self.tables]

    # --- layout -------------------------------------------------------------------------------

    def shard_of(self, order_id: str) -> int:
        return zlib.crc32(order_id.encode()) % self.shards

    def engine_of(self, shard: int) -> Engine:
        return self.engines[shard % len(self.engines)]

    @property
    def main_engine(self) -> Engine:
        """The database of the stock, the anti-repeat rows and the ledger."""
        return self.engines[0]

    def in_main(self, shard: int) -> bool:
        """Whether the shard's table lives in the main database (beside the stock)."""
        return shard % len(self.engines) == 0

    def tables_in(self, index: int) -> list[sa.Table]:
        """The task tables that live in engine `index`."""
        return [t for shard, t in enumerate(self.tables) if shard % len(self.engines) == index]

    def reset(self) -> None:
        """Drop and re-create every shard's table."""
        for shard, table in enumerate(self.tables):
            engine = self.engine_of(shard)
            table.drop(engine, checkfirst=True)
            table.create(engine)

    # --- writing tasks ------------------------------------------------------------------------

    def insert_statement(self, order: Order) -> sa.Insert:
        """The task row of an accepted deduction, NEW, stamped on the database's clock, as a
        statement that carries the order's values (what `resolve.persisted` runs as its probe).

        `record` runs the same INSERT from a statement built once per shard; this one is built
        per call.
        """
        return _task_insert(self.tables[self.shard_of(order.order_id)], _task_values(order))

    def record(self, conn: Connection, order: Order) -> int:
        """Insert the NEW task row of an accepted deduction in `conn`'s transaction (on the
        engine of the order's shard); returns the shard. A second task for the order line is an
        IntegrityError."""
        shard = self.shard_of(order.order_id)
        conn.execute(self._inserts[shard], _task_values(order))
        return shard

    def add(self, order: Order) -> int:
        """Record an accepted deduction as a NEW task; returns its shard. Durable on return."""
        shard = self.shard_of(order.order_id)
        with self.engine_of(shard).begin() as conn:
            self.record(conn, order)
        return shard

    def add_many(self, orders: Sequence[Order], *, rows_per_insert: int = 500) -> int:
        """Record many accepted deductions as NEW tasks, each row as `record` writes it, in
        multi-row INSERTs, one transaction per shard (a benchmark's backlog). Returns how many."""
        by_shard: dict[int, list[Order]] = {}
        for order in orders:
            by_shard.setdefault(self.shard_of(order.order_id), []).append(order)
        for shard, mine in by_shard.items():
            table = self.tables[shard]
            with self.engine_of(shard).begin() as conn:
                for start in range(0, len(mine), rows_per_insert):
                    rows = [
                        {
                            **_task_values(order),
                            "status": int(Status.NEW),
                            "attempts": 0,
                            "created_time": db_now(),
                            "modify_time": db_now(),
                        }
                        for order in mine[start : start + rows_per_insert]
                    ]
                    conn.execute(table.insert().values(rows))
        return sum(len(mine) for mine in by_shard.values())

    def has_task(self, conn: Connection, order: Order) -> bool:
        table = self.tables[self.shard_of(order.order_id)]
        found = conn.execute(sa.select(table.c.id).where(table.c.code == order.anti_repeat_code))
        return found.first() is not None

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

        def work(conn: Connection) -> list[sa.Row[Any]]:
            claimed = conn.execute(
                sa.update(table)
                .where(table.c.id == task_id, table.c.status == int(Status.NEW))
                .values(status=int(Status.LOCKED), lock_owner=owner, modify_time=db_now())
            ).rowcount
            return self._rows(conn, shard, [task_id]) if claimed == 1 else []

        tasks = self._tasks(shard, owner, in_transaction(self.engine_of(shard), work))
        return tasks[0] if tasks else None

    def claim_batch(self, shard: int, owner: str, limit: int) -> list[Task]:
        """Claim up to `limit` NEW tasks in one transaction with FOR UPDATE SKIP LOCKED.

        PostgreSQL and MariaDB 10.6+ only: SQLite has one writer and no SKIP LOCKED.
        """
        engine = self.engine_of(shard)
        if engine.dialect.name == "sqlite":
            raise NotImplementedError("SQLite has no SELECT … FOR UPDATE SKIP LOCKED")
        table = self.tables[shard]

        def work(conn: Connection) -> list[sa.Row[Any]]:
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
                .values(status=int(Status.LOCKED), lock_owner=owner, modify_time=db_now())
            )
            return self._rows(conn, shard, ids)

        return self._tasks(shard, owner, in_transaction(engine, work))

    def claim_sku_batch(self, shard: int, owner: str, limit: int) -> list[Task]:
        """Claim up to `limit` NEW tasks of one SKU (that of the shard's oldest NEW task), in id
        order, for an executor that applies them as one transaction.

        PostgreSQL and MariaDB: `SELECT … FOR UPDATE SKIP LOCKED`, then the claim, as in
        `claim_batch`. SQLite (one writer, no SKIP LOCKED): the article's conditional update on
        the ids read just before, then the rows this owner now holds (another executor may have
        won some of them).
        """
        engine = self.engine_of(shard)
        table = self.tables[shard]
        new = table.c.status == int(Status.NEW)
        with engine.connect() as conn:
            sku = conn.execute(
                sa.select(table.c.sku).where(new).order_by(table.c.id).limit(1)
            ).scalar_one_or_none()
        if sku is None:
            return []
        pending = sa.select(table.c.id).where(new, table.c.sku == sku).order_by(table.c.id)
        skip_locked = engine.dialect.name != "sqlite"

        def work(conn: Connection) -> list[sa.Row[Any]]:
            query = pending.limit(limit)
            if skip_locked:
                query = query.with_for_update(skip_locked=True)
            ids = list(conn.execute(query).scalars())
            if not ids:
                return []
            claimed = conn.execute(
                sa.update(table)
                .where(table.c.id.in_(ids), new)
                .values(status=int(Status.LOCKED), lock_owner=owner, modify_time=db_now())
            ).rowcount
            if claimed < len(ids):  # SQLite: another executor won some of them
                ids = self._held_ids(conn, shard, ids, owner)
            return self._rows(conn, shard, ids) if ids else []

        return self._tasks(shard, owner, in_transaction(engine, work))

    def _held_ids(self, conn: Connection, shard: int, ids: list[int], owner: str) -> list[int]:
        table = self.tables[shard]
        return list(
            conn.execute(
                sa.select(table.c.id)
                .where(
                    table.c.id.in_(ids),
                    table.c.lock_owner == owner,
                    table.c.status == int(Status.LOCKED),
                )
                .order_by(table.c.id)
            ).scalars()
        )

    def _rows(self, conn: Connection, shard: int, ids: list[int]) -> list[sa.Row[Any]]:
        table = self.tables[shard]
        return list(
            conn.execute(
                sa.select(table.c.id, table.c.order_id, table.c.sku, table.c.qty, table.c.attempts)
                .where(table.c.id.in_(ids))
                .order_by(table.c.id)
            ).all()
        )

    def _tasks(self, shard: int, owner: str, rows: list[sa.Row[Any]]) -> list[Task]:
        """Claimed rows as tasks. A row that is no valid order is buried as DEAD with its error,
        outside the claim's transaction: validating inside it would roll the claim back and
        leave the poison NEW, to be claimed again forever."""
        tasks = []
        for row in rows:
            try:
                order = Order(row.order_id, row.sku, row.qty)
            except InvalidOrder as exc:
                task = Task(shard, row.id, Order("poison", "poison", 1), row.attempts)
                self._finish(
                    task, owner, status=int(Status.DEAD), last_error=f"InvalidOrder: {exc}"[:200]
                )
                continue
            tasks.append(Task(shard, row.id, order, row.attempts))
        return tasks

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
            .values(modify_time=db_now(), **values)
        )
        engine = self.engine_of(task.shard)
        return in_transaction(engine, lambda conn: conn.execute(statement).rowcount == 1)

    def hold(self, conn: Connection, shard: int, ids: Sequence[int], owner: str) -> set[int]:
        """In `conn`'s transaction: renew the lease of each of `ids` this owner still holds, and
        keep their rows locked until the transaction ends (on SQLite: take the one writer's
        lock), so that no unlock or other executor can take them meanwhile. Returns the ids held;
        a task whose lease was lost (unlocked, perhaps claimed again) is left alone."""
        table = self.tables[shard]
        renewed = conn.execute(
            sa.update(table)
            .where(
                table.c.id.in_(list(ids)),
                table.c.lock_owner == owner,
                table.c.status == int(Status.LOCKED),
            )
            .values(modify_time=db_now())
        ).rowcount
        if renewed == len(ids):
            return set(ids)
        return set(self._held_ids(conn, shard, list(ids), owner))

    def complete_held(self, conn: Connection, shard: int, ids: Sequence[int], owner: str) -> int:
        """In `conn`'s transaction: mark DONE the tasks `hold` returned (the compare-and-set of
        `complete`, on many ids at once). Returns how many."""
        table = self.tables[shard]
        return conn.execute(
            sa.update(table)
            .where(
                table.c.id.in_(list(ids)),
                table.c.lock_owner == owner,
                table.c.status == int(Status.LOCKED),
            )
            .values(
                status=int(Status.DONE), done_time=db_now(), modify_time=db_now(), lock_owner=None
            )
        ).rowcount

    def renew(self, task: Task, owner: str) -> bool:
        """Extend the lease before applying; false if it was already lost (do not apply)."""
        return self._finish(task, owner)

    def release(self, task: Task, owner: str) -> bool:
        """Give a claimed task back unapplied (the worker is stopping)."""
        return self._finish(task, owner, status=int(Status.NEW), lock_owner=None)

    def complete(self, task: Task, owner: str) -> bool:
        return self._finish(
            task, owner, status=int(Status.DONE), done_time=db_now(), lock_owner=None
        )

    def fail(self, task: Task, owner: str, error: str, *, dead: bool = False) -> bool:
        """FAILED (to be retried after its backoff), or DEAD at once when it never can succeed."""
        return self._finish(
            task,
            owner,
            status=int(Status.DEAD if dead else Status.FAILED),
            attempts=task.attempts + 1,
            last_error=error[:200],
            lock_owner=None,
        )

    # --- the maintenance workers' statements -----------------------------------------------------

    def unlock_expired(self, lease_s: float, *, node: str | None = None, boot: str = "") -> int:
        """Return to NEW every task LOCKED for longer than `lease_s` (database clock).

        With `node`, only that node's tasks from boots other than `boot`: start-up recovery,
        where the node knows its previous process is dead and need not wait for the lease.
        """
        unlocked = 0
        for shard, table in enumerate(self.tables):
            condition = [
                table.c.status == int(Status.LOCKED),
                table.c.modify_time <= db_now() - lease_s,
            ]
            if node is not None:
                condition.append(_starts_with(table.c.lock_owner, f"{node}:"))
                condition.append(~_starts_with(table.c.lock_owner, f"{node}:{boot}:"))
            statement = (
                sa.update(table)
                .where(*condition)
                .values(status=int(Status.NEW), lock_owner=None, modify_time=db_now())
            )
            unlocked += in_transaction(
                self.engine_of(shard), lambda conn, st=statement: conn.execute(st).rowcount
            )
        return unlocked

    def retry_failed(
        self, *, max_attempts: int, backoff_s: float, max_backoff_s: float = 1.0
    ) -> tuple[int, int]:
        """FAILED tasks whose backoff (backoff_s * 2**(attempts-1), at most max_backoff_s) ran
        out: retry or bury.

        Returns (retried, dead).
        """
        retried = dead = 0
        for shard, table in enumerate(self.tables):
            with self.engine_of(shard).begin() as conn:
                now = conn.execute(sa.select(db_now())).scalar_one()
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
                    r.id
                    for r in rows
                    if now - r.modify_time >= min(backoff_s * 2 ** (r.attempts - 1), max_backoff_s)
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
        """Units accepted but not yet applied (see the module's docstring), per SKU."""
        with self.main_engine.connect() as main:
            return units_by_sku(self.unapplied(main))

    def unapplied(self, main: Connection) -> pd.DataFrame:
        """(order_id, sku, qty) of every task not yet applied, in every database; `main`: a
        connection to the main database (see `stock_and_unapplied`)."""
        return self.stock_and_unapplied(main)[1]

    def stock_and_unapplied(
        self, main: Connection, stock: sa.Subquery | None = None
    ) -> tuple[dict[str, int], pd.DataFrame]:
        """Each SKU's stock and every task not yet applied, read so that Redis's target (stock
        minus unapplied) is never too high: first the pending rows of the shards in other
        databases, then, in one statement on `main` (one snapshot), the stock, the unapplied
        tasks of the shards beside it and which of the others' codes have an anti-repeat row.

        `stock`: a subquery of (sku, units) to read the stock from (default: the stock table).
        """
        elsewhere = self._pending_elsewhere()
        units = sa.literal_column("0", sa.Integer)
        if stock is None:
            stock = sa.select(schema.stock.c.sku, schema.stock.c.num.label("units")).subquery()
        kind = {name: sa.literal_column(str(n), sa.Integer) for n, name in enumerate(_KINDS)}
        parts: list[sa.Select[Any]] = [
            sa.select(kind["stock"], stock.c.sku, stock.c.sku, stock.c.units)
        ]
        here = unapplied_tasks_query(self.tables_in(0))
        if here is not None:
            parts.append(sa.select(kind["task"], here.c.order_id, here.c.sku, here.c.qty))
        if elsewhere:
            code = schema.anti_repeat.c.code
            # Inlined by the dialect's own quoting (not bound one by one): a backlog of tens of
            # thousands of tasks would pass SQLite's and psycopg's limits on bound parameters.
            codes = sa.bindparam("codes", list(elsewhere), expanding=True, literal_execute=True)
            parts.append(sa.select(kind["applied"], code, code, units).where(code.in_(codes)))
        rows = main.execute(sa.union_all(*parts)).all()
        found: dict[str, int] = {}
        waiting: list[tuple[str, str, int]] = []
        applied: set[str] = set()
        for row_kind, first, second, n in rows:
            if row_kind == _KINDS.index("stock"):
                found[first] = int(n)
            elif row_kind == _KINDS.index("task"):
                waiting.append((first, second, int(n)))
            else:
                applied.add(first)
        waiting += [row for code, row in elsewhere.items() if code not in applied]
        return found, pd.DataFrame(waiting, columns=["order_id", "sku", "qty"])

    def _pending_elsewhere(self) -> dict[str, tuple[str, str, int]]:
        """code -> (order_id, sku, qty) of the NEW, LOCKED and FAILED tasks of the shards that
        live outside the main database (applied or not: only the main database can tell)."""
        pending: dict[str, tuple[str, str, int]] = {}
        statuses = [int(s) for s in PENDING]
        for index in range(1, len(self.engines)):
            tables = self.tables_in(index)
            if not tables:
                continue
            query = sa.union_all(
                *(
                    sa.select(t.c.code, t.c.order_id, t.c.sku, t.c.qty).where(
                        t.c.status.in_(statuses)
                    )
                    for t in tables
                )
            )
            with self.engines[index].connect() as conn:
                for code, order_id, sku, qty in conn.execute(query):
                    pending[code] = (order_id, sku, int(qty))
        return pending


def _starts_with(column: sa.ColumnElement[str], prefix: str) -> sa.ColumnElement[bool]:
    """`column` begins with `prefix`, compared exactly (no LIKE wildcards, case-sensitive on a
    binary-collated column)."""
    return sa.func.substr(column, 1, len(prefix)) == prefix
