"""Merging at gate 2: one SKU's pending tasks applied as one transaction (beyond the article).

The article's executors apply each task in a transaction of its own, so a hot SKU's stock row
takes one UPDATE and one commit per order, serialised by its row lock. AliSQL's inventory hint
merges the updates of one hot row (group commit); here the executor does it itself:
`MergingTaskEngine` claims up to `max_batch` NEW tasks of one SKU in one shard
(`TaskStore.claim_sku_batch`) and `apply_batch` applies them in one transaction:

    hold the batch's task rows (lease renewed, rows locked: `TaskStore.hold`)
    SELECT code FROM anti_repeat WHERE code IN (…the batch's codes…)   -- applied before?
    INSERT INTO anti_repeat (code) VALUES (…), (…), …                  -- the others only
    INSERT INTO orders (order_id, sku, qty, design) VALUES (…), …      -- their ledger rows
    UPDATE tasks_<n> SET status = 200 … WHERE id IN (…held…)           -- every held task DONE
    UPDATE stock SET num = num - :sum WHERE sku = :sku [AND num - :sum >= 0]

The stock row is updated last, so its lock is held for one statement and the commit.

Idempotent per task, as the per-task `apply` is: a task whose anti-repeat row exists (an
executor died between its commit and its completion, or the task was claimed again after a lease
ran out) is marked DONE and deducts nothing; a task this executor no longer holds is not touched
at all. The anti-repeat primary key stays the last line: a code committed by another transaction
after the SELECT makes the INSERT fail, the whole batch rolls back, and the executor applies the
batch task by task through the design's own `apply` — never twice. It does the same when the DB
guard refuses the summed UPDATE (`GuardShortfall`: only the tasks that fit are applied, the rest
go DEAD as in `task_engine`) and on any other error, so that no task's fate is decided by
another task of its batch.

A shard in another database than the stock (`apply_batch_across`) cannot be held, applied and
completed in one transaction. There the batch takes three, in this order: hold (the lease
renewed, in the shard's database), apply (anti-repeat rows, ledger rows and the summed UPDATE,
in the main database), complete (DONE, in the shard's database, a compare-and-set on owner and
status). A crash after the apply's commit leaves the tasks LOCKED: their lease runs out, they
are claimed again, and the anti-repeat rows make the second batch mark them DONE without
deducting. No transaction in the shard's database is open while the main one runs, so no lock
is ever held in one database while waiting for one in the other.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from inventory_lab import schema
from inventory_lab.backends import in_transaction
from inventory_lab.tasks.store import Task, TaskStore
from inventory_lab.tasks.workers import ApplyFn, TaskEngine

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 256
MAX_BATCH = 10_000  # the batch's ids and codes are bound one parameter each (SQLite: 32,766)


class GuardShortfall(Exception):
    """The DB guard refused the batch's summed UPDATE: the stock cannot take all of it."""


@dataclass(frozen=True)
class BatchApplied:
    """What one batch transaction did, task by task."""

    applied: tuple[Task, ...]  # deducted now (anti-repeat row, ledger row, their sum)
    already_applied: tuple[Task, ...]  # applied before: marked DONE, nothing deducted
    lost: tuple[Task, ...]  # the lease was lost before the transaction: left alone
    units: int  # the sum the stock UPDATE took

    @property
    def completed(self) -> int:
        return len(self.applied) + len(self.already_applied)


BatchApplyFn = Callable[[Sequence[Task], str], BatchApplied]


def check_max_batch(max_batch: object) -> int:
    if isinstance(max_batch, bool) or not isinstance(max_batch, int):
        raise ValueError(f"max_batch must be an integer, got {max_batch!r}")
    if not 1 <= max_batch <= MAX_BATCH:
        raise ValueError(f"max_batch must be in [1, {MAX_BATCH}], got {max_batch}")
    return max_batch


def applied_codes(conn: Connection, codes: Sequence[str]) -> set[str]:
    """The codes among `codes` whose anti-repeat row exists: those tasks were applied before."""
    code = schema.anti_repeat.c.code
    return set(conn.execute(sa.select(code).where(code.in_(list(codes)))).scalars())


# Executed with a list of rows: SQLAlchemy's "insertmanyvalues" sends them as multi-row
# `INSERT … VALUES (…), (…), … RETURNING …` (pages of up to 1,000 rows) on SQLite, PostgreSQL
# and MariaDB alike, from one compiled statement (a `.values([...])` list would be compiled
# again for every batch: SQLAlchemy does not cache multi-values constructs).
_INSERT_CODES = schema.anti_repeat.insert().returning(schema.anti_repeat.c.code)
_INSERT_LEDGER = schema.orders.insert().returning(schema.orders.c.id)


