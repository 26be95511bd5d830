"""`reservation`: hold stock at checkout, deduct it on payment; holds expire.

A real shop does not take stock when the cart is checked out and forget it: it holds the units
until the payment arrives, and gives them back if it never does (Saleor reserves stock with an
expiry). The stock row keeps meaning "units on hand"; the holds are rows of their own in
`reservations`, one per order line (code = order id:sku, the anti-repeat code):

    hold   BEGIN; lock the stock row; available = num - unexpired held units;
           INSERT the hold iff available >= qty; COMMIT
    pay    BEGIN; lock the stock row; the hold held and unexpired -> converted, and
           UPDATE stock SET num = num - q WHERE num - q >= 0, ledger row, anti-repeat row; COMMIT
    expire UPDATE reservations SET state = 'expired' WHERE held AND expired  (the sweeper)

Every transaction takes the SKU's stock row lock first (a no-op `UPDATE stock SET num = num`,
the same on SQLite, PostgreSQL and MariaDB), so holds, payments, cancels and the sweeper of one
SKU run one after another and each reads the holds the previous one committed. An expired hold
stops counting at once: correctness never waits for the sweeper, which only tidies the states.
A payment that arrives after its hold expired (a late payment) is accepted only if the units are
still free right now — on hand minus the other unexpired holds — and is refused otherwise (the
shop refunds it): a late payment never oversells. The stock column moves only on conversion,
with its ledger row, so the checker's invariants hold unchanged.

Expiry compares `expires_at` with a clock: the database server's (`backends.db_now`, one clock
for every app process) by default, or an injected one (`ManualClock`) whose readings are bound
parameters, so that tests and notebooks run on simulated time. The clock is read after the stock
lock is taken: a transaction that waited for the lock judges expiry at the moment it decides.

As a registered design, `deduct(order)` is a checkout whose payment arrives at once: hold, then
pay. An error after a COMMIT was sent is resolved from the source of truth before anything is
answered (`resolve.persisted`): the hold's code for a hold, the anti-repeat code for a payment.
"""

from __future__ import annotations

import enum
import math
import threading
from collections.abc import Callable, Mapping
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from inventory_lab import schema, throttle
from inventory_lab.backends import db_now, in_transaction
from inventory_lab.designs.base import BaseDesign, register
from inventory_lab.errors import InvalidInput, InvalidOrder, LabError
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome, Result, check_known_sku
from inventory_lab.resolve import OutcomeUnknown, describe, persisted

Clock = Callable[[], float]  # epoch seconds (or simulated seconds), compared with expires_at
Checkpoint = Callable[[str, str], None]  # (operation, "locking" | "locked"): a test seam

DEFAULT_TTL_S = 900.0  # Saleor's default checkout reservation: 15 minutes


class HoldState(enum.StrEnum):
    HELD = "held"  # counts against availability until expires_at
    CONVERTED = "converted"  # paid: its units left the stock column, with a ledger row
    RELEASED = "released"  # cancelled by the customer
    EXPIRED = "expired"  # marked by the sweeper; it stopped counting when its time passed


# The holds' table is the lab's (schema.py): every design's setup drops and re-creates it, so
# that no run's holds outlive it.
reservations = schema.reservations


class ManualClock(throttle.ManualClock):
    """Simulated seconds moved by hand: `advance(s)`. Holds expire when a test says so, never
    because a machine under load was slow. Safe to share between threads."""

    def __init__(self, now: float = 0.0) -> None:
        super().__init__(now)
        self._lock = threading.Lock()

    def advance(self, seconds: float) -> float:
        """Move the clock forward by `seconds` (>= 0); returns the new reading."""
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 <= seconds < math.inf
        ):
            raise InvalidInput(f"a clock advances by a finite number >= 0, got {seconds!r:.40}")
        with self._lock:
            self.now += seconds
            return self.now


# --- statements, built once: an operation only supplies their parameters --------------------------
# Bind names differ from the column names (SQLAlchemy reserves those for an UPDATE's SET clause).

