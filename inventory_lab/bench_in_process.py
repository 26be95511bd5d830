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
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence

import pandas as pd
from tqdm import tqdm

from inventory_lab import keys
from inventory_lab.designs import design_class
from inventory_lab.experiment import RunReport, run_experiment
from inventory_lab.lab import Lab
from inventory_lab.orders import Order
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


def round_trips_per_order(lab: Lab, design: str, orders: int = 20) -> float | None:
    """Redis round trips per accepted order, counted on the wire (None for DB-only designs)."""
    cls = design_class(design)
    if not cls.uses_redis:
        return None
    instance = cls(lab)
    instance.setup({"sku-rt": orders + 1})
    try:
        instance.deduct(Order("rt-warm", "sku-rt", 1))  # loads a script, if the design has one
        with metered(lab.redis) as meter:
            for i in range(orders):
                instance.deduct(Order(f"rt-{i}", "sku-rt", 1))
    finally:
        instance.close()  # a task engine's workers must not outlive the measurement
    return meter.count / orders


def compare(
    lab: Lab,
    designs: Sequence[str],
    concurrencies: Sequence[int],
    *,
    orders: int = 2000,
    progress: bool = True,
) -> tuple[pd.DataFrame, list[RunReport]]:
    """Every design at every concurrency on one hot SKU that never sells out.

    Returns one row per (design, concurrency) with throughput, p50/p99, round trips and the
    ratios to raw EVALSHA and to db_only at that concurrency, plus the full reports.
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
            raw[concurrency] = raw_evalsha_rate(lab, concurrency=concurrency)
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
