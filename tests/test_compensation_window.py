"""A second order sent while the first sits between its decrement and its give-back: forced,
so the same answers come on every run and every Redis. Decrement-then-check variants tell a
retry "duplicate" about an order then refused, and refuse a small order the stock would cover;
the variants that decide first do neither."""

import pytest

from inventory_lab import Order, Outcome
from inventory_lab.compensation_window import second_order_in_the_window
from inventory_lab.errors import LabError

DECREMENT_FIRST = ["two_gate", "two_gate_pipeline", "two_gate_multi"]
DECIDE_FIRST = ["two_gate_watch", "two_gate_lua"]


@pytest.mark.parametrize("name", DECREMENT_FIRST + DECIDE_FIRST)
def test_a_retry_sent_while_its_order_is_being_refused(redis_lab, name):
    order = Order("o-1", "sku-1", 1)
    run = second_order_in_the_window(redis_lab, name, {"sku-1": 0}, order, order)
    assert run.first.outcome is Outcome.SOLD_OUT
    assert list(run.records["attempt"]) == [0, 1]
    assert run.report.oversold == 0 and run.report.converged is True
    if name in DECREMENT_FIRST:
        assert run.held and run.second.outcome is Outcome.DUPLICATE
        assert run.report.false_duplicates == 1
    else:
        assert not run.held and run.second.outcome is Outcome.SOLD_OUT
        assert run.report.false_duplicates == 0


@pytest.mark.parametrize("name", DECREMENT_FIRST + DECIDE_FIRST)
def test_a_small_order_sent_while_a_big_one_holds_units_it_gives_back(redis_lab, name):
    big, small = Order("o-big", "sku-1", 3), Order("o-small", "sku-1", 1)
    run = second_order_in_the_window(redis_lab, name, {"sku-1": 2}, big, small)
    assert run.first.outcome is Outcome.SOLD_OUT and run.report.oversold == 0
    left = int(run.report.per_sku["db_final"].sum())
    if name in DECREMENT_FIRST:
        assert run.held and run.second.outcome is Outcome.SOLD_OUT and left == 2
        assert run.report.false_sold_out == 1 and run.report.false_sold_out_orders == 1
    else:
        assert not run.held and run.second.outcome is Outcome.ACCEPTED and left == 1
        assert run.report.false_sold_out == 0


def test_a_design_without_gate_one_is_refused_before_anything_runs(redis_lab):
    order = Order("o-1", "sku-1", 1)
    with pytest.raises(LabError, match="no gate 1"):
        second_order_in_the_window(redis_lab, "db_only", {"sku-1": 1}, order, order)
    assert list(redis_lab.redis.scan_iter(match=f"{redis_lab.namespace}:*")) == []


def test_a_third_send_after_the_first_answered_is_recorded(redis_lab):
    order = Order("o-1", "sku-1", 1)
    run = second_order_in_the_window(redis_lab, "two_gate", {"sku-1": 0}, order, order, then=order)
    assert list(run.records["attempt"]) == [0, 1, 2]
    assert run.held and run.second.outcome is Outcome.DUPLICATE
    assert run.then is not None and run.then.outcome is Outcome.SOLD_OUT  # the code was freed
    assert run.report.oversold == 0 and run.report.false_duplicates == 1
