from inventory_lab.bench_in_process import compare, raw_evalsha_rate, round_trips_per_order


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
