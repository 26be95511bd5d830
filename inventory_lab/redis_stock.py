"""Stock in Redis: the warm-up from the database, reads of Redis's view, and giving stock back.

The article keeps each SKU's available quantity in a Redis hash (`hset iphone inStock 1`); gate 1
decrements it. Warm-up copies the database's stock into Redis and is idempotent (running it twice
leaves the same values). The database is the source of truth for what was persisted.
"""

from __future__ import annotations

from collections.abc import Iterable

from inventory_lab import keys, schema
from inventory_lab.lab import Lab


def warm_up(lab: Lab) -> dict[str, int]:
    """Copy every SKU's DB stock into Redis (overwriting); returns what it wrote."""
    with lab.engine.connect() as conn:
        stock = schema.read_stock(conn)
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
