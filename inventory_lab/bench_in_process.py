"""Designs side by side on one hot SKU, from one Python process: the harness's view.

Every client here is a thread of the calling process, so the figures describe that process as
much as the servers (its interpreter lock is usually the first thing to saturate). The notebooks
use it on the embedded default to compare designs with each other; `bench` (P processes × C
clients, open or closed loop, ceilings measured in the same run) is what measures the designs.

On a small machine the load generator shares cores with the servers, so absolute figures say
little on their own. Each cell is therefore reported next to two references measured in the same
run at the same concurrency: the raw client's EVALSHA rate (the gate-1 script alone, no DB — the
ceiling any Redis design could reach through this client) and `db_only`'s throughput. Redis round
trips per accepted order are counted on the wire by `redis_meter`.

What one order costs does not depend on the machine: `order_cost` counts, per order on one path
(accepted, duplicate, sold out), the Redis round trips (`redis_meter`) and the database
statements (`db_meter`), among them the updates of the stock row every accepted order queues on.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from tqdm import tqdm

from inventory_lab import keys
from inventory_lab.db_meter import metered_db
from inventory_lab.designs import design_class
from inventory_lab.designs.task_engine import TaskEngineDesign
from inventory_lab.errors import LabError
from inventory_lab.experiment import RunReport, run_experiment
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome
from inventory_lab.redis_meter import metered
from inventory_lab.scripts import lua_source
from inventory_lab.workload import Workload

RAW_SKU = "bench-raw"


def raw_evalsha_rate(lab: Lab, *, concurrency: int, calls: int = 2000) -> float:
    """Gate-1 script calls per second by `concurrency` threads, nothing else: the reference."""
    script = lab.redis.register_script(lua_source("gate1"))
    stock_key = keys.stock_key(lab.namespace, RAW_SKU)
    lab.redis.hset(stock_key, mapping={keys.STOCK_FIELD: 10**12, keys.EPOCH_FIELD: 1})
    script(keys=[keys.anti_repeat_key(lab.namespace, "warm", RAW_SKU), stock_key], args=[1, 1000])
    counter = itertools.count()
    go = threading.Event()

    def client() -> None:
        go.wait()
        while (i := next(counter)) < calls:
            code_key = keys.anti_repeat_key(lab.namespace, f"raw-{i}", RAW_SKU)
            script(keys=[code_key, stock_key], args=[1, 1000])

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    go.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    lab.redis.delete(stock_key)
    return calls / elapsed


# The paths an order can take through a design, each with the stock that sends it there.
PATHS = (Outcome.ACCEPTED, Outcome.DUPLICATE, Outcome.SOLD_OUT)
_COST_SKU = "sku-rt"


@dataclass(frozen=True)
class OrderCost:
    """What one order on one path costs, per order, counted on the wire."""

    design: str
    path: str  # an Outcome value: accepted, duplicate or sold_out
    redis_round_trips: float | None  # None: the design keeps no stock in Redis
    db_statements: float  # every statement sent to the database
    stock_updates: float  # UPDATEs of the stock table: the hot row every one of them queues on


def order_cost(
    lab: Lab, design: str, path: Outcome = Outcome.ACCEPTED, *, orders: int = 10
) -> OrderCost:
    """Send `orders` orders of `design` down `path` and count what each cost.

    accepted: a SKU with stock for all; duplicate: each order is accepted first and its resend is
    the one counted; sold_out: a SKU with no stock. One order is sent before counting, so that a
    design's script is loaded. A task engine runs without its executors: its order path is gate
    1 and the task insert (persisting is later, off that path). LabError when an answer is not
    `path`: the counts would then describe another path.
    """
    if path not in PATHS:
        raise LabError(f"no order path {path.value!r}: choose one of {[p.value for p in PATHS]}")
    if orders < 1:
        raise LabError(f"orders must be at least 1, got {orders}")
    cls = design_class(design)
    options = {"start_workers": False} if issubclass(cls, TaskEngineDesign) else {}
    instance = cls(lab, **options)
    batch = [Order(f"rt-{i}", _COST_SKU, 1) for i in range(orders)]
    try:
        instance.setup({_COST_SKU: 0 if path is Outcome.SOLD_OUT else orders + 1})
        instance.deduct(Order("rt-warm", _COST_SKU, 1))  # loads a script, if the design has one
        if path is Outcome.DUPLICATE:
            for order in batch:
                instance.deduct(order)
        with metered(lab.redis) as trips, metered_db(lab.engine) as statements:
            answers = {instance.deduct(order).outcome for order in batch}
    finally:
        instance.close()  # a task engine's workers must not outlive the measurement
    if answers != {path}:
        raise LabError(f"{design}: asked for the {path.value} path, the orders were told {answers}")
    return OrderCost(
        design=design,
        path=path.value,
        redis_round_trips=trips.count / orders if cls.uses_redis else None,
        db_statements=statements.total / orders,
        stock_updates=statements.count("update", "stock") / orders,
    )


def round_trips_per_order(lab: Lab, design: str, orders: int = 20) -> float | None:
    """Redis round trips per accepted order, counted on the wire (None for DB-only designs)."""
    return order_cost(lab, design, orders=orders).redis_round_trips


def compare(
    lab: Lab,
    designs: Sequence[str],
    concurrencies: Sequence[int],
    *,
    orders: int = 2000,
    raw_calls: int = 2000,
    progress: bool = True,
) -> tuple[pd.DataFrame, list[RunReport]]:
    """Every design at every concurrency on one hot SKU that never sells out.

    Returns one row per (design, concurrency) with throughput, p50/p99, round trips and the
    ratios to raw EVALSHA (`raw_calls` script calls at that concurrency) and to db_only at that
    concurrency, plus the full reports.
    """
    designs = list(designs)
    if "db_only" not in designs:
        designs.append("db_only")
    workload = Workload(orders=orders, skus=1, stock=orders)
    trips = {name: round_trips_per_order(lab, name) for name in designs}
    rows, reports = [], []
    cells = [(c, name) for c in concurrencies for name in designs]
    raw: dict[int, float] = {}
    for concurrency, name in tqdm(cells, desc="bench", disable=not progress):
        if concurrency not in raw:
            raw[concurrency] = raw_evalsha_rate(lab, concurrency=concurrency, calls=raw_calls)
        report = run_experiment(lab, name, workload, concurrency=concurrency).report
        reports.append(report)
        rows.append(
            {
                "design": name,
                "concurrency": concurrency,
                "throughput": report.throughput,
                "p50_ms": report.latency_ms["p50"],
                "p99_ms": report.latency_ms["p99"],
                "round_trips": trips[name],
                "raw_evalsha": round(raw[concurrency], 1),
                "oversold": report.oversold,
                "double_deducted": report.double_deducted,
                "converged": report.converged,
            }
        )
    frame = pd.DataFrame(rows)
    db_only = frame[frame["design"] == "db_only"].set_index("concurrency")["throughput"]
    frame["vs_raw_evalsha"] = (frame["throughput"] / frame["raw_evalsha"]).round(3)
    frame["vs_db_only"] = (frame["throughput"] / frame["concurrency"].map(db_only)).round(2)
    return frame, reports
