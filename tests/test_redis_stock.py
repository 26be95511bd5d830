"""The warm-up: fenced by an epoch, committed before it is copied, the newer copy winning."""

import threading

import pandas as pd
import pytest
from sqlalchemy import event

from inventory_lab import Order, Outcome, check_lab, keys
from inventory_lab.designs import design_class
from inventory_lab.faults import hold_between_gates
from inventory_lab.redis_stock import epochs, read_redis_stock, warm_up
from inventory_lab.workload import RECORD_COLUMNS


class _CommitRefused(Exception):
    pass


@pytest.mark.parametrize("name", ["two_gate", "two_gate_lua", "task_engine"])
def test_a_warm_up_that_fails_never_leaves_an_epoch_to_be_reused(paired_lab, name):
    """The first warm-up's commit fails. Had it written Redis first, Redis would carry an epoch
    the database never reached; the next warm-up would reach that very number, and an order the
    failed copy admitted would pass gate 2 against a copy that never counted it."""
    options = {"start_workers": False} if name == "task_engine" else {}
    design = design_class(name)(paired_lab, **options)
    design.setup({"sku-1": 1})
    a, b = Order("o-a", "sku-1", 1), Order("o-b", "sku-1", 1)
    parked, release, told = threading.Event(), threading.Event(), {}

    def refuse(_conn):
        raise _CommitRefused("the database went away at COMMIT")

    try:
        event.listen(paired_lab.engine, "commit", refuse)
        try:
            with pytest.raises(_CommitRefused):
                design.rewarm()
        finally:
            event.remove(paired_lab.engine, "commit", refuse)

        def hold(order):
            if order == a:
                parked.set()
                release.wait(60)

        with hold_between_gates(design, hold):
            buyer = threading.Thread(target=lambda: told.update(a=design.deduct(a)))
            buyer.start()
            assert parked.wait(60)  # a passed gate 1 on the copy the failed warm-up left
            design.rewarm()
            told["b"] = design.deduct(b)
            release.set()
            buyer.join(60)
        design.drain()
    finally:
        release.set()
        design.close()
    assert told["b"].outcome is Outcome.ACCEPTED
    assert told["a"].outcome is Outcome.ERROR  # refused at gate 2: its copy was replaced
    records = _told((a, told["a"].outcome), (b, Outcome.ACCEPTED))
    assert check_lab(paired_lab, {"sku-1": 1}, records, redis_view=False).oversold == 0


def test_of_two_warm_ups_racing_the_newer_copy_wins(redis_lab):
    design = design_class("two_gate_lua")(redis_lab)
    design.setup({"sku-1": 5})
    key = keys.stock_key(redis_lab.namespace, "sku-1")
    newer = int(redis_lab.redis.hget(key, keys.EPOCH_FIELD)) + 10
    redis_lab.redis.hset(key, mapping={keys.STOCK_FIELD: 3, keys.EPOCH_FIELD: newer})
    warm_up(redis_lab)  # an older warm-up that writes last
    assert read_redis_stock(redis_lab, ["sku-1"]) == {"sku-1": 3}
    assert int(redis_lab.redis.hget(key, keys.EPOCH_FIELD)) == newer


def _told(*pairs):
    rows = [[o.order_id, o.sku, o.qty, 0, 0, 0.0, 0.0, 0.0, told.value, ""] for o, told in pairs]
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def test_a_fenced_rewarm_moves_both_epochs_on_and_an_unfenced_one_neither(redis_lab):
    fenced = design_class("two_gate_lua")(redis_lab)
    fenced.setup({"sku-1": 5})
    before = epochs(redis_lab, "sku-1")
    assert before["redis"] == before["database"] is not None
    fenced.rewarm()
    assert epochs(redis_lab, "sku-1") == {k: v + 1 for k, v in before.items()}
    design_class("two_gate_lua")(redis_lab, as_written=True).rewarm()
    assert epochs(redis_lab, "sku-1") == {k: v + 1 for k, v in before.items()}