def _insert_rows(conn: Connection, statement: sa.Insert, rows: list[dict[str, Any]]) -> None:
    if conn.dialect.insert_executemany_returning:
        conn.execute(statement, rows).all()
    else:  # a server without INSERT … RETURNING (MariaDB < 10.5): the driver's executemany
        conn.execute(statement.table.insert(), rows)


def apply_batch(
    conn: Connection,
    store: TaskStore,
    tasks: Sequence[Task],
    owner: str,
    *,
    design: str,
    guard: bool = False,
) -> BatchApplied:
    """In `conn`'s transaction, apply claimed `tasks` of one SKU and one shard as one deduction
    (see the module docstring) and mark them DONE. `conn` must reach the stock table and the
    shard's task table (one database). `guard`: the summed UPDATE must not take the stock below
    zero, else GuardShortfall (roll back; apply task by task). A duplicate anti-repeat code is
    an IntegrityError (roll back; apply task by task)."""
    if not tasks:
        return BatchApplied((), (), (), 0)
    shard, sku = _one_shard_and_sku(tasks)
    held = store.hold(conn, shard, [t.id for t in tasks], owner)
    mine = [t for t in tasks if t.id in held]
    lost = tuple(t for t in tasks if t.id not in held)
    if not mine:
        return BatchApplied((), (), lost, 0)
    fresh, already = _insert_fresh(conn, mine, sku, design)
    store.complete_held(conn, shard, [t.id for t in mine], owner)
    units = _deduct_sum(conn, fresh, sku, guard)  # last: the hot row is locked the shortest
    return BatchApplied(fresh, already, lost, units)


def apply_batch_across(
    main: Engine,
    store: TaskStore,
    tasks: Sequence[Task],
    owner: str,
    *,
    design: str,
    guard: bool = False,
) -> BatchApplied:
    """`apply_batch` for a shard outside the main database: hold, apply, complete, three
    transactions in that order (see the module docstring). Errors as in `apply_batch`."""
    if not tasks:
        return BatchApplied((), (), (), 0)
    shard, sku = _one_shard_and_sku(tasks)
    ids = [t.id for t in tasks]
    shard_engine = store.engine_of(shard)
    held = in_transaction(shard_engine, lambda conn: store.hold(conn, shard, ids, owner))
    mine = [t for t in tasks if t.id in held]
    lost = tuple(t for t in tasks if t.id not in held)
    if not mine:
        return BatchApplied((), (), lost, 0)

    def deduct(conn: Connection) -> tuple[tuple[Task, ...], tuple[Task, ...], int]:
        fresh, already = _insert_fresh(conn, mine, sku, design)
        return fresh, already, _deduct_sum(conn, fresh, sku, guard)

    fresh, already, units = in_transaction(main, deduct)
    # Committed in the main database: from here on a crash leaves the tasks LOCKED, to be
    # claimed again and found applied (their anti-repeat rows). A lease lost meanwhile makes
    # the compare-and-set skip the task; its new owner finds it applied the same way.
    mine_ids = [t.id for t in mine]
    in_transaction(shard_engine, lambda conn: store.complete_held(conn, shard, mine_ids, owner))
    return BatchApplied(fresh, already, lost, units)


def _one_shard_and_sku(tasks: Sequence[Task]) -> tuple[int, str]:
    shard, sku = tasks[0].shard, tasks[0].order.sku
    if any(t.shard != shard or t.order.sku != sku for t in tasks):
        raise ValueError("a batch holds tasks of one SKU from one shard")
    return shard, sku


def _insert_fresh(
    conn: Connection, mine: Sequence[Task], sku: str, design: str
) -> tuple[tuple[Task, ...], tuple[Task, ...]]:
    """The anti-repeat and ledger rows of the tasks not applied before; returns (fresh, those
    applied before)."""
    before = applied_codes(conn, [t.order.anti_repeat_code for t in mine])
    fresh = tuple(t for t in mine if t.order.anti_repeat_code not in before)
    already = tuple(t for t in mine if t.order.anti_repeat_code in before)
    if fresh:
        _insert_rows(conn, _INSERT_CODES, [{"code": t.order.anti_repeat_code} for t in fresh])
        ledger = [
            {"order_id": t.order.order_id, "sku": sku, "qty": t.order.qty, "design": design}
            for t in fresh
        ]
        _insert_rows(conn, _INSERT_LEDGER, ledger)
    return fresh, already


