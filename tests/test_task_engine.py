"""The task engine on every database backend (and Redis backend for the design)."""

import logging
import threading
import time

import pytest
from sqlalchemy.exc import IntegrityError

from inventory_lab import Order, Outcome, Workload, check_lab, run_workload, schema
from inventory_lab.designs import design_class
from inventory_lab.reconcile import reconcile
from inventory_lab.tasks import Status, TaskEngine, TaskStore


class _Ledger:
    """An `apply` that remembers what it applied, to count double applications."""

    def __init__(self, fail_times=0, delay_s=0.0):
        self.applied = []
        self.fail_times = fail_times
        self.delay_s = delay_s
        self.lock = threading.Lock()

    def __call__(self, order):
        time.sleep(self.delay_s)
        with self.lock:
            if self.fail_times > 0:
                self.fail_times -= 1
                raise RuntimeError("database refused")
            self.applied.append(order.anti_repeat_code)
        return True


def _store(lab, shards=3, n=30):
    store = TaskStore(lab.engine, shards)
    store.reset()
    for i in range(n):
        store.add(Order(f"o-{i}", "sku-1", 1))
    return store


def test_the_same_order_line_cannot_be_recorded_twice(lab):
    store = _store(lab, n=1)
    with pytest.raises(IntegrityError):
        store.add(Order("o-0", "sku-1", 1))


def test_two_workers_racing_for_one_task_claim_it_once(lab):
    store = _store(lab, shards=1, n=1)
    task_id = store.new_ids(0, 1)[0]
    barrier = threading.Barrier(8)
    won = []

    def racer(i):
        barrier.wait()
        if store.claim(0, task_id, f"n:b:w{i}") is not None:
            won.append(i)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1


def test_concurrent_workers_apply_every_task_exactly_once(lab):
    store = _store(lab, shards=2, n=80)
    ledger = _Ledger()
    engine = TaskEngine(store, ledger, workers=6, batch=4)  # more workers than shards: races
    engine.start()
    try:
        assert engine.wait_drained(60)
    finally:
        engine.stop()
    assert sorted(ledger.applied) == sorted(f"o-{i}:sku-1" for i in range(80))
    assert store.counts()[Status.DONE] == 80
    assert engine.counters.completed == 80


def test_skip_locked_batch_claiming_on_servers_that_have_it(lab):
    store = _store(lab, shards=2, n=40)
    if lab.dialect == "sqlite":
        with pytest.raises(NotImplementedError, match="SKIP LOCKED"):
            store.claim_batch(0, "n:b:w0", 10)
        return
    first, second = store.claim_batch(0, "n:b:w0", 10), store.claim_batch(0, "n:b:w1", 10)
    assert first and not {t.id for t in first} & {t.id for t in second}
    for owner, claimed in (("n:b:w0", first), ("n:b:w1", second)):  # handed back unapplied
        assert all(store.release(task, owner) for task in claimed)
    ledger = _Ledger()
    # a lease far longer than any stall: this test is about claiming, not about leases
    engine = TaskEngine(store, ledger, workers=4, claim="skip_locked", batch=8, lease_s=60)
    engine.start()
    try:
        assert engine.wait_drained(60)
    finally:
        engine.stop()
    assert sorted(ledger.applied) == sorted(f"o-{i}:sku-1" for i in range(40))


def test_a_worker_killed_holding_a_task_is_unlocked_after_the_lease(lab):
    store = _store(lab, shards=1, n=5)
    ledger = _Ledger()
    engine = TaskEngine(store, ledger, workers=2, lease_s=0.3, batch=1)
    engine.kill_after_claim(1)
    engine.start()
    try:
        assert engine.wait_drained(30)
    finally:
        engine.stop()
    assert engine.counters.killed == 1 and engine.counters.unlocked >= 1
    # the engine names the task the dead executor held: it waited out a lease (on the database's
    # clock, which SQLite reads to the millisecond)
    [(shard, task_id)] = engine.killed_holding
    held = store.frame().set_index(["shard", "id"]).loc[(shard, task_id)]
    assert held["status"] == Status.DONE
    assert held["done_time"] - held["created_time"] >= 0.3 - 0.001
    # at least once: a lease is not a lock (a live worker that stalls past 0.3 s on a busy
    # machine may apply a task another applied too; the design's apply is idempotent for that)
    assert set(ledger.applied) == {f"o-{i}:sku-1" for i in range(5)}


