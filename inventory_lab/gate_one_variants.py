"""Five ways to send gate 1, and what each costs and guarantees (notebook 05).

`two_gate` (two commands), `two_gate_pipeline` (one pipeline), `two_gate_multi` (MULTI/EXEC),
`two_gate_watch` (WATCH, read, MULTI/EXEC) and `two_gate_lua` (one script) share gate 2; they
differ in how gate 1 talks to Redis. The first three decrement and then check (they cannot act
on `SET NX`'s answer before the decrement runs, or do not), and give back what a refused order
took; the last two decide first. The experiments here show each difference in a run:

- `round_trip_table`: Redis round trips per order on each path (accepted, duplicate, sold out),
  counted on the wire (`bench_in_process.order_cost`);
- `crash_at_every_compensation`: the app dies wherever it would give stock back; what Redis is
  left short, and `reconcile`'s repair;
- `refusals_near_sell_out`: many clients near sell-out, the decrement-then-check window widened
  (`gap_s`): the units the checker finds left unsold that refused buyers could have taken;
- `order_in_the_window`: the same, forced: a small order sent while a big one holds units it
  will give back (`compensation_window`);
- `watch_retries` and `switch_interval`: what WATCH pays under contention, and a way to make
  Python's threads interleave between a client's requests as they do against a real server.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd

from inventory_lab.bench_in_process import PATHS, order_cost
from inventory_lab.checker import CheckReport, check_lab
from inventory_lab.compensation_window import WindowRun, second_order_in_the_window
from inventory_lab.designs import design_class
from inventory_lab.designs.two_gate import TwoGate
from inventory_lab.errors import LabError
from inventory_lab.experiment import run_experiment
from inventory_lab.faults import crash_before_compensation
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome
from inventory_lab.reconcile import reconcile
from inventory_lab.workload import Workload, run_workload

VARIANTS = ("two_gate", "two_gate_pipeline", "two_gate_multi", "two_gate_watch", "two_gate_lua")
DECREMENT_FIRST = ("two_gate", "two_gate_pipeline", "two_gate_multi")
DECIDE_FIRST = ("two_gate_watch", "two_gate_lua")
PATH_NAMES = {
    Outcome.ACCEPTED: "accepted",
    Outcome.DUPLICATE: "duplicate",
    Outcome.SOLD_OUT: "sold out",
}


def round_trip_table(lab: Lab, designs: Sequence[str] = VARIANTS, orders: int = 10) -> pd.DataFrame:
    """One row per design: the round trips it declares for an accepted order, then those
    counted on the wire per order on each path."""
    rows = {}
    for name in designs:
        row: dict[str, float | None] = {"declared (accepted)": design_class(name).round_trips}
        for path in PATHS:
            row[PATH_NAMES[path]] = order_cost(lab, name, path, orders=orders).redis_round_trips
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


@dataclass(frozen=True)
class CrashRun:
    design: str
    crashed: list[Order]  # the orders the app died on, at their compensation
    records: pd.DataFrame
    report: CheckReport  # before any repair
    redis: int  # stock Redis shows, summed over the SKUs, before the repair
    db: int  # stock the database holds, summed over the SKUs
    repaired: CheckReport  # after `reconcile(lab, repair=True)`

    def summary(self) -> dict[str, Any]:
        unknown = (Outcome.ERROR.value, Outcome.UNKNOWN.value)
        return {
            "crashes": len(self.crashed),
            "error or unknown": int(self.records["outcome"].isin(unknown).sum()),
            "oversold": self.report.oversold,
            "double_deducted": self.report.double_deducted,
            "redis": self.redis,
            "db": self.db,
            "drift": sum(self.report.drift.values()),
            "converged": self.report.converged,
            "converged after repair": self.repaired.converged,
        }


def crash_at_every_compensation(
    lab: Lab, design: str, workload: Workload, *, concurrency: int, times: int | None = None
) -> CrashRun:
    """Run `workload` with the app dying each time `design` would give stock back (the first
    `times` times only, if given); read Redis and the DB before and after `reconcile`'s repair."""
    instance = _two_gate(lab, design)
    initial = workload.initial_stock()
    try:
        instance.setup(initial)
        with crash_before_compensation(instance, times=times) as crashed:
            records = run_workload(instance, workload.attempts(), concurrency=concurrency)
        instance.drain()
    finally:
        instance.close()
    report = check_lab(lab, initial, records, redis_view=True)
    state = reconcile(lab)  # Redis and the DB side by side, before any repair
    reconcile(lab, repair=True)
    repaired = check_lab(lab, initial, records, redis_view=True)
    return CrashRun(
        design,
        list(crashed),
        records,
        report,
        redis=int(state["redis"].sum()),
        db=int(state["db"].sum()),
        repaired=repaired,
    )


