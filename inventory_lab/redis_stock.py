"""Stock in Redis: the warm-up from the database, reads of Redis's view, and giving stock back.

The article keeps each SKU's available quantity in a Redis hash (`hset iphone inStock 1`); gate 1
decrements it. The database is the source of truth for what was persisted, and Redis should hold,
per SKU, the DB stock minus what was accepted and not yet applied (the task engine's pending
tasks): `redis_target` reads that in one statement, so that stock and tasks come from one
snapshot.

Warm-up copies that target into Redis. Done naively (`fenced=False`, as the article would) it
races with orders in flight: an order that passed gate 1 on the old copy and has not committed
gate 2 is in neither the database nor the pending tasks, so the new copy hands its unit out again.
The fenced warm-up closes that window with a generation number, the *epoch*:

1. In one database transaction, bump every SKU's epoch row (`UPDATE redis_epoch SET epoch =
   epoch + 1`). Gate 2 share-locks its SKU's epoch row in its own transaction, so the bump waits
   for every gate 2 in flight, and every later one waits for the bump.
2. In the same transaction (READ COMMITTED: it sees everything committed before), read the
   target, and commit: the new epoch is durable before any copy carries it.
3. Write each SKU's stock *and the new epoch* into Redis, unless a newer copy is already there
   (`scripts/warm.lua`: of two warm-ups racing, the higher epoch wins).

Gate 1 returns the epoch of the copy it decided on; gate 2 refuses an order whose epoch is no
longer the database's (the copy that admitted it was replaced, and the new one never counted it),
and a give-back only lands on the copy that took the stock (`scripts/give_back.lua`). Between the
commit and the copy, the old copy's orders are refused at gate 2, and the target stays right:
no gate 2 commits in between, and an executor applying a task moves units from pending to the
stock without changing their difference.

Why commit before copying: were the copy written first and the commit then failed (the
database went away, the acknowledgement was lost), Redis would hold an epoch the database never
reached, and the *next* warm-up would bump the database to that very number — orders admitted by
the failed copy would then pass gate 2 against a copy that never counted them. Committing first,
an epoch is never handed out twice; a copy that fails to land leaves Redis on an older epoch, and
every gate 2 refuses until the next warm-up: unavailable, never oversold.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from inventory_lab import keys, schema
from inventory_lab.backends import is_retryable
from inventory_lab.lab import Lab
from inventory_lab.scripts import lua_source
from inventory_lab.stock_buckets import split
from inventory_lab.tasks.store import TaskStore, unapplied_tasks_query, units_by_sku


def redis_target(
    conn: Connection, *, minus_pending: bool = True, task_store: TaskStore | None = None
) -> dict[str, int]:
    """Per SKU, what Redis should hold: DB stock minus units of tasks not yet applied.

    `task_store`: the task engine's tables when some live in other databases than `conn`'s
    (read through the store, never too high: `TaskStore.stock_and_unapplied`); by default the
    task tables of `conn`'s database are found by reflection."""
    stock = schema.stock_units()  # the SKU's row plus any database buckets
    if task_store is not None and minus_pending:
        found, unapplied_rows = task_store.stock_and_unapplied(conn, stock)
        waiting = units_by_sku(unapplied_rows)
        return {sku: num - waiting.get(sku, 0) for sku, num in found.items()}
    tables = schema.task_tables(conn.engine) if minus_pending else []
    unapplied = unapplied_tasks_query(tables)
    if unapplied is None:
        rows = conn.execute(sa.select(stock.c.sku, stock.c.units)).all()
    else:
        pending = (
            sa.select(unapplied.c.sku, sa.func.sum(unapplied.c.qty).label("units"))
            .group_by(unapplied.c.sku)
            .subquery("pending")
        )
        left = stock.c.units - sa.func.coalesce(pending.c.units, 0)
        rows = conn.execute(
            sa.select(stock.c.sku, left).select_from(
                stock.outerjoin(pending, pending.c.sku == stock.c.sku)
            )
        ).all()
    return {sku: int(num) for sku, num in rows}


def warm_up(
    lab: Lab,
    *,
    minus_pending: bool = True,
    fenced: bool = True,
    buckets: int | None = None,
    task_store: TaskStore | None = None,
) -> dict[str, int]:
    """Copy `redis_target` into Redis (overwrites); returns what it wrote.

    `fenced` (the default): under a new epoch, safe with orders in flight (module docstring).
    `fenced=False`: the naive copy, which keeps the epoch and hands out again the units of orders
    between the gates. `minus_pending=False`: the other classic mistake, forgetting the tasks
    accepted but not yet applied. `buckets`: each SKU's copy split over that many bucket
    hashes (`stock_buckets.split`), each carrying the epoch; the SKU's own hash keeps 0 units,
    the epoch and the bucket count (`keys.stock_bucket_key`). `task_store`: see `redis_target`.
    """
    for attempt in range(8):  # a deadlock between two concurrent warm-ups: re-run
        try:
            return _copy(
                lab,
                minus_pending=minus_pending,
                fenced=fenced,
                buckets=buckets,
                task_store=task_store,
            )
        except DBAPIError as exc:
            if attempt == 7 or not is_retryable(exc):
                raise
    raise AssertionError("unreachable")