def test_a_stalled_worker_cannot_complete_a_task_it_lost(lab):
    store = _store(lab, shards=1, n=1)
    slow = TaskEngine(store, _Ledger(), lease_s=0.05)
    task = store.claim(0, store.new_ids(0, 1)[0], slow.owner(0))
    time.sleep(0.1)
    assert slow.store.unlock_expired(0.05) == 1  # the unlock worker frees it
    other = store.claim(0, task.id, "n:other:w0")
    assert other is not None
    assert store.complete(task, slow.owner(0)) is False  # the stale owner's CAS fails
    assert store.complete(other, "n:other:w0") is True


def test_failures_are_retried_with_backoff_then_buried(lab, caplog):
    store = _store(lab, shards=1, n=2)
    ledger = _Ledger(fail_times=2)
    engine = TaskEngine(store, ledger, max_attempts=3, backoff_s=0.01)
    with caplog.at_level(logging.DEBUG, logger="inventory_lab.tasks.workers"):
        for _ in range(50):
            engine.work_once()
            engine.maintain_once()
            if store.counts()[Status.DONE] == 2:
                break
            time.sleep(0.01)
    assert store.counts()[Status.DONE] == 2
    assert engine.counters.failed == 2 and engine.counters.retried >= 2
    logged = [r for r in caplog.records if r.name == "inventory_lab.tasks.workers"]
    assert len(logged) == 2 and all(str(r.exc_info[1]) == "database refused" for r in logged)

    doomed = _store(lab, shards=1, n=1)
    engine = TaskEngine(doomed, _Ledger(fail_times=100), max_attempts=2, backoff_s=0.0)
    for _ in range(10):
        engine.work_once()
        engine.maintain_once()
    frame = doomed.frame()
    assert list(frame["status"]) == [Status.DEAD] and frame["attempts"].item() == 2
    assert "database refused" in frame["last_error"].item()


def test_restart_recovers_the_tasks_a_crashed_process_left_locked(lab):
    store = _store(lab, shards=2, n=6)
    crashed = TaskEngine(store, _Ledger(), node="app-1")
    for shard in range(2):  # the old process claimed everything, then died
        for task_id in store.new_ids(shard, 10):
            store.claim(shard, task_id, crashed.owner(0))
    assert store.counts()[Status.LOCKED] == 6
    restarted = TaskEngine(store, _Ledger(), node="app-1", lease_s=3600)
    assert restarted.recover() == 6  # no wait for the lease: this node knows it restarted
    assert store.counts()[Status.NEW] == 6


def test_recovery_leaves_other_nodes_tasks_alone(lab):
    store = _store(lab, shards=1, n=2)
    ids = store.new_ids(0, 2)
    store.claim(0, ids[0], "app-2:boot:w0")
    store.claim(0, ids[1], "app-1:oldboot:w0")
    assert TaskEngine(store, _Ledger(), node="app-1", lease_s=3600).recover() == 1
    assert store.counts()[Status.LOCKED] == 1


@pytest.mark.parametrize(
    "bad",
    [{"workers": 0}, {"claim": "greedy"}, {"lease_s": 0}, {"max_attempts": 0}, {"node": "a:b"}],
)
def test_bad_engine_configuration_is_refused(lab, bad):
    with pytest.raises(ValueError):
        TaskEngine(TaskStore(lab.engine, 1), _Ledger(), **bad)


def test_task_engine_design_holds_every_invariant_with_retries(lab):
    workload = Workload(orders=200, skus=2, stock=50, retries=0.3, seed=4)
    design = design_class("task_engine")(lab, shards=3, workers=2)
    design.setup(workload.initial_stock())
    try:
        records = run_workload(design, workload.attempts(), concurrency=6)
        design.drain()
        report = check_lab(lab, workload.initial_stock(), records, redis_view=True)
    finally:
        design.close()
    assert (records["outcome"] == "error").sum() == 0
    assert report.ok and report.converged, report.summary()
    assert design.pending() == {}


