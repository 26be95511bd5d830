"""The window a decrement-then-check gate 1 leaves open, forced: a second order sent into it.

`two_gate` as the article writes it, and its pipeline and MULTI variants, take first and look
afterwards: `SET code NX` and `HINCRBY -q` run, and only then does the app see that the order
does not go through and give the units back (`compensate`), deleting the code of an order that
sold out. Between the decrement and the compensation other clients see Redis as the refused
order left it: its code set, its units gone. `second_order_in_the_window` parks the first order
at exactly that point (its `compensate` waits), sends the second order, then lets the first go
on — one exact interleaving, no luck needed:

- the first order's own retry is told `duplicate` ("already done") about an order that is then
  refused (notebook 04: `SET NX` stores that an order started, not how it ended);
- a small order is refused as sold out while the big one holds units it will give back
  (notebook 05: refused while stock is left, a false sold-out).

Variants that decide before they decrement (`two_gate_watch`, `two_gate_lua`) never reach a
compensation for such an order: the first order is answered, then the second is sent, and
neither lie can happen. The result says which of the two the run was (`held`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from inventory_lab.checker import CheckReport, check_lab
from inventory_lab.designs import Design, design_class
from inventory_lab.designs.two_gate import TwoGate
from inventory_lab.errors import LabError
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Result
from inventory_lab.workload import RECORD_COLUMNS, deduct_as_client


@dataclass(frozen=True)
class WindowRun:
    design: str
    first: Result  # what the first order was told
    second: Result  # what the second order, sent while the first was held, was told
    held: bool  # the first order reached its compensation (False: its gate 1 decided first)
    records: pd.DataFrame  # every attempt, as the checker read them
    report: CheckReport  # the final state against what the clients were told
    then: Result | None = None  # what the order sent after the first was answered was told

    def summary(self) -> dict[str, Any]:
        return {
            "first order reached a compensation": self.held,
            "first order told": self.first.outcome.value,
            "second order told": self.second.outcome.value,
            "second order's detail": self.second.detail,
            "stock left (DB)": int(self.report.per_sku["db_final"].sum()),
            "false_duplicates": self.report.false_duplicates,
            "false_sold_out (units)": self.report.false_sold_out,
            "false_sold_out_orders": self.report.false_sold_out_orders,
            "oversold": self.report.oversold,
            "converged": self.report.converged,
        }


def second_order_in_the_window(
    lab: Lab,
    design: str,
    initial: Mapping[str, int],
    first: Order,
    second: Order,
    *,
    then: Order | None = None,
    front: Callable[[Design], Design] | None = None,
    options: Mapping[str, Any] | None = None,
    timeout_s: float = 30.0,
) -> WindowRun:
    """Stock `initial`; `first` is sent and, if its gate 1 decrements and must give back, held at
    its compensation while `second` is sent and answered; then `first` goes on; then `then`, if
    given, is sent once `first` was answered. Deterministic.

    `second` (and `then`) may be `first` itself: a retry (recorded as attempt 1, and 2). `design`
    must be a Redis design with two gates (one that has a compensation to hold). `front(design)`:
    what the clients call instead of the design itself (e.g. idempotency keys in front of it).
    """
    cls = design_class(design)
    if not issubclass(cls, TwoGate):
        raise LabError(f"{design} has no gate 1 to hold: choose a Redis design with two gates")
    instance = cls(lab, **dict(options or {}))
    called: Design = instance if front is None else front(instance)
    reached, release = threading.Event(), threading.Event()
    compensate = instance.compensate

    def held(order: Order, *args: Any) -> None:
        if order == first and not reached.is_set():
            reached.set()
            release.wait(timeout_s)
        compensate(order, *args)

    told: dict[str, tuple[Result, float, float]] = {}
    started = time.perf_counter()

    def ask(name: str, order: Order) -> None:
        start = time.perf_counter() - started
        result = deduct_as_client(called, order)
        told[name] = (result, start, time.perf_counter() - started)

    called.setup(initial)
    instance.compensate = held  # type: ignore[method-assign]
    try:
        buyer = threading.Thread(target=ask, args=("first", first), daemon=True)
        buyer.start()
        while not reached.wait(0.005) and buyer.is_alive():
            pass  # until the first order is parked at its compensation, or answered
        ask("second", second)
        release.set()
        buyer.join(timeout_s)
        if buyer.is_alive():
            raise LabError(f"{design}: the first order did not finish within {timeout_s} s")
        if then is not None:
            ask("then", then)
        called.drain()
    finally:
        release.set()
        del instance.compensate
        called.close()
    attempts = [("first", first, 0), ("second", second, 1 if second == first else 0)]
    if then is not None:
        attempts.append(("then", then, 2 if then == first else 0))
    rows = []
    for client, (name, order, attempt) in enumerate(attempts):
        result, start, end = told[name]
        latency_ms = (end - start) * 1000.0
        where = [order.order_id, order.sku, order.qty, attempt, client, start, end, latency_ms]
        rows.append([*where, result.outcome.value, result.detail])
    records = pd.DataFrame(rows, columns=RECORD_COLUMNS)
    report = check_lab(lab, initial, records, redis_view=True)
    return WindowRun(
        called.name,
        told["first"][0],
        told["second"][0],
        reached.is_set(),
        records,
        report,
        told["then"][0] if then is not None else None,
    )
