import threading

import pandas as pd
import pytest

import inventory_lab.designs.task_engine as task_engine_module
import inventory_lab.designs.two_gate as two_gate_module
from inventory_lab import Order, Outcome, Workload, check_lab, run_workload
from inventory_lab.designs import design_class, redis_design_names
from inventory_lab.faults import (
    SimulatedCrash,
    crash_before_compensation,
    crash_between_gates,
)
from inventory_lab.reconcile import reconcile
from inventory_lab.workload import RECORD_COLUMNS


def test_a_crash_before_compensation_leaks_a_duplicates_decrement(redis_lab):
    design = design_class("two_gate_pipeline")(redis_lab)
    design.setup({"sku-1": 5})
    order = Order("o-1", "sku-1", 1)
    assert design.deduct(order).outcome is Outcome.ACCEPTED
    with crash_before_compensation(design) as crashed, pytest.raises(SimulatedCrash):
        design.deduct(order)  # the duplicate's decrement ran; the give-back never happens
    assert crashed == [order]
    assert design.stock("sku-1") == 3  # Redis: two decrements; the DB: one
    assert reconcile(redis_lab).set_index("sku").loc["sku-1", "drift"] == -1
    assert design.deduct(Order("o-2", "sku-1", 1)).outcome is Outcome.ACCEPTED  # restored after


@pytest.mark.parametrize(
    ("name", "leaks"),
    [
        ("two_gate", True),
        ("two_gate_pipeline", True),
        ("two_gate_multi", True),
        ("two_gate_watch", False),
        ("two_gate_lua", False),
    ],
)
def test_only_decrement_then_check_variants_leak_under_the_crash(redis_lab, name, leaks):
    workload = Workload(orders=150, skus=1, stock=40, retries=0.4, seed=9)
    design = design_class(name)(redis_lab)
    design.setup(workload.initial_stock())
    with crash_before_compensation(design) as crashed:
        records = run_workload(design, workload.attempts(), concurrency=6)
    report = check_lab(redis_lab, workload.initial_stock(), records, redis_view=True)
    assert report.oversold == 0 and report.double_deducted == 0 and report.lost == 0
    assert bool(crashed) is leaks
    assert (report.converged is False) is leaks
    if leaks:
        assert all(gap < 0 for gap in report.drift.values())  # Redis shows less than the DB
        reconcile(redis_lab, repair=True)
        assert check_lab(redis_lab, workload.initial_stock(), records, redis_view=True).converged


def test_the_crash_can_be_limited_to_a_number_of_times(redis_lab):
    design = design_class("two_gate")(redis_lab)
    design.setup({"sku-1": 1})
    with crash_before_compensation(design, times=1) as crashed:
        with pytest.raises(SimulatedCrash):
            design.deduct(Order("o-1", "sku-1", 2))
        assert design.deduct(Order("o-2", "sku-1", 2)).outcome is Outcome.SOLD_OUT
    assert len(crashed) == 1


def test_a_crash_between_the_gates_leaves_a_code_that_lies_to_the_retry(redis_lab):
    design = design_class("two_gate")(redis_lab)
    design.setup({"sku-1": 5})
    order = Order("o-1", "sku-1", 1)
    with crash_between_gates(design, times=1) as crashed, pytest.raises(SimulatedCrash):
        design.deduct(order)
    assert crashed == [order]
    assert design.deduct(order).outcome is Outcome.DUPLICATE  # "already done": it was not
    records = run_workload(design, [], concurrency=1)
    records.loc[0] = ["o-1", "sku-1", 1, 0, 0, 0.0, 0.0, 0.0, "error", ""]
    records.loc[1] = ["o-1", "sku-1", 1, 1, 0, 0.0, 0.0, 0.0, "duplicate", ""]
    report = check_lab(redis_lab, {"sku-1": 5}, records, redis_view=True)
    assert report.false_duplicates == 1 and report.converged is False
    assert report.drift == {"sku-1": -1}


# --- faults that strike mid-flight: as written they oversell, by default they do not ------------

REDIS_DESIGNS = redis_design_names()


def _open(lab, name, **options):
    if name == "task_engine":
        options.setdefault("start_workers", False)
    return design_class(name)(lab, **options)


def _told(*pairs):
    """Client records: what each order was told."""
    rows = [[o.order_id, o.sku, o.qty, 0, 0, 0.0, 0.0, 0.0, told, ""] for o, told in pairs]
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


@pytest.mark.parametrize("name", ["two_gate", "two_gate_lua", "task_engine"])
def test_a_rewarm_waits_for_a_gate_two_in_flight(paired_lab, name):
    """Buyer a holds gate 2's transaction open (a slow database); a re-warm started meanwhile
    waits for it, then counts a's unit as sold."""
    design = _open(paired_lab, name)
    design.setup({"sku-1": 2})
    a = Order("o-a", "sku-1", 1)
    locked, release, warmed = threading.Event(), threading.Event(), threading.Event()
    target = task_engine_module if name == "task_engine" else two_gate_module
    original = target.check_epoch

    def slow_check(conn, sku, epoch):
        original(conn, sku, epoch)  # the share lock is taken
        locked.set()
        release.wait(60)

    try:
        target.check_epoch = slow_check
        buyer = threading.Thread(target=lambda: design.deduct(a))
        buyer.start()
        assert locked.wait(60)
        target.check_epoch = original
        written = {}
        rewarm = threading.Thread(target=lambda: (written.update(design.rewarm()), warmed.set()))
        rewarm.start()
        rewarm.join(0.3)
        assert not warmed.is_set()  # it cannot finish while a's transaction holds the epoch row
        release.set()
        buyer.join(60)
        rewarm.join(60)
        design.drain()
    finally:
        target.check_epoch = original
        release.set()
        design.close()
    assert written == {"sku-1": 1}  # a's unit is not handed out again
    assert design.stock("sku-1") == 1


@pytest.mark.parametrize("name", REDIS_DESIGNS)
def test_redis_that_lost_its_data_is_noticed_and_rewarmed_not_refused(redis_lab, name):
    design = _open(redis_lab, name)
    design.setup({"sku-1": 3})
    try:
        assert design.deduct(Order("o-1", "sku-1", 1)).outcome is Outcome.ACCEPTED
        redis_lab.clear_redis()  # a restart without persistence: stock, epochs and codes gone
        assert design.deduct(Order("o-2", "sku-1", 1)).outcome is Outcome.ACCEPTED
        assert design.rewarms == 1
        assert design.stock("sku-1") == 1
        design.drain()
    finally:
        design.close()