def test_task_engine_accepts_before_persisting(lab):
    design = design_class("task_engine")(lab, start_workers=False)
    design.setup({"sku-1": 5})
    try:
        assert design.deduct(Order("o-1", "sku-1", 2)).outcome is Outcome.ACCEPTED
        assert design.pending() == {"sku-1": 2}
        with lab.engine.connect() as conn:
            assert schema.read_stock(conn) == {"sku-1": 5}  # not persisted yet
        assert reconcile(lab)["drift"].tolist() == [0]
        design.drain()
        assert design.pending() == {}
        assert design.stock("sku-1") == 3
    finally:
        design.close()


def test_executors_driven_by_hand_apply_after_setup(lab):
    """Regression: `setup` stops the engine, and `stop` left its stop flag set, so `work_once`
    (the stateful test's executor, the explorer's) claimed each task and handed it back."""
    design = design_class("task_engine")(lab, start_workers=False)
    design.setup({"sku-1": 5})
    try:
        assert design.deduct(Order("o-1", "sku-1", 2)).outcome is Outcome.ACCEPTED
        assert design.task_engine.work_once() == 1
        assert design.pending() == {}
        with lab.engine.connect() as conn:
            assert schema.read_stock(conn) == {"sku-1": 3}
    finally:
        design.close()


@pytest.mark.parametrize("guard", [False, True])
def test_a_rewarm_that_forgets_pending_tasks_oversells_unless_the_db_guards(lab, guard):
    design = design_class("task_engine")(
        lab,
        start_workers=False,
        rewarm_minus_pending=False,
        db_guard=guard,
        max_attempts=2,
        backoff_s=0.0,
    )
    design.setup({"sku-1": 2})
    try:
        first = [design.deduct(Order(f"a-{i}", "sku-1", 1)).outcome for i in range(2)]
        lab.clear_redis()  # Redis lost its data; re-warmed from the DB alone: 2 again
        design.rewarm()
        second = [design.deduct(Order(f"b-{i}", "sku-1", 1)).outcome for i in range(2)]
        assert first + second == [Outcome.ACCEPTED] * 4
        design.drain()
    finally:
        design.close()
    records = run_workload(design, [], concurrency=1)
    for i, prefix in enumerate(["a-0", "a-1", "b-0", "b-1"]):
        records.loc[i] = [prefix, "sku-1", 1, 0, 0, 0.0, 0.0, 0.0, "accepted", ""]
    report = check_lab(lab, {"sku-1": 2}, records, redis_view=False)
    if guard:
        assert report.oversold == 2 and report.lost == 2  # promised twice over; the DB held
        with lab.engine.connect() as conn:
            assert schema.read_stock(conn) == {"sku-1": 0}
        assert design.store.counts()[Status.DEAD] == 2
    else:
        assert report.oversold == 2 and report.lost == 0
        with lab.engine.connect() as conn:
            assert schema.read_stock(conn) == {"sku-1": -2}


# --- regressions: each failed on the code before its fix ----------------------------------------


def test_a_malformed_task_goes_dead_with_its_error_instead_of_stalling_its_shard(lab):
    store = _store(lab, shards=1, n=2)
    with lab.engine.begin() as conn:
        conn.execute(
            store.tables[0]
            .insert()
            .values(
                code="bad id:sku-1",
                order_id="bad id",  # a space: Order refuses it
                sku="sku-1",
                qty=1,
                status=int(Status.NEW),
                attempts=0,
                created_time=0.0,
                modify_time=0.0,
            )
        )
    ledger = _Ledger()
    engine = TaskEngine(store, ledger, max_attempts=3, backoff_s=0.0)
    for _ in range(5):
        engine.work_once()
        engine.maintain_once()
    frame = store.frame().set_index("order_id")
    assert frame.loc["bad id", "status"] == Status.DEAD
    assert "order id" in frame.loc["bad id", "last_error"]
    assert (frame.drop(index="bad id")["status"] == Status.DONE).all()
    assert sorted(ledger.applied) == ["o-0:sku-1", "o-1:sku-1"]


