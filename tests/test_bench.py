"""The benchmark: scenarios, checked cells with their CPU, the target ratios, and the CLI."""

import json

import pandas as pd
import pytest

from inventory_lab.bench import (
    SCENARIOS,
    TARGET_CLIENTS,
    bench_session,
    burst_for,
    ratio_table,
    ratios,
    run_cell,
)
from inventory_lab.ceilings import Ceiling
from inventory_lab.cli import main
from inventory_lab.senders import Target


def test_scenarios_size_their_stock_from_the_orders():
    flash = SCENARIOS["flash-sale"].workload(5000)
    assert (flash.skus, flash.stock) == (1, 50)  # 1% of demand
    assert SCENARIOS["one-row"].workload(5000).stock == 5000  # never sells out
    spread = SCENARIOS["spread"].workload(2000)
    assert spread.skus == 1000 and spread.skew == 0 and spread.stock == 2000


def test_a_cell_is_checked_and_says_what_saturated(paired_urls, bench_namespace):
    redis_url, db_url = paired_urls
    with bench_session(redis_url, db_url, namespace=bench_namespace) as session:
        row = run_cell(session, Target("two_gate_lua"), SCENARIOS["flash-sale"], 4, orders=400)
        raw = run_cell(session, Target("raw_sql"), SCENARIOS["one-row"], 2, orders=100)
    assert row["orders"] == 400 and row["layout"] == "2×2"
    assert row["oversold"] == 0 and row["lost"] == 0 and row["double_deducted"] == 0
    assert row["accepted_per_s"] <= row["decisions_per_s"]
    assert row["p50_ms"] <= row["p99_ms"] <= row["p99.9_ms"] <= row["max_ms"]
    assert row["saturated"] and row["cpu_cores"]["clients"] > 0
    assert raw["oversold"] is None  # a raw loop is a ceiling, not a design: nothing to check
    assert raw["accepted_per_s"] == raw["decisions_per_s"]  # one row that never sells out


def test_a_burst_defaults_to_past_the_raw_ceiling(bench_namespace, tmp_path):
    with bench_session(
        "fake", f"sqlite:///{tmp_path / 'b.sqlite'}", namespace=bench_namespace
    ) as s:
        burst = burst_for(s, SCENARIOS["flash-sale"], 2, 200, None)
        given = burst_for(s, SCENARIOS["flash-sale"], 2, 200, 123.0)
        closed = burst_for(s, SCENARIOS["one-row"], 2, 200, None)
    assert burst.kind == "burst" and burst.rate > 0
    assert given.rate == 123.0 and closed.kind == "closed"


def _cell(scenario, target, decisions, accepted=None, clients=TARGET_CLIENTS):
    return {
        "scenario": scenario,
        "target": target,
        "clients": clients,
        "decisions_per_s": decisions,
        "accepted_per_s": decisions if accepted is None else accepted,
        "saturated": f"{target} busy",
    }


def test_the_target_ratios_divide_rates_from_one_run():
    frame = pd.DataFrame(
        [
            _cell("flash-sale", "raw_evalsha", 10_000),
            _cell("flash-sale", "two_gate_lua", 9_500, accepted=95),
            _cell("one-row", "db_only", 1_400),
            _cell("spread", "db_only", 2_100),
            _cell("spread", "db_only", 99_999, clients=4),  # another concurrency: not used
        ]
    )
    found = ratios(frame, [Ceiling("pgbench", TARGET_CLIENTS, 2_000.0)])
    assert [r.ratio for r in found] == [0.95, 0.7, 4.75, 1.5]
    assert [r.met for r in found] == [True, True, False, False]
    assert found[0].saturated == "two_gate_lua busy"
    table = ratio_table(found)
    assert list(table["met"]) == ["yes", "yes", "no", "no"]


def test_a_ratio_without_its_ceiling_is_not_measured():
    frame = pd.DataFrame([_cell("one-row", "db_only", 1_400)])
    found = ratios(frame, [Ceiling("pgbench", TARGET_CLIENTS, None, "PostgreSQL only")])
    assert all(r.ratio is None and r.met is None for r in found)
    assert set(ratio_table(found)["met"]) == {"not measured"}


def _no_nan(name):
    raise AssertionError(f"{name} is not JSON")


def test_bench_cli_prints_cells_ceilings_and_targets(capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 'bench.sqlite'}"
    args = ["bench", "--scenario", "one-row", "--designs", "db_only", "--ceilings", "raw_sql"]
    args += ["--concurrency", "2", "--orders", "60", "--processes", "2", "--db", db, "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out, parse_constant=_no_nan)  # strict JSON: no NaN
    assert [(c["target"], c["clients"]) for c in out["cells"]] == [("raw_sql", 2), ("db_only", 2)]
    assert out["redis"] == "fakeredis (served over TCP)" and out["processes"] == 2
    assert "commit" in out
    assert len(out["targets"]) == 4 and len(out["target_cells"]) == 5
    assert all(cell["oversold"] in (0, None) for cell in out["cells"] + out["target_cells"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "black-friday"], "unknown scenario"),
        (["--designs", "nope"], "unknown design"),
        (["--ceilings", "raw_nothing"], "unknown ceiling"),
        (["--concurrency", "0"], "--concurrency"),
        (["--rate", "-5"], "not a positive number"),
        (["--processes", "0"], "not in [1, 64]"),
    ],
)
def test_bench_cli_refuses_bad_arguments(capsys, args, message):
    try:
        status = main(["bench", *args])
    except SystemExit as exit_:  # argparse's own checks exit from the parser
        status = exit_.code
    assert status == 2
    assert message in capsys.readouterr().err
