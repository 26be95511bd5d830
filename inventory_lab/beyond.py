"""Beyond the article, measured in one session (notebook 11, `inventory-lab beyond`).

Each *part* is one technique the systems that sell the hottest items add to the article's design,
measured against that design on the same backends, in the same run:

- `flags`: the local sold-out flag — a flash sale with a restock (`flag_sale.compare_flags`):
  Redis round trips saved, false sold-outs when the restock message is heard or missed;
- `merging`: request merging at gate 1 — decisions per second beside redis-benchmark's pipelined
  EVALSHA and its merged script (`merging_bench.gate_one_rates`);
- `window`: what the merging window costs in latency (`merging_bench.window_cost`);
- `drain`: merging at gate 2 — one hot SKU's backlog persisted task by task and in batches,
  beside pgbench on one row (`drain_bench.drain_rates`);
- `buckets`: stock buckets — one hot SKU's accepted orders/s on one row / one key against B
  buckets (`buckets_bench.bucket_rates`), and the false sold-outs B buckets cost
  (`buckets_bench.bucket_false_sold_outs`).

`run_parts` returns one JSON-ready dict (the backends, masked; the machine; the commit; a table
per part), which `inventory-lab beyond --json` prints and `read_reference` reads back as frames.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from inventory_lab.bench import BenchSession
from inventory_lab.buckets_bench import bucket_false_sold_outs, bucket_rates
from inventory_lab.drain_bench import drain_rates
from inventory_lab.experiment import source_commit
from inventory_lab.flag_sale import compare_flags
from inventory_lab.merging_bench import gate_one_rates, window_cost
from inventory_lab.results import json_records

PARTS = ("flags", "merging", "window", "drain", "buckets")
TABLES = (
    "flags",
    "merging_rates",
    "window",
    "drain_rates",
    "bucket_rates",
    "bucket_false_sold_outs",
)


def run_parts(
    session: BenchSession,
    parts: Sequence[str] = PARTS,
    *,
    clients: int = 32,
    orders: int = 20_000,
    batch: int = 16,
    drain_tasks: int = 20_000,
    bucket_orders: int = 4000,
    progress: bool = False,
) -> dict[str, Any]:
    """Measure each of `parts` on `session`'s backends; one JSON-ready dict."""
    unknown = [part for part in parts if part not in PARTS]
    if unknown:
        raise ValueError(f"unknown part {unknown[0]!r}; choose from {', '.join(PARTS)}")
    body: dict[str, Any] = {
        **session.describe(),
        "commit": source_commit(),
        "processes": session.processes,
    }
    for part in tqdm(parts, desc="beyond", disable=not progress):
        if part == "flags":
            body["flags"] = json_records(compare_flags(session.lab))
        elif part == "merging":
            measured = gate_one_rates(session, clients=clients, orders=orders, batch=batch)
            body["merging_rates"] = json_records(measured.rates)
            body["merging_ratios"] = {
                "merged_vs_pipelined": measured.merged_vs_pipelined,
                "merged_vs_one_call": measured.merged_vs_one_call,
                "batch_vs_pipelined": measured.batch_vs_pipelined,
                "batch": batch,
                "clients": clients,
            }
        elif part == "window":
            body["window"] = json_records(window_cost(session))
        elif part == "buckets":
            rates = bucket_rates(session, orders=bucket_orders)
            body["bucket_rates"] = json_records(rates)
            body["bucket_false_sold_outs"] = json_records(
                pd.concat(
                    bucket_false_sold_outs(session.lab, design=name)
                    for name in ("db_buckets", "two_gate_buckets")
                )
            )
        else:
            drained = drain_rates(session, tasks=drain_tasks)
            body["drain_rates"] = json_records(drained.rows)
            body["drain_ratios"] = {
                "merged_over_pgbench": drained.merged_over_pgbench,
                "merged_over_per_task": drained.merged_over_per_task,
                "tasks": drain_tasks,
            }
    return body


def read_reference(path: str | Path) -> dict[str, Any]:
    """A `beyond --json` file: its fields, with each part's table as a DataFrame."""
    body = json.loads(Path(path).read_text())
    for table in TABLES:
        if table in body:
            body[table] = pd.DataFrame(body[table])
    return body
