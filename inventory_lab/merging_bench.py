"""Merging at gate 1, measured: decisions per second beside redis-benchmark's pipelined EVALSHA
in the same run, and the latency the window adds.

Two questions, two measurements, each on the backends of one `BenchSession`:

1. **How many gate-1 decisions per second?** On one SKU that never sells out (every decision
   admits, sets a code and decrements, the costly path), from the same processes and clients:
   - `raw_evalsha`: one EVALSHA per order through redis-py (what `two_gate_lua` sends);
   - `raw_merged`: the same orders merged by the window into one call per batch (what
     `two_gate_merged` sends); neither runs gate 2;
   - the servers' own client, C, no Python: `redis-benchmark -P <batch>` pipelining the one-order
     script, and `redis-benchmark` calling the batch script with `batch` orders per call.
   Each rate comes with the resource that saturated (`saturation.verdict`): on a small machine
   the Python clients run out of CPU long before Redis does, and the ratio says so.
2. **What does the window cost?** In this process, a closed-loop flash sale through
   `two_gate_merged` at several windows, and through `two_gate_lua` (no window): the added wait
   (p50/p99 from an order's arrival to its batch's send, `MergingWindow.stats`), the mean batch
   and the orders' own latency; each run checked (no oversell, Redis = DB).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from inventory_lab import schema
from inventory_lab.bench import SCENARIOS, BenchSession, run_cell
from inventory_lab.ceilings import Ceiling, redis_benchmark_batch_rps, redis_benchmark_rps
from inventory_lab.checker import check_lab
from inventory_lab.designs import design_class
from inventory_lab.gate_one_merging import DEFAULT_MAX_BATCH
from inventory_lab.senders import Target, prepare
from inventory_lab.workload import Workload, run_workload

WINDOWS_MS = (0.25, 1.0, 4.0)


@dataclass(frozen=True)
class MergingRates:
    """Question 1: one row per source of decisions, and the ratios the lab reports."""

    rates: pd.DataFrame  # source, kind, clients, decisions_per_s, saturated, note
    merged_vs_pipelined: float | None  # raw_merged / redis-benchmark -P (None: no tool)
    merged_vs_one_call: float  # raw_merged / raw_evalsha
    batch_vs_pipelined: float | None  # the two C clients: merged script / pipelined calls


def gate_one_rates(
    session: BenchSession,
    *,
    clients: int = 32,
    orders: int = 20_000,
    batch: int = 16,
    window_ms: float = 1.0,
    max_batch: int = DEFAULT_MAX_BATCH,
    benchmark_requests: int = 100_000,
) -> MergingRates:
    """Question 1 of the module docstring, all in this session."""
    scenario = SCENARIOS["one-row"]  # one SKU, stock that never runs out, closed loop
    rows: list[dict[str, Any]] = []
    for target in (
        Target("raw_evalsha"),
        Target("raw_merged", {"window_ms": window_ms, "max_batch": max_batch}),
    ):
        cell = run_cell(session, target, scenario, clients, orders=orders)
        rows.append(
            {
                "source": target.kind,
                "kind": "Python (redis-py), one process per core",
                "clients": clients,
                "decisions_per_s": cell["decisions_per_s"],
                "saturated": cell["saturated"],
                "note": "",
            }
        )
    tools = _tool_rates(session, clients, batch, benchmark_requests)
    for ceiling in tools:
        rows.append(
            {
                "source": ceiling.tool,
                "kind": "C (redis-benchmark)",
                "clients": ceiling.clients,
                "decisions_per_s": None if ceiling.rate is None else round(ceiling.rate, 1),
                "saturated": None,  # the tool's own run: no CPU sampled around it
                "note": ceiling.note,
            }
        )
    rates = pd.DataFrame(rows)
    by_source = dict(zip(rates["source"], rates["decisions_per_s"], strict=True))
    merged, one_call = by_source["raw_merged"], by_source["raw_evalsha"]
    pipelined = tools[0].rate if tools else None
    merged_script = tools[1].rate if len(tools) > 1 else None
    return MergingRates(
        rates=rates,
        merged_vs_pipelined=None if not pipelined else round(merged / pipelined, 3),
        merged_vs_one_call=round(merged / one_call, 3),
        batch_vs_pipelined=(
            None if not (pipelined and merged_script) else round(merged_script / pipelined, 3)
        ),
    )


def _tool_rates(session: BenchSession, clients: int, batch: int, requests: int) -> list[Ceiling]:
    """redis-benchmark pipelining the one-order script, then calling the batch script; none on
    fakeredis (it has no redis-benchmark of its own)."""
    if session.fake_redis:
        return []
    sku = SCENARIOS["one-row"].workload(1).sku_names()[0]
    prepare(Target("raw_evalsha"), session.lab, {sku: schema.MAX_STOCK})
    ns = session.lab.namespace
    pipelined = redis_benchmark_rps(
        session.redis_url, ns, sku, clients=clients, requests=requests, pipeline=batch
    )
    merged = redis_benchmark_batch_rps(
        session.redis_url, ns, sku, clients=clients, batch=batch, requests=requests // batch
    )
    return [pipelined, merged]


def window_cost(
    session: BenchSession,
    *,
    windows_ms: Sequence[float] = WINDOWS_MS,
    clients: int = 16,
    orders: int = 3000,
    max_batch: int = DEFAULT_MAX_BATCH,
    seed: int = 11,
) -> pd.DataFrame:
    """Question 2 of the module docstring: one row for `two_gate_lua`, one per window."""
    workload = replace(SCENARIOS["flash-sale"].workload(orders), seed=seed)
    runs: list[tuple[str, dict[str, Any]]] = [("two_gate_lua", {})]
    runs += [("two_gate_merged", {"window_ms": w, "max_batch": max_batch}) for w in windows_ms]
    rows = []
    for name, options in runs:
        rows.append(_one_sale(session, workload, name, options, clients))
    return pd.DataFrame(rows)


def _one_sale(
    session: BenchSession,
    workload: Workload,
    name: str,
    options: dict[str, Any],
    clients: int,
) -> dict[str, Any]:
    lab = session.lab
    design = design_class(name)(lab, **options)
    try:
        initial = workload.initial_stock()
        design.setup(initial)
        records = run_workload(design, workload.attempts(), concurrency=clients)
        design.drain()
        report = check_lab(lab, initial, records, redis_view=True)
        latency = records["latency_ms"]
        stats = design.window_stats() if hasattr(design, "window_stats") else None
        return {
            "design": name,
            "window_ms": options.get("window_ms"),
            "clients": clients,
            "orders": len(records),
            "mean_batch": 1.0 if stats is None else round(stats.mean_batch, 2),
            "added_wait_p50_us": 0.0 if stats is None else stats.p50_wait_us,
            "added_wait_p99_us": 0.0 if stats is None else stats.p99_wait_us,
            "latency_p50_ms": round(float(latency.quantile(0.5)), 3),
            "latency_p99_ms": round(float(latency.quantile(0.99)), 3),
            "checker_ok": bool(report.ok and report.converged),
        }
    finally:
        design.close()
