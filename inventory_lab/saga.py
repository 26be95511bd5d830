"""What a checkout's per-line gate costs: a buyer refused for a unit that was never sold.

On one Redis server, one script decides every line of a checkout (scripts/gate1_lines.lua): it
takes nothing unless it can take everything. On a Redis Cluster the lines' keys live in different
slots and one script cannot touch them all, so each line goes through the one-line gate in turn,
and a refused line makes the checkout give back the lines it took — a saga and its
compensation. Until the give-back lands, those units look sold. `saga_window` makes that moment
happen on purpose: a cart [a, b] whose b is sold out is held after taking a, and a buyer of the
last a arrives then. Under the saga the buyer is refused and the unit stays on the shelf (the
checker's false sold-out); under one script the buyer gets it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pandas as pd

from inventory_lab.checker import CheckReport, check_lab
from inventory_lab.checkout import Checkout
from inventory_lab.designs.two_gate_lua import TwoGateLua
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome

SAGA_STOCK = {"sku-a": 1, "sku-b": 0}
CART = Checkout.of("o-cart", {"sku-a": 1, "sku-b": 1})
BUYER = Order("o-buyer", "sku-a", 1)
_WAIT_S = 30.0  # a bound, never reached: the cart waits for the buyer's answer


@dataclass(frozen=True)
class SagaRun:
    per_line_gate: bool
    cart: Outcome
    buyer: Outcome
    compensations: int  # checkouts that gave back lines they had taken
    records: pd.DataFrame  # one row per line, as the workload records them
    report: CheckReport

    def summary(self) -> dict[str, object]:
        return {
            "gate 1": "per line, with compensation" if self.per_line_gate else "one script",
            "cart [a, b]": self.cart.value,
            "buyer of the last a": self.buyer.value,
            "compensations": self.compensations,
            "false sold-out units": self.report.false_sold_out,
            "partial": self.report.partial,
            "oversold": self.report.oversold,
        }


def saga_window(lab: Lab, *, per_line_gate: bool) -> SagaRun:
    """The cart and the buyer, with the buyer arriving while the cart is between its lines
    (under one script the cart has no such moment: the buyer comes after it)."""
    held = threading.Event()
    answered = threading.Event()

    def between(_line: Order) -> None:
        held.set()
        answered.wait(_WAIT_S)

    design = TwoGateLua(lab, per_line_gate=per_line_gate, between_lines=between)
    design.setup(SAGA_STOCK)
    answers: dict[str, Outcome] = {}
    cart = threading.Thread(target=lambda: answers.update(cart=design.place(CART).outcome))
    cart.start()
    if per_line_gate:
        held.wait(_WAIT_S)
    else:
        cart.join(_WAIT_S)
    answers["buyer"] = design.deduct(BUYER).outcome
    answered.set()
    cart.join(_WAIT_S)
    rows = [(line.order_id, line.sku, line.qty, answers["cart"].value) for line in CART.lines]
    rows.append((BUYER.order_id, BUYER.sku, BUYER.qty, answers["buyer"].value))
    records = pd.DataFrame(rows, columns=["order_id", "sku", "qty", "outcome"])
    report = check_lab(lab, SAGA_STOCK, records, redis_view=True)
    return SagaRun(
        per_line_gate, answers["cart"], answers["buyer"], design.compensations, records, report
    )
