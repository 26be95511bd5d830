"""The task engine's experiments: every invariant holds after drain + reconciliation in the
failure runs; a failing apply goes FAILED -> retry -> DONE or DEAD; acceptance and persistence
read from one run's task table."""

import pandas as pd
import pytest

from inventory_lab import Order, Workload
from inventory_lab.task_runs import (
    FAULTS,
    FailingApply,
    acceptance_vs_persistence,
    backlog_over_time,
    drain_rate,
    failure_run,
    lag_ms,
    retry_run,
)
from inventory_lab.tasks import Status

SMALL = Workload(orders=120, skus=2, stock=40, retries=0.3, seed=6)


@pytest.mark.parametrize("fault", FAULTS)
def test_invariants_hold_after_every_fault(lab, fault):
    run = failure_run(lab, fault, SMALL)
    after = run.after
    assert after.oversold == 0 and after.double_deducted == 0 and after.lost == 0
    assert after.unaccounted == 0
    assert after.converged is True, after.drift
    assert (run.drift_after["drift"] == 0).all()
    assert run.before.oversold == 0 and run.before.double_deducted == 0


def test_each_fault_really_happened(lab):
    runs = {fault: failure_run(lab, fault, SMALL) for fault in FAULTS}
    crash = runs["worker_crash"]
    assert crash.counters["killed"] == 2 and crash.counters["unlocked"] >= 1
    assert crash.counters["respawned"] == 2  # the supervisor restarted both executors
    assert len(crash.killed_holding) == 2  # each died holding one task (claim="single")
    held = crash.tasks.set_index(["shard", "id"]).loc[list(crash.killed_holding)]
    assert (held["status"] == Status.DONE).all()  # freed after the lease, applied by another
    outage = runs["db_outage"]
    refused = outage.records["outcome"].isin(["error", "unknown"])
    assert refused.sum() > 0  # accepts refused (or unresolvable) during the outage
    # the workers met the outage too (claims or applies failed) and still drained everything
    assert (outage.tasks["status"] == 200).all()
    assert runs["restart"].counters["killed"] == 3 and runs["restart"].counters["recovered"] >= 3
    assert len(runs["restart"].killed_holding) == 3  # carried over to the restarted engine
    crash = runs["crash_between_gates"]
    assert crash.crashed_orders == 4
    assert crash.before.converged is False  # Redis kept the decrements of the crashed orders
    assert crash.drift_before["drift"].sum() < 0 and crash.drift_before["repaired"].any()
    assert (crash.records["outcome"] == "unknown").sum() >= 4  # the app died mid-order
    assert runs["none"].before.converged is True


def test_unknown_faults_are_refused(lab):
    with pytest.raises(ValueError, match="unknown fault"):
        failure_run(lab, "meteor", SMALL)


def test_drain_rate_and_lag(lab):
    result = drain_rate(lab, shards=2, workers=2, tasks=60)
    assert result["tasks"] == 60 and result["rate"] > 0
    run = failure_run(lab, "none", SMALL)
    lags = lag_ms(run.tasks)
    assert len(lags) == int(run.tasks["done_time"].notna().sum()) > 0
    assert (lags >= 0).all()


def test_skip_locked_drain_on_servers_and_a_clear_error_on_sqlite(lab):
    if lab.dialect == "sqlite":
        with pytest.raises(ValueError, match="SKIP LOCKED"):
            drain_rate(lab, shards=2, workers=3, tasks=60, claim="skip_locked")
        return
    assert drain_rate(lab, shards=2, workers=3, tasks=60, claim="skip_locked")["rate"] > 0


def test_a_failing_apply_is_retried_and_buried_as_dead_after_max_attempts(lab):
    run = retry_run(lab, {"r-0": None, "r-1": 2}, orders=4, max_attempts=3, backoff_s=0.0)
    tasks = run.tasks.set_index("order_id")
    assert tasks.loc["r-0", "status"] == Status.DEAD and tasks.loc["r-0", "attempts"] == 3
    assert tasks.loc["r-0", "last_error"].startswith("ApplyFailed: simulated failure 3")
    assert tasks.loc["r-1", "status"] == Status.DONE and tasks.loc["r-1", "attempts"] == 2
    assert (tasks.loc[["r-2", "r-3"], "status"] == Status.DONE).all()
    # failed: 3 + 2; each failure but the last of r-0 went back to NEW; one task dead
    assert run.counters["failed"] == 5 and run.counters["retried"] == 4
    assert run.counters["dead"] == 1
    calls = run.applies.groupby("order_id")["outcome"].agg(list)
    assert calls["r-0"] == ["failed"] * 3 and calls["r-1"] == ["failed", "failed", "applied"]
    # its client was told "accepted": the dead task is a broken promise the checker reports,
    # and Redis kept the unit gate 1 took until reconciliation gave it back
    assert run.before.lost == 1 and run.before.converged is False
    assert run.before.drift == {"sku-r": -1}
    assert run.after.lost == 1 and run.after.converged is True
    assert run.before.oversold == 0 and run.before.double_deducted == 0


@pytest.mark.parametrize(
    ("fails", "orders", "message"),
    [({"r-9": 1}, 3, "does not send"), ({"r-0": 0}, 3, "at least 1"), ({"r-0": 1.5}, 3, "count")],
)
def test_bad_failure_plans_are_refused(lab, fails, orders, message):
    with pytest.raises(ValueError, match=message):
        retry_run(lab, fails, orders=orders)


def test_failing_apply_passes_through_what_it_does_not_fail():
    seen = []
    apply = FailingApply(lambda order: seen.append(order.order_id) or True, {"a": 1})
    with pytest.raises(Exception, match="simulated failure 1 of a"):
        apply(Order("a", "s", 1))
    assert apply(Order("a", "s", 1)) is True and apply(Order("b", "s", 1)) is True
    assert seen == ["a", "b"]
    assert list(apply.frame()["outcome"]) == ["failed", "applied", "applied"]


def test_backlog_and_acceptance_read_the_task_table():
    tasks = pd.DataFrame(
        {
            "created_time": [10.0, 10.1, 10.2],
            "done_time": [10.25, 10.3, 10.6],
        }
    )
    backlog = backlog_over_time(tasks)
    assert list(backlog["accepted"]) == [1, 2, 3, 3, 3, 3]
    assert list(backlog["persisted"]) == [0, 0, 0, 1, 2, 3]
    assert backlog["backlog"].max() == 3 and backlog["backlog"].iloc[-1] == 0
    assert backlog["t_ms"].is_monotonic_increasing and backlog["t_ms"].iloc[0] == 0
    summary = acceptance_vs_persistence(tasks)
    assert summary["accept_ms"] == 200.0 and summary["persist_ms"] == 350.0
    assert summary["waiting_at_last_acceptance"] == 3
    assert summary["drained_ms_after"] == 400.0
    with pytest.raises(ValueError, match="no task was applied"):
        acceptance_vs_persistence(tasks.assign(done_time=float("nan")))


def test_a_task_recorded_and_done_at_one_instant_counts_as_accepted_first():
    backlog = backlog_over_time(pd.DataFrame({"created_time": [1.0], "done_time": [1.0]}))
    assert list(backlog["backlog"]) == [1, 0]
