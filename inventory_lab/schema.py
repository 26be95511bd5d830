"""SQLAlchemy Core tables: stock, anti-repeat codes, the ledger, Redis's epoch, holds, task shards.

`stock` is the article's `stockNum` (one row per SKU). `anti_repeat` is its `antiRe`: the unique
"order id + SKU" code that makes a deduction idempotent. `orders` is the ledger: every design that
deducts stock writes one row per deduction *in the same transaction*, and nothing in it is unique,
so the checker can count how often an order really was deducted, whatever the design believed.
`tasks_<n>` are the task engine's shard tables (built by `task_table`, one per shard); `reset`
drops any left from an earlier run, so that no design's state leaks into the next one's checks.

The statements every order runs are built here once, at import, with named bind parameters, and
executed with a parameter dict: building a construct per order would cost more Python than the
round trip it sends, and one statement object is found at once in SQLAlchemy's compiled cache.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine

metadata = sa.MetaData()
MAX_STOCK = 2**31 - 1  # the stock column is a 32-bit INTEGER on every backend
TASK_TABLE = re.compile(r"tasks_\d+")


def key_string(length: int) -> sa.types.TypeEngine:
    """A VARCHAR for ids, SKUs and codes that compares case-sensitively on every backend.

    MariaDB's default collation folds case, so 'o-a' and 'O-A' would be one anti-repeat code;
    PostgreSQL and SQLite compare bytes already.
    """
    binary = mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin")
    return sa.String(length).with_variant(binary, "mysql", "mariadb")


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime, nullable=False, server_default=sa.func.now())


stock = sa.Table(
    "stock",
    metadata,
    sa.Column("sku", key_string(64), primary_key=True),
    sa.Column("num", sa.Integer, nullable=False),
)

anti_repeat = sa.Table(
    "anti_repeat",
    metadata,
    sa.Column("code", key_string(130), primary_key=True),
    _created_at(),
)

# The generation of Redis's copy of each SKU's stock. A re-warm bumps it in the transaction that
# reads the stock it copies; gate 2 share-locks the row and refuses an order admitted under an
# older generation (see redis_stock.warm_up).
redis_epoch = sa.Table(
    "redis_epoch",
    metadata,
    sa.Column("sku", key_string(64), primary_key=True),
    sa.Column("epoch", sa.Integer, nullable=False),
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("order_id", key_string(64), nullable=False),
    sa.Column("sku", key_string(64), nullable=False),
    sa.Column("qty", sa.Integer, nullable=False),
    sa.Column("design", sa.String(32), nullable=False),
    _created_at(),
)


# Stock buckets (`db_buckets`): one SKU's stock split over B rows, so that the orders for a hot
# SKU lock different rows. A SKU's stock is its `stock` row plus its buckets (`read_stock` sums
# them); a design without buckets has none.
stock_buckets = sa.Table(
    "stock_buckets",
    metadata,
    sa.Column("sku", key_string(64), primary_key=True),
    sa.Column("bucket", sa.Integer, primary_key=True),
    sa.Column("num", sa.Integer, nullable=False),
)

# The `reservation` design's holds: one row per order line held at checkout, counted against the
# stock until it expires (epoch seconds on the design's clock), is paid (converted) or released.
reservations = sa.Table(
    "reservations",
    metadata,
    sa.Column("code", key_string(130), primary_key=True),  # order id:sku
    sa.Column("order_id", key_string(64), nullable=False),
    sa.Column("sku", key_string(64), nullable=False),
    sa.Column("qty", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # held, converted, released, expired
    sa.Index("ix_reservations_sku_state", "sku", "state", "expires_at"),
)


def task_table(metadata: sa.MetaData, shard: int) -> sa.Table:
    """The task table of one shard: one row per accepted deduction waiting to be persisted."""
    return sa.Table(
        f"tasks_{shard}",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("code", key_string(130), nullable=False, unique=True),  # order id:sku
        sa.Column("order_id", key_string(64), nullable=False),
        sa.Column("sku", key_string(64), nullable=False),
        sa.Column("qty", sa.Integer, nullable=False),
        sa.Column("status", sa.Integer, nullable=False, default=0),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("last_error", sa.String(200), nullable=True),
        # node:boot:worker, compared exactly (case-sensitive on MariaDB too)
        sa.Column("lock_owner", key_string(64), nullable=True),
        # epoch seconds on the database's clock: every worker's leases on one clock
        sa.Column("created_time", sa.Double, nullable=False),
        sa.Column("modify_time", sa.Double, nullable=False),
        sa.Column("done_time", sa.Double, nullable=True),
        sa.Index(f"ix_tasks_{shard}_status", "status", "modify_time"),
    )


def task_tables(engine: Engine) -> list[sa.Table]:
    """The task shard tables that exist in the database (reflected), in shard order."""
    found = sa.MetaData()
    found.reflect(engine, only=lambda name, _meta: bool(TASK_TABLE.fullmatch(name)))
    return sorted(found.tables.values(), key=lambda t: int(t.name.split("_")[1]))


def reset(engine: Engine, initial: Mapping[str, int]) -> None:
    """Drop and re-create the lab's tables (and drop any task tables), then load the stock."""
    for table in reversed(task_tables(engine)):
        table.drop(engine)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    with engine.begin() as conn:
        if initial:
            conn.execute(stock.insert(), [{"sku": s, "num": n} for s, n in initial.items()])
            conn.execute(redis_epoch.insert(), [{"sku": s, "epoch": 1} for s in initial])