def _deduct_sum(conn: Connection, fresh: Sequence[Task], sku: str, guard: bool) -> int:
    """The one summed UPDATE of the stock row (guarded: GuardShortfall when it cannot take it)."""
    units = sum(t.order.qty for t in fresh)
    if units:
        update = schema.DEDUCT_STOCK_IF_ENOUGH if guard else schema.DEDUCT_STOCK
        updated = conn.execute(update, schema.deduction_params(sku, units))
        if guard and updated.rowcount == 0:
            raise GuardShortfall(f"{sku}: the stock cannot take {units} units")
    return units


@dataclass
class BatchCounters:
    """What the merging executors did, batch by batch (beside `EngineCounters`, per task)."""

    batches: int = 0  # batch transactions that applied or completed tasks
    merged_tasks: int = 0  # tasks those transactions deducted
    largest: int = 0  # the largest batch claimed
    fallback_duplicate: int = 0  # batches re-applied task by task: a code was there already
    fallback_guard: int = 0  # ... the guard refused the summed UPDATE
    fallback_error: int = 0  # ... any other error
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def saw(self, size: int) -> None:
        with self._lock:
            self.largest = max(self.largest, size)

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


class MergingTaskEngine(TaskEngine):
    """`TaskEngine` whose executors claim one SKU's tasks per shard as a batch and apply each
    batch with `apply_batch` (one transaction); a batch that cannot be applied whole is applied
    task by task with `apply`, each task's lease renewed first. The maintenance worker, the
    faults and the counters are the parent's (`claimed`, `applied`, `already_applied`,
    `completed`, `lease_lost` count tasks); `batch_counters` counts batches."""

    def __init__(
        self,
        store: TaskStore,
        apply: ApplyFn,
        apply_batch: BatchApplyFn,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        **options: Any,
    ) -> None:
        check_max_batch(max_batch)
        if "claim" in options:
            raise ValueError(
                "claim does not apply: the merging executors claim one SKU's tasks per batch "
                "(SKIP LOCKED on PostgreSQL and MariaDB)"
            )
        super().__init__(store, apply, **options)
        self.apply_batch = apply_batch
        self.max_batch = max_batch
        self.batch_counters = BatchCounters()

    def work_once(self, worker: int | str = 0, *, shards: list[int] | None = None) -> int:
        """Claim one SKU's batch in each of the given shards (default: all) and apply it.

        Returns how many tasks were claimed."""
        owner = self.owner(worker)
        done = 0
        for shard in range(self.store.shards) if shards is None else shards:
            batch = self.store.claim_sku_batch(shard, owner, self.max_batch)
            if not batch:
                continue
            self.counters.add("claimed", len(batch))
            self.batch_counters.saw(len(batch))
            self._maybe_die(batch[0])
            if self._stop.is_set():  # stopping: hand the batch back unapplied
                for task in batch:
                    self.store.release(task, owner)
                continue
            self._process_batch(batch, owner)
            done += len(batch)
        return done

    def _process_batch(self, batch: list[Task], owner: str) -> None:
        if self.pause_after_claim_s:  # the nemesis: stall holding the batch (see workers)
            time.sleep(self.pause_after_claim_s)
        try:
            done = self.apply_batch(batch, owner)
        except GuardShortfall:
            reason = "fallback_guard"
        except IntegrityError:
            reason = "fallback_duplicate"
        except Exception:
            log.debug("a batch of %s tasks failed whole", len(batch), exc_info=True)
            reason = "fallback_error"
        else:
            self.counters.add("applied", len(done.applied))
            self.counters.add("already_applied", len(done.already_applied))
            self.counters.add("completed", done.completed)
            self.counters.add("lease_lost", len(done.lost))
            if done.completed:  # a batch wholly lost meanwhile did nothing
                self.batch_counters.add("batches")
                self.batch_counters.add("merged_tasks", len(done.applied))
            return
        # Rolled back whole: each task is settled alone, exactly as `TaskEngine` settles it.
        self.batch_counters.add(reason)
        for task in batch:
            if self._stop.is_set():
                self.store.release(task, owner)
            elif self.store.renew(task, owner):
                self._apply_and_finish(task, owner)
            else:  # its lease ran out meanwhile: whoever holds it now applies it
                self.counters.add("lease_lost")
