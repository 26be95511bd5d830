"""Faults the lab injects into a running design, so that a failure mode happens in the run itself.

- `crash_before_compensation`: the app "dies" (raises `SimulatedCrash`) at the moment a two-gate
  design would give back stock gate 1 took for an order that does not go through — the crash
  between pipeline replies and their compensation. Redis keeps the decrement (for a sold-out
  order, the negative value). Variants that decide before they decrement (WATCH, Lua) never
  reach that point.
- `crash_between_gates`: the app dies after gate 1 and before gate 2 / the task insert.
- `db_outage`: the task engine's applies fail for a while (the database refuses connections).
- A task worker that dies holding a claimed task is `TaskEngine.kill_after_claim`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from inventory_lab.designs.two_gate import TwoGate
from inventory_lab.orders import Order
from inventory_lab.tasks import TaskEngine


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


@contextmanager
def crash_between_gates(design: TwoGate, *, times: int | None = None) -> Iterator[list[Order]]:
    """Inside the block, the app dies after gate 1 passed and before gate 2 (or the task insert).

    Redis keeps the decrement and the anti-repeat code; nothing reaches the database. A client
    retry then meets the code and is told "duplicate" although nothing was persisted.
    """
    crashed: list[Order] = []
    lock = threading.Lock()
    gate_two = design.gate_two

    def crash(order: Order):  # type: ignore[no-untyped-def]
        with lock:
            if times is not None and len(crashed) >= times:
                return gate_two(order)
            crashed.append(order)
        raise SimulatedCrash(f"app died between the gates for {order.anti_repeat_code}")

    design.gate_two = crash  # type: ignore[method-assign]
    try:
        yield crashed
    finally:
        del design.gate_two


class SimulatedOutage(Exception):
    """The database refused the connection (the lab raises instead of stopping the server)."""


@contextmanager
def db_outage(engine: TaskEngine, seconds: float) -> Iterator[None]:
    """For `seconds` from entering the block, every task the engine applies fails."""
    deadline = time.monotonic() + seconds
    apply = engine.apply

    def refuse(order: Order) -> bool:
        if time.monotonic() < deadline:
            raise SimulatedOutage("connection refused")
        return apply(order)

    engine.apply = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        engine.apply = apply  # type: ignore[method-assign]