def stock_units() -> sa.Subquery:
    """Per SKU (`sku`, `units`): its `stock` row plus its buckets (`stock_buckets`, none for
    most designs) — what every reader of "the database's stock" reads."""
    buckets = (
        sa.select(stock_buckets.c.sku, sa.func.sum(stock_buckets.c.num).label("units"))
        .group_by(stock_buckets.c.sku)
        .subquery("buckets")
    )
    units = (stock.c.num + sa.func.coalesce(buckets.c.units, 0)).label("units")
    return (
        sa.select(stock.c.sku, units)
        .select_from(stock.outerjoin(buckets, buckets.c.sku == stock.c.sku))
        .subquery("stock_units")
    )


def read_stock(conn: Connection) -> dict[str, int]:
    """Each SKU's stock: its row plus its buckets (`stock_units`)."""
    units = stock_units()
    return {sku: int(num) for sku, num in conn.execute(sa.select(units.c.sku, units.c.units))}


def catalog(engine: Engine) -> frozenset[str]:
    """The SKUs the stock table knows (empty if the lab's tables do not exist yet)."""
    if not sa.inspect(engine).has_table(stock.name):
        return frozenset()
    with engine.connect() as conn:
        return frozenset(read_stock(conn))


# --- the order path's statements, built once -----------------------------------------------------
# Bind names in an UPDATE must differ from the table's column names (SQLAlchemy reserves those
# for the SET clause), hence `stock_sku` and `units`.

# INSERT INTO anti_repeat(code) VALUES (:code): a duplicate code is an IntegrityError
INSERT_ANTI_REPEAT = anti_repeat.insert().values(code=sa.bindparam("code"))

_units = sa.bindparam("units", type_=sa.Integer)
_left = stock.c.num - _units
# UPDATE stock SET num = num - :units WHERE sku = :stock_sku: no check (gate 2 trusts Redis)
DEDUCT_STOCK = sa.update(stock).where(stock.c.sku == sa.bindparam("stock_sku")).values(num=_left)
# ... AND num - :units >= 0: never below zero; no row updated means not enough stock
DEDUCT_STOCK_IF_ENOUGH = DEDUCT_STOCK.where(_left >= 0)
# ... AND num - :units > 0: the article's slip, which refuses the last unit
DEDUCT_STOCK_AS_WRITTEN = DEDUCT_STOCK.where(_left > 0)

_RECORD_DEDUCTION = orders.insert().values(
    order_id=sa.bindparam("order_id"),
    sku=sa.bindparam("sku"),
    qty=sa.bindparam("qty"),
    design=sa.bindparam("design"),
)


def deduction_params(sku: str, qty: int) -> dict[str, object]:
    """The parameters of `DEDUCT_STOCK` and its guarded variants."""
    return {"stock_sku": sku, "units": qty}


def record_deduction(conn: Connection, order_id: str, sku: str, qty: int, design: str) -> None:
    """Write the ledger row for a deduction; call it inside the deducting transaction."""
    conn.execute(
        _RECORD_DEDUCTION, {"order_id": order_id, "sku": sku, "qty": qty, "design": design}
    )


# UPDATE stock_buckets SET num = num - :units
#   WHERE sku = :stock_sku AND bucket = :bucket AND num - :units >= 0   (`db_buckets`)
_bucket_left = stock_buckets.c.num - _units
DEDUCT_BUCKET_IF_ENOUGH = (
    sa.update(stock_buckets)
    .where(
        stock_buckets.c.sku == sa.bindparam("stock_sku"),
        stock_buckets.c.bucket == sa.bindparam("stock_bucket"),
        _bucket_left >= 0,
    )
    .values(num=_bucket_left)
)
