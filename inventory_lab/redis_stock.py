"""Stock in Redis: the warm-up from the database, reads of Redis's view, and giving stock back.

The article keeps each SKU's available quantity in a Redis hash (`hset iphone inStock 1`); gate 1
decrements it. Warm-up copies the database's stock into Redis and is idempotent (running it twice
leaves the same values). The database is the source of truth for what was persisted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from inventory_lab import keys, schema
from inventory_lab.lab import Lab


def warm_up(lab: Lab, *, pending: Mapping[str, int] | None = None) -> dict[str, int]:
    """Copy every SKU's DB stock, minus `pending` (accepted, not yet persisted), into Redis.

    Overwrites; returns what it wrote. Re-warming after Redis lost its data without subtracting
    the pending tasks gives Redis back stock that is already promised: an oversell waiting.
    """
    pending = pending or {}
    with lab.engine.connect() as conn:
        stock = {sku: num - pending.get(sku, 0) for sku, num in schema.read_stock(conn).items()}
    pipe = lab.redis.pipeline(transaction=False)
    for sku, num in stock.items():
        pipe.hset(keys.stock_key(lab.namespace, sku), keys.STOCK_FIELD, num)
    pipe.execute()
    return stock


def read_redis_stock(lab: Lab, skus: Iterable[str]) -> dict[str, int | None]:
    """Redis's view of each SKU's stock (None where the key is missing)."""
    skus = list(skus)
    pipe = lab.redis.pipeline(transaction=False)
    for sku in skus:
        pipe.hget(keys.stock_key(lab.namespace, sku), keys.STOCK_FIELD)
    values = pipe.execute()
    return {sku: None if v is None else int(v) for sku, v in zip(skus, values, strict=True)}


def give_back(lab: Lab, sku: str, qty: int) -> int:
    """Compensate a decrement: `HINCRBY +qty`. Returns the stock after."""
    return int(lab.redis.hincrby(keys.stock_key(lab.namespace, sku), keys.STOCK_FIELD, qty))
