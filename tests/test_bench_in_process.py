import pytest

from inventory_lab.bench_in_process import (
    PATHS,
    compare,
    order_cost,
    raw_evalsha_rate,
    round_trips_per_order,
)
from inventory_lab.errors import LabError
from inventory_lab.orders import Outcome


def test_compare_reports_every_cell_with_its_ratios(redis_lab):
    frame, reports = compare(redis_lab, ["two_gate_lua"], [1, 3], orders=60, progress=False)
    assert sorted(zip(frame["design"], frame["concurrency"], strict=True)) == [
        ("db_only", 1),
        ("db_only", 3),
        ("two_gate_lua", 1),
        ("two_gate_lua", 3),
    ]
    assert len(reports) == 4
    assert (frame["oversold"] == 0).all() and (frame["double_deducted"] == 0).all()
    assert (frame.loc[frame["design"] == "db_only", "vs_db_only"] == 1.0).all()
    lua = frame[frame["design"] == "two_gate_lua"]
    assert (lua["round_trips"] == 1.0).all() and lua["converged"].all()
    expected = (lua["throughput"] / lua["raw_evalsha"]).round(3)
    assert (lua["vs_raw_evalsha"] == expected).all()


def test_raw_evalsha_rate_is_a_positive_rate_and_cleans_up(redis_lab):
    assert raw_evalsha_rate(redis_lab, concurrency=2, calls=50) > 0
    stock_keys = [k for k in redis_lab.redis.scan_iter(match=f"{redis_lab.namespace}:*:stock")]
    assert stock_keys == []


def test_round_trips_are_none_for_db_only_designs(redis_lab):
    assert round_trips_per_order(redis_lab, "db_only") is None
    assert round_trips_per_order(redis_lab, "two_gate", orders=5) == 2.0


def test_measuring_round_trips_leaves_no_worker_running(redis_lab):
    import threading

    before = threading.active_count()
    assert round_trips_per_order(redis_lab, "task_engine", orders=5) == 1.0
    assert threading.active_count() == before


def test_order_cost_counts_each_path_on_the_wire(redis_lab):
    """Per order: Redis round trips, statements, stock-row updates. A two-gate design still
    updates the stock row once per accepted order, as db_only does; gate 1 spares the database
    every refusal, which db_only sends to the hot row; the task engine's order path is a task
    insert (the stock row is updated later, off that path)."""
    costs = {
        (name, path.value): order_cost(redis_lab, name, path, orders=3)
        for name in ("db_only", "two_gate", "two_gate_lua", "task_engine")
        for path in PATHS
    }
    summary = {
        key: (cost.redis_round_trips, cost.db_statements, cost.stock_updates)
        for key, cost in costs.items()
    }
    assert summary == {
        ("db_only", "accepted"): (None, 3.0, 1.0),
        ("db_only", "duplicate"): (None, 1.0, 0.0),
        ("db_only", "sold_out"): (None, 2.0, 1.0),
        ("two_gate", "accepted"): (2.0, 4.0, 1.0),
        ("two_gate", "duplicate"): (1.0, 0.0, 0.0),
        ("two_gate", "sold_out"): (4.0, 0.0, 0.0),
        ("two_gate_lua", "accepted"): (1.0, 4.0, 1.0),
        ("two_gate_lua", "duplicate"): (1.0, 0.0, 0.0),
        ("two_gate_lua", "sold_out"): (1.0, 0.0, 0.0),
        ("task_engine", "accepted"): (1.0, 2.0, 0.0),
        ("task_engine", "duplicate"): (1.0, 0.0, 0.0),
        ("task_engine", "sold_out"): (1.0, 0.0, 0.0),
    }


def test_order_cost_refuses_a_path_that_is_not_one_and_too_few_orders(redis_lab):
    with pytest.raises(LabError, match="no order path"):
        order_cost(redis_lab, "two_gate", Outcome.ERROR)
    with pytest.raises(LabError, match="at least 1"):
        order_cost(redis_lab, "two_gate", orders=0)
    assert list(redis_lab.redis.scan_iter(match=f"{redis_lab.namespace}:*")) == []
