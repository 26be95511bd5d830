"""`naive`: read the stock, check it in Python, write the new value. The strawman.

Two clients that read the same stock both pass the check and both write `read - qty`: the second
write overwrites the first (a lost update) and more units are sold than exist. It keeps no
anti-repeat code either, so a client retry deducts twice. `race_window_s` widens the gap between
read and write (a sleep), which makes the race likely on every backend, but leaves it to the
scheduler. `lockstep=C` forces it instead: C clients' deductions go in rounds, every client of a
round reads before any of them writes (a barrier in the gap), so each round sells C units for a
decrement of one, however busy the machine. A round that cannot fill (the last one, when fewer
clients are left) gives up after `lockstep_timeout_s` and the next round starts afresh. `pause`,
a callable run in that gap, lets a caller force one exact interleaving (see
`scenarios.forced_lost_update`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from inventory_lab import schema
from inventory_lab.designs.base import BaseDesign, register
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome, Result


@register
class Naive(BaseDesign):
    name = "naive"
    summary = "read stock, check in the app, write stock - oversells under concurrency"

    def __init__(
        self,
        lab: Lab,
        *,
        race_window_s: float = 0.0,
        lockstep: int = 0,
        lockstep_timeout_s: float = 1.0,
        pause: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(lab)
        if race_window_s < 0:
            raise ValueError("race_window_s must be >= 0")
        if lockstep < 0 or lockstep_timeout_s <= 0:
            raise ValueError("lockstep must be >= 0 and lockstep_timeout_s > 0")
        self.race_window_s = race_window_s
        self.lockstep = lockstep
        self.pause = pause
        if lockstep > 1 and pause is None:
            self.pause = _Rounds(lockstep, lockstep_timeout_s).wait

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
        if self.pause is not None:
            self.pause()
        with engine.begin() as conn:
            conn.execute(
                sa.update(schema.stock)
                .where(schema.stock.c.sku == order.sku)
                .values(num=num - order.qty)
            )
            schema.record_deduction(conn, order.order_id, order.sku, order.qty, self.name)
        return Result(Outcome.ACCEPTED, f"wrote {num - order.qty}")


class _Rounds:
    """A barrier of `parties` that a round which cannot fill simply leaves (and resets)."""

    def __init__(self, parties: int, timeout_s: float) -> None:
        self.barrier = threading.Barrier(parties, timeout=timeout_s)
        self.lock = threading.Lock()

    def wait(self) -> None:
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            with self.lock:  # the first one out mends it for the next round
                if self.barrier.broken:
                    self.barrier.reset()
