"""Faults the lab injects into a running design, so that a failure mode happens in the run itself.

Each is a context manager that installs its hook for the block; most are *switchable*: they
strike only while `active` is set, so that the nemesis (nemesis.py) can switch them on and off at
random moments while orders are in flight, without installing hooks on busy clients.

In the application:
- `crash_before_compensation`: the app "dies" (raises `SimulatedCrash`) at the moment a two-gate
  design would give back stock gate 1 took for an order that does not go through. Variants that
  decide before they decrement (WATCH, Lua) never reach that point.
- `crash_between_gates`: the app dies after gate 1 and before gate 2 / the task insert.
- `hold_between_gates`: a callable runs after gate 1 and before gate 2 (to park an order there
  while something else happens: the deterministic form of "a re-warm while orders sit between
  the gates").
- `expire_before_retry`: a resend finds its Redis anti-repeat code expired.
- A task worker that dies holding a claimed task is `TaskEngine.kill_after_claim`; one that
  stalls past its lease is `TaskEngine.pause_after_claim_s`.

In the database (hooks on the SQLAlchemy engine, so they work on every backend):
- `DbOutage` / `db_outage`: every statement, and every COMMIT, fails without reaching the server;
  a transaction that had already sent statements dies in the middle.
- `LostCommitAck` / `lost_commit_ack`: the COMMIT reaches the server and commits, and then the
  client gets an error (the connection dropped before the reply): the one fault that turns a
  success into an error, and why an error after a write was sent is an *unknown* outcome.

In Redis (a hook on the client's connections, the simulated form of `CLIENT KILL`):
- `RedisConnectionsKilled`: a command's connection is cut either before the command is sent (it
  never ran) or after (it ran; the reply is lost); the client sees a ConnectionError either way.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any, Protocol

import redis
from sqlalchemy import event
from sqlalchemy.engine import Engine

from inventory_lab.backends import hooked_connections
from inventory_lab.checkout import Checkout
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Result


class Gated(Protocol):
    """What the application faults hook: a design with a gate 1 and a gate 2 (every Redis
    design is one). Named here so that faults depend on no design."""

    lab: Lab

    def deduct(self, order: Order) -> Result: ...
    def gate_two(self, order: Order, epoch: str | None = None) -> Result: ...
    def compensate(self, order: Order, epoch: str | None = None) -> None: ...
    def free_codes(self, orders: Iterable[Order]) -> None: ...


class SimulatedCrash(Exception):
    """The application process died here (the lab raises instead of killing the process)."""


class SimulatedOutage(Exception):
    """The database refused the connection (the lab raises instead of stopping the server)."""


class SimulatedLostAck(Exception):
    """The connection dropped after the COMMIT was sent: the transaction committed."""


# --- the application ---------------------------------------------------------------------------


@contextmanager
def _crash_instead_of(
    design: Gated,
    method: str,
    message: Callable[[Order], str],
    times: int | None,
    active: threading.Event | None = None,
    *,
    crashed: list[Order] | None = None,
    first_order: Callable[[Any], Order] = lambda order: order,
) -> Iterator[list[Order]]:
    """Inside the block, `design.<method>(order, ...)` raises SimulatedCrash (the first `times`
    times; only while `active` is set, if given); yields the list of orders it crashed on,
    filled in as the run goes (`crashed`, when given: a list shared with another patch).
    `first_order` names the order of the method's first argument (a checkout's first line)."""
    crashed = [] if crashed is None else crashed
    lock = threading.Lock()
    original = getattr(design, method)

    def crash(argument: Any, *args: Any) -> Any:
        order = first_order(argument)
        with lock:
            spared = active is not None and not active.is_set()
            if spared or (times is not None and len(crashed) >= times):
                return original(argument, *args)
            crashed.append(order)
        raise SimulatedCrash(message(order))

    setattr(design, method, crash)
    try:
        yield crashed
    finally:
        delattr(design, method)


def crash_before_compensation(
    design: Gated, *, times: int | None = None
) -> AbstractContextManager[list[Order]]:
    """Inside the block, `design` crashes instead of giving stock back (the first `times` times)."""
    return _crash_instead_of(
        design, "compensate", lambda o: f"app died before giving back {o.qty} x {o.sku}", times
    )


def crash_between_gates(
    design: Gated, *, times: int | None = None, active: threading.Event | None = None
) -> AbstractContextManager[list[Order]]:
    """Inside the block, the app dies after gate 1 passed and before gate 2 (or the task insert).

    Redis keeps the decrement and the anti-repeat code; nothing reaches the database. A client
    retry then meets the code and is told "duplicate" although nothing was persisted.
    """
    return _crash_between_gates(design, times, active)


@contextmanager
def _crash_between_gates(
    design: Gated, times: int | None, active: threading.Event | None
) -> Iterator[list[Order]]:
    # A checkout's lines pass gate 2 together (`gate_two_lines(admitted)`, a list of
    # (line, epoch)): it dies there too, named by its first line, in the same list.
    def message(order: Order) -> str:
        return f"app died between the gates for {order.anti_repeat_code}"

    with ExitStack() as stack:
        crashed = stack.enter_context(_crash_instead_of(design, "gate_two", message, times, active))
        if hasattr(design, "gate_two_lines"):
            stack.enter_context(
                _crash_instead_of(
                    design,
                    "gate_two_lines",
                    message,
                    times,
                    active,
                    crashed=crashed,
                    first_order=lambda admitted: admitted[0][0],
                )
            )
        yield crashed


@contextmanager
def hold_between_gates(design: Gated, hold: Callable[[Order], None]) -> Iterator[None]:
    """Inside the block, `hold(order)` runs after gate 1 passed and before gate 2 starts."""
    gate_two = design.gate_two

    def held(order: Order, *args: Any) -> Any:
        hold(order)
        return gate_two(order, *args)

    design.gate_two = held  # type: ignore[method-assign]
    try:
        yield
    finally:
        del design.gate_two


@contextmanager
def expire_before_retry(design: Gated, active: threading.Event | None = None) -> Iterator[None]:
    """Every repeat send of an order line finds its Redis anti-repeat code expired (only while
    `active` is set, if given).

    Deterministic stand-in for "the retry arrived after the TTL": the code is deleted just before
    the repeat reaches gate 1. The database's anti-repeat row does not expire.
    """
    seen: set[str] = set()
    lock = threading.Lock()
    deduct = design.deduct

    def expire_if_repeated(order: Order) -> None:
        with lock:
            repeat = order.anti_repeat_code in seen
            seen.add(order.anti_repeat_code)
        if repeat and (active is None or active.is_set()):
            design.free_codes([order])

    def late(order: Order):  # type: ignore[no-untyped-def]
        expire_if_repeated(order)
        return deduct(order)

    def late_checkout(checkout: Checkout):  # type: ignore[no-untyped-def]
        for line in checkout.lines:
            expire_if_repeated(line)
        return place(checkout)

    design.deduct = late  # type: ignore[method-assign]
    place = getattr(design, "place", None)
    if place is not None:
        design.place = late_checkout  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del design.deduct
        if place is not None:
            del design.place  # type: ignore[attr-defined]


# --- the database ------------------------------------------------------------------------------


class _Switchable:
    """A fault that strikes only while `active` is set (and then with `probability`)."""

    def __init__(self, probability: float = 1.0, seed: int = 0) -> None:
        if not 0.0 < probability <= 1.0:
            raise ValueError("probability must be in (0, 1]")
        self.active = threading.Event()
        self.probability = probability
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.struck = 0  # how many times it did

    def strikes(self) -> bool:
        if not self.active.is_set():
            return False
        with self._lock:
            if self.probability < 1.0 and self._rng.random() >= self.probability:
                return False
            self.struck += 1
            return True


class DbOutage(_Switchable):
    """While active, every statement and every COMMIT of `engine` fails before it is sent."""

    def __init__(self, engine: Engine, probability: float = 1.0, seed: int = 0) -> None:
        super().__init__(probability, seed)
        self.engine = engine

    def _refuse(self, *_args: object) -> None:
        if self.strikes():
            raise SimulatedOutage("connection refused (simulated outage)")

    def __enter__(self) -> DbOutage:
        event.listen(self.engine, "before_cursor_execute", self._refuse)
        event.listen(self.engine, "commit", self._refuse)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "commit", self._refuse)
        event.remove(self.engine, "before_cursor_execute", self._refuse)


class LostCommitAck(_Switchable):
    """While active, a COMMIT of `engine` commits on the server and the client gets an error."""

    def __init__(self, engine: Engine, probability: float = 1.0, seed: int = 0) -> None:
        super().__init__(probability, seed)
        self.engine = engine

    def _commit(self, conn: Any) -> None:
        if self.strikes():
            conn.connection.dbapi_connection.commit()  # the server commits...
            raise SimulatedLostAck("connection lost after COMMIT was sent")  # ...the reply is lost

    def __enter__(self) -> LostCommitAck:
        event.listen(self.engine, "commit", self._commit)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "commit", self._commit)


@contextmanager
def db_outage(engine: Engine, seconds: float, *, after_s: float = 0.0) -> Iterator[DbOutage]:
    """From `after_s` to `after_s + seconds` after entering the block, the database refuses
    every statement and commit (a timer switches the outage on and off)."""
    with DbOutage(engine) as outage:
        timers = [
            threading.Timer(after_s, outage.active.set),
            threading.Timer(after_s + seconds, outage.active.clear),
        ]
        for timer in timers:
            timer.daemon = True
            timer.start()
        try:
            yield outage
        finally:
            for timer in timers:
                timer.cancel()
            outage.active.clear()


@contextmanager
def lost_commit_ack(engine: Engine, *, times: int = 1) -> Iterator[LostCommitAck]:
    """The next `times` COMMITs of `engine` commit and then fail on the client."""
    with LostCommitAck(engine) as fault:
        fault.active.set()
        original = fault.strikes

        def limited() -> bool:
            if fault.struck >= times:
                return False
            return original()

        fault.strikes = limited  # type: ignore[method-assign]
        yield fault


# --- Redis -------------------------------------------------------------------------------------


class _ConnectionHook(_Switchable):
    """Hooks every connection the client's pool hands out (`backends.hooked_connections`):
    `_sending` runs before a command is sent, `_reading` before its reply is read."""

    def __init__(self, client: redis.Redis, probability: float = 1.0, seed: int = 0) -> None:
        super().__init__(probability, seed)
        self.client = client

    def _sending(self, conn: Any, state: threading.local) -> None: ...

    def _reading(self, conn: Any, state: threading.local) -> None: ...

    def _wrap(self, conn: Any) -> None:
        send, read = conn.send_packed_command, conn.read_response
        state = threading.local()

        def sending(*args: Any, **kwargs: Any) -> Any:
            self._sending(conn, state)
            return send(*args, **kwargs)

        def reading(*args: Any, **kwargs: Any) -> Any:
            self._reading(conn, state)
            return read(*args, **kwargs)

        conn.send_packed_command, conn.read_response = sending, reading

    def __enter__(self) -> _ConnectionHook:
        self._hooks = ExitStack()
        self._hooks.enter_context(hooked_connections(self.client, self._wrap))
        return self

    def __exit__(self, *_exc: object) -> None:
        self._hooks.close()


class RedisConnectionsKilled(_ConnectionHook):
    """While active, a command's connection is cut before or after the command is sent.

    A cut before sending leaves the command unrun; a cut after lets it run and loses the reply.
    Either way the client sees `redis.ConnectionError` and the connection is dropped, as after
    `CLIENT KILL`.
    """

    def _sending(self, conn: Any, state: threading.local) -> None:
        if not self.strikes():
            return
        with self._lock:
            after = self._rng.random() < 0.5
        if not after:
            conn.disconnect()
            raise redis.ConnectionError("connection killed before the command was sent")
        state.cut = True

    def _reading(self, conn: Any, state: threading.local) -> None:
        if getattr(state, "cut", False):
            state.cut = False
            conn.disconnect()  # the command was sent (fakeredis has already run it)
            raise redis.ConnectionError("connection killed after the command was sent")


class RedisPaused(_ConnectionHook):
    """While active, every command waits `pause_s` before it is sent (`CLIENT PAUSE`)."""

    def __init__(self, client: redis.Redis, pause_s: float = 0.05) -> None:
        super().__init__(client)
        self.pause_s = pause_s

    def _sending(self, conn: Any, state: threading.local) -> None:
        if self.strikes():
            time.sleep(self.pause_s)
