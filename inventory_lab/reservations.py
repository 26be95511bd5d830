"""Reservations against abandoned carts: hold at checkout and deduct on payment, or deduct at once.

The article deducts stock when the order is placed. A shop's checkout is not a sale yet: many
carts are abandoned between checkout and payment, and the units an immediate deduction took for
them are gone for good — sold to nobody, refused to the customers who came next — unless
something gives them back, which the app never does. The `reservation` design (its model lives
in `designs/reservation.py`, re-exported here) holds the units instead, with an expiry: an
abandoned cart's hold stops counting when its time is up and the units go back on the shelf.

`abandoned_carts` runs both policies on the same seeded carts and one hot SKU, sequentially on
simulated time (a `ManualClock`; a cart arrives every second, its payment after a seeded delay,
a fraction `late` of payments after the hold expired), so that a notebook runs it in a second:

- "immediate": `db_only`'s transaction at checkout; payment just confirms the sale;
- "reserve": a hold at checkout (`ttl_s`), converted on payment; the sweeper runs every `ttl_s`.

Per policy it reports units sold to paying customers, units abandoned carts still hold at the
end, units recovered (released by expiry, then sold again or still on the shelf), units unsold,
paying customers refused, late payments accepted and refused, and the checker's report over one
record per deduction attempt (`workload.RECORD_COLUMNS`), whose oversold must be 0. A hold is not
a deduction: a "reserve" run records its payments and the checkouts it refused.
"""

from __future__ import annotations

import math
import numbers
import random
from dataclasses import dataclass

import pandas as pd

from inventory_lab.checker import CheckReport, check_lab
from inventory_lab.designs.db_only import DbOnly
from inventory_lab.designs.reservation import (
    DEFAULT_TTL_S,
    Hold,
    HoldState,
    ManualClock,
    Reservation,
    held_units,
    reservations,
)
from inventory_lab.errors import InvalidInput
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome, Result
from inventory_lab.schema import MAX_STOCK
from inventory_lab.workload import RECORD_COLUMNS

__all__ = [
    "DEFAULT_TTL_S",
    "HOT_SKU",
    "POLICIES",
    "Cart",
    "CartsResult",
    "Hold",
    "HoldState",
    "ManualClock",
    "Reservation",
    "abandoned_carts",
    "carts_of",
    "held_units",
    "reservations",
]

HOT_SKU = "sku-hot"
POLICIES = ("immediate", "reserve")
ARRIVAL_S = 1.0  # simulated seconds between two carts
# Payment delays as fractions of the hold's lifetime, kept clear of its edge so that "on time"
# and "late" never depend on a float rounding at the instant of expiry.
ON_TIME = (0.05, 0.9)
LATE = (1.1, 2.0)


@dataclass(frozen=True)
class Cart:
    """One checkout of one unit of the hot SKU, and whether and when its payment arrives."""

    order: Order
    arrives_s: float
    pays_s: float | None  # None: abandoned, the payment never comes
    late: bool  # the payment arrives after the hold's ttl

    @property
    def pays(self) -> bool:
        return self.pays_s is not None


def carts_of(carts: int, *, abandon: float, late: float, ttl_s: float, seed: int) -> list[Cart]:
    """The seeded carts: each draws the same three numbers whatever the fractions, so that two
    runs that differ in `abandon` only differ in which carts are abandoned."""
    rng = random.Random(seed)
    made = []
    for i in range(carts):
        abandon_roll, late_roll, delay_roll = rng.random(), rng.random(), rng.random()
        arrives = i * ARRIVAL_S
        is_late = late_roll < late
        low, high = LATE if is_late else ON_TIME
        delay = ttl_s * (low + (high - low) * delay_roll)
        pays = None if abandon_roll < abandon else arrives + delay
        order = Order(f"cart-{seed}-{i:05d}", HOT_SKU, 1)
        made.append(Cart(order, arrives, pays, is_late and pays is not None))
    return made


@dataclass(frozen=True)
class CartsResult:
    """Both policies on the same carts: `frame` one row per policy, the checker's reports and
    the records it read."""

    frame: pd.DataFrame
    reports: dict[str, CheckReport]
    records: dict[str, pd.DataFrame]
    carts: int
    stock: int
    ttl_s: float

    def row(self, policy: str) -> dict[str, object]:
        return self.frame.set_index("policy").loc[policy].to_dict()

    def summary(self) -> dict[str, dict[str, object]]:
        """{policy: {measure: value}}: what a report prints."""
        return {policy: self.row(policy) for policy in self.frame["policy"]}


class _Tally:
    """What one policy's run counts, as it goes."""

    def __init__(self) -> None:
        self.rows: list[list[object]] = []
        self.sold = 0
        self.refused = 0  # paying customers refused, at checkout or at payment
        self.late_accepted = 0
        self.late_refused = 0

    def record(self, cart: Cart, at_s: float, result: Result) -> None:
        """One attempt as a client records it: attempt 0 of client 0, at `at_s` simulated."""
        order = cart.order
        answer = [result.outcome.value, result.detail]
        self.rows.append([order.order_id, order.sku, order.qty, 0, 0, at_s, at_s, 0.0, *answer])

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=RECORD_COLUMNS)


PAYMENT, CHECKOUT, SWEEP = 0, 1, 2  # at one instant, in this order