_now = sa.bindparam("now", type_=sa.Double)
_held = reservations.c.state == HoldState.HELD.value

# UPDATE stock SET num = num WHERE sku = :stock_sku: takes the SKU's row lock, changes nothing
LOCK_STOCK = (
    sa.update(schema.stock)
    .where(schema.stock.c.sku == sa.bindparam("stock_sku"))
    .values(num=schema.stock.c.num)
)
READ_STOCK = sa.select(schema.stock.c.num).where(schema.stock.c.sku == sa.bindparam("stock_sku"))
# units of the SKU's unexpired holds, but for one code (a late payment's own, expired, hold)
HELD_BY_OTHERS = sa.select(sa.func.coalesce(sa.func.sum(reservations.c.qty), 0)).where(
    reservations.c.sku == sa.bindparam("hold_sku"),
    _held,
    reservations.c.expires_at > _now,
    reservations.c.code != sa.bindparam("hold_code"),
)
READ_HOLD = sa.select(reservations.c.qty, reservations.c.state, reservations.c.expires_at).where(
    reservations.c.code == sa.bindparam("hold_code")
)
INSERT_HOLD = reservations.insert().values(
    code=sa.bindparam("hold_code"),
    order_id=sa.bindparam("hold_order_id"),
    sku=sa.bindparam("hold_sku"),
    qty=sa.bindparam("hold_qty"),
    expires_at=sa.bindparam("hold_expires_at"),
    state=HoldState.HELD.value,
)
# conditional on the state it was read in: a change nobody expected updates no row
MOVE_HOLD = (
    sa.update(reservations)
    .where(
        reservations.c.code == sa.bindparam("hold_code"),
        reservations.c.state == sa.bindparam("was"),
    )
    .values(state=sa.bindparam("becomes"))
)
EXPIRE_HOLDS = (
    sa.update(reservations)
    .where(reservations.c.sku == sa.bindparam("hold_sku"), _held, reservations.c.expires_at <= _now)
    .values(state=HoldState.EXPIRED.value)
)


class Hold(NamedTuple):
    """One reservation as read: units, state, and when it expires (on the design's clock)."""

    qty: int
    state: HoldState
    expires_at: float


class _Refused(Exception):
    """Raised inside a transaction so that it rolls back; its text is the client's detail."""


class _Duplicate(_Refused):
    pass


class HoldMoved(Exception):
    """The hold's state changed between its read and its update: under the stock lock this
    cannot happen; the transaction rolls back and the operation is decided again."""


def _checked_ttl(ttl_s: object) -> float:
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not 0 < ttl_s < math.inf:
        raise InvalidInput(f"ttl_s must be a positive finite number of seconds, got {ttl_s!r:.40}")
    return float(ttl_s)


def _checked_clock(clock: object) -> Clock | None:
    if clock is not None and not callable(clock):
        raise InvalidInput(f"clock must be a callable returning seconds, got {clock!r:.40}")
    return clock  # type: ignore[return-value]


def held_units(
    conn_or_engine: Connection | Engine, *, clock: Clock | None = None
) -> dict[str, int]:
    """Units per SKU that unexpired holds keep from other buyers (SKUs with none are absent).

    Expiry is judged on `clock` if given, else on the database server's clock."""
    now = db_now() if clock is None else sa.literal(float(clock()), sa.Double)
    query = (
        sa.select(reservations.c.sku, sa.func.sum(reservations.c.qty))
        .where(_held, reservations.c.expires_at > now)
        .group_by(reservations.c.sku)
    )
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.connect() as conn:
            rows = conn.execute(query).all()
    else:
        rows = conn_or_engine.execute(query).all()
    return {str(sku): int(units) for sku, units in rows if units}


