from inventory_lab import Workload, run_experiment
from inventory_lab.results import load_runs, save_run


def test_runs_round_trip_through_duckdb(default_lab, tmp_path):
    store = tmp_path / "runs.duckdb"
    for design in ("naive", "db_only"):
        report = run_experiment(
            default_lab, design, Workload(orders=50, skus=2), concurrency=2
        ).report
        save_run(report, store)
    frame = load_runs(store)
    assert list(frame["design"]) == ["naive", "db_only"]
    assert (frame["orders"] == 50).all()
    assert frame.loc[frame["design"] == "db_only", "oversold"].item() == 0
    by_sql = load_runs(store, "SELECT design, report->>'$.latency_ms.p99' AS p99 FROM runs")
    assert len(by_sql) == 2 and by_sql["p99"].notna().all()