def _events(carts: list[Cart], sweep_every_s: float | None) -> list[tuple[float, int, int]]:
    """(time, kind, cart index) in time order; a sweep (cart index -1) every `sweep_every_s`
    until the last payment, if given."""
    events = [(cart.arrives_s, CHECKOUT, i) for i, cart in enumerate(carts)]
    events += [(c.pays_s, PAYMENT, i) for i, c in enumerate(carts) if c.pays_s is not None]
    if sweep_every_s is not None:
        end = max(t for t, _, _ in events)
        sweeps = range(1, int(end // sweep_every_s) + 1)
        events += [(k * sweep_every_s, SWEEP, -1) for k in sweeps]
    return sorted(events)


def _run_immediate(lab: Lab, carts: list[Cart], stock: int) -> tuple[_Tally, dict[str, int]]:
    design = DbOnly(lab)
    design.setup({HOT_SKU: stock})
    tally = _Tally()
    took: set[int] = set()
    for at_s, kind, i in _events(carts, sweep_every_s=None):
        cart = carts[i]
        if kind == CHECKOUT:
            result = design.deduct(cart.order)
            tally.record(cart, at_s, result)
            if result.outcome is Outcome.ACCEPTED:
                took.add(i)
            elif cart.pays:
                tally.refused += 1
        elif i in took:
            # the units left the shelf at checkout: a payment, late or not, confirms the sale
            tally.sold += cart.order.qty
            tally.late_accepted += cart.late
    abandoned = sum(carts[i].order.qty for i in took if not carts[i].pays)
    shelf = design.stock(HOT_SKU)
    return tally, {"held_by_abandoned": abandoned, "recovered": 0, "on_shelf": shelf}


def _run_reserve(
    lab: Lab, carts: list[Cart], stock: int, ttl_s: float
) -> tuple[_Tally, dict[str, int]]:
    clock = ManualClock()
    design = Reservation(lab, ttl_s=ttl_s, clock=clock)
    design.setup({HOT_SKU: stock})
    tally = _Tally()
    holding: set[int] = set()
    for at_s, kind, i in _events(carts, sweep_every_s=ttl_s):
        clock.advance(at_s - clock())
        cart = carts[i]
        if kind == SWEEP:
            design.expire()
        elif kind == CHECKOUT:
            result = design.hold(cart.order)
            if result.outcome is Outcome.ACCEPTED:
                holding.add(i)
            else:  # refused at checkout: the only checkouts that are deduction attempts
                tally.record(cart, at_s, result)
                tally.refused += cart.pays
        elif i in holding:
            result = design.pay(cart.order)
            tally.record(cart, at_s, result)
            if result.outcome is Outcome.ACCEPTED:
                tally.sold += cart.order.qty
                tally.late_accepted += cart.late
            else:
                tally.refused += 1
                tally.late_refused += cart.late
    design.drain()
    with lab.engine.connect() as conn:
        released = conn.execute(
            reservations.select().where(
                reservations.c.state.in_([HoldState.EXPIRED.value, HoldState.RELEASED.value])
            )
        ).all()
    held = held_units(lab.engine, clock=clock).get(HOT_SKU, 0)
    shelf = design.stock(HOT_SKU) - held
    recovered = sum(int(row.qty) for row in released)
    return tally, {"held_by_abandoned": held, "recovered": recovered, "on_shelf": shelf}


def _check_args(
    carts: object, stock: object, abandon: object, late: object, ttl_s: object, seed: object
) -> None:
    def whole(name: str, value: object, low: int, high: int) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Integral)
            or not low <= value <= high
        ):
            raise InvalidInput(f"{name} must be an integer in [{low}, {high}], got {value!r:.40}")

    def fraction(name: str, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise InvalidInput(f"{name} must be a fraction in [0, 1], got {value!r:.40}")

    whole("carts", carts, 1, 100_000)
    whole("stock", stock, 0, MAX_STOCK)
    whole("seed", seed, 0, 2**63 - 1)
    fraction("abandon", abandon)
    fraction("late", late)
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not 0 < ttl_s < math.inf:
        raise InvalidInput(f"ttl_s must be a positive finite number, got {ttl_s!r:.40}")


def abandoned_carts(
    lab: Lab,
    *,
    carts: int = 200,
    stock: int = 100,
    abandon: float = 0.4,
    late: float = 0.1,
    ttl_s: float = 30.0,
    seed: int = 7,
) -> CartsResult:
    """Both policies on the same seeded carts of one unit each, on one hot SKU with `stock`.

    A fraction `abandon` of carts never pays; of the payments, a fraction `late` arrives after
    the hold expired (between 1.1 and 2 ttl after checkout), the others within 0.9 ttl. Each
    policy starts from fresh tables (`setup`), so the lab is left with the "reserve" run's."""
    _check_args(carts, stock, abandon, late, ttl_s, seed)
    made = carts_of(carts, abandon=abandon, late=late, ttl_s=float(ttl_s), seed=seed)
    paying = sum(cart.pays for cart in made)
    rows, reports, records = [], {}, {}
    for policy in POLICIES:
        if policy == "immediate":
            tally, end = _run_immediate(lab, made, stock)
        else:
            tally, end = _run_reserve(lab, made, stock, float(ttl_s))
        frame = tally.frame()
        # checked before the next policy's setup drops the tables it reads
        report = check_lab(lab, {HOT_SKU: stock}, frame, redis_view=False)
        rows.append(
            {
                "policy": policy,
                "carts": carts,
                "paying": paying,
                "sold": tally.sold,
                "held_by_abandoned": end["held_by_abandoned"],
                "recovered": end["recovered"],
                "unsold": stock - tally.sold,
                "on_shelf": end["on_shelf"],
                "refused_customers": tally.refused,
                "late_accepted": tally.late_accepted,
                "late_refused": tally.late_refused,
                "oversold": report.oversold,
                "checker_ok": report.ok,
            }
        )
        reports[policy], records[policy] = report, frame
    return CartsResult(pd.DataFrame(rows), reports, records, carts, stock, float(ttl_s))
