"""Faults the lab injects into a running design, so that a failure mode happens in the run itself.

This module starts small: `crash_before_compensation` makes the app "die" (raise `SimulatedCrash`)
at the moment a two-gate design would give back stock that gate 1 took for an order that does not
go through — the crash between pipeline replies and their compensation that the article does not
discuss. The order's client sees an error; Redis keeps the decrement (and, for a sold-out order,
the negative value). Variants that decide before they decrement (WATCH, Lua) never reach that
point, so the same fault cannot hurt them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from inventory_lab.designs.two_gate import TwoGate
from inventory_lab.orders import Order


class SimulatedCrash(Exception):
    """The application process died here (the lab raises instead of killing the process)."""


@contextmanager
def crash_before_compensation(
    design: TwoGate, *, times: int | None = None
) -> Iterator[list[Order]]:
    """Inside the block, `design` crashes instead of compensating (the first `times` times).

    Yields the list of orders whose compensation was lost, filled in as the run goes.
    """
    crashed: list[Order] = []
    lock = threading.Lock()
    compensate = design.compensate

    def crash(order: Order) -> None:
        with lock:
            if times is not None and len(crashed) >= times:
                return compensate(order)
            crashed.append(order)
        raise SimulatedCrash(f"app died before giving back {order.qty} x {order.sku}")

    design.compensate = crash  # type: ignore[method-assign]
    try:
        yield crashed
    finally:
        del design.compensate
