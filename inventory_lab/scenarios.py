"""Oversells forced into one exact interleaving each: no luck needed.

`forced_lost_update` is the strawman's race (notebook 01): `buyers` clients of `naive` all read
the same stock before any of them writes, so each passes the check and each writes `stock - 1`.

The two mid-flight oversells follow. The nemesis (nemesis.py) finds these by striking at random
moments; here each is built step by step, so that a notebook or a test can show it happen on
every run and then show the fix hold under the very same steps. Both run a Redis design as
written (`as_written=True`: the article's handling) or as the lab builds it, and return what
every buyer was told and the checker's report.

- `lost_commit_ack`: stock 1, two buyers. The first buyer's gate 2 commits and its
  acknowledgement is lost. As written the error is taken for a failure: the stock is given back
  and sold to the second buyer: two sold of one. Resolved from the database first, the first
  buyer was served and the second hears "sold out".
- `rewarm_between_gates`: stock 2. Buyer a passes gate 1 and stops before gate 2; Redis is
  re-warmed from the database, which does not know a yet; buyers b and c pass; then a goes on.
  As written the re-warm handed a's unit out again: three sold of two. Fenced by the epoch, a's
  gate 2 finds the epoch moved on and refuses it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import pandas as pd

from inventory_lab.checker import CheckReport, check_lab
from inventory_lab.designs import design_class
from inventory_lab.designs.naive import Naive
from inventory_lab.designs.task_engine import TaskEngineDesign
from inventory_lab.designs.two_gate import TwoGate
from inventory_lab.faults import hold_between_gates
from inventory_lab.faults import lost_commit_ack as lose_commit_acks
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome, Result
from inventory_lab.resolve import describe
from inventory_lab.workload import RECORD_COLUMNS, Attempt, run_workload

log = logging.getLogger(__name__)


def forced_lost_update(
    lab: Lab, *, buyers: int = 2, stock: int = 1
) -> tuple[pd.DataFrame, CheckReport]:
    """`buyers` clients each buy one unit of one SKU; all read before any writes. Deterministic.

    A barrier in `naive`'s read-write gap (its `pause` hook) holds every client until all have
    read the same stock, so each passes the check and each writes `stock - 1`: `buyers` units
    sold, one deducted.
    """
    barrier = threading.Barrier(buyers, timeout=30)
    design = Naive(lab, pause=barrier.wait)
    initial = {"sku-hot": stock}
    design.setup(initial)
    attempts = [Attempt(Order(f"buyer-{i}", "sku-hot", 1), 0) for i in range(buyers)]
    records = run_workload(design, attempts, concurrency=buyers)
    return records, check_lab(lab, initial, records, redis_view=False)


@dataclass(frozen=True)
class Scenario:
    design: str
    as_written: bool
    told: dict[str, Result]  # buyer -> what the buyer was told
    report: CheckReport  # after the design drained, before any reconciliation
    records: pd.DataFrame  # the buyers' records, as the checker read them

    def summary(self) -> dict[str, Any]:
        return {
            "design": self.design + (" (as written)" if self.as_written else ""),
            **{f"buyer {name}": result.outcome.value for name, result in self.told.items()},
            "db stock": int(self.report.per_sku["db_final"].sum()),
            "oversold": self.report.oversold,
            "unknown_persisted": self.report.unknown_persisted,
        }


def lost_commit_ack(lab: Lab, design: str, *, as_written: bool, stock: int = 1) -> Scenario:
    """Stock `stock`; the first buyer's commit lands and its acknowledgement is lost; then one
    more buyer than there is stock left."""
    instance = _open(lab, design, as_written=as_written)
    instance.setup({"sku-1": stock})
    buyers = {f"b{i}": Order(f"o-{i}", "sku-1", 1) for i in range(stock + 1)}
    told: dict[str, Result] = {}
    try:
        with lose_commit_acks(lab.engine):
            told["b0"] = _ask(instance, buyers["b0"])
        for name, order in list(buyers.items())[1:]:
            told[name] = _ask(instance, order)
        instance.drain()
    finally:
        instance.close()
    return _scenario(lab, design, as_written, {"sku-1": stock}, buyers, told)


def rewarm_between_gates(lab: Lab, design: str, *, as_written: bool, stock: int = 2) -> Scenario:
    """Stock `stock`; buyer a is parked between the gates while Redis is re-warmed and `stock`
    other buyers pass; then a goes on."""
    instance = _open(lab, design, as_written=as_written)
    instance.setup({"sku-1": stock})
    buyers = {"a": Order("o-a", "sku-1", 1)}
    buyers.update({f"b{i}": Order(f"o-b{i}", "sku-1", 1) for i in range(stock)})
    parked, release = threading.Event(), threading.Event()
    told: dict[str, Result] = {}

    def hold(order: Order) -> None:
        if order == buyers["a"]:
            parked.set()
            release.wait(60)

    try:
        with hold_between_gates(instance, hold):
            buyer = threading.Thread(target=lambda: told.update(a=_ask(instance, buyers["a"])))
            buyer.start()
            if not parked.wait(60):
                raise RuntimeError("buyer a never reached gate 2")
            instance.rewarm()
            for name, order in list(buyers.items())[1:]:
                told[name] = _ask(instance, order)
            release.set()
            buyer.join(60)
        instance.drain()
    finally:
        release.set()
        instance.close()
    told = {name: told[name] for name in buyers}
    return _scenario(lab, design, as_written, {"sku-1": stock}, buyers, told)


def _open(lab: Lab, design: str, *, as_written: bool) -> TwoGate:
    cls = design_class(design)
    if not issubclass(cls, TwoGate):
        raise ValueError(f"{design} is not a Redis design: the scenario has nothing to act on")
    options: dict[str, Any] = {"as_written": as_written}
    if issubclass(cls, TaskEngineDesign):
        options["start_workers"] = False  # drain() applies the tasks, after the scenario
    return cls(lab, **options)  # type: ignore[return-value]


def _ask(design: TwoGate, order: Order) -> Result:
    """What a client hears: the answer, or `unknown` for an error it cannot see through."""
    try:
        return design.deduct(order)
    except Exception as exc:  # the outcome the scenario shows (an as-written design raises)
        log.debug("%s: the buyer hears unknown", order.anti_repeat_code, exc_info=True)
        return Result(Outcome.UNKNOWN, describe(exc))


def _scenario(
    lab: Lab,
    design: str,
    as_written: bool,
    initial: dict[str, int],
    buyers: dict[str, Order],
    told: dict[str, Result],
) -> Scenario:
    rows = [
        [o.order_id, o.sku, o.qty, 0, 0, 0.0, 0.0, 0.0, told[n].outcome.value, told[n].detail]
        for n, o in buyers.items()
    ]
    records = pd.DataFrame(rows, columns=RECORD_COLUMNS)
    report = check_lab(lab, initial, records, redis_view=True)
    return Scenario(design, as_written, told, report, records)
