"""`task_engine_merged` on every database backend: one SKU's batch of tasks in one transaction,
every task still applied exactly once (duplicates, lost leases, racing executors, the guard)."""

import threading
from collections import Counter

import pandas as pd
import pytest
import sqlalchemy as sa

from inventory_lab import Order, Outcome, Workload, check_lab, run_workload, schema
from inventory_lab.checkout import Checkout
from inventory_lab.designs import design_class
from inventory_lab.tasks import MergingTaskEngine, Status, merging
from inventory_lab.workload import RECORD_COLUMNS


def _design(lab, **options):
    options.setdefault("start_workers", False)
    return design_class("task_engine_merged")(lab, **options)


def _accept(design, orders):
    for order in orders:
        assert design.deduct(order).outcome is Outcome.ACCEPTED, order


def _accepted(orders):
    """The records of clients told `accepted`, for the checker."""
    rows = [(o.order_id, o.sku, o.qty, 0, 0, 0.0, 0.0, 0.0, "accepted", "") for o in orders]
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def _ledger(lab):
    with lab.engine.connect() as conn:
        rows = conn.execute(sa.select(schema.orders.c.order_id, schema.orders.c.qty)).all()
    return Counter((order_id, qty) for order_id, qty in rows)


def _codes(lab):
    with lab.engine.connect() as conn:
        return set(conn.execute(sa.select(schema.anti_repeat.c.code)).scalars())


def _stock(lab):
    with lab.engine.connect() as conn:
        return schema.read_stock(conn)


def _stock_updates(lab):
    """A list that fills with every UPDATE of the stock table the lab's engine sends."""
    seen = []

    def listen(_conn, _cursor, statement, _params, _context, _many):
        if statement.lstrip().upper().startswith("UPDATE STOCK"):
            seen.append(statement)

    sa.event.listen(lab.engine, "before_cursor_execute", listen)
    return seen, lambda: sa.event.remove(lab.engine, "before_cursor_execute", listen)


def _check(lab, initial, orders, design):
    report = check_lab(lab, initial, _accepted(orders), redis_view=True)
    assert report.ok and report.converged, report.summary()
    assert design.pending() == {}
    return report


def test_a_batch_applies_each_task_once_with_one_stock_update(lab):
    design = _design(lab, shards=1, max_batch=64)
    initial = {"sku-1": 100, "sku-2": 10}
    design.setup(initial)
    hot = [Order(f"o-{i}", "sku-1", 1 + i % 3) for i in range(20)]
    cold = [Order(f"c-{i}", "sku-2", 1) for i in range(2)]
    try:
        _accept(design, hot + cold)
        owner = design.task_engine.owner(0)
        batch = design.store.claim_sku_batch(0, owner, 64)
        assert [t.order for t in batch] == hot  # one SKU: the oldest task's, in id order
        updates, stop_listening = _stock_updates(lab)
        try:
            done = design.apply_tasks(batch, owner)
        finally:
            stop_listening()
        assert len(updates) == 1  # one summed UPDATE for the batch
        assert done.applied == tuple(batch) and not done.already_applied and not done.lost
        assert done.units == sum(o.qty for o in hot)
        assert _stock(lab) == {"sku-1": 100 - done.units, "sku-2": 10}
        assert _ledger(lab) == Counter((o.order_id, o.qty) for o in hot)
        assert _codes(lab) == {o.anti_repeat_code for o in hot}
        states = design.store.frame().set_index("order_id")["status"]
        assert (states[[o.order_id for o in hot]] == Status.DONE).all()
        assert (states[[o.order_id for o in cold]] == Status.NEW).all()

        again = design.apply_tasks(batch, owner)  # the same batch once more: DONE, not held
        assert again.lost == tuple(batch) and again.units == 0
        assert _stock(lab)["sku-1"] == 100 - done.units

        assert design.task_engine.work_once() == len(cold)  # the other SKU: its own batch
        assert design.task_engine.work_once() == 0
        _check(lab, initial, hot + cold, design)
    finally:
        design.close()


