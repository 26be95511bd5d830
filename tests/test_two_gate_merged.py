"""Request merging at gate 1: the window (`gate_one_merging`) and `two_gate_merged` on fakeredis
and on the real Redis. Batches are forced by their size (`max_batch` clients behind a barrier,
a window far longer than they need to arrive), so the tests assert what merged, never timings."""

import math
import threading

import pandas as pd
import pytest
import redis

from inventory_lab import LabError, Order, Outcome, Workload, check_lab, keys, run_workload
from inventory_lab.checkout import Checkout
from inventory_lab.designs import design_class
from inventory_lab.designs.two_gate import NOT_WARM, Admitted
from inventory_lab.designs.two_gate_lua import TwoGateLua
from inventory_lab.designs.two_gate_merged import TwoGateMerged
from inventory_lab.gate_one_merging import MergingWindow, WindowStats
from inventory_lab.reconcile import reconcile
from inventory_lab.redis_meter import metered
from inventory_lab.redis_stock import read_redis_stock
from inventory_lab.scripts import lua_source
from inventory_lab.workload import RECORD_COLUMNS

INITIAL = {"sku-1": 3, "sku-2": 5}
LONG_MS = 10_000.0  # a window the barrier's clients never outlast: batches close when full


def _design(lab, **options):
    design = TwoGateMerged(lab, **options)
    design.setup(INITIAL)
    return design


def _records(*rows):
    data = [
        [o.order_id, o.sku, o.qty, i, 0, 0.0, 0.0, 0.0, outcome, ""]
        for i, (o, outcome) in enumerate(rows)
    ]
    return pd.DataFrame(data, columns=RECORD_COLUMNS)


def _together(call, args):
    """`call(arg)` for each arg, each in its own thread, released at once; results in order
    (an exception is returned in its place)."""
    barrier = threading.Barrier(len(args))
    results: list[object] = [None] * len(args)

    def client(i):
        barrier.wait()
        try:
            results[i] = call(args[i])
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(args))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _codes(lab):
    return sorted(lab.redis.scan_iter(match=f"{lab.namespace}:*:ar:*"))


def _counting(design):
    """Count the batch decider's calls (each is one EVALSHA)."""
    calls = []
    decide = design.window.decide_batch

    def counted(orders):
        calls.append(len(orders))
        return decide(orders)

    design.window.decide_batch = counted
    return calls


# --- the design, one order at a time: two_gate_lua's answers ------------------------------------


@pytest.mark.parametrize("options", [{}, {"window_ms": 0.0, "max_batch": 1}])
def test_accepts_refuses_and_deducts_in_both_gates(redis_lab, options):
    design = _design(redis_lab, **options)
    assert design.deduct(Order("o-1", "sku-1", 2)).outcome is Outcome.ACCEPTED
    assert design.deduct(Order("o-1", "sku-1", 2)).outcome is Outcome.DUPLICATE
    assert design.deduct(Order("o-2", "sku-1", 2)).outcome is Outcome.SOLD_OUT
    assert design.deduct(Order("o-3", "sku-1", 1)).outcome is Outcome.ACCEPTED  # the last unit
    assert design.stock("sku-1") == 0
    assert read_redis_stock(redis_lab, ["sku-1", "sku-2"]) == {"sku-1": 0, "sku-2": 5}
    assert design.given_back == 0  # decided first: nothing to give back
    report = check_lab(redis_lab, INITIAL, _records(), redis_view=True)
    assert report.ok and report.converged
    stats = design.window_stats()
    assert (stats.orders, stats.batches, stats.mean_batch) == (4, 4, 1.0)  # each alone


def test_a_sold_out_order_can_be_retried_when_it_fits(redis_lab):
    design = _design(redis_lab)
    assert design.deduct(Order("o-1", "sku-1", 4)).outcome is Outcome.SOLD_OUT
    assert design.deduct(Order("o-1", "sku-1", 3)).outcome is Outcome.ACCEPTED


def test_an_order_alone_costs_one_round_trip(redis_lab):
    design = _design(redis_lab)
    design.deduct(Order("warm-up", "sku-2", 1))  # loads the script once
    with metered(redis_lab.redis) as meter:
        for i in range(4):
            assert design.deduct(Order(f"o-{i}", "sku-2", 1)).outcome is Outcome.ACCEPTED
    assert meter.count == 4 * design.round_trips


