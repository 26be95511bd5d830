"""A stall on the server: every deduction that meets it waits until it is let go."""

import time

import pytest

from inventory_lab.designs import design_class
from inventory_lab.orders import Order, Outcome
from inventory_lab.stalls import TableStall


def test_a_deduction_during_the_stall_waits_for_it(lab):
    design = design_class("db_only")(lab)
    design.setup({"sku-0001": 5})
    stall = TableStall(lab.engine, after_s=0.0, hold_s=0.3)
    stall.start()
    while stall.held_from is None and stall.error is None:
        time.sleep(0.005)
    result = design.deduct(Order("o-1", "sku-0001", 1))
    done = time.monotonic()
    stall.join()
    assert result.outcome is Outcome.ACCEPTED
    assert done >= stall.held_until  # it could not finish while the lock was held


def test_a_stall_needs_a_positive_hold(default_lab):
    for after_s, hold_s in ((0, 0), (-1, 1)):
        with pytest.raises(ValueError):
            TableStall(default_lab.engine, after_s=after_s, hold_s=hold_s)
