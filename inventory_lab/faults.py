"""Faults the lab injects into a running design, so that a failure mode happens in the run itself.

- `crash_before_compensation`: the app "dies" (raises `SimulatedCrash`) at the moment a two-gate
  design would give back stock gate 1 took for an order that does not go through — the crash
  between pipeline replies and their compensation. Redis keeps the decrement (for a sold-out
  order, the negative value). Variants that decide before they decrement (WATCH, Lua) never
  reach that point.
- `crash_between_gates`: the app dies after gate 1 and before gate 2 / the task insert.
- `db_outage`: for a while every statement to the database fails (the server refuses).
- A task worker that dies holding a claimed task is `TaskEngine.kill_after_claim`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from sqlalchemy import event
from sqlalchemy.engine import Engine

from inventory_lab.designs.two_gate import TwoGate
from inventory_lab.orders import Order


class SimulatedCrash(Exception):
    """The application process died here (the lab raises instead of killing the process)."""


@contextmanager
def _crash_instead_of(
    design: TwoGate, method: str, message: Callable[[Order], str], times: int | None
) -> Iterator[list[Order]]:
    """Inside the block, `design.<method>(order)` raises SimulatedCrash (the first `times`
    times); yields the list of orders it crashed on, filled in as the run goes."""
    crashed: list[Order] = []
    lock = threading.Lock()
    original = getattr(design, method)

    def crash(order: Order):  # type: ignore[no-untyped-def]
        with lock:
            if times is not None and len(crashed) >= times:
                return original(order)
            crashed.append(order)
        raise SimulatedCrash(message(order))

    setattr(design, method, crash)
    try:
        yield crashed
    finally:
        delattr(design, method)


def crash_before_compensation(
    design: TwoGate, *, times: int | None = None
) -> AbstractContextManager[list[Order]]:
    """Inside the block, `design` crashes instead of giving stock back (the first `times` times)."""
    return _crash_instead_of(
        design, "compensate", lambda o: f"app died before giving back {o.qty} x {o.sku}", times
    )


def crash_between_gates(
    design: TwoGate, *, times: int | None = None
) -> AbstractContextManager[list[Order]]:
    """Inside the block, the app dies after gate 1 passed and before gate 2 (or the task insert).

    Redis keeps the decrement and the anti-repeat code; nothing reaches the database. A client
    retry then meets the code and is told "duplicate" although nothing was persisted.
    """
    return _crash_instead_of(
        design, "gate_two", lambda o: f"app died between the gates for {o.anti_repeat_code}", times
    )


class SimulatedOutage(Exception):
    """The database refused the connection (the lab raises instead of stopping the server)."""


@contextmanager
def db_outage(engine: Engine, seconds: float, *, after_s: float = 0.0) -> Iterator[None]:
    """From `after_s` to `after_s + seconds` after entering the block, every statement any
    connection of `engine` sends fails, as if the server refused connections."""
    start = time.monotonic() + after_s
    end = start + seconds

    def refuse(*_args: object) -> None:
        if start <= time.monotonic() < end:
            raise SimulatedOutage("connection refused (simulated outage)")

    event.listen(engine, "before_cursor_execute", refuse)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", refuse)


@contextmanager
def expire_before_retry(design: TwoGate) -> Iterator[None]:
    """Every repeat send of an order line finds its Redis anti-repeat code expired.

    Deterministic stand-in for "the retry arrived after the TTL": the code is deleted just before
    the repeat reaches gate 1. The database's anti-repeat row does not expire.
    """
    seen: set[str] = set()
    lock = threading.Lock()
    deduct = design.deduct

    def late(order: Order):  # type: ignore[no-untyped-def]
        with lock:
            repeat = order.anti_repeat_code in seen
            seen.add(order.anti_repeat_code)
        if repeat:
            design.lab.redis.delete(design.keys_for(order)[0])
        return deduct(order)

    design.deduct = late  # type: ignore[method-assign]
    try:
        yield
    finally:
        del design.deduct
