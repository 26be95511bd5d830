"""The CLI: listing, a run's JSON, stored runs, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from inventory_lab.cli import main

REQUIRED_KEYS = {
    "design",
    "redis",
    "db",
    "orders",
    "accepted",
    "sold_out",
    "duplicates",
    "rejected",
    "oversold",
    "double_deducted",
    "lost",
    "converged",
    "elapsed_s",
    "throughput",
    "latency_ms",
}


def test_designs_lists_every_design(capsys):
    assert main(["designs"]) == 0
    out = capsys.readouterr().out
    assert "naive" in out and "db_only" in out


def test_run_prints_one_json_object_with_the_promised_keys(capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    args = [
        "run",
        "--design",
        "db_only",
        "--db",
        db,
        "--orders",
        "120",
        "--skus",
        "2",
        "--stock",
        "30",
        "--concurrency",
        "4",
        "--retries",
        "0.3",
        "--json",
    ]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= REQUIRED_KEYS
    assert set(report["latency_ms"]) == {"p50", "p99"}
    assert report["accepted"] == 60 and report["oversold"] == 0 and report["double_deducted"] == 0
    assert report["duplicates"] > 0


def test_run_prints_a_readable_report(capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    assert (
        main(
            [
                "run",
                "--design",
                "naive",
                "--db",
                db,
                "--orders",
                "40",
                "--skus",
                "1",
                "--stock",
                "5",
                "--concurrency",
                "4",
                "--race-window-ms",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "oversold units" in out and "invariants violated" in out


def test_runs_are_saved_and_listed(capsys, tmp_path):
    db, store = f"sqlite:///{tmp_path / 'cli.sqlite'}", tmp_path / "runs.duckdb"
    for design in ("naive", "db_only"):
        assert (
            main(
                [
                    "run",
                    "--design",
                    design,
                    "--db",
                    db,
                    "--orders",
                    "30",
                    "--json",
                    "--save",
                    str(store),
                ]
            )
            == 0
        )
    capsys.readouterr()
    assert main(["runs", "--path", str(store)]) == 0
    out = capsys.readouterr().out
    assert "naive" in out and "db_only" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--design", "nope"], "unknown design 'nope'"),
        (["run", "--design", "db_only", "--orders", "0"], "--orders"),
        (["run", "--design", "db_only", "--orders", "ten"], "not an integer"),
        (["run", "--design", "db_only", "--concurrency", "-3"], "--concurrency"),
        (["run", "--design", "db_only", "--retries", "2"], "probability"),
        (["run", "--design", "db_only", "--db", "oracle://u:pw@h/db"], "unsupported database URL"),
        (["run", "--design", "db_only", "--redis", "http://h"], "Redis URL"),
        (["run", "--design", "db_only", "--race-window-ms", "1"], "naive design only"),
        (["runs", "--path", "/nonexistent/runs.duckdb"], "no results file"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_code_2(capsys, args, message):
    assert _exit_code(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_an_unreachable_server_is_one_line_with_the_password_masked(capsys):
    args = ["run", "--design", "db_only", "--db", "postgresql+psycopg://bob:hunter2@127.0.0.1:1/x"]
    assert _exit_code(args) == 2
    err = capsys.readouterr().err
    assert "does not answer" in err and "bob:***@" in err and "hunter2" not in err
    assert len(err.strip().splitlines()) == 1


def test_python_dash_m_works_like_the_console_script():
    done = subprocess.run(
        [sys.executable, "-m", "inventory_lab", "run", "--design", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("inventory-lab: error: unknown design 'nope'; choose one of:")
    assert "Traceback" not in done.stderr


def _exit_code(args):
    """main() returns 2 for lab errors; argparse exits with 2 for malformed arguments."""
    try:
        return main(args)
    except SystemExit as exc:
        return exc.code


def test_run_can_fail_a_script_when_an_invariant_is_violated(capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    common = ["run", "--db", db, "--orders", "40", "--skus", "1", "--stock", "10", "--json"]
    naive = [*common, "--design", "naive", "--concurrency", "8", "--lockstep", "8"]
    assert main(naive) == 0  # reporting alone: a violation is a finding, not a failure
    assert json.loads(capsys.readouterr().out)["oversold"] == 30
    assert main([*naive, "--fail-on-violation"]) == 1
    assert json.loads(capsys.readouterr().out)["oversold"] == 30
    assert main([*common, "--design", "db_only", "--fail-on-violation"]) == 0