def test_gate_one_answers_as_two_gate_luas_with_the_epoch_and_the_stock_left(redis_lab):
    design = _design(redis_lab)
    admitted = design.gate_one(Order("o-1", "sku-1", 2))
    epoch = redis_lab.redis.hget(keys.stock_key(redis_lab.namespace, "sku-1"), "epoch")
    assert isinstance(admitted, Admitted) and (admitted.epoch, admitted.left) == (epoch, 1)
    assert design.gate_one(Order("o-1", "sku-1", 1)).outcome is Outcome.DUPLICATE
    assert design.gate_one(Order("o-2", "sku-1", 2)).outcome is Outcome.SOLD_OUT
    redis_lab.redis.delete(keys.stock_key(redis_lab.namespace, "sku-1"))
    assert design.gate_one(Order("o-3", "sku-1", 1)) is NOT_WARM
    as_written = TwoGateMerged(redis_lab, as_written=True)
    assert as_written.gate_one(Order("o-4", "sku-2", 1)) == Admitted(None, left=4)


def test_registered_as_a_lua_variant_that_takes_no_checkouts():
    assert design_class("two_gate_merged") is TwoGateMerged
    assert issubclass(TwoGateMerged, TwoGateLua) and not TwoGateMerged.takes_lines


# --- the batch script ---------------------------------------------------------------------------


def test_the_batch_script_answers_as_one_call_per_order_in_arrival_order(redis_lab):
    orders = [
        Order("a", "sku-1", 1),
        Order("a", "sku-1", 1),  # a repeat inside the batch: the first set its code
        Order("b", "sku-1", 5),  # more than is left: refused, nothing taken
        Order("c", "sku-1", 2),  # takes the last two
        Order("d", "sku-1", 1),
    ]
    single = _design(redis_lab)
    one_by_one = [
        int(single.script(keys=single.keys_for(o), args=(o.qty, 10_000))[0]) for o in orders
    ]
    redis_lab.clear_redis()
    design = _design(redis_lab)
    epoch, verdicts = design.decide_batch(orders)
    assert verdicts == one_by_one == [2, -1, -2, 0, -2]
    assert epoch == redis_lab.redis.hget(keys.stock_key(redis_lab.namespace, "sku-1"), "epoch")
    assert design.stock("sku-1") == 0
    codes = [design.keys_for(o)[0] for o in orders]
    assert [redis_lab.redis.exists(code) for code in codes] == [1, 1, 0, 1, 0]
    assert 0 < redis_lab.redis.pttl(codes[0]) <= 10_000


def test_the_batch_script_answers_not_warm_for_every_order(redis_lab):
    design = _design(redis_lab)
    redis_lab.redis.delete(keys.stock_key(redis_lab.namespace, "sku-1"))
    orders = [Order("a", "sku-1", 1), Order("b", "sku-1", 1)]
    assert design.decide_batch(orders) == ("0", [-3, -3])
    assert _codes(redis_lab) == []


# --- batches, forced by their size --------------------------------------------------------------


def test_concurrent_orders_merge_into_one_script_call(redis_lab):
    design = _design(redis_lab, window_ms=LONG_MS, max_batch=8)
    design.setup({"sku-1": 10})
    redis_lab.redis.script_load(lua_source("gate1_batch"))  # EVALSHA finds it: one round trip
    calls = _counting(design)
    with metered(redis_lab.redis) as meter:
        results = _together(design.deduct, [Order(f"o-{i}", "sku-1", 1) for i in range(8)])
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 8
    assert calls == [8] and meter.count == 1  # eight orders, one round trip
    stats = design.window_stats()
    assert (stats.orders, stats.batches, stats.mean_batch) == (8, 1, 8.0)
    assert stats.p99_wait_us >= stats.p50_wait_us >= 0
    assert design.stock("sku-1") == 2
    report = check_lab(redis_lab, {"sku-1": 10}, _records(), redis_view=True)
    assert report.ok and report.converged


def test_a_batch_that_oversubscribes_the_stock_sells_it_exactly(redis_lab):
    design = _design(redis_lab, window_ms=LONG_MS, max_batch=6)
    results = _together(design.deduct, [Order(f"o-{i}", "sku-1", 1) for i in range(6)])
    outcomes = [r.outcome for r in results]
    assert outcomes.count(Outcome.ACCEPTED) == 3 and outcomes.count(Outcome.SOLD_OUT) == 3
    assert design.window_stats().batches == 1
    assert design.stock("sku-1") == 0 and design.given_back == 0
    assert check_lab(redis_lab, INITIAL, _records(), redis_view=True).converged


