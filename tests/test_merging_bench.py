"""Merging at gate 1, measured: the rates come from runs of this session, each with its
saturated resource; the window's cost is read from the design that paid it."""

import math

from inventory_lab.bench import bench_session
from inventory_lab.merging_bench import gate_one_rates, window_cost


def test_gate_one_rates_sets_merged_calls_beside_one_call_per_order_and_the_c_client(
    paired_urls, bench_namespace
):
    redis_url, db_url = paired_urls
    with bench_session(redis_url, db_url, namespace=bench_namespace) as session:
        measured = gate_one_rates(session, clients=8, orders=1500, batch=4, benchmark_requests=2000)
    rates = measured.rates.set_index("source")
    python = rates.loc[["raw_evalsha", "raw_merged"]]
    assert (python["decisions_per_s"] > 0).all() and python["saturated"].str.len().gt(0).all()
    assert math.isclose(
        measured.merged_vs_one_call,
        rates.loc["raw_merged", "decisions_per_s"] / rates.loc["raw_evalsha", "decisions_per_s"],
        rel_tol=1e-2,
    )
    if redis_url == "fake":  # fakeredis has no redis-benchmark: no ratio is made up
        assert len(rates) == 2 and measured.merged_vs_pipelined is None
    else:
        tools = rates.drop(index=["raw_evalsha", "raw_merged"])
        assert list(tools.index) == ["redis-benchmark -P 4", "redis-benchmark batch 4"]
        assert (tools["decisions_per_s"] > 0).all()
        assert measured.merged_vs_pipelined > 0 and measured.batch_vs_pipelined > 0


def test_window_cost_reads_the_wait_and_the_batches_from_the_design(paired_urls, bench_namespace):
    redis_url, db_url = paired_urls
    with bench_session(redis_url, db_url, namespace=bench_namespace) as session:
        frame = window_cost(session, windows_ms=(0.5, 2.0), clients=8, orders=400)
    assert list(frame["design"]) == ["two_gate_lua", "two_gate_merged", "two_gate_merged"]
    assert frame["checker_ok"].all() and (frame["orders"] == 400).all()
    lua, merged = frame.iloc[0], frame.iloc[1:]
    assert lua["mean_batch"] == 1.0 and lua["added_wait_p99_us"] == 0.0
    assert (merged["mean_batch"] >= 1.0).all() and (merged["added_wait_p99_us"] > 0).all()
    assert (frame["latency_p99_ms"] >= frame["latency_p50_ms"]).all()
