"""Oversells forced step by step. The strawman's lost update sells more than exists on every
run; the two mid-flight oversells do too as written, on every backend, and as the lab builds the
designs the same steps sell nothing twice."""

import pytest

from inventory_lab import Outcome
from inventory_lab.designs import redis_design_names
from inventory_lab.reconcile import reconcile
from inventory_lab.scenarios import forced_lost_update, lost_commit_ack, rewarm_between_gates

REDIS_DESIGNS = redis_design_names()


def test_forced_interleaving_makes_naive_oversell_deterministically(lab):
    records, report = forced_lost_update(lab, buyers=3, stock=1)
    assert (records["outcome"] == "accepted").sum() == 3
    assert report.oversold == 2  # three units promised, one existed
    assert report.unaccounted == 2  # the ledger shows three deductions, the stock moved by one


@pytest.mark.parametrize("as_written", [True, False])
@pytest.mark.parametrize("name", ["two_gate", "two_gate_lua", "task_engine"])
def test_a_lost_commit_acknowledgement(paired_lab, name, as_written):
    run = lost_commit_ack(paired_lab, name, as_written=as_written)
    first, second = run.told["b0"], run.told["b1"]
    if as_written:  # the error was taken for a failure: stock given back, sold again
        assert first.outcome is Outcome.UNKNOWN and second.outcome is Outcome.ACCEPTED
        assert run.report.oversold == 1 and run.report.unknown_persisted == 1
        assert run.report.per_sku["db_final"].item() == -1
    else:  # asked the database first: the first buyer was served
        assert first.outcome is Outcome.ACCEPTED and "reply lost" in first.detail
        assert second.outcome is Outcome.SOLD_OUT
        assert run.report.ok and run.report.converged, run.report.summary()


@pytest.mark.parametrize("as_written", [True, False])
@pytest.mark.parametrize("name", REDIS_DESIGNS)
def test_a_rewarm_while_an_order_sits_between_the_gates(paired_lab, name, as_written):
    run = rewarm_between_gates(paired_lab, name, as_written=as_written)
    assert run.told["b0"].outcome is run.told["b1"].outcome is Outcome.ACCEPTED
    if as_written:  # the re-warm handed a's unit out again
        assert run.told["a"].outcome is Outcome.ACCEPTED
        assert run.report.oversold == 1 and run.report.per_sku["db_final"].item() == -1
    else:  # fenced: a's copy was replaced, gate 2 refuses it
        assert run.told["a"].outcome is Outcome.ERROR and "re-warmed" in run.told["a"].detail
        assert run.report.ok and run.report.converged, run.report.summary()
        assert (reconcile(paired_lab)["drift"] == 0).all()


def test_a_design_without_redis_has_nothing_to_act_on(default_lab):
    with pytest.raises(ValueError, match="not a Redis design"):
        lost_commit_ack(default_lab, "db_only", as_written=True)
