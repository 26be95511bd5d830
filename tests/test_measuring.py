"""Measuring honestly: checked loads, a stall on the run's time line, curves, reference files."""

import json
import time

import pandas as pd
import pytest

from inventory_lab.bench import SCENARIOS, bench_session
from inventory_lab.loadgen import Arrivals, Layout, LoadRun, new_histogram
from inventory_lab.measuring import (
    checked_load,
    due_during,
    latency_views,
    on_run_clock,
    rate_after,
    read_bench_reference,
    sent_during,
    stall_window,
    stalled_load,
    throughput_latency,
)
from inventory_lab.senders import Target
from inventory_lab.stalls import TableStall


@pytest.fixture
def local_session(bench_namespace, tmp_path):
    """A bench session on the embedded default (fakeredis served over TCP, a SQLite file)."""
    db_url = f"sqlite:///{tmp_path / 'm.sqlite'}"
    with bench_session("fake", db_url, namespace=bench_namespace) as session:
        yield session


def test_a_run_knows_its_start_on_the_machine_clock(local_session):
    workload = SCENARIOS["one-row"].workload(60)
    before = time.monotonic()
    loaded = checked_load(local_session, Target("db_only"), workload, layout=Layout(1, 2))
    after = time.monotonic()
    run = loaded.run
    assert before <= run.start_at <= after
    assert float(run.records["end_s"].max()) <= on_run_clock(run, after)
    assert (run.records["start_s"] >= 0).all()
    assert loaded.check is not None and loaded.check.oversold == 0


def test_every_order_due_during_a_stall_ends_after_it(paired_urls, bench_namespace):
    """The lesson's invariant, on every backend: open-loop orders due while the stock table was
    locked all finished after the lock was let go; the closed loop sent at most one per client."""
    redis_url, db_url = paired_urls
    layout = Layout(2, 2)
    with bench_session(redis_url, db_url, namespace=bench_namespace) as session:
        found = {}
        for arrivals in (Arrivals(), Arrivals("constant", rate=400)):
            found[arrivals.kind] = stalled_load(
                session,
                Target("db_only"),
                SCENARIOS["one-row"].workload(240),
                layout=layout,
                arrivals=arrivals,
                hold_s=0.3,
            )
    closed, closed_window = found["closed"]
    assert len(sent_during(closed.run.records, closed_window)) <= layout.total
    opened, window = found["constant"]
    records = opened.run.records
    due = due_during(records, window)
    assert len(due) > 0
    assert (due["end_s"] >= window[1]).all()
    assert (records["start_s"] >= records["intended_s"] - 1e-3).all()  # never sent early
    for loaded, _ in found.values():
        assert loaded.check.oversold == 0 and loaded.check.lost == 0
        assert rate_after(loaded.run, window[1]) >= 0


def _run_with(latency_ms: list[float], service_ms: list[float]) -> LoadRun:
    latency, service = new_histogram(), new_histogram()
    for value in latency_ms:
        latency.record_value(int(value * 1000))
    for value in service_ms:
        service.record_value(int(value * 1000))
    return LoadRun(
        target=Target("db_only"),
        layout=Layout(1, 1),
        arrivals=Arrivals("constant", rate=100),
        records=pd.DataFrame(),
        latency=latency,
        service=service,
        elapsed_s=1.0,
        client_cpu_s=[0.1],
    )


def test_latency_is_seen_from_the_intended_and_from_the_actual_send():
    """An order that queued 500 ms behind a stall and took 2 ms once sent counts 502 ms from
    its intended send and 2 ms from its actual one: the second view is the coordinated omission."""
    queued = _run_with(latency_ms=[2.0] * 99 + [502.0], service_ms=[2.0] * 100)
    views = latency_views(queued)
    assert list(views.index) == ["from the intended send", "from the actual send"]
    assert list(views.columns) == ["p50", "p99", "p99.9", "max"]
    intended, actual = views.loc["from the intended send"], views.loc["from the actual send"]
    assert intended["max"] == pytest.approx(502.0, rel=1e-3)
    assert actual["max"] == pytest.approx(2.0, rel=1e-3)
    assert (intended >= actual).all()
    same = latency_views(_run_with([3.0, 4.0], [3.0, 4.0]))  # a closed loop: both views agree
    assert (same.loc["from the intended send"] == same.loc["from the actual send"]).all()


