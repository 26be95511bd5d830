"""What the anti-repeat code remembers and what it forgets (notebook 04).

The article makes a deduction idempotent with one code, order id + SKU, kept twice: in Redis by
`SET code 1 NX EX 10` (gate 1, a fast filter that forgets after its TTL) and as a unique row in
the database (gate 2, for ever). Three experiments on what that leaves out:

- `late_retry`: one order sent, then sent again after its Redis code expired. Gate 2's row
  catches the resend, but as the article writes it gate 1 already decremented and nobody gives
  the unit back: Redis drifts one unit below the database until reconciled.
- `retry_during_refusal`: an order that sells out and its retry, sent while the order still
  holds its code (forced with `compensation_window`): the retry is told "duplicate" — already
  done — about an order that is then refused. The code stores that an order started, not how it
  ended.
- `told_duplicate_never_done`: the same lie found in a run with many clients: every attempt of
  the order lines that were told "duplicate" and were never deducted (the checker's
  `false_duplicates`, here with their attempts, to see when they happened).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from inventory_lab import schema
from inventory_lab.checker import CheckReport, check_lab, read_ledger
from inventory_lab.compensation_window import WindowRun, second_order_in_the_window
from inventory_lab.designs import design_class
from inventory_lab.designs.two_gate import TwoGate
from inventory_lab.errors import LabError
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome
from inventory_lab.tasks.store import unapplied_tasks
from inventory_lab.workload import Attempt, run_workload

LATE_STOCK = {"sku-0001": 3, "sku-0002": 5}
LATE_ORDER = Order("o-late", "sku-0001", 1)


@dataclass(frozen=True)
class LateRetry:
    design: str
    ttl_ms: int  # the Redis code's lifetime
    waited_ms: float  # between the first send's answer and the resend
    code_pttl: int  # the code's remaining life just before the resend (-2: the key is gone)
    records: pd.DataFrame  # both sends, as the checker read them
    report: CheckReport

    @property
    def first(self) -> str:
        return str(self.records["outcome"].iloc[0])

    @property
    def resend(self) -> str:
        return str(self.records["outcome"].iloc[1])

    def summary(self) -> dict[str, Any]:
        return {
            "first send": self.first,
            "code pttl before resend": self.code_pttl,
            "resend": self.resend,
            "resend detail": self.records["detail"].iloc[1],
            "double_deducted": self.report.double_deducted,
            "converged": self.report.converged,
            "drift": dict(self.report.drift),
        }


def late_retry(
    lab: Lab,
    design: str = "two_gate",
    *,
    ttl_ms: int = 50,
    wait_ms: float | None = None,
    options: Mapping[str, Any] | None = None,
    initial: Mapping[str, int] = LATE_STOCK,
    order: Order = LATE_ORDER,
) -> LateRetry:
    """Send `order`, wait `wait_ms` (three TTLs unless given), send it again; check the state.

    Both sends go through the workload's client, one at a time, so that the checker gets the
    usual records. `options` are the design's (e.g. `give_back_duplicates=True`).
    """
    wait_ms = 3 * ttl_ms if wait_ms is None else wait_ms
    if wait_ms < 0:
        raise LabError(f"wait_ms must be >= 0, got {wait_ms}")
    cls = design_class(design)
    if not issubclass(cls, TwoGate):
        raise LabError(f"{design} keeps no anti-repeat code in Redis: nothing to expire")
    instance = cls(lab, ttl_ms=ttl_ms, **dict(options or {}))
    try:
        instance.setup(initial)
        first = run_workload(instance, [Attempt(order, 0)], concurrency=1)
        time.sleep(wait_ms / 1000)
        code_pttl = int(lab.redis.pttl(instance.keys_for(order)[0]))
        second = run_workload(instance, [Attempt(order, 1)], concurrency=1)
        instance.drain()
    finally:
        instance.close()
    records = pd.concat([first, second], ignore_index=True)
    report = check_lab(lab, initial, records, redis_view=True)
    return LateRetry(design, ttl_ms, wait_ms, code_pttl, records, report)


def retry_during_refusal(lab: Lab, design: str, *, sku: str = "sku-1") -> WindowRun:
    """One order for a SKU with no stock, and its retry sent while the order is between its
    decrement and its give-back (when its gate 1 has such a moment). Deterministic."""
    order = Order("o-refused", sku, 1)
    return second_order_in_the_window(lab, design, {sku: 0}, order, order)


def told_duplicate_never_done(lab: Lab, records: pd.DataFrame) -> pd.DataFrame:
    """Every attempt of the order lines told "duplicate" that were never deducted: no ledger row,
    no task waiting to be applied, never told "accepted" — the lines the checker counts as
    `false_duplicates`, read from the lab's final state. Run it when the design is quiescent."""
    ledger = read_ledger(lab)
    with lab.engine.connect() as conn:
        pending = unapplied_tasks(conn, schema.task_tables(lab.engine))
    done = set(zip(ledger["order_id"], ledger["sku"], strict=True))
    done |= set(zip(pending["order_id"], pending["sku"], strict=True))
    accepted = records[records["outcome"] == Outcome.ACCEPTED.value]
    done |= set(zip(accepted["order_id"], accepted["sku"], strict=True))
    told = records[records["outcome"] == Outcome.DUPLICATE.value]
    lies = set(zip(told["order_id"], told["sku"], strict=True)) - done
    lines = pd.Series(list(zip(records["order_id"], records["sku"], strict=True)), records.index)
    return records[lines.isin(lies)]
