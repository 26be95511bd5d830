"""Stock buckets measured: throughput against one row / one key, and the false sold-outs they cost.

Two measurements behind `inventory-lab beyond --parts buckets` and notebook 11:

- `bucket_rates`: the bench's `one-row` scenario (one SKU that never sells out, closed loop,
  clients in load processes) for each one-row / one-key design and its bucketed twin —
  `db_only` against `db_buckets`, `two_gate_lua` against `two_gate_buckets` — in one session,
  each cell checked and with what saturated. Buckets split the one row's lock in the database;
  in one Redis they split nothing (one server thread serves every key), which is what the
  cluster changes.
- `bucket_false_sold_outs`: a flash sale of orders of 1 to `max_qty` units through each
  bucketed design with 1, 2, 4, ... buckets, in this process: the units left unsold that a
  refused order could have taken (the checker's `false_sold_out`) beside their bound,
  B × (max_qty − 1), and how many orders fell over from their home bucket.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from inventory_lab.bench import SCENARIOS, BenchSession, run_cell
from inventory_lab.checker import check_lab
from inventory_lab.designs import design_class
from inventory_lab.lab import Lab
from inventory_lab.senders import Target
from inventory_lab.workload import Workload, run_workload

# (one row / one key, its bucketed twin)
PAIRS = (("db_only", "db_buckets"), ("two_gate_lua", "two_gate_buckets"))


def bucket_rates(
    session: BenchSession,
    *,
    clients: int = 16,
    orders: int = 4000,
    buckets: int = 8,
    pairs: Sequence[tuple[str, str]] = PAIRS,
) -> pd.DataFrame:
    """One row per design: the `one-row` cell's rates, latency, check and saturation, and
    `over_one`: the bucketed design's accepted/s over its one-row twin's (1.0 for the twin)."""
    rows: list[dict[str, Any]] = []
    for one, bucketed in pairs:
        base = run_cell(session, Target(one), SCENARIOS["one-row"], clients, orders=orders)
        split = run_cell(
            session,
            Target(bucketed, {"buckets": buckets}),
            SCENARIOS["one-row"],
            clients,
            orders=orders,
        )
        base.update(buckets=1, over_one=1.0)
        ratio = split["accepted_per_s"] / base["accepted_per_s"] if base["accepted_per_s"] else None
        split.update(buckets=buckets, over_one=None if ratio is None else round(ratio, 3))
        rows += [base, split]
    columns = ["target", "buckets", "clients", "accepted_per_s", "over_one", "p50_ms", "p99_ms"]
    columns += ["oversold", "double_deducted", "lost", "saturated"]
    return pd.DataFrame(rows)[columns]


def bucket_false_sold_outs(
    lab: Lab,
    *,
    design: str = "db_buckets",
    bucket_counts: Sequence[int] = (1, 2, 4, 8, 16),
    orders: int = 110,
    stock: int = 200,
    max_qty: int = 3,
    concurrency: int = 8,
    seed: int = 11,
) -> pd.DataFrame:
    """Per bucket count: a one-SKU flash sale of orders of 1..`max_qty` units, checked. The
    defaults ask for about as many units as there are (110 orders of 2 units on average, with
    retries, for 200), so that the sale ends with units left over where buckets strand them."""
    workload = Workload(orders=orders, skus=1, stock=stock, max_qty=max_qty, seed=seed)
    initial = workload.initial_stock()
    rows = []
    for buckets in bucket_counts:
        instance = design_class(design)(lab, buckets=buckets)
        instance.setup(initial)
        try:
            records = run_workload(instance, workload.attempts(), concurrency=concurrency)
            instance.drain()
        finally:
            instance.close()
        report = check_lab(lab, initial, records, redis_view=instance.uses_redis)
        rows.append(
            {
                "design": design,
                "buckets": buckets,
                "sold": sum(initial.values()) - sum(report.final_stock.values()),
                "left": sum(report.final_stock.values()),
                "false_sold_out": report.false_sold_out,
                "false_sold_out_orders": report.false_sold_out_orders,
                "bound": buckets * (max_qty - 1),
                "fallovers": instance.fallovers,  # type: ignore[attr-defined]
                "oversold": report.oversold,
                "ok": report.ok,
            }
        )
    return pd.DataFrame(rows)