def refusals_near_sell_out(
    lab: Lab, design: str, workload: Workload, *, concurrency: int, gap_s: float = 0.0
) -> dict[str, Any]:
    """Run `workload` (sized to sell out) and say what the checker found about the refusals:
    `false_sold_out`, the units left unsold that refused orders could have taken, and the
    refusals behind them. `gap_s` widens the window a variant has (`two_gate_lua` has none)."""
    takes_gap = gap_s and design != "two_gate_lua"
    options = {"gap_s": gap_s} if takes_gap else {}
    run = run_experiment(lab, design, workload, concurrency=concurrency, options=options)
    accepted = run.records[run.records["outcome"] == Outcome.ACCEPTED.value]
    return {
        "gap_s": options.get("gap_s", 0.0),
        "units sold": int(accepted["qty"].sum()),
        "stock left": int(run.check.per_sku["db_final"].sum()),
        "sold_out answers": run.report.sold_out,
        "false_sold_out (units)": run.report.false_sold_out,
        "false_sold_out_orders": run.report.false_sold_out_orders,
        "oversold": run.report.oversold,
        "converged": run.report.converged,
    }


def order_in_the_window(
    lab: Lab, design: str, *, stock: int = 2, big: int = 3, small: int = 1, sku: str = "sku-1"
) -> WindowRun:
    """Stock `stock`; an order of `big` units (more than there is) and, while it is between its
    decrement and its give-back (if its gate 1 has such a moment), an order of `small` units.
    Deterministic: a decrement-then-check variant refuses the small order although, once the
    big one has given its units back, they would have covered it."""
    if not 0 < small <= stock < big:
        raise LabError(f"need 0 < small <= stock < big, got small={small} stock={stock} big={big}")
    first, second = Order("o-big", sku, big), Order("o-small", sku, small)
    return second_order_in_the_window(lab, design, {sku: stock}, first, second)


@contextmanager
def switch_interval(seconds: float) -> Iterator[None]:
    """Make Python switch threads every `seconds` inside the block (a widened window: threads
    interleave between one client's requests), then restore the interval."""
    if seconds <= 0:
        raise LabError(f"a switch interval must be > 0 s, got {seconds}")
    before = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def watch_retries(
    lab: Lab,
    workload: Workload,
    concurrencies: Sequence[int],
    *,
    label: str,
    options: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """`two_gate_watch` at each concurrency: how often EXEC failed and the order started over."""
    rows = []
    for concurrency in concurrencies:
        run = run_experiment(
            lab, "two_gate_watch", workload, concurrency=concurrency, options=options
        )
        retries = run.design.watch_retries  # type: ignore[attr-defined]
        rows.append(
            {
                "run": label,
                "clients": concurrency,
                "watch_retries": retries,
                "retries per order": round(retries / workload.orders, 2),
                "p99_ms": run.report.latency_ms["p99"],
                "accepted": run.report.accepted,
                "oversold": run.report.oversold,
            }
        )
    return rows


def _two_gate(lab: Lab, design: str) -> TwoGate:
    cls = design_class(design)
    if not issubclass(cls, TwoGate):
        raise LabError(f"{design} has no gate 1: choose one of {', '.join(VARIANTS)}")
    return cls(lab)
