"""`inventory-lab run` with real orders: --lines, --idempotency stored, --reserve-ttl."""

from __future__ import annotations

import json

import pytest

from inventory_lab.cli import main


def _run(capsys, tmp_path, *extra: str) -> dict:
    db = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    args = ["run", "--db", db, "--orders", "80", "--stock", "20", "--concurrency", "4", "--json"]
    assert main([*args, *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("design", ["db_only", "two_gate_lua", "task_engine"])
def test_lines_sends_checkouts_taken_whole(capsys, tmp_path, design):
    report = _run(capsys, tmp_path, "--design", design, "--lines", "3", "--skus", "4")
    assert report["workload"]["lines"] == 3
    assert report["attempts"] == 3 * 80  # one record per line
    assert report["partial"] == 0 and report["oversold"] == 0
    assert report["accepted"] % 3 == 0  # whole checkouts only
    assert report["accepted"] > 0 and report["sold_out"] > 0


def test_idempotency_stored_answers_in_progress_not_duplicate(capsys, tmp_path):
    report = _run(
        capsys, tmp_path, "--design", "two_gate_lua", "--idempotency", "stored", "--retries", "0.5"
    )
    assert report["idempotency"] == "stored"
    assert report["duplicates"] == 0 and report["false_duplicates"] == 0
    assert report["oversold"] == 0 and report["double_deducted"] == 0


def test_reserve_ttl_sets_the_reservation_hold(capsys, tmp_path):
    report = _run(capsys, tmp_path, "--design", "reservation", "--reserve-ttl", "30")
    assert report["options"] == {"ttl_s": 30.0}
    assert report["oversold"] == 0 and report["accepted"] > 0


def _exit_code(args):
    try:
        return main(args)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--design", "two_gate", "--lines", "2"], "takes one line per order"),
        (["--design", "db_only", "--lines", "3", "--skus", "2"], "at least as many SKUs"),
        (["--design", "db_only", "--lines", "0"], "--lines"),
        (["--design", "db_only", "--reserve-ttl", "5"], "reservation design only"),
        (["--design", "reservation", "--reserve-ttl", "-1"], "--reserve-ttl"),
        (["--design", "db_only", "--idempotency", "maybe"], "invalid choice"),
        (
            ["--design", "db_only", "--lines", "2", "--idempotency", "stored"],
            "single-line orders",
        ),
    ],
)
def test_bad_real_order_flags_are_one_line_and_exit_code_2(capsys, tmp_path, args, message):
    db = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    assert _exit_code(["run", "--db", db, "--orders", "5", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