def test_a_batch_with_an_already_applied_task_deducts_only_the_others(lab):
    design = _design(lab, shards=1)
    initial = {"sku-1": 10}
    design.setup(initial)
    orders = [Order(f"o-{i}", "sku-1", 1) for i in range(5)]
    try:
        _accept(design, orders)
        # an executor applied o-2 and died before marking its task: still NEW
        assert design.apply(orders[2]) is True
        assert _stock(lab) == {"sku-1": 9}
        engine = design.task_engine
        assert engine.work_once() == 5
        assert engine.counters.applied == 4 and engine.counters.already_applied == 1
        assert engine.counters.completed == 5
        assert engine.batch_counters.batches == 1 and engine.batch_counters.merged_tasks == 4
        assert _stock(lab) == {"sku-1": 5}
        assert _ledger(lab) == Counter((o.order_id, 1) for o in orders)  # one row per line
        assert design.store.counts()[Status.DONE] == 5
        _check(lab, initial, orders, design)
    finally:
        design.close()


def test_a_batch_whose_lease_was_lost_is_left_to_its_new_owner(lab):
    design = _design(lab, shards=1)
    initial = {"sku-1": 10}
    design.setup(initial)
    orders = [Order(f"o-{i}", "sku-1", 1) for i in range(4)]
    try:
        _accept(design, orders)
        store = design.store
        stale = store.claim_sku_batch(0, "n-a:b:w0", 10)
        assert store.unlock_expired(0.0) == 4  # its lease ran out: NEW again
        fresh = store.claim_sku_batch(0, "n-b:b:w0", 10)
        assert [t.id for t in fresh] == [t.id for t in stale]
        barrier = threading.Barrier(2)
        results = {}

        def apply(owner, batch):
            barrier.wait()
            results[owner] = design.apply_tasks(batch, owner)

        threads = [
            threading.Thread(target=apply, args=(owner, batch))
            for owner, batch in (("n-a:b:w0", stale), ("n-b:b:w0", fresh))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert results["n-a:b:w0"].lost == tuple(stale) and results["n-a:b:w0"].units == 0
        assert results["n-b:b:w0"].applied == tuple(fresh) and results["n-b:b:w0"].units == 4
        assert _stock(lab) == {"sku-1": 6}
        _check(lab, initial, orders, design)
    finally:
        design.close()


def test_a_duplicate_code_rolls_the_batch_back_and_applies_it_task_by_task(lab, monkeypatch):
    design = _design(lab, shards=1)
    initial = {"sku-1": 10}
    design.setup(initial)
    orders = [Order(f"o-{i}", "sku-1", 1) for i in range(5)]
    try:
        _accept(design, orders)
        assert design.apply(orders[1]) is True  # applied, its task still NEW
        # The window the SELECT cannot close: a code committed after it was read. The batch
        # does not see o-1's row, so its INSERT meets the anti-repeat primary key.
        monkeypatch.setattr(merging, "applied_codes", lambda conn, codes: set())
        engine = design.task_engine
        assert engine.work_once() == 5
        assert engine.batch_counters.fallback_duplicate == 1
        assert engine.batch_counters.batches == 0  # the batch rolled back whole
        assert engine.counters.applied == 4 and engine.counters.already_applied == 1
        assert _stock(lab) == {"sku-1": 5}
        assert _ledger(lab) == Counter((o.order_id, 1) for o in orders)
        assert design.store.counts()[Status.DONE] == 5
        _check(lab, initial, orders, design)
    finally:
        design.close()


def test_executors_draining_concurrently_never_deduct_twice(lab):
    design = _design(lab, shards=2, workers=3, max_batch=8, lease_s=0.2)  # 3 executors, 2 shards
    workload = Workload(orders=240, skus=1, stock=200, retries=0.3, seed=9)
    initial = workload.initial_stock()
    design.setup(initial)
    records = run_workload(design, workload.attempts(), concurrency=6)
    # a second process draining the same tables, whose executors stall past their lease after
    # claiming: the others take their batches, and they must find those batches lost
    rival = MergingTaskEngine(
        design.store,
        design.apply,
        design.apply_tasks,
        workers=2,
        max_batch=8,
        lease_s=0.2,
        node="node-2",
    )
    rival.pause_after_claim_s = 0.3
    try:
        rival.start()
        design.task_engine.start()
        assert design.task_engine.wait_drained(120)
    finally:
        rival.stop()
        design.close()
    report = check_lab(lab, initial, records, redis_view=True)
    assert report.ok and report.converged, report.summary()
    assert report.double_deducted == 0 and report.oversold == 0
    ledger = _ledger(lab)
    assert all(n == 1 for n in Counter(order_id for order_id, _ in ledger.elements()).values())


def test_the_guard_falls_back_to_tasks_and_applies_only_what_fits(lab):
    design = _design(
        lab, shards=1, db_guard=True, rewarm_minus_pending=False, max_attempts=2, backoff_s=0.0
    )
    design.setup({"sku-1": 5})
    first = [Order("a-0", "sku-1", 2), Order("a-1", "sku-1", 2)]
    second = [Order("b-0", "sku-1", 2), Order("b-1", "sku-1", 2), Order("b-2", "sku-1", 1)]
    try:
        _accept(design, first)
        lab.clear_redis()  # Redis lost its data; re-warmed from the DB alone: 5 again
        design.rewarm()
        _accept(design, second)  # 9 units promised, 5 in the database
        engine = design.task_engine
        assert engine.work_once() == 5
        assert engine.batch_counters.fallback_guard == 1 and engine.batch_counters.batches == 0
        assert _stock(lab) == {"sku-1": 0}  # never below zero
        assert _ledger(lab) == Counter({("a-0", 2): 1, ("a-1", 2): 1, ("b-2", 1): 1})
        states = design.store.frame().set_index("order_id")["status"]
        assert list(states[["b-0", "b-1"]]) == [Status.DEAD, Status.DEAD]
        assert (states[["a-0", "a-1", "b-2"]] == Status.DONE).all()
    finally:
        design.close()


def test_with_the_guard_a_batch_that_fits_is_still_merged(lab):
    design = _design(lab, shards=1, db_guard=True)
    initial = {"sku-1": 3}
    design.setup(initial)
    orders = [Order(f"o-{i}", "sku-1", 1) for i in range(3)]
    try:
        _accept(design, orders)
        engine = design.task_engine
        assert engine.work_once() == 3
        assert engine.batch_counters.batches == 1 and engine.batch_counters.fallback_guard == 0
        assert _stock(lab) == {"sku-1": 0}
        _check(lab, initial, orders, design)
    finally:
        design.close()


def test_merged_design_holds_every_invariant_on_a_hot_workload(paired_lab):
    workload = Workload(orders=300, skus=1, stock=150, retries=0.3, seed=4)
    design = design_class("task_engine_merged")(paired_lab, shards=3, workers=2, max_batch=32)
    design.setup(workload.initial_stock())
    try:
        records = run_workload(design, workload.attempts(), concurrency=6)
        design.drain()
        report = check_lab(paired_lab, workload.initial_stock(), records, redis_view=True)
    finally:
        design.close()
    assert (records["outcome"] == "error").sum() == 0
    assert report.ok and report.converged, report.summary()
    assert design.pending() == {}
    counters, batches = design.task_engine.counters, design.task_engine.batch_counters
    assert counters.applied == sum(_ledger(paired_lab).values())
    assert batches.batches >= 1 and batches.largest <= 32


def test_checkouts_go_through_the_parents_path(lab):
    design = _design(lab)
    initial = {"sku-a": 3, "sku-b": 3}
    design.setup(initial)
    try:
        cart = Checkout.of("o-1", {"sku-a": 2, "sku-b": 1})
        assert design.place(cart).outcome is Outcome.ACCEPTED
        assert design.place(cart).outcome is Outcome.DUPLICATE
        design.drain()
        assert _stock(lab) == {"sku-a": 1, "sku-b": 2}
        _check(lab, initial, list(cart.lines), design)
    finally:
        design.close()


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8", None, 10_001])
def test_bad_max_batch_is_refused(default_lab, bad):
    with pytest.raises(ValueError, match="max_batch"):
        design_class("task_engine_merged")(default_lab, max_batch=bad)


def test_the_merged_executors_claim_their_own_way(default_lab):
    with pytest.raises(ValueError, match="claim"):
        design_class("task_engine_merged")(default_lab, claim="skip_locked")
