import json

import pytest

from inventory_lab import Workload, run_experiment
from inventory_lab.experiment import sweep


def test_db_only_experiment_reports_clean_invariants_on_every_backend(lab):
    experiment = run_experiment(
        lab, "db_only", Workload(orders=300, skus=4, stock=40, retries=0.3), concurrency=8
    )
    report = experiment.report
    assert experiment.check.ok
    assert report.oversold == report.double_deducted == report.lost == 0
    assert report.accepted + report.sold_out + report.duplicates == report.attempts
    # one conditional UPDATE refuses only what no longer fits, and stock only falls
    assert report.false_sold_out == report.false_sold_out_orders == 0
    found = experiment.check
    assert (report.false_sold_out, report.false_sold_out_orders) == (
        found.false_sold_out,
        found.false_sold_out_orders,
    )
    assert report.throughput > 0 and report.latency_ms["p99"] >= report.latency_ms["p50"] > 0
    json.dumps(report.to_dict())  # storable as it is


def test_naive_experiment_oversells_on_every_backend(lab):
    experiment = run_experiment(
        lab,
        "naive",
        Workload(orders=40, skus=1, stock=10),
        concurrency=8,
        options={"lockstep": 8},  # every round of eight reads before any writes: no luck needed
    )
    assert experiment.report.oversold == 30


def test_reports_never_show_a_password(default_lab):
    default_lab.db_url = "postgresql+psycopg://bob:***@db/test"  # what open_lab stores
    report = run_experiment(default_lab, "db_only", Workload(orders=5)).report
    assert "***" in json.dumps(report.to_dict())


def test_sweep_runs_every_cell(default_lab):
    frame = sweep(
        default_lab,
        "db_only",
        {"hot": Workload(orders=40, skus=1, stock=40), "spread": Workload(orders=40, skus=20)},
        [1, 4],
        progress=False,
    )
    assert sorted(zip(frame["workload"], frame["concurrency"], strict=True)) == [
        ("hot", 1),
        ("hot", 4),
        ("spread", 1),
        ("spread", 4),
    ]
    assert (frame["oversold"] == 0).all()


def test_unknown_design_options_are_refused(default_lab):
    with pytest.raises(TypeError):
        run_experiment(default_lab, "db_only", Workload(orders=5), options={"nope": 1})


def test_results_say_which_commit_made_them():
    from inventory_lab.experiment import source_commit

    commit = source_commit()
    assert commit is None or commit.removesuffix("-dirty").isalnum()
