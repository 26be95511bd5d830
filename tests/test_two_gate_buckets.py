"""`two_gate_buckets`: a SKU's Redis stock over B bucket hashes in distinct slots; home bucket by
order id, fall over round the ring; no oversell, duplicates caught, Redis and the DB converge."""

import pytest
from redis.crc import key_slot

from inventory_lab import LabError, Order, Outcome, Workload, check_lab, keys, run_workload
from inventory_lab.checkout import Checkout
from inventory_lab.designs import design_class
from inventory_lab.reconcile import reconcile
from inventory_lab.redis_stock import read_redis_stock
from inventory_lab.stock_buckets import home_bucket
from inventory_lab.workload import Attempt


def _design(lab, initial, **options):
    design = design_class("two_gate_buckets")(lab, **options)
    design.setup(initial)
    return design


def _bucket_units(lab, sku, buckets):
    return [
        int(lab.redis.hget(keys.stock_bucket_key(lab.namespace, sku, b), keys.STOCK_FIELD))
        for b in range(buckets)
    ]


def test_the_buckets_lie_in_distinct_slots_and_the_sku_hash_names_them(redis_lab):
    _design(redis_lab, {"sku-1": 10}, buckets=4)
    assert _bucket_units(redis_lab, "sku-1", 4) == [3, 3, 2, 2]
    stock_hash = keys.stock_key(redis_lab.namespace, "sku-1")
    assert redis_lab.redis.hget(stock_hash, keys.STOCK_FIELD) == "0"
    assert redis_lab.redis.hget(stock_hash, keys.BUCKETS_FIELD) == "4"
    slots = {key_slot(keys.stock_bucket_key("ilab", "sku-1", b).encode()) for b in range(8)}
    assert len(slots) == 8
    # an order's code shares its bucket's slot: one script, one slot
    code, stock = (
        keys.bucket_anti_repeat_key("ilab", "o-1", "sku-1", 3),
        keys.stock_bucket_key("ilab", "sku-1", 3),
    )
    assert key_slot(code.encode()) == key_slot(stock.encode())


def test_an_order_takes_its_home_bucket_then_falls_over(redis_lab):
    design = _design(redis_lab, {"sku-1": 10}, buckets=4)
    answers = [design.deduct(Order(f"o-{i}", "sku-1", 1)).outcome for i in range(12)]
    assert answers.count(Outcome.ACCEPTED) == 10 and answers[-2:] == [Outcome.SOLD_OUT] * 2
    assert design.stock("sku-1") == 0 and design.fallovers > 0
    assert design.deduct(Order("o-0", "sku-1", 1)).outcome is Outcome.DUPLICATE


def test_a_retry_of_an_order_taken_after_a_fallover_is_a_duplicate(redis_lab):
    design = _design(redis_lab, {"sku-1": 4}, buckets=4)  # one unit per bucket
    order = Order("o-1", "sku-1", 1)
    home = home_bucket(order.order_id, 4)
    first = design.deduct(Order("other", "sku-1", 1))  # may or may not empty o-1's home
    assert first.outcome is Outcome.ACCEPTED
    redis_lab.redis.hset(
        keys.stock_bucket_key(redis_lab.namespace, "sku-1", home), keys.STOCK_FIELD, 0
    )
    assert design.deduct(order).outcome is Outcome.ACCEPTED and design.fallovers >= 1
    assert design.deduct(order).outcome is Outcome.DUPLICATE


def test_a_quantity_no_single_bucket_holds_is_a_false_sold_out_the_checker_counts(redis_lab):
    design = _design(redis_lab, {"sku-1": 10}, buckets=4)  # 3, 3, 2, 2
    attempts = [Attempt(Order(f"o-{i}", "sku-1", 3), 0) for i in range(4)]
    records = run_workload(design, attempts, concurrency=1)
    assert list(records["outcome"]) == ["accepted", "accepted", "sold_out", "sold_out"]
    report = check_lab(redis_lab, {"sku-1": 10}, records, redis_view=True)
    assert report.ok and report.final_stock == {"sku-1": 4}
    assert report.false_sold_out == 3  # 2 + 2 left: together they held one order of 3


