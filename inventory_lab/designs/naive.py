"""`naive`: read the stock, check it in Python, write the new value. The strawman.

Two clients that read the same stock both pass the check and both write `read - qty`: the second
write overwrites the first (a lost update) and more units are sold than exist. It keeps no
anti-repeat code either, so a client retry deducts twice. `race_window_s` widens the gap between
read and write (a sleep), which makes the race happen on every backend, however fast.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from inventory_lab import schema
from inventory_lab.designs.base import BaseDesign, register
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome, Result


@register
class Naive(BaseDesign):
    name = "naive"
    summary = "read stock, check in the app, write stock - oversells under concurrency"

    def __init__(self, lab: Lab, *, race_window_s: float = 0.0) -> None:
        super().__init__(lab)
        if race_window_s < 0:
            raise ValueError("race_window_s must be >= 0")
        self.race_window_s = race_window_s

    def deduct(self, order: Order) -> Result:
        self.check(order)
        engine = self.lab.engine
        # Read and write in separate transactions, as an app that reads, thinks and writes does.
        with engine.connect() as conn:
            num = conn.execute(
                sa.select(schema.stock.c.num).where(schema.stock.c.sku == order.sku)
            ).scalar_one()
        if num < order.qty:
            return Result(Outcome.SOLD_OUT, f"read {num} left")
        if self.race_window_s:
            time.sleep(self.race_window_s)
        with engine.begin() as conn:
            conn.execute(
                sa.update(schema.stock)
                .where(schema.stock.c.sku == order.sku)
                .values(num=num - order.qty)
            )
            schema.record_deduction(conn, order.order_id, order.sku, order.qty, self.name)
        return Result(Outcome.ACCEPTED, f"wrote {num - order.qty}")