def test_recovery_frees_only_its_own_nodes_tasks_matched_exactly(lab):
    store = _store(lab, shards=1, n=5)
    owners = ["appX1:b:w0", "APP_1:b:w0", "app_10:b:w0", "app%1:b:w0", "app_1:old:w0"]
    for task_id, owner in zip(store.new_ids(0, 5), owners, strict=True):
        assert store.claim(0, task_id, owner) is not None
    assert TaskEngine(store, _Ledger(), node="app_1", lease_s=3600).recover() == 1
    locked = store.frame().query("status == @Status.LOCKED")["lock_owner"]
    assert sorted(locked) == sorted(owners[:4])


def test_leases_are_timed_by_the_databases_clock_not_the_workers(lab, monkeypatch):
    store = _store(lab, shards=1, n=1)
    assert store.claim(0, store.new_ids(0, 1)[0], "app-1:b:w0") is not None
    ahead = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: ahead)  # this worker's clock runs an hour fast
    assert store.unlock_expired(60.0) == 0  # by the database's clock the lease is fresh
    monkeypatch.undo()
    assert store.counts()[Status.LOCKED] == 1


def test_stop_waits_for_a_busy_executor_and_start_refuses_while_it_lives(lab):
    store = _store(lab, shards=1, n=1)
    entered, release = threading.Event(), threading.Event()

    def slow(order):
        entered.set()
        release.wait(60)
        return True

    engine = TaskEngine(store, slow, workers=1)
    engine.start()
    try:
        assert entered.wait(60)
        with pytest.raises(TimeoutError):
            engine.stop(timeout_s=0.05)
        assert engine.running
        with pytest.raises(RuntimeError, match="still running"):
            engine.start()
    finally:
        release.set()
    engine.stop()
    assert not engine.running
    assert store.counts()[Status.DONE] == 1
    engine.start().stop()  # a stopped engine starts again


def test_a_task_applied_after_its_lease_was_lost_is_not_pending(lab):
    design = design_class("task_engine")(lab, start_workers=False)
    design.setup({"sku-1": 5})
    try:
        order = Order("o-1", "sku-1", 1)
        assert design.deduct(order).outcome is Outcome.ACCEPTED
        store = design.store
        shard = store.shard_of(order.order_id)
        task = store.claim(shard, store.new_ids(shard, 1)[0], "n-1:b:w0")
        assert store.unlock_expired(0.0) == 1  # the lease ran out while the worker applied
        assert design.apply(order) is True
        assert store.complete(task, "n-1:b:w0") is False  # its completion CAS fails: still NEW
        assert design.pending() == {}  # applied is applied, whatever the task row says
        assert reconcile(lab)["drift"].tolist() == [0]
        records = run_workload(design, [], concurrency=1)
        records.loc[0] = ["o-1", "sku-1", 1, 0, 0, 0.0, 0.0, 0.0, "accepted", ""]
        assert check_lab(lab, {"sku-1": 5}, records, redis_view=True).converged
    finally:
        design.close()


def test_orders_spread_over_shards_and_one_order_stays_in_one(lab):
    store = TaskStore(lab.engine, 3)
    store.reset()
    for i in range(30):
        for sku in ("sku-1", "sku-2"):  # two lines of one order: one shard
            store.add(Order(f"o-{i}", sku, 1))
    frame = store.frame()
    assert (frame["shard"] == frame["order_id"].map(store.shard_of)).all()
    assert frame.groupby("order_id")["shard"].nunique().eq(1).all()
    assert frame["shard"].nunique() == 3


def test_the_checker_finds_pending_tasks_itself(lab):
    design = design_class("task_engine")(lab, start_workers=False)
    design.setup({"sku-1": 5})
    try:
        assert design.deduct(Order("o-1", "sku-1", 2)).outcome is Outcome.ACCEPTED
        records = run_workload(design, [], concurrency=1)
        records.loc[0] = ["o-1", "sku-1", 2, 0, 0, 0.0, 0.0, 0.0, "accepted", ""]
        report = check_lab(lab, {"sku-1": 5}, records, redis_view=True)  # no pending= given
        assert report.converged, report.drift  # Redis 3 = DB 5 - the pending task's 2
        assert report.pending == {"sku-1": 2}
    finally:
        design.close()