@pytest.mark.parametrize("max_qty", [1, 3])
def test_many_clients_never_oversell_and_redis_converges(paired_lab, max_qty):
    workload = Workload(orders=300, skus=2, stock=40, max_qty=max_qty, retries=0.2, seed=5)
    design = _design(paired_lab, workload.initial_stock(), buckets=4)
    records = run_workload(design, workload.attempts(), concurrency=8)
    design.drain()
    report = check_lab(paired_lab, workload.initial_stock(), records, redis_view=True)
    assert report.ok, report.summary()
    assert report.oversold == 0 and report.double_deducted == 0 and report.lost == 0
    assert report.drift == {}
    if max_qty == 1:
        assert report.false_sold_out == 0 and set(report.final_stock.values()) == {0}


def test_a_duplicate_only_gate_two_catches_gives_its_units_back_to_the_home_bucket(redis_lab):
    design = _design(redis_lab, {"sku-1": 8}, buckets=4)
    order = Order("o-1", "sku-1", 1)
    assert design.deduct(order).outcome is Outcome.ACCEPTED
    design.free_codes([order])  # the Redis codes expired: only the database remembers
    assert not any(redis_lab.redis.exists(key) for key in design.code_keys(order))
    assert design.deduct(order).outcome is Outcome.DUPLICATE  # gate 2's anti-repeat row
    assert design.stock("sku-1") == 7 and design.given_back == 1


def test_losing_redis_rewarms_the_buckets_from_the_database(redis_lab):
    design = _design(redis_lab, {"sku-1": 8}, buckets=4)
    for i in range(3):
        assert design.deduct(Order(f"o-{i}", "sku-1", 1)).outcome is Outcome.ACCEPTED
    redis_lab.clear_redis()  # a restart without persistence
    assert read_redis_stock(redis_lab, ["sku-1"]) == {"sku-1": None}
    assert design.deduct(Order("o-9", "sku-1", 1)).outcome is Outcome.ACCEPTED
    assert design.rewarms == 1 and design.stock("sku-1") == 4
    assert sum(_bucket_units(redis_lab, "sku-1", 4)) == 4


def test_reconcile_repairs_drift_into_a_bucket_where_orders_can_use_it(redis_lab):
    design = _design(redis_lab, {"sku-1": 8}, buckets=4)
    redis_lab.redis.hincrby(
        keys.stock_bucket_key(redis_lab.namespace, "sku-1", 2), keys.STOCK_FIELD, -2
    )  # a decrement whose order never reached the database
    before = reconcile(redis_lab, repair=True)
    assert before.loc[0, "drift"] == -2 and before.loc[0, "repaired"]
    assert reconcile(redis_lab).loc[0, "drift"] == 0 and design.stock("sku-1") == 8
    assert redis_lab.redis.hget(keys.stock_key(redis_lab.namespace, "sku-1"), "inStock") == "0"


def test_checkouts_are_refused_with_a_clear_error(default_lab):
    design = _design(default_lab, {"sku-1": 8, "sku-2": 8}, buckets=2)
    cart = Checkout("o-1", (Order("o-1", "sku-1", 1), Order("o-1", "sku-2", 1)))
    with pytest.raises(LabError, match="one line per order"):
        design.place(cart)
    assert design.stock("sku-1") == 8 and design.stock("sku-2") == 8


@pytest.mark.parametrize("buckets", [0, -1, 1.5, True, "4", 2000])
def test_a_bad_bucket_count_is_refused(default_lab, buckets):
    with pytest.raises(ValueError):
        design_class("two_gate_buckets")(default_lab, buckets=buckets)
