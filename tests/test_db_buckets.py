"""`db_buckets`: a SKU's stock over B rows; home bucket by order id, fall over to the others;
no oversell; false sold-outs only where no single bucket holds an order's quantity."""

import pytest

from inventory_lab import Order, Outcome, Workload, check_lab, run_workload, schema
from inventory_lab.designs import design_class
from inventory_lab.stock_buckets import home_bucket, split, visiting_order
from inventory_lab.workload import Attempt


def _buckets(lab, sku):
    with lab.engine.connect() as conn:
        rows = conn.execute(
            schema.stock_buckets.select()
            .where(schema.stock_buckets.c.sku == sku)
            .order_by(schema.stock_buckets.c.bucket)
        ).all()
    return [row.num for row in rows]


def test_units_spread_as_evenly_as_they_go():
    assert split(10, 4) == [3, 3, 2, 2] and split(2, 4) == [1, 1, 0, 0] and split(0, 3) == [0] * 3
    assert all(0 <= home_bucket(f"o-{i}", 8) < 8 for i in range(100))
    assert len({home_bucket(f"o-{i}", 8) for i in range(100)}) == 8  # orders spread
    ring = visiting_order("o-1", 5)
    assert ring[0] == home_bucket("o-1", 5) and sorted(ring) == list(range(5))


def test_an_order_takes_its_home_bucket_then_falls_over(lab):
    design = design_class("db_buckets")(lab, buckets=4)
    design.setup({"sku-1": 10})
    assert _buckets(lab, "sku-1") == [3, 3, 2, 2] and design.stock("sku-1") == 10
    answers = [design.deduct(Order(f"o-{i}", "sku-1", 1)).outcome for i in range(12)]
    assert answers.count(Outcome.ACCEPTED) == 10 and answers[-2:] == [Outcome.SOLD_OUT] * 2
    assert design.stock("sku-1") == 0 and design.fallovers > 0
    assert design.deduct(Order("o-0", "sku-1", 1)).outcome is Outcome.DUPLICATE


def test_a_quantity_no_single_bucket_holds_is_a_false_sold_out_the_checker_counts(lab):
    design = design_class("db_buckets")(lab, buckets=4)
    design.setup({"sku-1": 10})  # 3, 3, 2, 2
    attempts = [Order(f"o-{i}", "sku-1", 3) for i in range(4)]
    records = run_workload(design, [Attempt(o, 0) for o in attempts], concurrency=1)
    assert list(records["outcome"]) == ["accepted", "accepted", "sold_out", "sold_out"]
    report = check_lab(lab, {"sku-1": 10}, records, redis_view=False)
    assert report.ok and report.final_stock == {"sku-1": 4}
    assert report.false_sold_out == 3  # 2 + 2 left: together they held one order of 3


@pytest.mark.parametrize("max_qty", [1, 3])
def test_many_clients_never_oversell(lab, max_qty):
    workload = Workload(orders=300, skus=2, stock=40, max_qty=max_qty, retries=0.2, seed=5)
    design = design_class("db_buckets")(lab, buckets=4)
    design.setup(workload.initial_stock())
    records = run_workload(design, workload.attempts(), concurrency=8)
    report = check_lab(lab, workload.initial_stock(), records, redis_view=False)
    assert report.ok, report.summary()
    assert report.oversold == 0 and report.double_deducted == 0
    if max_qty == 1:  # a bucket only goes down: one-unit orders are refused only when all are 0
        assert report.false_sold_out == 0 and set(report.final_stock.values()) == {0}


@pytest.mark.parametrize("buckets", [0, -1, 1.5, True, "4", 2000])
def test_a_bad_bucket_count_is_refused(default_lab, buckets):
    with pytest.raises(ValueError):
        design_class("db_buckets")(default_lab, buckets=buckets)
