"""The design review: every cell's verdict matches its written expectation, on every backend."""

import json

import pytest

from inventory_lab.cli import main
from inventory_lab.designs import design_names
from inventory_lab.results import load_runs
from inventory_lab.review import (
    EXPECTED_BREAKS,
    EXPECTED_DRIFT,
    FAULTS,
    RECOMMENDED,
    review,
    run_cell,
    save_review,
)


def test_every_cell_matches_its_written_verdict(paired_lab):
    frame = review(paired_lab, progress=False)
    assert len(frame) == len(design_names()) * len(FAULTS)
    unexpected = frame[frame["verdict"] != "as expected"]
    assert unexpected.empty, unexpected[["design", "fault", "verdict"]].to_string()
    recommended = frame[frame["design"] == RECOMMENDED]
    assert (recommended["oversold"] == 0).all() and (recommended["lost"] == 0).all()
    assert recommended["converged_after"].all()
    naive = frame[(frame["design"] == "naive") & (frame["fault"] == "none")]
    assert naive["oversold"].item() > 0


def test_expectations_name_only_known_designs_faults_and_invariants():
    assert set(EXPECTED_BREAKS) <= set(design_names())
    for faults in EXPECTED_BREAKS.values():
        assert set(faults) <= set(FAULTS)
    assert {d for d, _ in EXPECTED_DRIFT} <= set(design_names())
    assert {f for _, f in EXPECTED_DRIFT} <= set(FAULTS)


def test_a_cell_that_disagrees_with_its_expectation_says_so(default_lab, monkeypatch):
    monkeypatch.setitem(EXPECTED_BREAKS, "db_only", {"none": {"oversold"}})
    cell = run_cell(default_lab, "db_only", "none")
    assert cell.verdict.startswith("broke [], expected ['oversold']")


def test_unknown_faults_are_refused(default_lab):
    with pytest.raises(ValueError, match="unknown fault"):
        run_cell(default_lab, "db_only", "meteor")


def test_review_is_stored_and_the_cli_reports_it(default_lab, capsys, tmp_path):
    frame = review(default_lab, ["db_only"], ["none", "db_outage"], progress=False)
    store = save_review(frame, tmp_path / "runs.duckdb")
    stored = load_runs(store, "SELECT design, fault, verdict FROM review")
    assert len(stored) == 2 and set(stored["verdict"]) == {"as expected"}
    db = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    args = ["review", "--designs", "two_gate_lua", "--faults", "crash_between_gates", "--db", db]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["unexpected"] == 0 and out["cells"][0]["drift_before"] > 0
    assert main(["review", "--faults", "meteor"]) == 2
    assert "unknown fault" in capsys.readouterr().err
