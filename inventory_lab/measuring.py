"""Measuring honestly (notebook 10): checked load runs, a stall on the run's own time line,
throughput–latency curves, and the bench's reference files read back.

The article's case for Redis rests on a measurement — the database's hot row cannot take a flash
sale, Redis can — and a measurement can lie in three ways the lab shows: one Python process
measures itself (the load generator saturates first), a closed loop hides a stall (coordinated
omission), and a rate without its latency hides the queue. Here are the few pieces the notebook
needs on top of `loadgen` and `bench`: a load that is checked like any experiment (a benchmark
that oversold measured a bug), times of the machine's clock mapped onto a run's records, a run's
latency from the intended and from the actual send side by side, curves of latency against
achieved rate from open-loop runs at fractions of a capacity measured in the same session, and
the JSON that `inventory-lab bench --json` writes, as frames.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from inventory_lab.bench import BenchSession, CheckedLoad, Scenario, checked_load
from inventory_lab.loadgen import Arrivals, Layout, LoadRun
from inventory_lab.senders import Target
from inventory_lab.stalls import TableStall
from inventory_lab.workload import Workload

BENCH_KEYS = ("redis", "db", "machine", "processes", "orders", "cells", "ceilings", "targets")


def on_run_clock(run: LoadRun, moment: float) -> float:
    """A `time.monotonic()` moment as seconds since the run's start: the records' time base."""
    return moment - run.start_at


def stall_window(run: LoadRun, stall: TableStall) -> tuple[float, float]:
    """When the stall held its lock, in the run's time base (call after `stall.join()`)."""
    if stall.held_from is None or stall.held_until is None:
        raise ValueError("the stall never held its lock: join() it and read its error")
    return on_run_clock(run, stall.held_from), on_run_clock(run, stall.held_until)


def stalled_load(
    session: BenchSession,
    target: Target,
    workload: Workload,
    *,
    layout: Layout,
    arrivals: Arrivals | None = None,
    hold_s: float,
) -> tuple[CheckedLoad, tuple[float, float]]:
    """A checked load during which a `TableStall` holds the stock table's lock for `hold_s`,
    taken as the workers are released (`on_ready`), so that it begins as the load starts on any
    machine; returns the load and when the lock was held, in the run's time base."""
    stall = TableStall(session.lab.engine, after_s=0.0, hold_s=hold_s)
    loaded = checked_load(
        session, target, workload, layout=layout, arrivals=arrivals, on_ready=stall.start
    )
    stall.join()
    return loaded, stall_window(loaded.run, stall)


def due_during(records: pd.DataFrame, window: tuple[float, float]) -> pd.DataFrame:
    """The attempts whose intended send time fell in `window` (run time, [from, until))."""
    start, end = window
    return records[(records["intended_s"] >= start) & (records["intended_s"] < end)]


def sent_during(records: pd.DataFrame, window: tuple[float, float]) -> pd.DataFrame:
    """The attempts actually sent in `window` (run time, [from, until))."""
    start, end = window
    return records[(records["start_s"] >= start) & (records["start_s"] < end)]


def latency_views(run: LoadRun) -> pd.DataFrame:
    """A run's latency percentiles (ms) seen two ways, one row each: from the intended send
    (what a buyer lives through, the queue included) and from the actual send (the service time
    alone, what a closed loop reports). A closed loop's two rows are equal: it intends to send
    exactly when it sends."""
    return pd.DataFrame.from_dict(
        {
            "from the intended send": run.percentiles_ms(from_intended=True),
            "from the actual send": run.percentiles_ms(from_intended=False),
        },
        orient="index",
    )


def rate_after(run: LoadRun, moment_s: float) -> float:
    """Attempts per second sent from `moment_s` (run time) to the last answer: a run's rate
    once a stall at its start is over."""
    span = run.elapsed_s - moment_s
    sent = int((run.records["start_s"] >= moment_s).sum())
    return sent / span if span > 0 else 0.0


