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
  (`buckets_bench.bucket_false_sold_outs`);
- `cluster`: gate-1 decisions/s on a Redis Cluster with the load on one, two and three masters,
  redis-benchmark and the Python client side by side (`cluster_bench.masters_table`; needs a
  cluster URL: `./lab cluster up`);
- `shards`: the task engine's drain with its task tables in one database, in two databases of
  one server and (given a second server) in two servers (`drain_bench.drain_by_placement`).

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
from inventory_lab.cluster_bench import masters_table
from inventory_lab.drain_bench import drain_by_placement, drain_rates
from inventory_lab.experiment import source_commit
from inventory_lab.flag_sale import compare_flags
from inventory_lab.merging_bench import gate_one_rates, window_cost
from inventory_lab.results import json_records

PARTS = ("flags", "merging", "window", "drain", "buckets", "cluster", "shards")
TABLES = (
    "flags",
    "merging_rates",
    "window",
    "drain_rates",
    "bucket_rates",
    "bucket_false_sold_outs",
    "cluster_masters",
    "shard_drain",
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
    cluster_url: str | None = None,
    cluster_seconds: float = 10.0,
    shard_tasks: int = 10_000,
    second_server_url: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Measure each of `parts` on `session`'s backends; one JSON-ready dict. `cluster_url`: the
    Redis Cluster of the `cluster` part (without one, the part records why it did not run);
    `second_server_url`: a database on a second server for the `shards` part."""
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
        elif part == "cluster":
            if cluster_url is None:
                body["cluster_masters"] = None
                body["cluster_note"] = "no Redis Cluster given (./lab cluster up; --cluster)"
            else:
                masters = masters_table(
                    cluster_url, seconds=cluster_seconds, processes=session.processes
                )
                body["cluster_masters"] = json_records(masters)
        elif part == "shards":
            drains = [
                drain_by_placement(
                    session,
                    tasks=shard_tasks,
                    merged=merged,
                    second_server_url=second_server_url,
                )
                for merged in (False, True)
            ]
            body["shard_drain"] = json_records(pd.concat(d.rows for d in drains))
            body["shard_ratios"] = {
                drained.rows["design"].iloc[0]: drained.over_one_database() for drained in drains
            }
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
