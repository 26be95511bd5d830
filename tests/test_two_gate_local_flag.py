"""`two_gate_local_flag`: a sold-out SKU costs no Redis call; stock that comes back clears the
flag in every process; a flag refuses, never accepts."""

import pytest
from conftest import wait_until

from inventory_lab import Order, Outcome
from inventory_lab.checkout import Checkout
from inventory_lab.designs import design_class
from inventory_lab.designs.two_gate_local_flag import LOCAL_DETAIL
from inventory_lab.errors import LabError
from inventory_lab.redis_meter import metered
from inventory_lab.redis_stock import epochs
from inventory_lab.restock import restock


def _processes(lab, n=2, initial=None, **options):
    made = [design_class("two_gate_local_flag")(lab, **options) for _ in range(n)]
    initial = initial or {"sku-1": 2, "sku-2": 5}
    made[0].setup(initial)
    # setup announces the fresh stock: a zero seen before that news arrives would be stale
    listening = [design for design in made if design.flags.listening]
    assert wait_until(lambda: all(design.flags.heard == len(initial) for design in listening))
    return made


def test_once_sold_out_the_flag_answers_without_redis(redis_lab):
    first, second = _processes(redis_lab)
    try:
        assert first.deduct(Order("o-1", "sku-1", 1)).outcome is Outcome.ACCEPTED
        assert first.deduct(Order("o-2", "sku-1", 1)).outcome is Outcome.ACCEPTED  # left 0
        assert second.deduct(Order("o-3", "sku-1", 1)).outcome is Outcome.SOLD_OUT  # Redis said
        for design in (first, second):
            with metered(redis_lab.redis) as meter:
                result = design.deduct(Order("o-4", "sku-1", 1))
            assert (result.outcome, result.detail, meter.count) == (
                Outcome.SOLD_OUT,
                LOCAL_DETAIL,
                0,
            )
        assert (first.answered_locally, second.answered_locally) == (1, 1)
        assert first.deduct(Order("o-5", "sku-2", 1)).outcome is Outcome.ACCEPTED  # not flagged
    finally:
        first.close()
        second.close()


def test_a_larger_order_refused_raises_no_flag(redis_lab):
    (design,) = _processes(redis_lab, 1)
    try:
        assert design.deduct(Order("o-1", "sku-1", 3)).outcome is Outcome.SOLD_OUT
        assert not design.flags.is_set("sku-1")
        assert design.deduct(Order("o-2", "sku-1", 2)).outcome is Outcome.ACCEPTED
    finally:
        design.close()


def test_a_restock_clears_every_process_flag_and_sells_again(redis_lab):
    first, second = _processes(redis_lab, initial={"sku-1": 1})
    try:
        assert first.deduct(Order("o-1", "sku-1", 1)).outcome is Outcome.ACCEPTED
        assert second.deduct(Order("o-2", "sku-1", 1)).outcome is Outcome.SOLD_OUT
        assert first.flags.is_set("sku-1") and second.flags.is_set("sku-1")
        assert restock(redis_lab, "sku-1", 2).told >= 2
        assert wait_until(
            lambda: not first.flags.is_set("sku-1") and not second.flags.is_set("sku-1")
        )
        assert first.deduct(Order("o-3", "sku-1", 1)).outcome is Outcome.ACCEPTED
        assert second.deduct(Order("o-4", "sku-1", 1)).outcome is Outcome.ACCEPTED
    finally:
        first.close()
        second.close()


def test_a_missed_message_costs_false_sold_outs_until_the_ttl(redis_lab):
    (deaf,) = _processes(
        redis_lab, 1, initial={"sku-1": 1}, listen=False, audit=True, flag_ttl_s=60
    )
    try:
        assert deaf.deduct(Order("o-1", "sku-1", 1)).outcome is Outcome.ACCEPTED
        restock(redis_lab, "sku-1", 2)
        assert deaf.deduct(Order("o-2", "sku-1", 1)).detail == LOCAL_DETAIL
        assert deaf.false_sold_outs == 1  # Redis held 2 units
        deaf.flags._until["sku-1"] = 0.0  # the TTL ran out
        assert deaf.deduct(Order("o-3", "sku-1", 1)).outcome is Outcome.ACCEPTED
    finally:
        deaf.close()


def test_a_true_sold_out_is_not_counted_false(redis_lab):
    (design,) = _processes(redis_lab, 1, initial={"sku-1": 1}, audit=True)
    try:
        design.deduct(Order("o-1", "sku-1", 1))
        assert design.deduct(Order("o-2", "sku-1", 1)).detail == LOCAL_DETAIL
        assert (design.answered_locally, design.false_sold_outs) == (1, 0)
    finally:
        design.close()


def test_stock_given_back_or_rewarmed_clears_the_flags(redis_lab):
    first, second = _processes(redis_lab, initial={"sku-1": 1})
    try:
        assert first.deduct(Order("o-1", "sku-1", 1)).outcome is Outcome.ACCEPTED
        second.flags.set("sku-1")
        epoch = str(epochs(redis_lab, "sku-1")["redis"])
        first.compensate(Order("o-1", "sku-1", 1), epoch)  # gate 2 refused it, say
        assert not first.flags.is_set("sku-1")
        assert wait_until(lambda: not second.flags.is_set("sku-1"))
        second.flags.set("sku-1")
        first.rewarm()
        assert wait_until(lambda: not second.flags.is_set("sku-1"))
    finally:
        first.close()
        second.close()


def test_checkouts_stay_with_two_gate_lua(default_lab):
    (design,) = _processes(default_lab, 1)
    try:
        with pytest.raises(LabError, match="one line per order"):
            design.place(Checkout("c-1", (Order("c-1", "sku-1", 1), Order("c-1", "sku-2", 1))))
    finally:
        design.close()
