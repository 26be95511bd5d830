"""Checkouts: the value, and every multi-line design taking a checkout whole or not at all."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inventory_lab import keys, schema
from inventory_lab.checker import check_lab
from inventory_lab.checkout import MAX_LINES, Checkout
from inventory_lab.designs import design_class
from inventory_lab.designs.task_engine import TaskEngineDesign
from inventory_lab.errors import InvalidOrder, LabError
from inventory_lab.orders import Order, Outcome
from inventory_lab.redis_stock import read_redis_stock
from inventory_lab.saga import saga_window
from inventory_lab.workload import Attempt, Workload, run_workload

MULTI_LINE = ["db_only", "two_gate_lua", "task_engine"]
STOCK = {"sku-a": 5, "sku-b": 1, "sku-c": 3}


def test_a_checkout_refuses_bad_lines_with_a_clear_error():
    with pytest.raises(InvalidOrder, match="at least one line"):
        Checkout("o-1", ())
    with pytest.raises(InvalidOrder, match="each SKU once"):
        Checkout.of("o-1", [("sku-a", 1), ("sku-a", 2)])
    with pytest.raises(InvalidOrder, match="belongs to order"):
        Checkout("o-1", (Order("o-2", "sku-a", 1),))
    with pytest.raises(InvalidOrder, match="quantity must be positive"):
        Checkout.of("o-1", {"sku-a": 0})
    with pytest.raises(InvalidOrder, match="at most"):
        Checkout.of("o-1", {f"s{i}": 1 for i in range(MAX_LINES + 1)})


def test_locking_order_is_by_sku_unless_asked_for_the_cart_order():
    cart = Checkout.of("o-1", [("sku-c", 1), ("sku-a", 1), ("sku-b", 1)])
    assert [line.sku for line in cart.locking_order()] == ["sku-a", "sku-b", "sku-c"]
    assert [line.sku for line in cart.locking_order(ordered=False)] == ["sku-c", "sku-a", "sku-b"]


@pytest.fixture(params=MULTI_LINE)
def design(request, paired_lab):
    options = {"workers": 2, "shards": 2} if request.param == "task_engine" else {}
    instance = design_class(request.param)(paired_lab, **options)
    instance.setup(STOCK)
    yield instance
    instance.close()


def _ledger(design) -> list[tuple[str, str, int]]:
    with design.lab.engine.connect() as conn:
        rows = conn.execute(
            sa.select(schema.orders.c.order_id, schema.orders.c.sku, schema.orders.c.qty)
        )
        return sorted(tuple(row) for row in rows)


def test_a_checkout_is_taken_whole(design):
    result = design.place(Checkout.of("o-1", {"sku-c": 2, "sku-a": 1}))
    design.drain()
    assert result.outcome is Outcome.ACCEPTED, result
    assert _ledger(design) == [("o-1", "sku-a", 1), ("o-1", "sku-c", 2)]
    assert {sku: design.stock(sku) for sku in STOCK} == {"sku-a": 4, "sku-b": 1, "sku-c": 1}


def test_a_checkout_with_one_short_line_takes_nothing(design):
    result = design.place(Checkout.of("o-1", {"sku-a": 2, "sku-b": 2}))
    design.drain()
    assert result.outcome is Outcome.SOLD_OUT
    assert "sku-b" in result.detail  # the line that was short is named
    assert _ledger(design) == []
    assert {sku: design.stock(sku) for sku in STOCK} == STOCK
    with design.lab.engine.connect() as conn:
        assert schema.read_stock(conn) == STOCK
    # the refused lines' codes are free: the same cart, once it fits, goes through
    assert design.place(Checkout.of("o-1", {"sku-a": 2, "sku-b": 1})).outcome is Outcome.ACCEPTED


def test_a_resent_checkout_is_a_duplicate_and_deducts_nothing_more(design):
    cart = Checkout.of("o-1", {"sku-a": 1, "sku-c": 1})
    assert design.place(cart).outcome is Outcome.ACCEPTED
    assert design.place(cart).outcome is Outcome.DUPLICATE
    design.drain()
    assert len(_ledger(design)) == 2


def test_bad_input_in_any_line_refuses_the_checkout_and_changes_nothing(design):
    before = _ledger(design), read_redis_stock(design.lab, sorted(STOCK))
    with pytest.raises(InvalidOrder, match="unknown SKU"):
        design.place(Checkout.of("o-1", {"sku-a": 1, "sku-zzz": 1}))
    with pytest.raises(InvalidOrder, match="expected a Checkout"):
        design.place(Order("o-1", "sku-a", 1))
    assert (_ledger(design), read_redis_stock(design.lab, sorted(STOCK))) == before


def test_single_line_designs_refuse_a_checkout(default_lab):
    naive = design_class("two_gate")(default_lab)
    naive.setup(STOCK)
    with pytest.raises(LabError, match="one line per order"):
        naive.place(Checkout.of("o-1", {"sku-a": 1}))


@pytest.mark.parametrize("name", MULTI_LINE)
def test_many_clients_with_multi_line_orders_keep_every_invariant(name, paired_lab):
    workload = Workload(orders=120, skus=4, stock=25, lines=3, max_qty=2, retries=0.2, seed=5)
    options = {"workers": 2} if name == "task_engine" else {}
    instance = design_class(name)(paired_lab, **options)
    try:
        instance.setup(workload.initial_stock())
        records = run_workload(instance, workload.attempts(), concurrency=6)
        instance.drain()
    finally:
        instance.close()
    assert set(records.groupby(["order_id", "attempt"]).size()) == {3}  # each line recorded
    report = check_lab(
        paired_lab, workload.initial_stock(), records, redis_view=instance.uses_redis
    )
    assert report.ok, report.summary()
    assert report.partial == 0
    assert (records["outcome"] == "accepted").any() and (records["outcome"] == "sold_out").any()


# --- the saga: per-line gates, as a cluster needs them ----------------------------------------


@pytest.mark.parametrize("per_line_gate", [False, True])
def test_the_saga_refuses_a_buyer_that_one_script_serves(redis_lab, per_line_gate):
    """Cart [a, b] with b sold out, and a buyer of the last a arriving while the cart is between
    its lines: the saga has taken a (to give it back), so the buyer is refused although the unit
    stays unsold — a false sold-out the checker counts. One script never takes a at all."""
    run = saga_window(redis_lab, per_line_gate=per_line_gate)
    assert run.cart is Outcome.SOLD_OUT
    assert run.report.ok and run.report.partial == 0
    assert redis_lab.redis.hget(keys.stock_key(redis_lab.namespace, "sku-a"), "inStock") == (
        "1" if per_line_gate else "0"
    )
    if per_line_gate:
        assert run.buyer is Outcome.SOLD_OUT
        assert run.compensations == 1
        assert run.report.false_sold_out == 1  # the unit the buyer was refused is still there
    else:
        assert run.buyer is Outcome.ACCEPTED
        assert run.compensations == 0 and run.report.false_sold_out == 0
    assert run.summary()["false sold-out units"] == run.report.false_sold_out


# --- the property: never partially deducted ----------------------------------------------------

carts = st.lists(
    st.dictionaries(st.sampled_from(sorted(STOCK)), st.integers(1, 3), min_size=1, max_size=3),
    min_size=1,
    max_size=6,
)


@pytest.mark.parametrize("name", MULTI_LINE)
@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(carts=carts, per_line_gate=st.booleans())
def test_no_checkout_is_ever_partially_deducted(default_lab, name, carts, per_line_gate):
    options = {} if name == "db_only" else {"per_line_gate": per_line_gate}
    if name == "task_engine":
        options.update(workers=1, shards=2)
    design = design_class(name)(default_lab, **options)
    try:
        design.setup(STOCK)
        attempts = [Attempt(Checkout.of(f"o-{i}", cart), 0) for i, cart in enumerate(carts)]
        records = run_workload(design, attempts, concurrency=3)
        design.drain()
    finally:
        design.close()
    report = check_lab(default_lab, STOCK, records, redis_view=design.uses_redis)
    assert report.partial == 0 and report.ok, report.summary()
    ledger = {(o, s) for o, s, _ in _ledger(design)}
    for order_id, lines in records.groupby("order_id"):
        taken = {(order_id, sku) in ledger for sku in lines["sku"]}
        assert len(taken) == 1, f"{order_id} taken in part"
        assert taken == {lines["outcome"].iloc[0] == "accepted"}
    if isinstance(design, TaskEngineDesign):
        assert design.store.counts().get("dead", 0) == 0