def throughput_latency(
    session: BenchSession,
    target: Target,
    scenario: Scenario,
    *,
    layout: Layout,
    fractions: Sequence[float],
    seconds: float,
    capacity_orders: int | None = None,
    capacity: float | None = None,
    min_orders: int = 200,
    progress: bool = True,
) -> pd.DataFrame:
    """The target's capacity (closed loop), then open-loop constant arrivals at each fraction of
    it, each run offering about `seconds` of orders: one row per run, latency from the intended
    send (p50…max) and from the actual send (`service_p99_ms`), and the checker's findings.

    Give either `capacity_orders`, to measure the capacity here with a closed loop of that many
    orders, or `capacity`, a closed-loop rate already measured for the same target, scenario and
    layout (every load costs its worker processes' start): its row then carries the rate alone.
    """
    if (capacity is None) == (capacity_orders is None):
        raise ValueError("give capacity_orders (measure the capacity here) or capacity, not both")
    if capacity is not None and not (math.isfinite(capacity) and capacity > 0):
        raise ValueError(f"capacity must be a rate > 0 orders/s, not {capacity!r}")
    rows: list[dict[str, Any]] = []
    if capacity is not None:
        rate = capacity
        rows.append({"target": target.label, "arrivals": "closed loop", "achieved_per_s": rate})
    else:
        measured = checked_load(
            session, target, scenario.workload(capacity_orders), layout=layout, arrivals=Arrivals()
        )
        rate = measured.run.decisions_per_s
        rows.append(_curve_row("closed loop", None, measured, rate))
    label = f"{target.label}: open loop at fractions of {rate:,.0f}/s"
    for fraction in tqdm(fractions, desc=label, disable=not progress):
        offered = max(1.0, fraction * rate)
        orders = max(min_orders, int(offered * seconds))
        arrivals = Arrivals("constant", rate=offered)
        loaded = checked_load(
            session, target, scenario.workload(orders), layout=layout, arrivals=arrivals
        )
        rows.append(_curve_row("open loop", fraction, loaded, rate))
    return pd.DataFrame(rows)


def _curve_row(
    kind: str, fraction: float | None, loaded: CheckedLoad, capacity: float
) -> dict[str, Any]:
    run, check = loaded.run, loaded.check
    latency = run.percentiles_ms()
    return {
        "target": run.target.label,
        "arrivals": kind,
        "fraction": fraction,
        "offered_per_s": None if fraction is None else max(1.0, fraction * capacity),
        "achieved_per_s": run.decisions_per_s,
        "orders": len(run.records),
        "p50_ms": latency["p50"],
        "p99_ms": latency["p99"],
        "p99.9_ms": latency["p99.9"],
        "max_ms": latency["max"],
        "service_p99_ms": run.percentiles_ms(from_intended=False)["p99"],
        "last_intended_s": float(run.records["intended_s"].max()),
        "elapsed_s": run.elapsed_s,
        "oversold": None if check is None else check.oversold,
        "lost": None if check is None else check.lost,
    }


# --- the bench's reference files ------------------------------------------------------------


@dataclass(frozen=True)
class BenchReference:
    """A file written by `inventory-lab bench --json`, as frames."""

    path: Path
    redis: str
    db: str
    machine: str
    processes: int
    orders: int
    commit: str | None  # None when the file does not say
    cells: pd.DataFrame  # scenario, target, clients, decisions_per_s, accepted_per_s, p99_ms, …
    ceilings: pd.DataFrame  # tool, clients, rate, note
    target_cells: pd.DataFrame
    targets: pd.DataFrame  # claim, ratio, goal, met, saturated

    def describe(self) -> str:
        commit = f", commit {self.commit}" if self.commit else ""
        return (
            f"redis {self.redis} + {self.db}, {self.machine}, {self.processes} load processes, "
            f"{self.orders} orders per cell{commit}"
        )


def read_bench_reference(path: str | Path) -> BenchReference:
    """Read a bench file; a file in an older format is refused with the way to regenerate it."""
    path = Path(path)
    doc = json.loads(path.read_text())
    missing = [key for key in BENCH_KEYS if key not in doc]
    if missing:
        raise ValueError(
            f"{path.name} is not in the bench's current format (no {', '.join(missing)}): "
            "regenerate it with the command in data/reference/README.md"
        )
    return BenchReference(
        path=path,
        redis=doc["redis"],
        db=doc["db"],
        machine=doc["machine"],
        processes=int(doc["processes"]),
        orders=int(doc["orders"]),
        commit=doc.get("commit"),
        cells=pd.DataFrame(doc["cells"]),
        ceilings=pd.DataFrame(doc["ceilings"], columns=["tool", "clients", "rate", "note"]),
        target_cells=pd.DataFrame(doc.get("target_cells", [])),
        targets=pd.DataFrame(doc["targets"]),
    )