def _copy(
    lab: Lab,
    *,
    minus_pending: bool,
    fenced: bool,
    buckets: int | None,
    task_store: TaskStore | None = None,
) -> dict[str, int]:
    with lab.engine.connect() as conn:
        if conn.dialect.name != "sqlite":  # SQLite: one writer, nothing to see in between
            conn.execution_options(isolation_level="READ COMMITTED")
        with conn.begin():
            epoch_row = schema.redis_epoch
            if fenced:
                conn.execute(sa.update(epoch_row).values(epoch=epoch_row.c.epoch + 1))
            epochs = dict(conn.execute(sa.select(epoch_row.c.sku, epoch_row.c.epoch)).all())
            target = redis_target(conn, minus_pending=minus_pending, task_store=task_store)
    pipe = lab.redis.pipeline(transaction=False)
    newer_wins = lab.redis.register_script(lua_source("warm"))
    for sku, num in target.items():
        copies = [(keys.stock_key(lab.namespace, sku), num)]
        if buckets is not None:  # the units go to the buckets; the SKU's hash says how many
            copies = [(copies[0][0], 0)] + [
                (keys.stock_bucket_key(lab.namespace, sku, b), units)
                for b, units in enumerate(split(num, buckets))
            ]
            pipe.hset(copies[0][0], keys.BUCKETS_FIELD, buckets)
        for key, units in copies:
            if fenced:
                newer_wins(keys=[key], args=[units, epochs[sku]], client=pipe)
            else:  # as written: the stock only; a copy made before keeps its epoch
                pipe.hset(key, keys.STOCK_FIELD, units)
                pipe.hsetnx(key, keys.EPOCH_FIELD, epochs[sku])
    pipe.execute()
    return target


class StaleEpoch(Exception):
    """Gate 2 found the SKU's epoch moved on: the Redis copy that admitted the order is gone."""


# SELECT epoch FROM redis_epoch WHERE sku = :sku FOR SHARE (built once: gate 2 runs it per order)
_EPOCH_FOR_SHARE = (
    sa.select(schema.redis_epoch.c.epoch)
    .where(schema.redis_epoch.c.sku == sa.bindparam("sku"))
    .with_for_update(read=True)
)


def check_epoch(conn: Connection, sku: str, epoch: str | None) -> None:
    """Gate 2's half of the fence: share-lock the SKU's epoch row (a re-warm's bump waits for
    this transaction; this one waits for a bump in progress) and refuse an older epoch."""
    current = share_locked_epoch(conn, sku)
    if epoch is None or int(epoch) != current:
        raise StaleEpoch(f"Redis was re-warmed (epoch {epoch} -> {current}) after gate 1")


def share_locked_epoch(conn: Connection, sku: str) -> int:
    """The database's epoch of `sku`, its row share-locked until `conn`'s transaction ends: no
    re-warm can bump it (and read the stock) in between."""
    return int(conn.execute(_EPOCH_FOR_SHARE, {"sku": sku}).scalar_one())


def epochs(lab: Lab, sku: str) -> dict[str, int | None]:
    """The epoch of the SKU's copy in Redis and the database's current one (to look at)."""
    with lab.engine.connect() as conn:
        current = conn.execute(
            sa.select(schema.redis_epoch.c.epoch).where(schema.redis_epoch.c.sku == sku)
        ).scalar_one_or_none()
    copy = lab.redis.hget(keys.stock_key(lab.namespace, sku), keys.EPOCH_FIELD)
    return {"redis": None if copy is None else int(copy), "database": current}


def read_redis_stock(lab: Lab, skus: Iterable[str]) -> dict[str, int | None]:
    """Redis's view of each SKU's stock (None where the key is missing): its hash's units plus,
    for a SKU kept in buckets, every bucket's (a missing bucket counts 0)."""
    skus = list(skus)
    pipe = lab.redis.pipeline(transaction=False)
    for sku in skus:
        pipe.hmget(keys.stock_key(lab.namespace, sku), [keys.STOCK_FIELD, keys.BUCKETS_FIELD])
    seen: dict[str, int | None] = {}
    bucketed: dict[str, int] = {}
    for sku, (units, buckets) in zip(skus, pipe.execute(), strict=True):
        seen[sku] = None if units is None else int(units)
        if buckets is not None:
            bucketed[sku] = int(buckets)
    if bucketed:
        pipe = lab.redis.pipeline(transaction=False)
        for sku, buckets in bucketed.items():
            for b in range(buckets):
                pipe.hget(keys.stock_bucket_key(lab.namespace, sku, b), keys.STOCK_FIELD)
        values = iter(pipe.execute())
        for sku, buckets in bucketed.items():
            in_buckets = sum(int(next(values) or 0) for _ in range(buckets))
            seen[sku] = (seen[sku] or 0) + in_buckets
    return seen


def repair_key(lab: Lab, sku: str) -> str:
    """The hash a repair of the SKU's Redis stock moves (`reconcile`): its stock hash, or its
    first bucket when its stock lives in buckets (units on the SKU's hash would be sold by
    nobody)."""
    key = keys.stock_key(lab.namespace, sku)
    if lab.redis.hexists(key, keys.BUCKETS_FIELD):
        return keys.stock_bucket_key(lab.namespace, sku, 0)
    return key


def give_back(
    lab: Lab, sku: str, qty: int, epoch: str | None = None, *, bucket: int | None = None
) -> int | None:
    """Compensate a decrement. With the `epoch` gate 1 saw: only to that copy of the stock
    (None when Redis was re-warmed since); without: a blind `HINCRBY +qty`, as the article has
    it. `bucket`: to that bucket of the SKU's stock (`two_gate_buckets`). Returns the stock
    (or the bucket's) after."""
    if bucket is None:
        key = keys.stock_key(lab.namespace, sku)
    else:
        key = keys.stock_bucket_key(lab.namespace, sku, bucket)
    if epoch is None:
        return int(lab.redis.hincrby(key, keys.STOCK_FIELD, qty))
    script = lab.redis.register_script(lua_source("give_back"))
    left = script(keys=[key], args=[qty, epoch])
    return None if left is None else int(left)
