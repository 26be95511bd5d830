"""The DB-side designs on every database backend: behaviour, bad input, and the race."""

import pytest
import sqlalchemy as sa

from inventory_lab import (
    InvalidOrder,
    Order,
    Outcome,
    Workload,
    check_lab,
    design_class,
    design_names,
    run_workload,
    schema,
)
from inventory_lab.designs import BaseDesign, Design, register
from inventory_lab.designs.base import implements_design
from inventory_lab.designs.db_only import DbOnly
from inventory_lab.designs.naive import Naive
from inventory_lab.errors import LabError


def _state(lab):
    """Everything a deduction could touch, to show that bad input changed none of it."""
    with lab.engine.connect() as conn:
        stock = schema.read_stock(conn)
        codes = conn.execute(sa.select(sa.func.count()).select_from(schema.anti_repeat)).scalar()
        ledger = conn.execute(sa.select(sa.func.count()).select_from(schema.orders)).scalar()
    return stock, codes, ledger


def test_registry_lists_the_designs_and_refuses_unknown_names():
    assert {"naive", "db_only"} <= set(design_names())
    assert design_class("db_only") is DbOnly
    with pytest.raises(LabError, match="unknown design 'nope'"):
        design_class("nope")


def test_every_registered_design_implements_the_protocol_and_a_bare_base_does_not():
    for name in design_names():
        cls = design_class(name)
        assert implements_design(cls), name
        assert cls.name == name and cls.summary
    assert not implements_design(BaseDesign)  # no deduct of its own

    class Unnamed(BaseDesign):
        def deduct(self, order):
            raise NotImplementedError

    assert not implements_design(Unnamed)
    with pytest.raises(ValueError, match="name"):
        register(Unnamed)


@pytest.mark.parametrize("cls", [Naive, DbOnly])
def test_designs_satisfy_the_runtime_protocol(cls, lab):
    assert isinstance(cls(lab), Design)


def test_db_only_sells_the_last_unit_then_reports_sold_out(lab):
    design = DbOnly(lab)
    design.setup({"sku-1": 1})
    assert design.deduct(Order("o-1", "sku-1", 1)).outcome is Outcome.ACCEPTED
    assert design.deduct(Order("o-2", "sku-1", 1)).outcome is Outcome.SOLD_OUT
    assert design.stock("sku-1") == 0
    # the sold-out order's anti-repeat row was rolled back with it
    assert _state(lab) == ({"sku-1": 0}, 1, 1)


def test_the_articles_guard_as_written_refuses_the_last_unit(lab):
    design = DbOnly(lab, as_written=True)
    design.setup({"sku-1": 1})
    assert design.deduct(Order("o-1", "sku-1", 1)).outcome is Outcome.SOLD_OUT
    assert design.stock("sku-1") == 1


def test_db_only_answers_a_repeated_order_as_duplicate_and_deducts_once(lab):
    design = DbOnly(lab)
    design.setup({"sku-1": 5})
    assert design.deduct(Order("o-1", "sku-1", 2)).outcome is Outcome.ACCEPTED
    assert design.deduct(Order("o-1", "sku-1", 2)).outcome is Outcome.DUPLICATE
    assert design.stock("sku-1") == 3
    # the same order id for another SKU is another order line
    design.setup({"sku-1": 5, "sku-2": 5})
    assert design.deduct(Order("o-1", "sku-1", 1)).outcome is Outcome.ACCEPTED
    assert design.deduct(Order("o-1", "sku-2", 1)).outcome is Outcome.ACCEPTED


def test_a_refused_order_does_not_burn_its_anti_repeat_code(lab):
    design = DbOnly(lab)
    design.setup({"sku-1": 1})
    assert design.deduct(Order("o-1", "sku-1", 2)).outcome is Outcome.SOLD_OUT
    assert design.deduct(Order("o-1", "sku-1", 1)).outcome is Outcome.ACCEPTED


@pytest.mark.parametrize("cls", [Naive, DbOnly])
def test_unknown_sku_is_rejected_and_changes_nothing(cls, lab):
    design = cls(lab)
    design.setup({"sku-1": 3})
    before = _state(lab)
    with pytest.raises(InvalidOrder, match="unknown SKU"):
        design.deduct(Order("o-1", "sku-404", 1))
    assert _state(lab) == before


@pytest.mark.parametrize("cls", [Naive, DbOnly])
def test_a_design_attached_to_existing_tables_learns_the_catalog(cls, lab):
    cls(lab).setup({"sku-1": 3})
    fresh = cls(lab)
    assert fresh.deduct(Order("o-1", "sku-1", 1)).outcome is Outcome.ACCEPTED
    with pytest.raises(InvalidOrder):
        fresh.deduct(Order("o-2", "sku-2", 1))


@pytest.mark.parametrize("cls", [Naive, DbOnly])
def test_bad_initial_stock_is_refused(cls, lab):
    with pytest.raises(LabError, match="initial stock"):
        cls(lab).setup({"sku-1": -1})
    with pytest.raises(InvalidOrder):
        cls(lab).setup({"bad sku": 1})


