"""Reservations on every database backend: holds, expiry on an injected clock, payments on time
and late, cancel, the sweeper, lost acknowledgements, forced races, and the abandoned carts."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
import sqlalchemy as sa

from inventory_lab import (
    InvalidOrder,
    Order,
    Outcome,
    Result,
    Workload,
    check_lab,
    run_workload,
    schema,
)
from inventory_lab.designs import design_class
from inventory_lab.errors import InvalidInput
from inventory_lab.faults import DbOutage, lost_commit_ack
from inventory_lab.reservations import (
    HoldState,
    ManualClock,
    Reservation,
    abandoned_carts,
    carts_of,
    held_units,
    reservations,
)
from inventory_lab.resolve import OutcomeUnknown
from inventory_lab.workload import RECORD_COLUMNS

TTL = 60.0


@pytest.fixture
def clock():
    return ManualClock(1_000.0)


@pytest.fixture
def shop(lab, clock):
    """A reservation design on simulated time, with 5 units of sku-1 and 2 of sku-2."""
    design = Reservation(lab, ttl_s=TTL, clock=clock)
    design.setup(INITIAL)
    return design


def _state(lab):
    """Everything an operation could touch: stock, anti-repeat codes, ledger, reservations."""
    with lab.engine.connect() as conn:
        return (
            schema.read_stock(conn),
            sorted(conn.execute(sa.select(schema.anti_repeat.c.code)).scalars()),
            conn.execute(sa.select(sa.func.count()).select_from(schema.orders)).scalar(),
            sorted(tuple(row) for row in conn.execute(sa.select(reservations)).all()),
        )


def _ledger(lab, order_id):
    with lab.engine.connect() as conn:
        query = sa.select(schema.orders.c.qty).where(schema.orders.c.order_id == order_id)
        return conn.execute(query).scalars().all()


def _records(*answered):
    """(order, result) pairs as the checker reads client records."""
    rows = [
        [order.order_id, order.sku, order.qty, 0, 0, 0.0, 0.0, 0.0, result.outcome.value, ""]
        for order, result in answered
    ]
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


INITIAL = {"sku-1": 5, "sku-2": 2}


# --- bad input ---------------------------------------------------------------------------------


def test_the_design_is_registered():
    assert design_class("reservation") is Reservation
    assert "hold at checkout" in Reservation.summary


def test_bad_input_is_refused_and_changes_nothing(shop, clock):
    held = Order("o-1", "sku-1", 2)
    assert shop.hold(held).outcome is Outcome.ACCEPTED
    before = _state(shop.lab)
    for qty in (0, -1, 1.0, True, "1"):
        with pytest.raises(InvalidOrder, match="quantity"):
            Order("o-2", "sku-1", qty)
    for operation in (shop.hold, shop.pay, shop.cancel, shop.deduct):
        with pytest.raises(InvalidOrder, match="unknown SKU"):
            operation(Order("o-2", "sku-404", 1))
        with pytest.raises(InvalidOrder, match="an Order"):
            operation("o-1:sku-1")
    with pytest.raises(InvalidOrder, match="unknown SKU"):
        shop.available("sku-404")
    for operation in (shop.pay, shop.cancel):
        with pytest.raises(InvalidOrder, match="no reservation"):
            operation(Order("o-never", "sku-1", 1))
    with pytest.raises(InvalidOrder, match="holds 2 units; a payment for 3"):
        shop.pay(Order("o-1", "sku-1", 3))
    for ttl in (0, -1.0, float("inf"), float("nan"), True, "60"):
        with pytest.raises(InvalidInput, match="ttl_s"):
            shop.hold(Order("o-3", "sku-1", 1), ttl_s=ttl)
        with pytest.raises(InvalidInput, match="ttl_s"):
            Reservation(shop.lab, ttl_s=ttl)
    with pytest.raises(InvalidInput, match="clock"):
        Reservation(shop.lab, clock=1.0)
    for step in (-1.0, float("inf"), float("nan"), None):
        with pytest.raises(InvalidInput, match="advances"):
            clock.advance(step)
    assert clock() == 1_000.0
    assert _state(shop.lab) == before


def test_a_paid_order_cannot_be_cancelled(shop):
    order = Order("o-1", "sku-1", 1)
    assert shop.deduct(order).outcome is Outcome.ACCEPTED
    before = _state(shop.lab)
    with pytest.raises(InvalidOrder, match="is paid"):
        shop.cancel(order)
    assert _state(shop.lab) == before


def test_another_designs_setup_leaves_no_hold_behind(shop, clock):
    """Regression: the holds' table was the design's own, and `schema.reset` (any design's
    setup) left it: an old converted hold made a fresh order answer "paid already"."""
    order = Order("o-1", "sku-1", 1)
    assert shop.deduct(order).outcome is Outcome.ACCEPTED
    design_class("db_only")(shop.lab).setup({"sku-1": 3})  # a new run, another design
    attached = Reservation(shop.lab, clock=clock)
    assert attached.reservation(order) is None
    assert attached.deduct(order).outcome is Outcome.ACCEPTED
    assert attached.reservation(order).state is HoldState.CONVERTED
    assert attached.stock("sku-1") == 2


def test_a_design_attached_to_its_own_tables_sees_their_holds(shop, clock):
    assert shop.hold(Order("o-1", "sku-2", 2)).outcome is Outcome.ACCEPTED
    attached = Reservation(shop.lab, clock=clock)
    assert attached.available("sku-2") == 0
    assert attached.hold(Order("o-2", "sku-2", 1)).outcome is Outcome.SOLD_OUT


def test_bad_experiment_arguments_are_refused(default_lab):
    good = dict(carts=10, stock=5, abandon=0.5, late=0.1, ttl_s=5.0, seed=1)
    bad = [
        ("carts", 0),
        ("carts", 2.5),
        ("stock", -1),
        ("abandon", 1.5),
        ("late", -0.1),
        ("ttl_s", 0),
        ("seed", None),
    ]
    for name, value in bad:
        with pytest.raises(InvalidInput, match=name):
            abandoned_carts(default_lab, **{**good, name: value})


# --- holds and expiry --------------------------------------------------------------------------


def test_a_hold_reduces_availability_not_the_stock_column(shop):
    assert shop.hold(Order("o-1", "sku-1", 3)).outcome is Outcome.ACCEPTED
    assert shop.stock("sku-1") == 5 and shop.available("sku-1") == 2
    assert shop.held() == {"sku-1": 3} == held_units(shop.lab.engine, clock=shop.clock)
    refused = shop.hold(Order("o-2", "sku-1", 3))
    assert refused.outcome is Outcome.SOLD_OUT and "2 units free" in refused.detail
    assert shop.hold(Order("o-3", "sku-1", 2)).outcome is Outcome.ACCEPTED
    assert shop.available("sku-1") == 0 and shop.available("sku-2") == 2
    with shop.lab.engine.connect() as conn:
        assert schema.read_stock(conn) == {"sku-1": 5, "sku-2": 2}
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.orders)).scalar() == 0
    duplicate = shop.hold(Order("o-1", "sku-1", 3))
    assert duplicate.outcome is Outcome.DUPLICATE and "held" in duplicate.detail


def test_expiry_returns_availability_without_a_sweeper(shop, clock):
    first = Order("o-1", "sku-1", 5)
    assert shop.hold(first).outcome is Outcome.ACCEPTED
    assert shop.hold(Order("o-2", "sku-1", 1)).outcome is Outcome.SOLD_OUT
    clock.advance(TTL - 1)
    assert shop.available("sku-1") == 0  # not yet
    clock.advance(1)  # expires_at reached: the hold stops counting at that instant
    assert shop.available("sku-1") == 5 and shop.held() == {}
    assert shop.hold(Order("o-2", "sku-1", 5)).outcome is Outcome.ACCEPTED
    # nobody swept: the first hold's row still says held, and it counts for nothing
    assert shop.reservation(first)[1] is HoldState.HELD
    assert shop.held() == {"sku-1": 5}


def test_holds_on_the_database_clock_expire_by_the_servers_time(lab):
    design = Reservation(lab, ttl_s=3600.0)  # no clock injected: the server's clock
    design.setup({"sku-1": 2})
    assert design.hold(Order("o-1", "sku-1", 1)).outcome is Outcome.ACCEPTED
    assert design.hold(Order("o-2", "sku-1", 1), ttl_s=1e-9).outcome is Outcome.ACCEPTED
    # the second hold expired a nanosecond after its transaction read the server's clock
    assert held_units(lab.engine) == {"sku-1": 1} == design.held()
    assert design.expire() == 1 and design.expire() == 0
    qty, state, expires_at = design.reservation(Order("o-1", "sku-1", 1))
    assert (qty, state) == (1, HoldState.HELD) and expires_at > 1.6e9  # epoch seconds


def test_the_sweeper_marks_only_expired_holds_and_is_idempotent(shop, clock):
    early, late = Order("o-1", "sku-1", 1), Order("o-2", "sku-2", 1)
    paid = Order("o-3", "sku-1", 1)
    assert shop.hold(early).outcome is Outcome.ACCEPTED
    assert shop.deduct(paid).outcome is Outcome.ACCEPTED
    clock.advance(TTL / 2)
    assert shop.hold(late).outcome is Outcome.ACCEPTED
    clock.advance(TTL / 2)
    assert shop.expire() == 1
    assert shop.expire() == 0
    assert shop.reservation(early)[1] is HoldState.EXPIRED
    assert shop.reservation(late)[1] is HoldState.HELD
    assert shop.reservation(paid)[1] is HoldState.CONVERTED
    shop.drain()  # the sweeper again: nothing more has expired
    assert shop.reservation(late)[1] is HoldState.HELD
    assert shop.stock("sku-1") == 4 and shop.pending() == {}


# --- payments ----------------------------------------------------------------------------------


def test_a_payment_converts_exactly_once(shop):
    order = Order("o-1", "sku-1", 2)
    assert shop.hold(order).outcome is Outcome.ACCEPTED
    paid = shop.pay(order)
    assert paid.outcome is Outcome.ACCEPTED and paid.detail == "hold converted"
    assert shop.stock("sku-1") == 3 and shop.available("sku-1") == 3
    again = shop.pay(order)
    assert again.outcome is Outcome.DUPLICATE and "paid" in again.detail
    assert shop.deduct(order).outcome is Outcome.DUPLICATE
    assert shop.hold(order).outcome is Outcome.DUPLICATE
    assert shop.stock("sku-1") == 3 and _ledger(shop.lab, "o-1") == [2]
    assert shop.reservation(order)[1] is HoldState.CONVERTED
    report = check_lab(shop.lab, INITIAL, _records((order, paid), (order, again)), redis_view=False)
    assert report.ok and report.false_duplicates == 0


def test_a_resent_checkout_completes_the_payment_it_still_owes(shop):
    order = Order("o-1", "sku-1", 1)
    assert shop.hold(order).outcome is Outcome.ACCEPTED  # the payment never came back
    assert shop.deduct(order).outcome is Outcome.ACCEPTED  # the resend pays for the hold
    assert shop.deduct(order).outcome is Outcome.DUPLICATE
    assert _ledger(shop.lab, "o-1") == [1] and shop.stock("sku-1") == 4


def test_cancel_releases_then_a_payment_takes_the_late_path(shop):
    order = Order("o-1", "sku-1", 2)
    assert shop.hold(order).outcome is Outcome.ACCEPTED
    cancelled = shop.cancel(order)
    assert cancelled.outcome is Outcome.ACCEPTED and cancelled.detail == "released"
    assert shop.available("sku-1") == 5 and shop.stock("sku-1") == 5
    assert shop.cancel(order).outcome is Outcome.DUPLICATE  # released already
    paid = shop.pay(order)
    assert paid.outcome is Outcome.ACCEPTED and paid.detail.startswith("late payment")
    assert shop.stock("sku-1") == 3 and _ledger(shop.lab, "o-1") == [2]


def test_a_late_payment_is_accepted_while_the_units_are_free(shop, clock):
    order = Order("o-1", "sku-2", 2)
    assert shop.hold(order).outcome is Outcome.ACCEPTED
    clock.advance(TTL + 1)
    assert shop.hold(Order("o-2", "sku-1", 5)).outcome is Outcome.ACCEPTED  # another SKU
    paid = shop.pay(order)
    assert paid.outcome is Outcome.ACCEPTED and paid.detail.startswith("late payment")
    assert shop.stock("sku-2") == 0 and _ledger(shop.lab, "o-1") == [2]
    assert shop.expire() == 0  # converted: nothing for the sweeper


@pytest.mark.parametrize("swept", [False, True])
def test_a_late_payment_whose_units_are_gone_is_refused_and_never_oversells(shop, clock, swept):
    first, second = Order("o-1", "sku-2", 2), Order("o-2", "sku-2", 1)
    assert shop.hold(first).outcome is Outcome.ACCEPTED
    clock.advance(TTL)
    if swept:
        assert shop.expire() == 1
    assert shop.hold(second).outcome is Outcome.ACCEPTED  # one of the two freed units
    before = _state(shop.lab)
    refused = shop.pay(first)
    assert refused.outcome is Outcome.SOLD_OUT
    assert "expired" in refused.detail and "refunded" in refused.detail
    assert _state(shop.lab) == before  # nothing written
    paid = shop.pay(second)
    assert paid.outcome is Outcome.ACCEPTED
    records = _records((first, refused), (second, paid))
    report = check_lab(shop.lab, INITIAL, records, redis_view=False)
    assert report.oversold == 0 and report.ok and shop.stock("sku-2") == 1


# --- unknown outcomes: an error after the COMMIT was sent ---------------------------------------


def test_a_lost_acknowledgement_is_resolved_from_the_database(shop):
    order = Order("o-1", "sku-1", 2)
    with lost_commit_ack(shop.lab.engine) as fault:
        held = shop.hold(order)
    assert fault.struck == 1
    assert held.outcome is Outcome.ACCEPTED and "the hold committed" in held.detail
    assert shop.reservation(order)[1] is HoldState.HELD
    with lost_commit_ack(shop.lab.engine) as fault:
        paid = shop.pay(order)
    assert fault.struck == 1
    assert paid.outcome is Outcome.ACCEPTED and "it committed" in paid.detail
    assert _ledger(shop.lab, "o-1") == [2] and shop.stock("sku-1") == 3
    other = Order("o-2", "sku-1", 1)
    assert shop.hold(other).outcome is Outcome.ACCEPTED
    with lost_commit_ack(shop.lab.engine) as fault:
        cancelled = shop.cancel(other)
    assert fault.struck == 1
    assert cancelled.outcome is Outcome.ACCEPTED and "reply lost" in cancelled.detail
    assert shop.reservation(other)[1] is HoldState.RELEASED


def test_an_outage_leaves_the_outcome_unknown_and_changes_nothing(shop):
    order = Order("o-1", "sku-1", 1)
    assert shop.hold(Order("o-2", "sku-1", 1)).outcome is Outcome.ACCEPTED
    before = _state(shop.lab)
    with DbOutage(shop.lab.engine) as outage:
        outage.active.set()
        for operation, target in [(shop.hold, order), (shop.pay, order), (shop.cancel, order)]:
            with pytest.raises(OutcomeUnknown):
                operation(target)
        outage.active.clear()
    assert _state(shop.lab) == before


# --- races, forced ------------------------------------------------------------------------------


def _first_then_second(first: str, second: str):
    """A checkpoint that forces the order: `second` waits, before it asks for the stock lock,
    until `first` holds it; `first` keeps it until `second` is at the door. `second` then queues
    behind `first`'s transaction (or comes just after it): whatever the machine's speed."""
    first_locked, second_at_the_door = threading.Event(), threading.Event()

    def checkpoint(operation: str, step: str) -> None:
        if operation == second and step == "locking":
            second_at_the_door.set()
            assert first_locked.wait(30), f"{first} never took the lock"
        if operation == first and step == "locked":
            first_locked.set()
            assert second_at_the_door.wait(30), f"{second} never came"

    return checkpoint


def _race(shop, checkpoint, order):
    """The sweeper and `order`'s payment, started together; returns (swept, payment's result)."""
    shop.checkpoint = checkpoint
    start = threading.Barrier(2)
    answers: dict[str, object] = {}

    def run(name, operation):
        start.wait(30)
        try:
            answers[name] = operation()
        except BaseException as exc:  # shown by the assertion below
            answers[name] = exc

    threads = [
        threading.Thread(target=run, args=("swept", shop.expire)),
        threading.Thread(target=run, args=("paid", lambda: shop.pay(order))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    shop.checkpoint = None
    assert isinstance(answers["swept"], int) and isinstance(answers["paid"], Result), answers
    return answers["swept"], answers["paid"]


@pytest.mark.parametrize("first", ["expire", "pay"])
def test_a_sweeper_and_a_late_payment_with_free_stock_never_both_win(shop, clock, first):
    order = Order("o-1", "sku-2", 2)
    assert shop.hold(order).outcome is Outcome.ACCEPTED
    clock.advance(TTL + 1)
    second = "pay" if first == "expire" else "expire"
    swept, paid = _race(shop, _first_then_second(first, second), order)
    # the payment is late either way, and the units are free: it converts, once
    assert paid.outcome is Outcome.ACCEPTED and paid.detail.startswith("late payment")
    assert shop.reservation(order)[1] is HoldState.CONVERTED
    assert _ledger(shop.lab, "o-1") == [2] and shop.stock("sku-2") == 0
    # the sweeper marked the hold only if it came first; it never expires a converted hold
    assert swept == (1 if first == "expire" else 0)
    assert shop.expire() == 0


@pytest.mark.parametrize("first", ["expire", "pay"])
def test_a_sweeper_and_a_late_payment_whose_units_were_resold_never_both_win(shop, clock, first):
    order, buyer = Order("o-1", "sku-2", 2), Order("o-2", "sku-2", 2)
    assert shop.hold(order).outcome is Outcome.ACCEPTED
    clock.advance(TTL)
    assert shop.hold(buyer).outcome is Outcome.ACCEPTED  # the freed units, held again
    second = "pay" if first == "expire" else "expire"
    swept, paid = _race(shop, _first_then_second(first, second), order)
    assert paid.outcome is Outcome.SOLD_OUT and "refunded" in paid.detail
    assert swept == 1 and shop.reservation(order)[1] is HoldState.EXPIRED
    assert shop.pay(buyer).outcome is Outcome.ACCEPTED
    assert _ledger(shop.lab, "o-1") == [] and _ledger(shop.lab, "o-2") == [2]
    assert shop.stock("sku-2") == 0


@pytest.mark.parametrize("first", ["pay", "cancel"])
def test_a_payment_racing_its_own_cancel_is_converted_once(shop, first):
    order = Order("o-1", "sku-2", 2)
    second = "cancel" if first == "pay" else "pay"

    def cancel() -> object:
        try:
            return shop.cancel(order)
        except InvalidOrder as refused:  # paid already: a return, not a cancel
            return refused

    assert shop.hold(order).outcome is Outcome.ACCEPTED
    shop.checkpoint = _first_then_second(first, second)
    answers: dict[str, object] = {}
    threads = [
        threading.Thread(target=lambda: answers.update(paid=shop.pay(order))),
        threading.Thread(target=lambda: answers.update(cancelled=cancel())),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    shop.checkpoint = None
    paid = answers["paid"]
    if first == "pay":
        assert paid.detail == "hold converted"
        assert isinstance(answers["cancelled"], InvalidOrder)  # paid: a return
    else:
        assert answers["cancelled"].outcome is Outcome.ACCEPTED
        assert paid.detail.startswith("late payment")  # released, then bought again
    assert _ledger(shop.lab, "o-1") == [2] and shop.stock("sku-2") == 0


# --- concurrency ---------------------------------------------------------------------------------


def test_concurrent_checkouts_sell_exactly_the_stock_and_never_oversell(lab):
    """Clients that pay at once (`deduct`), some resending: every unit is sold, none twice."""
    workload = Workload(orders=60, skus=1, stock=10, retries=0.3, seed=3)
    design = Reservation(lab, clock=ManualClock())
    design.setup(workload.initial_stock())
    records = run_workload(design, workload.attempts(), concurrency=8)
    design.drain()
    report = check_lab(lab, workload.initial_stock(), records, redis_view=False)
    assert report.ok and report.oversold == 0 and report.false_duplicates == 0
    # no hold was abandoned, so a refusal only ever met units held by buyers who then paid
    assert design.stock("sku-0001") == 0
    assert int(report.per_sku["ledger_units"].sum()) == 10
    assert (records["outcome"] == Outcome.ACCEPTED.value).sum() >= 10


def test_holds_payments_cancels_expiry_and_the_sweeper_in_threads_never_oversell(lab):
    """Threads hold one SKU with little stock; time passes in each of them, some pay at once,
    some abandon, some cancel and pay, some move the shared clock past every open hold and pay
    late; a sweeper thread runs beside them. Who gets the units is up to the scheduler, so the
    test asserts what must hold on every schedule: the checker finds no oversell, the stock
    column equals initial minus the ledger, every unit a payer was told is sold has its ledger
    row, and the unexpired holds never exceed what is on hand. (The outcome of each path, one
    at a time, is asserted by the tests above.)"""
    clock = ManualClock(0.0)
    design = Reservation(lab, ttl_s=TTL, clock=clock)
    initial = {"sku-1": 4}
    design.setup(initial)
    threads_n, per_thread = 6, 8
    start = threading.Barrier(threads_n + 1)
    done = threading.Event()
    rows: list[tuple[Order, Result]] = []
    rows_lock = threading.Lock()
    failures: list[BaseException] = []

    def shopper(t: int) -> None:
        start.wait(30)
        for i in range(per_thread):
            clock.advance(TTL / 4)  # abandoned holds expire after a few steps of anyone's
            order = Order(f"t{t}-{i}", "sku-1", 1 + (t + i) % 2)
            if design.hold(order).outcome is not Outcome.ACCEPTED:
                continue
            plan = (t + i) % 4
            if plan == 1:
                continue  # abandoned
            if plan == 2:
                clock.advance(TTL)  # every hold open now is expired: this payment is late
            if plan == 3:
                design.cancel(order)
            paid = design.pay(order)
            with rows_lock:
                rows.append((order, paid))

    def sweeper() -> None:
        start.wait(30)
        while not done.is_set():
            design.expire()

    def guarded(target, *args) -> None:
        try:
            target(*args)
        except BaseException as exc:
            failures.append(exc)

    shoppers = [threading.Thread(target=guarded, args=(shopper, t)) for t in range(threads_n)]
    sweeping = threading.Thread(target=guarded, args=(sweeper,))
    for thread in [*shoppers, sweeping]:
        thread.start()
    for thread in shoppers:
        thread.join(120)
    done.set()
    sweeping.join(60)
    assert not failures, failures
    report = check_lab(lab, initial, _records(*rows), redis_view=False)
    assert report.oversold == 0 and report.ok, report.summary()
    sold = int(report.per_sku["ledger_units"].sum())
    assert sold <= 4 and design.stock("sku-1") == 4 - sold
    accepted = sum(order.qty for order, result in rows if result.outcome is Outcome.ACCEPTED)
    assert accepted == sold
    assert design.held().get("sku-1", 0) <= design.stock("sku-1")


# --- the abandoned carts ------------------------------------------------------------------------


def test_the_carts_are_seeded_and_the_fractions_only_pick_which_carts():
    made = carts_of(400, abandon=0.4, late=0.1, ttl_s=10.0, seed=5)
    assert made == carts_of(400, abandon=0.4, late=0.1, ttl_s=10.0, seed=5)
    abandoned = [cart for cart in made if not cart.pays]
    late = [cart for cart in made if cart.late]
    assert 0.3 < len(abandoned) / 400 < 0.5 and 0.03 < len(late) / (400 - len(abandoned)) < 0.2
    assert all(cart.pays_s - cart.arrives_s > 10.0 for cart in late)
    on_time = [cart for cart in made if cart.pays and not cart.late]
    # arrives_s / pays_s are the seeded schedule's instants (drawn, not clock readings): the
    # ttl's definition of "late", whatever the machine's speed
    assert all(0 < cart.pays_s - cart.arrives_s < 10.0 for cart in on_time)
    fewer = carts_of(400, abandon=0.2, late=0.1, ttl_s=10.0, seed=5)
    # the same rolls: a cart abandoned at 20% is abandoned at 40% too
    assert {c.order for c in fewer if not c.pays} <= {c.order for c in abandoned}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reserving_recovers_abandoned_stock_and_sells_more(lab, seed):
    result = abandoned_carts(lab, carts=60, stock=30, abandon=0.5, late=0.1, ttl_s=8.0, seed=seed)
    immediate, reserve = result.row("immediate"), result.row("reserve")
    assert reserve["sold"] > immediate["sold"]
    assert reserve["recovered"] > 0 and immediate["recovered"] == 0
    assert immediate["held_by_abandoned"] > 0
    assert reserve["refused_customers"] < immediate["refused_customers"]
    for row in (immediate, reserve):
        assert row["oversold"] == 0 and row["checker_ok"], row
        assert row["sold"] + row["held_by_abandoned"] + row["on_shelf"] == 30, row
        assert row["unsold"] == 30 - row["sold"]
    assert immediate["late_refused"] == 0  # its units left the shelf at checkout
    for policy in ("immediate", "reserve"):
        assert result.reports[policy].oversold == 0
        assert list(result.records[policy].columns) == RECORD_COLUMNS
    assert set(result.summary()) == {"immediate", "reserve"}


def test_without_abandoned_carts_the_two_policies_sell_the_same(default_lab):
    result = abandoned_carts(default_lab, carts=40, stock=25, abandon=0.0, late=0.0, ttl_s=5.0)
    immediate, reserve = result.row("immediate"), result.row("reserve")
    assert immediate["sold"] == reserve["sold"] == 25
    assert reserve["recovered"] == 0 and reserve["late_accepted"] == 0
    assert immediate["refused_customers"] == reserve["refused_customers"] == 15