def test_a_stall_that_never_held_has_no_window(local_session):
    stall = TableStall(local_session.lab.engine, after_s=0.0, hold_s=0.1)  # never started
    workload = SCENARIOS["one-row"].workload(20)
    loaded = checked_load(local_session, Target("raw_sql"), workload, layout=Layout(1, 1))
    assert loaded.check is None  # a raw ceiling: nothing to check
    with pytest.raises(ValueError, match="never held"):
        stall_window(loaded.run, stall)


def test_a_curve_has_the_capacity_then_each_fraction(local_session):
    curve = throughput_latency(
        local_session,
        Target("db_only"),
        SCENARIOS["one-row"],
        layout=Layout(1, 2),
        fractions=[0.5, 1.2],
        seconds=0.1,
        capacity_orders=80,
        min_orders=40,
        progress=False,
    )
    assert list(curve["arrivals"]) == ["closed loop", "open loop", "open loop"]
    assert list(curve["fraction"].iloc[1:]) == [0.5, 1.2]
    assert (curve["oversold"] == 0).all()
    opened = curve.iloc[1:]
    # an open loop cannot finish before its schedule: achieved <= offered x n / (n - 1)
    bound = opened["offered_per_s"] * opened["orders"] / (opened["orders"] - 1)
    assert (opened["achieved_per_s"] <= bound + 1e-9).all()
    assert (curve["p50_ms"] <= curve["p99_ms"]).all() and (curve["p99_ms"] <= curve["max_ms"]).all()


def test_a_curve_can_offer_fractions_of_a_capacity_measured_already(local_session):
    curve = throughput_latency(
        local_session,
        Target("db_only"),
        SCENARIOS["one-row"],
        layout=Layout(1, 2),
        fractions=[0.5],
        seconds=0.1,
        capacity=300.0,
        min_orders=40,
        progress=False,
    )
    assert list(curve["arrivals"]) == ["closed loop", "open loop"]
    given, opened = curve.iloc[0], curve.iloc[1]
    assert given["achieved_per_s"] == 300.0 and pd.isna(given["orders"])  # not measured here
    assert opened["offered_per_s"] == 150.0 and opened["orders"] == 40 and opened["oversold"] == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "give capacity_orders"),
        ({"capacity": 300.0, "capacity_orders": 80}, "not both"),
        ({"capacity": 0.0}, "capacity must be a rate > 0"),
        ({"capacity": float("nan")}, "capacity must be a rate > 0"),
    ],
)
def test_a_curve_needs_one_capacity_and_a_usable_one(options, message):
    with pytest.raises(ValueError, match=message):  # refused before any load (no session used)
        throughput_latency(
            None,  # type: ignore[arg-type]
            Target("db_only"),
            SCENARIOS["one-row"],
            layout=Layout(1, 1),
            fractions=[0.5],
            seconds=0.1,
            **options,
        )


def test_a_bench_file_is_read_as_frames(tmp_path):
    doc = {
        "redis": "redis://127.0.0.1:6379/8",
        "db": "postgresql+psycopg://postgres@127.0.0.1:5432/x",
        "machine": "vm",
        "processes": 2,
        "orders": 100,
        "cells": [{"scenario": "one-row", "target": "db_only", "clients": 1}],
        "ceilings": [{"tool": "pgbench", "clients": 1, "rate": 10.0, "note": ""}],
        "target_cells": [],
        "targets": [{"claim": "c", "ratio": 1.0, "goal": ">= 1", "met": "yes", "saturated": "x"}],
    }
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(doc))
    ref = read_bench_reference(path)
    assert ref.commit is None and ref.processes == 2 and len(ref.cells) == 1
    assert list(ref.ceilings["tool"]) == ["pgbench"] and "vm" in ref.describe()
    path.write_text(json.dumps({"redis": "r", "db": "d", "machine": "m", "cells": []}))
    with pytest.raises(ValueError, match="current format"):
        read_bench_reference(path)