@pytest.mark.parametrize("cls", [Naive, DbOnly])
def test_setup_refuses_bad_stock_before_it_drops_anything(cls, lab):
    design = cls(lab)
    design.setup({"sku-1": 3})
    assert design.deduct(Order("o-1", "sku-1", 1)).outcome is Outcome.ACCEPTED
    before = _state(lab)
    for bad in [2**31, -1, float("nan"), float("inf"), 1.5, True, None, "7"]:
        with pytest.raises(LabError, match="initial stock"):
            design.setup({"sku-1": 1, "sku-2": bad})
    with pytest.raises(LabError, match="stock"):
        design.setup([("sku-1", 1)])
    assert _state(lab) == before and before[0] == {"sku-1": 2} and before[2] == 1


@pytest.mark.parametrize("cls", [Naive, DbOnly])
def test_anything_but_an_order_is_refused_as_bad_input(cls, lab):
    design = cls(lab)
    design.setup({"sku-1": 3})
    before = _state(lab)
    for bad in [None, "o-1:sku-1", ("o-1", "sku-1", 1), {"order_id": "o-1"}]:
        with pytest.raises(InvalidOrder, match="an Order"):
            design.deduct(bad)
    assert _state(lab) == before


def test_integer_quantities_of_any_integer_type_are_taken_as_int():
    import numpy as np

    order = Order("o-1", "sku-1", np.int64(2))
    assert order.qty == 2 and type(order.qty) is int
    with pytest.raises(InvalidOrder):
        Order("o-1", "sku-1", np.float64(2.0))
    with pytest.raises(InvalidOrder):
        Order("o-1", "sku-1", np.bool_(True))


def test_naive_oversells_under_real_concurrency(lab):
    """Eight client threads in lock step: in every round all eight read before any writes.

    Not left to the scheduler (a luck-dependent race is a flaky test): a barrier of eight holds
    each round's readers, so each round of eight sells eight units and moves the stock by one.
    Five rounds: 40 accepted out of 10 units, on every backend, however busy the machine.
    """
    design = Naive(lab, lockstep=8)
    workload = Workload(orders=40, skus=1, stock=10)
    design.setup(workload.initial_stock())
    records = run_workload(design, workload.attempts(), concurrency=8)
    report = check_lab(lab, workload.initial_stock(), records, redis_view=False)
    assert (records["outcome"] == "accepted").sum() == 40
    assert report.oversold == 30
    assert not report.ok


def test_naive_deducts_a_retried_order_twice(lab):
    design = Naive(lab)
    design.setup({"sku-1": 5})
    order = Order("o-1", "sku-1", 1)
    records = run_workload(design, [_attempt(order, 0), _attempt(order, 1)], concurrency=1)
    report = check_lab(lab, {"sku-1": 5}, records, redis_view=False)
    assert report.double_deducted == 1 and report.oversold == 0


def test_db_only_holds_every_invariant_under_concurrency_with_retries(lab):
    workload = Workload(orders=400, skus=3, stock=60, retries=0.3, max_qty=2, seed=7)
    design = DbOnly(lab)
    design.setup(workload.initial_stock())
    records = run_workload(design, workload.attempts(), concurrency=12)
    report = check_lab(lab, workload.initial_stock(), records, redis_view=False)
    assert report.summary() == {
        "oversold": 0,
        "double_deducted": 0,
        "lost": 0,
        "unaccounted": 0,
        "partial": 0,
        "converged": None,
        "drift": {},
        "false_sold_out": 0,
        "false_sold_out_orders": 0,
        "false_duplicates": 0,
        "unknown_persisted": 0,
        "unknown_not_persisted": 0,
    }
    assert (records["outcome"] == "error").sum() == 0
    assert (records["outcome"] == "duplicate").sum() > 0
    # the hot SKU sold out: every unit was sold, none twice
    assert report.per_sku.loc[report.per_sku["sku"] == "sku-0001", "db_final"].item() == 0
    accepted = records[records["outcome"] == "accepted"]
    assert not accepted.duplicated(["order_id", "sku"]).any()
    assert len(records) == len(workload.attempts())


def _attempt(order, n):
    from inventory_lab.workload import Attempt

    return Attempt(order, n)


def test_naive_deducts_again_when_a_reply_is_lost(lab):
    workload = Workload(orders=40, skus=1, stock=100, lost_replies=0.5, seed=2)
    design = Naive(lab)
    design.setup(workload.initial_stock())
    records = run_workload(design, workload.attempts(), concurrency=2)
    report = check_lab(lab, workload.initial_stock(), records, redis_view=False)
    assert report.double_deducted == (records["outcome"] == "unknown").sum() > 0
    # every unknown first send was resent and accepted: the client learned its fate after all
    assert report.unknown_persisted == report.unknown_not_persisted == 0
