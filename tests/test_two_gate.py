"""The Redis two-gate designs on fakeredis and on the real Redis: gates, variants, idempotency."""

import time

import pandas as pd
import pytest
import redis

from inventory_lab import InvalidOrder, Order, Outcome, Workload, check_lab, keys, run_workload
from inventory_lab.designs import design_class
from inventory_lab.designs.two_gate import TwoGateCommands, TwoGateMulti, TwoGatePipeline
from inventory_lab.designs.two_gate_lua import TwoGateLua
from inventory_lab.reconcile import reconcile
from inventory_lab.redis_meter import metered
from inventory_lab.redis_stock import read_redis_stock, warm_up
from inventory_lab.workload import RECORD_COLUMNS

VARIANTS = ["two_gate", "two_gate_pipeline", "two_gate_multi", "two_gate_watch", "two_gate_lua"]


def _design(lab, name, **options):
    design = design_class(name)(lab, **options)
    design.setup({"sku-1": 3, "sku-2": 5})
    return design


def _redis_state(lab):
    return sorted(
        (key, lab.redis.type(key), lab.redis.hgetall(key) if lab.redis.type(key) == "hash" else "")
        for key in lab.redis.scan_iter(match=f"{lab.namespace}:*")
    )


@pytest.mark.parametrize("name", VARIANTS)
def test_each_variant_accepts_refuses_and_deducts_in_both_gates(redis_lab, name):
    design = _design(redis_lab, name)
    assert design.deduct(Order("o-1", "sku-1", 2)).outcome is Outcome.ACCEPTED
    assert design.deduct(Order("o-1", "sku-1", 2)).outcome is Outcome.DUPLICATE
    assert design.deduct(Order("o-2", "sku-1", 2)).outcome is Outcome.SOLD_OUT
    assert design.deduct(Order("o-3", "sku-1", 1)).outcome is Outcome.ACCEPTED  # the last unit
    assert design.stock("sku-1") == 0
    assert read_redis_stock(redis_lab, ["sku-1", "sku-2"]) == {"sku-1": 0, "sku-2": 5}
    report = check_lab(redis_lab, {"sku-1": 3, "sku-2": 5}, _records(), redis_view=True)
    assert report.ok and report.converged


@pytest.mark.parametrize("name", VARIANTS)
def test_a_sold_out_order_can_be_retried_when_it_fits(redis_lab, name):
    design = _design(redis_lab, name)
    assert design.deduct(Order("o-1", "sku-1", 4)).outcome is Outcome.SOLD_OUT
    assert design.deduct(Order("o-1", "sku-1", 3)).outcome is Outcome.ACCEPTED


@pytest.mark.parametrize("name", VARIANTS)
def test_bad_input_changes_neither_redis_nor_the_db(redis_lab, name):
    design = _design(redis_lab, name)
    before = _redis_state(redis_lab)
    with pytest.raises(InvalidOrder, match="unknown SKU"):
        design.deduct(Order("o-1", "sku-404", 1))
    for bad in [("o-1", "sku-1", 0), ("o-1", "sku-1", -2), ("o 1", "sku-1", 1), ("o-1", "*", 1)]:
        with pytest.raises(InvalidOrder):
            design.deduct(Order(*bad))
    assert _redis_state(redis_lab) == before
    assert design.stock("sku-1") == 3


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_holds_the_invariants_under_concurrency_with_retries(redis_lab, name):
    workload = Workload(orders=300, skus=2, stock=40, retries=0.3, max_qty=2, seed=11)
    design = design_class(name)(redis_lab)
    design.setup(workload.initial_stock())
    records = run_workload(design, workload.attempts(), concurrency=12)
    report = check_lab(redis_lab, workload.initial_stock(), records, redis_view=True)
    assert (records["outcome"] == "error").sum() == 0
    assert report.oversold == 0 and report.double_deducted == 0 and report.lost == 0
    assert report.unaccounted == 0
    assert report.converged, report.drift


def test_warm_up_is_idempotent(redis_lab):
    design = _design(redis_lab, "two_gate")
    design.deduct(Order("o-1", "sku-1", 1))
    assert warm_up(redis_lab) == warm_up(redis_lab) == {"sku-1": 2, "sku-2": 5}
    assert read_redis_stock(redis_lab, ["sku-1"]) == {"sku-1": 2}


def test_keys_share_the_skus_hash_tag(redis_lab):
    design = _design(redis_lab, "two_gate_lua")
    code_key, stock_key = design.keys_for(Order("o-1", "sku-1", 1))
    assert "{sku-1}" in code_key and "{sku-1}" in stock_key
    assert code_key.startswith(redis_lab.namespace) and stock_key == keys.stock_key(
        redis_lab.namespace, "sku-1"
    )


def test_the_anti_repeat_code_expires_after_its_ttl(redis_lab):
    design = _design(redis_lab, "two_gate", ttl_ms=200)
    design.deduct(Order("o-1", "sku-1", 1))
    code_key = design.keys_for(Order("o-1", "sku-1", 1))[0]
    assert 0 < redis_lab.redis.pttl(code_key) <= 200
    time.sleep(0.3)  # past the TTL on any machine: a read after it finds the key gone
    assert redis_lab.redis.exists(code_key) == 0
    assert design.deduct(Order("o-1", "sku-1", 1)).outcome is Outcome.DUPLICATE  # gate 2's row


