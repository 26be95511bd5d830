"""The task engine's failure runs: every invariant holds after drain + reconciliation."""

import pytest

from inventory_lab import Workload
from inventory_lab.task_runs import FAULTS, drain_rate, failure_run, lag_ms

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
    assert runs["worker_crash"].counters["killed"] == 2
    assert runs["worker_crash"].counters["unlocked"] >= 1
    outage = runs["db_outage"]
    refused = outage.records["outcome"].isin(["error", "unknown"])
    assert refused.sum() > 0  # accepts refused (or unresolvable) during the outage
    # the workers met the outage too (claims or applies failed) and still drained everything
    assert (outage.tasks["status"] == 200).all()
    assert runs["restart"].counters["killed"] == 3 and runs["restart"].counters["recovered"] >= 3
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