def test_a_duplicate_inside_one_batch_is_caught(redis_lab):
    design = _design(redis_lab, window_ms=LONG_MS, max_batch=4)
    results = _together(design.deduct, [Order("o-1", "sku-1", 1)] * 4)
    outcomes = sorted(r.outcome for r in results)
    assert outcomes == sorted([Outcome.ACCEPTED] + [Outcome.DUPLICATE] * 3)
    assert design.window_stats().batches == 1
    assert design.stock("sku-1") == 2
    records = _records(*((Order("o-1", "sku-1", 1), o.value) for o in outcomes))
    report = check_lab(redis_lab, INITIAL, records, redis_view=True)
    assert report.ok and report.double_deducted == 0 and report.converged


def test_no_window_sends_every_order_alone(redis_lab):
    design = _design(redis_lab, window_ms=0, max_batch=1)
    calls = _counting(design)
    results = _together(design.deduct, [Order(f"o-{i}", "sku-2", 1) for i in range(5)])
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 5
    assert calls == [1] * 5
    assert design.window_stats().mean_batch == 1.0


def test_each_sku_has_batches_of_its_own(redis_lab):
    design = _design(redis_lab, window_ms=LONG_MS, max_batch=2)
    calls = _counting(design)
    orders = [Order(f"o-{i}", sku, 1) for i, sku in enumerate(["sku-1", "sku-2"] * 2)]
    results = _together(design.deduct, orders)
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 4
    assert calls == [2, 2]
    assert read_redis_stock(redis_lab, ["sku-1", "sku-2"]) == {"sku-1": 1, "sku-2": 3}


def test_redis_lost_data_the_whole_batch_rewarms_once_and_is_served(redis_lab):
    design = _design(redis_lab, window_ms=200.0, max_batch=4)
    redis_lab.redis.delete(keys.stock_key(redis_lab.namespace, "sku-2"))
    results = _together(design.deduct, [Order(f"o-{i}", "sku-2", 1) for i in range(4)])
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 4
    assert design.rewarms == 1 and design.stock("sku-2") == 1


# --- errors of the batch call -------------------------------------------------------------------


@pytest.mark.parametrize("script_ran", [False, True])
def test_a_redis_error_of_the_batch_reaches_every_order_and_frees_every_code(redis_lab, script_ran):
    """The call failed (or its reply was lost after the script ran): every order of the batch is
    an `error`, nothing reached the database, and no code stays to answer a retry "duplicate"."""
    design = _design(redis_lab, window_ms=LONG_MS, max_batch=4)
    decide = design.window.decide_batch

    def broken(orders):
        if script_ran:
            decide(orders)
        raise redis.ConnectionError("connection killed after the command was sent")

    design.window.decide_batch = broken
    orders = [Order(f"o-{i}", "sku-2", 1) for i in range(4)]
    results = _together(design.deduct, orders)
    assert [r.outcome for r in results] == [Outcome.ERROR] * 4
    assert all("nothing reached the database" in r.detail for r in results)
    assert _codes(redis_lab) == []
    assert design.stock("sku-2") == (1 if script_ran else 5)  # short until reconciled
    reconcile(redis_lab, repair=True)  # Redis back to the database's count
    assert design.stock("sku-2") == 5
    design.window.decide_batch = decide
    retried = _together(design.deduct, orders)
    assert [r.outcome for r in retried] == [Outcome.ACCEPTED] * 4  # not "duplicate"
    records = _records(*((o, "accepted") for o in orders))
    report = check_lab(redis_lab, INITIAL, records, redis_view=True)
    assert report.ok and report.converged and design.stock("sku-2") == 1


def test_the_window_raises_the_batch_error_in_every_caller():
    failure = ValueError("the batch failed")

    def decide(orders):
        raise failure

    window = MergingWindow(decide, window_ms=LONG_MS, max_batch=3)
    results = _together(window.decide, [Order(f"o-{i}", "sku-1", 1) for i in range(3)])
    assert results == [failure] * 3
    assert window.stats().batches == 1


