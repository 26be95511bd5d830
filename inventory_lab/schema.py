"""SQLAlchemy Core tables: stock, anti-repeat codes and the order ledger.

`stock` is the article's `stockNum` (one row per SKU). `anti_repeat` is its `antiRe`: the unique
"order id + SKU" code that makes a deduction idempotent. `orders` is the ledger: every design that
deducts stock writes one row per deduction *in the same transaction*, and nothing in it is unique,
so the checker can count how often an order really was deducted, whatever the design believed.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine

metadata = sa.MetaData()


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


def reset(engine: Engine, initial: Mapping[str, int]) -> None:
    """Drop and re-create the lab's tables, then load one stock row per SKU."""
    metadata.drop_all(engine)
    metadata.create_all(engine)
    with engine.begin() as conn:
        if initial:
            conn.execute(stock.insert(), [{"sku": s, "num": n} for s, n in initial.items()])


def read_stock(conn: Connection) -> dict[str, int]:
    rows = conn.execute(sa.select(stock.c.sku, stock.c.num)).all()
    return {sku: num for sku, num in rows}


def catalog(engine: Engine) -> frozenset[str]:
    """The SKUs the stock table knows (empty if the lab's tables do not exist yet)."""
    if not sa.inspect(engine).has_table(stock.name):
        return frozenset()
    with engine.connect() as conn:
        return frozenset(read_stock(conn))


def record_deduction(conn: Connection, order_id: str, sku: str, qty: int, design: str) -> None:
    """Write the ledger row for a deduction; call it inside the deducting transaction."""
    conn.execute(orders.insert().values(order_id=order_id, sku=sku, qty=qty, design=design))