@pytest.mark.parametrize(("name", "drifts"), [("two_gate", True), ("two_gate_lua", False)])
def test_a_retry_after_expiry_is_caught_by_gate_two(redis_lab, name, drifts):
    """As written, the Redis decrement of the late retry stays: Redis and the DB disagree."""
    design = _design(redis_lab, name, ttl_ms=50)
    order = Order("o-1", "sku-1", 1)
    assert design.deduct(order).outcome is Outcome.ACCEPTED
    time.sleep(0.15)  # the Redis code is gone; the DB's anti-repeat row is not
    assert design.deduct(order).outcome is Outcome.DUPLICATE
    records = _records((order, "accepted"), (order, "duplicate"))
    report = check_lab(redis_lab, {"sku-1": 3, "sku-2": 5}, records, redis_view=True)
    assert report.double_deducted == 0 and report.oversold == 0
    assert report.converged is (not drifts)
    if drifts:
        assert report.drift == {"sku-1": -1}


@pytest.mark.parametrize("as_written", [False, True])
def test_gate_two_failure_gives_the_redis_stock_back_and_frees_the_code(
    redis_lab, monkeypatch, as_written
):
    """Nothing was persisted: resolved from the DB (or, as written, assumed) and undone."""
    design = _design(redis_lab, "two_gate_lua", as_written=as_written)

    def broken(conn, order, epoch, *, fence):
        raise RuntimeError("database went away")

    monkeypatch.setattr(design, "persist_deduction", broken)
    if as_written:
        with pytest.raises(RuntimeError):
            design.deduct(Order("o-1", "sku-1", 2))
    else:
        result = design.deduct(Order("o-1", "sku-1", 2))
        assert result.outcome is Outcome.ERROR and "nothing persisted" in result.detail
        assert design.resolved["not_persisted"] == 1
    assert design.stock("sku-1") == 3
    monkeypatch.undo()
    assert design.deduct(Order("o-1", "sku-1", 2)).outcome is Outcome.ACCEPTED


def test_pipeline_and_multi_decrement_even_for_a_duplicate_then_give_it_back(redis_lab):
    for cls in (TwoGatePipeline, TwoGateMulti):
        design = cls(redis_lab)
        design.setup({"sku-1": 3})
        design.deduct(Order("o-1", "sku-1", 1))
        given_back = design.given_back
        assert design.deduct(Order("o-1", "sku-1", 1)).outcome is Outcome.DUPLICATE
        assert design.given_back == given_back + 1  # the duplicate's decrement had run
        assert design.stock("sku-1") == 2


def test_lua_gate_refuses_without_touching_stock(redis_lab):
    design = _design(redis_lab, "two_gate_lua")
    design.deduct(Order("o-1", "sku-1", 1))
    assert design.deduct(Order("o-1", "sku-1", 1)).outcome is Outcome.DUPLICATE
    assert design.deduct(Order("o-2", "sku-1", 5)).outcome is Outcome.SOLD_OUT
    assert design.given_back == 0 and design.stock("sku-1") == 2


def test_lua_gate_recovers_from_noscript_after_a_script_flush(server_lab):
    """SCRIPT FLUSH on a server of this test's own (never a shared one)."""
    design = _design(server_lab, "two_gate_lua")
    design.deduct(Order("o-1", "sku-1", 1))
    assert server_lab.redis.script_exists(design.script.sha) == [True]
    server_lab.redis.script_flush()
    assert server_lab.redis.script_exists(design.script.sha) == [False]
    assert design.deduct(Order("o-2", "sku-1", 1)).outcome is Outcome.ACCEPTED
    assert server_lab.redis.script_exists(design.script.sha) == [True]


def test_lua_gate_flushed_mid_run_keeps_every_invariant(server_lab):
    workload = Workload(orders=200, skus=1, stock=50, retries=0.2)
    design = TwoGateLua(server_lab)
    design.setup(workload.initial_stock())
    attempts = workload.attempts()
    first = run_workload(design, attempts[:100], concurrency=4)
    server_lab.redis.script_flush()
    second = run_workload(design, attempts[100:], concurrency=4)
    records = pd.concat([first, second], ignore_index=True)
    assert records["outcome"].isin(["error", "unknown"]).sum() == 0
    report = check_lab(server_lab, workload.initial_stock(), records, redis_view=True)
    assert report.ok and (records["outcome"] == "accepted").sum() == 50


def test_the_article_variant_is_registered_under_its_name():
    assert design_class("two_gate") is TwoGateCommands
    assert design_class("two_gate_lua") is TwoGateLua


def _records(*rows):
    data = [
        [o.order_id, o.sku, o.qty, i, 0, 0.0, 0.0, 0.0, outcome, ""]
        for i, (o, outcome) in enumerate(rows)
    ]
    return pd.DataFrame(data, columns=RECORD_COLUMNS)