def test_a_decider_answering_the_wrong_number_of_verdicts_fails_the_whole_batch():
    window = MergingWindow(lambda orders: ("1", [0]), window_ms=LONG_MS, max_batch=2)
    results = _together(window.decide, [Order("o-1", "sku-1", 1), Order("o-2", "sku-1", 1)])
    assert all(isinstance(r, RuntimeError) and "1 verdicts for 2" in str(r) for r in results)


def test_the_window_hands_each_order_its_own_verdict_and_the_batch_epoch():
    window = MergingWindow(
        lambda orders: ("7", [o.qty * 10 for o in orders]), window_ms=LONG_MS, max_batch=4
    )
    orders = [Order(f"o-{i}", "sku-1", i + 1) for i in range(4)]
    assert _together(window.decide, orders) == [("7", 10), ("7", 20), ("7", 30), ("7", 40)]
    stats = window.stats()
    assert (stats.orders, stats.batches, stats.mean_batch) == (4, 1, 4.0)


def test_an_order_alone_waits_out_the_window_then_goes_alone():
    window = MergingWindow(lambda orders: ("1", [0] * len(orders)), window_ms=20.0, max_batch=64)
    assert window.decide(Order("o-1", "sku-1", 1)) == ("1", 0)
    stats = window.stats()
    assert (stats.orders, stats.batches) == (1, 1)
    assert stats.p50_wait_us >= 20_000  # the window held it at least that long, by design


def test_no_orders_no_stats():
    window = MergingWindow(lambda orders: ("1", []))
    assert window.stats() == WindowStats(0, 0, 0.0, 0.0, 0.0)


# --- concurrency: the invariants ----------------------------------------------------------------


@pytest.mark.parametrize(
    "workload",
    [
        Workload(orders=300, skus=2, stock=40, retries=0.3, max_qty=2, seed=11),
        Workload(orders=200, skus=1, stock=60, retries=0.3, seed=5),  # one hot SKU
        Workload(orders=120, skus=2, stock=100, lost_replies=0.3, seed=3),
    ],
    ids=["retries", "hot", "lost-replies"],
)
def test_concurrent_clients_keep_every_invariant(redis_lab, workload):
    design = TwoGateMerged(redis_lab, window_ms=2.0)
    design.setup(workload.initial_stock())
    records = run_workload(design, workload.attempts(), concurrency=12)
    report = check_lab(redis_lab, workload.initial_stock(), records, redis_view=True)
    assert (records["outcome"] == "error").sum() == 0
    unknown = records.loc[records["outcome"] == "unknown", "detail"]
    assert unknown.str.startswith("reply lost").all()  # only the replies the workload lost
    assert report.oversold == 0 and report.double_deducted == 0 and report.lost == 0
    assert report.ok and report.converged, report.drift
    assert design.window_stats().orders >= len(records)  # every send went through the window


def test_the_window_runs_no_thread_of_its_own(redis_lab):
    """The leader of a batch sends it: nothing runs in the background, nothing to stop."""
    before = set(threading.enumerate())
    design = _design(redis_lab, window_ms=LONG_MS, max_batch=4)
    results = _together(design.deduct, [Order(f"o-{i}", "sku-2", 1) for i in range(4)])
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 4
    design.close()
    assert set(threading.enumerate()) <= before


# --- what it refuses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"window_ms": -1.0},
        {"window_ms": math.nan},
        {"window_ms": math.inf},
        {"window_ms": "1"},
        {"window_ms": True},
        {"window_ms": None},
        {"max_batch": 0},
        {"max_batch": -3},
        {"max_batch": 2.0},
        {"max_batch": True},
        {"max_batch": "8"},
    ],
)
def test_bad_parameters_are_refused(default_lab, options):
    with pytest.raises(ValueError, match=next(iter(options))):
        MergingWindow(lambda orders: ("1", []), **options)
    with pytest.raises(ValueError, match=next(iter(options))):
        TwoGateMerged(default_lab, **options)


def test_checkouts_stay_with_two_gate_lua(default_lab):
    design = _design(default_lab)
    with pytest.raises(LabError, match="two_gate_lua"):
        design.place(Checkout.of("c-1", {"sku-1": 1, "sku-2": 1}))
    assert design.stock("sku-1") == 3 and _codes(default_lab) == []
