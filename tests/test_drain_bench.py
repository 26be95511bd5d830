"""Merging at gate 2, measured: both drains ran, were checked, and the ratios are those of the
rows; pgbench only where it can run. The same backlog drained with the task tables in one database
and in two. Behaviour only: no rate is compared with a number."""

import math
import shutil

import pytest

from inventory_lab.bench import bench_session
from inventory_lab.drain_bench import (
    HOT_SKU,
    MERGED,
    ONE_DATABASE,
    PER_TASK,
    PGBENCH,
    TWO_DATABASES,
    drain_by_placement,
    drain_rates,
)

TASKS, QTY, BATCH = 400, 2, 32


def test_drain_rates_measures_both_drains_checks_each_and_sets_pgbench_beside(
    paired_urls, bench_namespace
):
    redis_url, db_url = paired_urls
    with bench_session(redis_url, db_url, namespace=bench_namespace) as session:
        dialect = session.lab.dialect
        measured = drain_rates(
            session, tasks=TASKS, batch=BATCH, shards=2, workers=2, qty=QTY, pgbench_s=1
        )
    rows = measured.rows.set_index("source")
    assert list(rows.index) == [PER_TASK, MERGED, PGBENCH]
    assert rows["note"].str.len().gt(0).all()
    drains = rows.loc[[PER_TASK, MERGED]]
    assert (drains["units_per_s"] > 0).all() and (drains["tasks"] == TASKS).all()
    assert drains["checker_ok"].all() and measured.checker_ok

    for name in (PER_TASK, MERGED):  # checked after each drain
        report = measured.checks[name]
        assert report.ok and report.converged, report.summary()
        assert report.oversold == 0 and report.double_deducted == 0 and report.lost == 0
        assert report.final_stock == {HOT_SKU: 0}  # initial (TASKS * QTY) minus every unit
        assert report.pending == {}
    assert measured.batches["merged_tasks"] == TASKS
    assert measured.batches["batches"] >= math.ceil(TASKS / BATCH)
    assert measured.batches["largest"] <= BATCH

    merged, per_task = rows.loc[MERGED, "units_per_s"], rows.loc[PER_TASK, "units_per_s"]
    assert math.isclose(measured.merged_over_per_task, merged / per_task, rel_tol=1e-2)
    pgbench = rows.loc[PGBENCH]
    if dialect != "postgresql":
        assert pgbench["units_per_s"] is None and pgbench["note"] == "PostgreSQL only"
        assert measured.merged_over_pgbench is None
    elif shutil.which("pgbench"):
        assert pgbench["units_per_s"] > 0, pgbench["note"]
        assert math.isclose(
            measured.merged_over_pgbench, merged / pgbench["units_per_s"], rel_tol=1e-2
        )
    else:
        assert pgbench["units_per_s"] is None and "not installed" in pgbench["note"]
        assert measured.merged_over_pgbench is None


@pytest.mark.parametrize(
    "bad",
    [{"tasks": 0}, {"tasks": 2.5}, {"batch": 0}, {"batch": "8"}, {"qty": 0}, {"workers": 0}],
)
def test_bad_parameters_are_refused_before_anything_runs(tmp_path, bench_namespace, bad):
    with (
        bench_session(
            "fake", f"sqlite:///{tmp_path / 'lab.sqlite'}", namespace=bench_namespace
        ) as session,
        pytest.raises(ValueError),
    ):
        drain_rates(session, **bad)


@pytest.mark.parametrize("merged", [False, True])
def test_drain_by_placement_drains_the_same_backlog_with_shards_in_one_and_two_databases(
    paired_urls, bench_namespace, merged
):
    redis_url, db_url = paired_urls
    with bench_session(redis_url, db_url, namespace=bench_namespace) as session:
        measured = drain_by_placement(
            session, tasks=TASKS, skus=2, shards=2, workers=2, qty=QTY, merged=merged
        )
    rows = measured.rows.set_index("placement")
    assert list(rows.index) == [ONE_DATABASE, TWO_DATABASES]  # no second server given
    base = MERGED if merged else PER_TASK
    assert list(rows["design"]) == [base, f"{base}_sharded_db"]
    assert (rows["units_per_s"] > 0).all() and (rows["tasks"] == TASKS).all()
    assert rows["checker_ok"].all() and measured.checker_ok
    for report in measured.checks.values():
        assert report.ok and report.converged, report.summary()
        assert report.final_stock == {f"{HOT_SKU}-0": 0, f"{HOT_SKU}-1": 0}
        assert report.pending == {}
    ratios = measured.over_one_database()
    assert ratios[ONE_DATABASE] == 1.0
    assert math.isclose(
        ratios[TWO_DATABASES],
        rows.loc[TWO_DATABASES, "units_per_s"] / rows.loc[ONE_DATABASE, "units_per_s"],
        rel_tol=1e-2,
    )


@pytest.mark.parametrize(
    "bad",
    [{"shards": 1}, {"skus": 0}, {"placements": ["three servers"]}, {"placements": []}],
)
def test_drain_by_placement_refuses_bad_parameters(tmp_path, bench_namespace, bad):
    with (
        bench_session(
            "fake", f"sqlite:///{tmp_path / 'lab.sqlite'}", namespace=bench_namespace
        ) as session,
        pytest.raises(ValueError),
    ):
        drain_by_placement(session, **bad)