@pytest.mark.parametrize("name", VARIANTS)
def test_each_variant_costs_the_round_trips_it_declares(redis_lab, name):
    design = _design(redis_lab, name)
    design.deduct(Order("warm-up", "sku-2", 1))  # loads the Lua script once
    with metered(redis_lab.redis) as meter:
        for i in range(4):
            assert design.deduct(Order(f"o-{i}", "sku-2", 1)).outcome is Outcome.ACCEPTED
    assert meter.count == 4 * design.round_trips


def test_reconciliation_repairs_the_drift_a_late_retry_left(redis_lab):
    design = _design(redis_lab, "two_gate", ttl_ms=50)
    order = Order("o-1", "sku-1", 1)
    design.deduct(order)
    time.sleep(0.15)
    design.deduct(order)
    before = reconcile(redis_lab).set_index("sku")
    assert before.loc["sku-1", "drift"] == -1 and before.loc["sku-2", "drift"] == 0
    after_repair = reconcile(redis_lab, repair=True).set_index("sku")
    assert list(after_repair["repaired"]) == [True, False]
    assert (reconcile(redis_lab)["drift"] == 0).all()
    records = _records((order, "accepted"), (order, "duplicate"))
    assert check_lab(redis_lab, {"sku-1": 3, "sku-2": 5}, records, redis_view=True).ok


def test_reconciliation_restores_a_missing_redis_key_and_counts_pending(redis_lab):
    design = _design(redis_lab, "task_engine", start_workers=False)
    try:
        assert design.deduct(Order("o-1", "sku-1", 1)).outcome is Outcome.ACCEPTED  # a task
        redis_lab.redis.delete(keys.stock_key(redis_lab.namespace, "sku-2"))
        report = reconcile(redis_lab, repair=True).set_index("sku")
    finally:
        design.close()
    assert report.loc["sku-2", "repaired"] and not report.loc["sku-1", "repaired"]
    assert report.loc["sku-1", "pending"] == 1 and report.loc["sku-1", "target"] == 2
    assert read_redis_stock(redis_lab, ["sku-1", "sku-2"]) == {"sku-1": 2, "sku-2": 5}


@pytest.mark.parametrize("name", ["two_gate", "two_gate_lua"])
def test_lost_replies_never_deduct_twice_while_the_code_lives(redis_lab, name):
    workload = Workload(orders=120, skus=2, stock=100, lost_replies=0.3, seed=3)
    design = design_class(name)(redis_lab)
    design.setup(workload.initial_stock())
    records = run_workload(design, workload.attempts(), concurrency=6)
    resent = records[records["attempt"] == 1]
    assert len(resent) > 10 and set(resent["outcome"]) == {"duplicate"}
    report = check_lab(redis_lab, workload.initial_stock(), records, redis_view=True)
    assert report.double_deducted == 0
    assert report.ok


@pytest.mark.parametrize("guard", [False, True])
def test_the_db_guard_turns_a_wrong_redis_into_a_refusal(redis_lab, guard):
    """Redis shows stock the DB does not have (it lost writes): gate 2 as written persists an
    oversell; with the guard it refuses, gives Redis back and frees the code."""
    design = design_class("two_gate_lua")(redis_lab, db_guard=guard)
    design.setup({"sku-1": 1})
    redis_lab.redis.hset(keys.stock_key(redis_lab.namespace, "sku-1"), keys.STOCK_FIELD, 3)
    outcomes = [design.deduct(Order(f"o-{i}", "sku-1", 1)).outcome for i in range(3)]
    records = _records(*((Order(f"o-{i}", "sku-1", 1), o.value) for i, o in enumerate(outcomes)))
    report = check_lab(redis_lab, {"sku-1": 1}, records, redis_view=False)
    if guard:
        assert outcomes == [Outcome.ACCEPTED, Outcome.SOLD_OUT, Outcome.SOLD_OUT]
        assert report.oversold == 0 and design.stock("sku-1") == 2  # Redis given back
    else:
        assert outcomes == [Outcome.ACCEPTED] * 3
        assert report.oversold == 2


def test_a_redis_failure_in_gate_one_is_an_error_and_frees_the_code(redis_lab):
    """The gate-1 script ran and its reply was lost: nothing reached the database, so the order
    did not happen; its retry is served, not told "duplicate"."""
    design = _design(redis_lab, "two_gate_lua")
    order = Order("o-1", "sku-1", 1)
    gate_one = design.gate_one

    def reply_lost(o):
        gate_one(o)
        raise redis.ConnectionError("connection killed after the command was sent")

    design.gate_one = reply_lost
    result = design.deduct(order)
    del design.gate_one
    assert result.outcome is Outcome.ERROR and "nothing reached the database" in result.detail
    assert design.deduct(order).outcome is Outcome.ACCEPTED
    assert design.stock("sku-1") == 1  # two decrements for one order: short until reconciled
    reconcile(redis_lab, repair=True)
    assert design.stock("sku-1") == 2
