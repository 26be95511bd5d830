"""Reconciliation: find where Redis's stock and the database's disagree, and repair it.

The rule: the database is the source of truth for what was persisted. Redis should hold, per SKU,
the DB stock minus what is accepted but not yet persisted (nothing, for the synchronous designs;
the task engine's tasks not yet applied, read from its tables: `redis_stock.redis_target`). Drift
is Redis minus that target; repair moves Redis by exactly the drift with HINCRBY (not a blind
HSET), so a repair is itself a small, visible compensation. Run it when the design is quiescent
(after `drain()`): an order in flight between the two gates is, for that moment, a legitimate
difference; a re-warm (`redis_stock.warm_up`) is the repair that is safe with orders in flight.
"""

from __future__ import annotations

import pandas as pd

from inventory_lab import keys, schema
from inventory_lab.lab import Lab
from inventory_lab.redis_stock import read_redis_stock, redis_target, repair_key
from inventory_lab.tasks.store import TaskStore


def reconcile(
    lab: Lab, *, repair: bool = False, task_store: TaskStore | None = None
) -> pd.DataFrame:
    """Per SKU: redis, db, pending, target, drift, and whether it was repaired.

    Pending tasks come from the task tables (tasks not yet applied), read with the stock;
    `task_store`: the task engine's store when some of its tables live in other databases
    (`redis_stock.redis_target`).
    """
    with lab.engine.connect() as conn:
        db_stock = schema.read_stock(conn)
        targets = redis_target(conn, task_store=task_store)
    redis_stock = read_redis_stock(lab, sorted(db_stock))
    rows = []
    for sku in sorted(db_stock):
        target = targets[sku]
        seen = redis_stock[sku]
        drift = (0 if seen is None else seen) - target
        repaired = False
        if repair and (drift or seen is None):
            lab.redis.hincrby(repair_key(lab, sku), keys.STOCK_FIELD, -drift)
            repaired = True
        rows.append(
            {
                "sku": sku,
                "redis": seen,
                "db": db_stock[sku],
                "pending": db_stock[sku] - target,
                "target": target,
                "drift": drift,
                "repaired": repaired,
            }
        )
    return pd.DataFrame(
        rows, columns=["sku", "redis", "db", "pending", "target", "drift", "repaired"]
    )
