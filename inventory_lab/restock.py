"""Restocking a SKU while orders run: the database first, then Redis, then the news.

The article loads stock once; a shop restocks while a sale runs (a returned unit, a new delivery)
and every design must take it without selling a unit twice. A restock of `qty` units:

1. In one database transaction: share-lock the SKU's epoch row (a re-warm's bump waits for it,
   see `redis_stock.warm_up`), read the epoch, add `qty` to the stock row, commit.
2. Add `qty` to Redis's copy *only if that copy is of the epoch read in 1* (`give_back.lua`). A
   re-warm that came after the commit copied the restocked row already: adding again would create
   stock. A copy not yet written for that epoch misses the units: Redis then undersells until
   reconciliation, never oversells.
3. PUBLISH the SKU on the restock channel: every app process clears its local sold-out flag
   (`sold_out_flag`). A process that misses the message keeps refusing until its flag's TTL.

The database is restocked before Redis for the reason gate 2 writes after gate 1: Redis must
never hold units the database has not.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from inventory_lab import keys, schema
from inventory_lab.errors import InvalidInput
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, check_known_sku
from inventory_lab.redis_stock import give_back, share_locked_epoch

# UPDATE stock SET num = num + :units WHERE sku = :sku AND num <= MAX_STOCK - :units
_ADD_STOCK = (
    sa.update(schema.stock)
    .where(schema.stock.c.sku == sa.bindparam("stock_sku"))
    .where(schema.stock.c.num <= schema.MAX_STOCK - sa.bindparam("units"))
    .values(num=schema.stock.c.num + sa.bindparam("units"))
)


@dataclass(frozen=True, slots=True)
class Restocked:
    sku: str
    qty: int
    database_after: int
    redis_after: int | None  # None: Redis's copy was of another epoch (reconciliation adds it)
    told: int  # app processes subscribed to the restock channel when it was published


def restock(lab: Lab, sku: str, qty: int, *, announce: bool = True) -> Restocked:
    """Add `qty` units of `sku`: database, then Redis's copy of the same epoch, then PUBLISH.

    Bad input (an unknown SKU, a quantity that is not a positive integer, a total past the stock
    column's range) raises InvalidInput and changes nothing. `announce=False` skips step 3 (a
    lost message, to show what the flags' TTL bounds).
    """
    Order("restock", sku, qty)  # the SKU's spelling and a positive integer quantity
    check_known_sku(sku, schema.catalog(lab.engine))
    qty = int(qty)
    with lab.engine.begin() as conn:
        epoch = share_locked_epoch(conn, sku)
        added = conn.execute(_ADD_STOCK, {"stock_sku": sku, "units": qty})
        if added.rowcount != 1:
            raise InvalidInput(f"restocking {qty} units of {sku!r} passes {schema.MAX_STOCK}")
        after = conn.execute(
            sa.select(schema.stock.c.num).where(schema.stock.c.sku == sku)
        ).scalar_one()
    redis_after = give_back(lab, sku, qty, str(epoch))
    told = announce_stock_rose(lab, sku) if announce else 0
    return Restocked(sku, qty, int(after), redis_after, told)


def announce_stock_rose(lab: Lab, sku: str) -> int:
    """PUBLISH `sku` on the restock channel; returns how many subscribers heard it."""
    return int(lab.redis.publish(keys.restock_channel(lab.namespace), sku))