@register
class Reservation(BaseDesign):
    name = "reservation"
    summary = "hold at checkout, deduct on payment: holds expire, a late payment never oversells"

    def __init__(
        self,
        lab: Lab,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Clock | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        super().__init__(lab)
        self.ttl_s = _checked_ttl(ttl_s)
        self.clock = _checked_clock(clock)
        # Called inside each transaction before and after it takes the stock lock (a test seam:
        # the race tests park one operation there while the other queues for the lock).
        self.checkpoint = checkpoint
        # A design attached to tables an older lab set up finds its table there too.
        reservations.create(lab.engine, checkfirst=True)

    def setup(self, initial: Mapping[str, int]) -> None:
        super().setup(initial)  # validates, then re-creates every table (the holds' too)

    # --- the registered design: a checkout whose payment arrives at once --------------------------

    def deduct(self, order: Order) -> Result:
        """Hold, then pay. A resend of an order held earlier (its hold is a duplicate) completes
        the payment if it is still owed, and hears `duplicate` if it was paid."""
        held = self.hold(order)
        if held.outcome not in (Outcome.ACCEPTED, Outcome.DUPLICATE):
            return held
        return self.pay(order)

    def drain(self) -> None:
        """Run the sweeper once: expired holds are marked (they stopped counting already)."""
        self.expire()

    # --- the model ------------------------------------------------------------------------------

    def hold(self, order: Order, ttl_s: float | None = None) -> Result:
        """Hold `order.qty` units of `order.sku` for `ttl_s` seconds (default: the design's).

        `accepted`: held; `sold_out`: fewer units free than asked (nothing written);
        `duplicate`: the order line has a reservation already (its state in the detail)."""
        self.check(order)
        ttl = self.ttl_s if ttl_s is None else _checked_ttl(ttl_s)
        try:
            in_transaction(self.lab.engine, lambda conn: self._hold_in(conn, order, ttl))
        except _Duplicate as dup:
            return Result(Outcome.DUPLICATE, str(dup))
        except _Refused as short:
            return Result(Outcome.SOLD_OUT, str(short))
        except IntegrityError:  # a concurrent hold of the same line committed first
            return Result(Outcome.DUPLICATE, "reservation exists")
        except LabError:
            raise
        except Exception as exc:  # sent, then failed: did it commit? (resolve.py)
            # the hold's row, rolled back after: its unique code tells whether the hold committed
            probe = reservations.insert().values(
                code=order.anti_repeat_code,
                order_id=order.order_id,
                sku=order.sku,
                qty=order.qty,
                expires_at=0.0,
                state=HoldState.HELD.value,
            )
            if persisted(self.lab.engine, probe):  # OutcomeUnknown if the DB cannot say
                return Result(Outcome.ACCEPTED, f"reply lost ({describe(exc)}); the hold committed")
            return Result(Outcome.ERROR, f"{describe(exc)}; nothing persisted")
        return Result(Outcome.ACCEPTED, f"held for {ttl:g} s")

    def pay(self, order: Order) -> Result:
        """Convert the order's hold: deduct its units, write the ledger and anti-repeat rows.

        `accepted`: paid (detail says when the payment was late); `sold_out`: the hold expired
        and its units are gone (the payment is refunded; nothing written); `duplicate`: paid
        already. Paying an order that was never held, or for another quantity, is bad input."""
        self.check(order)
        for _ in range(3):
            try:
                late = in_transaction(self.lab.engine, lambda conn: self._pay_in(conn, order))
            except HoldMoved:
                continue
            except _Duplicate as dup:
                return Result(Outcome.DUPLICATE, str(dup))
            except _Refused as gone:
                return Result(Outcome.SOLD_OUT, str(gone))
            except IntegrityError:  # the anti-repeat row: a concurrent payment committed first
                return Result(Outcome.DUPLICATE, "anti-repeat code exists: paid already")
            except LabError:
                raise
            except Exception as exc:  # sent, then failed: did it commit? (resolve.py)
                probe = schema.anti_repeat.insert().values(code=order.anti_repeat_code)
                if persisted(self.lab.engine, probe):  # OutcomeUnknown if the DB cannot say
                    return Result(Outcome.ACCEPTED, f"reply lost ({describe(exc)}); it committed")
                return Result(Outcome.ERROR, f"{describe(exc)}; nothing persisted")
            if late:
                return Result(Outcome.ACCEPTED, "late payment: the hold had expired, units free")
            return Result(Outcome.ACCEPTED, "hold converted")
        return Result(Outcome.ERROR, "the hold kept changing under the stock lock; nothing done")

    def cancel(self, order: Order) -> Result:
        """Release the order's hold (no stock to give back: none was deducted).

        `accepted`: released now; `duplicate`: released or expired already. Cancelling an order
        never held, or one paid (a return, not a release), is bad input. Cancel is idempotent,
        so an error after its COMMIT was sent is resolved by running it again under the lock:
        a hold found released is the first attempt's work (or a concurrent cancel's: released
        either way). If the database cannot answer that either, the outcome stays unknown."""
        self.check(order)
        try:
            was = in_transaction(self.lab.engine, lambda conn: self._cancel_in(conn, order))
        except LabError:
            raise
        except Exception as first:
            try:
                was = in_transaction(self.lab.engine, lambda conn: self._cancel_in(conn, order))
            except LabError:
                raise
            except Exception as exc:
                raise OutcomeUnknown(
                    f"cancel of {order.anti_repeat_code}: {describe(first)}, then {describe(exc)}"
                ) from exc
            if was is HoldState.RELEASED:
                return Result(Outcome.ACCEPTED, f"reply lost ({describe(first)}); released")
        if was is HoldState.HELD:
            return Result(Outcome.ACCEPTED, "released")
        return Result(Outcome.DUPLICATE, f"{was} already")

    def expire(self) -> int:
        """The sweeper: mark held and expired holds `expired`; returns how many it marked.

        Idempotent, and safe beside payments: each SKU is swept under its stock lock, and the
        UPDATE matches only holds still `held`."""
        with self.lab.engine.connect() as conn:
            due = sa.select(reservations.c.sku).where(_held, reservations.c.expires_at <= _now)
            skus = conn.execute(due.distinct(), {"now": self._now(conn)}).scalars().all()
        swept = 0
        for sku in sorted(skus):  # one lock order for every sweeper
            swept += in_transaction(self.lab.engine, lambda conn, s=sku: self._expire_in(conn, s))
        return swept

    def held(self) -> dict[str, int]:
        """Units per SKU held by unexpired holds, on this design's clock."""
        return held_units(self.lab.engine, clock=self.clock)

    def available(self, sku: str) -> int:
        """Units of `sku` a new hold could take now: on hand minus unexpired holds."""
        check_known_sku(Order("available", sku, 1).sku, self.catalog)  # InvalidOrder
        return self.stock(sku) - self.held().get(sku, 0)

    def reservation(self, order: Order) -> Hold | None:
        """The order line's reservation (qty, state, expires_at), or None."""
        self.check(order)
        with self.lab.engine.connect() as conn:
            return self._read_hold(conn, order)

    # --- inside the transactions ----------------------------------------------------------------

    def _hold_in(self, conn: Connection, order: Order, ttl: float) -> None:
        now = self._lock(conn, "hold", order.sku)
        existing = self._read_hold(conn, order)
        if existing is not None:
            raise _Duplicate(f"reservation exists ({existing.state})")
        free = self._free_units(conn, order, now)
        if free < order.qty:
            raise _Refused(f"{free} units free, {order.qty} asked")
        conn.execute(INSERT_HOLD, self._hold_params(order, now + ttl))

    def _pay_in(self, conn: Connection, order: Order) -> bool:
        """Convert the hold; returns whether the payment was late."""
        now = self._lock(conn, "pay", order.sku)
        hold = self._read_hold(conn, order)
        if hold is None:
            raise InvalidOrder(f"no reservation for {order.anti_repeat_code}: hold before paying")
        if hold.qty != order.qty:
            raise InvalidOrder(
                f"{order.anti_repeat_code} holds {hold.qty} units; a payment for {order.qty}"
            )
        if hold.state is HoldState.CONVERTED:
            raise _Duplicate("paid already")
        late = hold.state is not HoldState.HELD or hold.expires_at <= now
        if late:
            free = self._free_units(conn, order, now)
            if free < order.qty:
                raise _Refused(
                    f"the reservation expired ({hold.state}) and the stock is gone: {free} units "
                    f"free, {order.qty} owed; the payment is refunded"
                )
        conn.execute(schema.INSERT_ANTI_REPEAT, {"code": order.anti_repeat_code})
        converted = {"was": hold.state, "becomes": HoldState.CONVERTED}
        moved = conn.execute(MOVE_HOLD, {"hold_code": order.anti_repeat_code, **converted})
        if moved.rowcount != 1:
            raise HoldMoved
        # The guard: whatever the holds say, the stock column never goes below zero.
        deducted = conn.execute(
            schema.DEDUCT_STOCK_IF_ENOUGH, schema.deduction_params(order.sku, order.qty)
        )
        if deducted.rowcount == 0:
            raise _Refused("the guard refused: fewer units on hand than the hold's")
        schema.record_deduction(conn, order.order_id, order.sku, order.qty, self.name)
        return late

    def _cancel_in(self, conn: Connection, order: Order) -> HoldState:
        """Release the hold if it is held; returns the state it was found in."""
        self._lock(conn, "cancel", order.sku)
        hold = self._read_hold(conn, order)
        if hold is None:
            raise InvalidOrder(f"no reservation for {order.anti_repeat_code}: nothing to cancel")
        if hold.state is HoldState.CONVERTED:
            raise InvalidOrder(f"{order.anti_repeat_code} is paid: a return, not a cancel")
        if hold.state is HoldState.HELD:
            released = {"was": hold.state, "becomes": HoldState.RELEASED}
            moved = conn.execute(MOVE_HOLD, {"hold_code": order.anti_repeat_code, **released})
            if moved.rowcount != 1:
                raise HoldMoved  # not under the stock lock; run again (as after an error)
        return hold.state

    def _expire_in(self, conn: Connection, sku: str) -> int:
        now = self._lock(conn, "expire", sku)
        return int(conn.execute(EXPIRE_HOLDS, {"hold_sku": sku, "now": now}).rowcount)

    def _lock(self, conn: Connection, operation: str, sku: str) -> float:
        """Take the SKU's stock row lock, then read the clock: the instant the transaction
        decides at (a transaction that queued for the lock must not judge expiry by the time
        it started queueing)."""
        if self.checkpoint is not None:
            self.checkpoint(operation, "locking")
        locked = conn.execute(LOCK_STOCK, {"stock_sku": sku})
        if locked.rowcount != 1:
            raise InvalidOrder(f"unknown SKU {sku!r}")
        if self.checkpoint is not None:
            self.checkpoint(operation, "locked")
        return self._now(conn)

    def _now(self, conn: Connection) -> float:
        if self.clock is not None:
            return float(self.clock())
        return float(conn.execute(sa.select(db_now())).scalar_one())

    def _read_hold(self, conn: Connection, order: Order) -> Hold | None:
        row = conn.execute(READ_HOLD, {"hold_code": order.anti_repeat_code}).one_or_none()
        if row is None:
            return None
        return Hold(int(row.qty), HoldState(row.state), float(row.expires_at))

    def _free_units(self, conn: Connection, order: Order, now: float) -> int:
        """On hand minus the SKU's other unexpired holds at `now` (under the stock lock)."""
        num = conn.execute(READ_STOCK, {"stock_sku": order.sku}).scalar_one()
        held = conn.execute(
            HELD_BY_OTHERS,
            {"hold_sku": order.sku, "hold_code": order.anti_repeat_code, "now": now},
        ).scalar_one()
        return int(num) - int(held)

    def _hold_params(self, order: Order, expires_at: float) -> dict[str, object]:
        return {
            "hold_code": order.anti_repeat_code,
            "hold_order_id": order.order_id,
            "hold_sku": order.sku,
            "hold_qty": order.qty,
            "hold_expires_at": expires_at,
        }
