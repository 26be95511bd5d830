"""Tests for `inventory-lab explore`: the shrunk failing schedule printed (or that none was
found), one JSON object with --json, the failing schedule's history as EDN, bad input refused
with exit code 2 and one line."""

from __future__ import annotations

import json
import re
from collections import defaultdict

import pytest

from inventory_lab.cli import main


def test_explore_prints_the_naive_oversell(capsys):
    assert main(["explore", "--design", "naive", "--orders", "3", "--stock", "1"]) == 0
    out = capsys.readouterr().out
    assert "naive: 3 orders of 1, stock 1" in out
    assert "shrunk to naive: 2 orders of 1, stock 1" in out
    assert "oversold" in out
    assert re.search(r"^\s+1\. o-\d\s+BEGIN; SELECT stock", out, re.MULTILINE)
    assert "o-1 heard accepted, o-2 heard accepted" in out


def test_explore_json_is_one_object_with_findings_and_schedule(capsys):
    args = ["explore", "--design", "naive", "--orders", "3", "--stock", "1", "--json"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    summary = json.loads(out)
    assert summary["findings"]["oversold"] >= 1
    assert set(summary["schedule"]) == {"o-1", "o-2"}
    assert len(summary["schedule"]) == 4  # two reads, two writes
    assert summary["heard"] == {"o-1": "accepted", "o-2": "accepted"}
    assert summary["failures"] >= 1


def test_explore_reports_no_failure_for_the_fixed_design(capsys):
    args = [
        "explore",
        "--design",
        "two_gate_lua",
        "--faults",
        "rewarm,lost_ack",
        "--find",
        "oversold,double_deducted,lost,unaccounted",
        "--preemptions",
        "1",  # keeps it to a few seconds; tests/test_explorer goes further
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "no failure found (oversold, double_deducted, lost, unaccounted)" in out
    assert "every schedule" in out
    assert "heard" not in out


def test_explore_json_without_a_failure(capsys):
    assert main(["explore", "--design", "db_only", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["complete"] is True and summary["failures"] == 0
    assert "schedule" not in summary


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--qty", "0"], "qty"),
        (["--qty", "x"], ""),
        (["--faults", "nope"], "nope"),
        (["--find", "nope"], "--find"),
        (["--design", "db_only", "--faults", "rewarm"], "crash"),
    ],
)
def test_explore_refuses_bad_input(capsys, extra, message):
    args = ["explore", "--design", "naive", *extra]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith("inventory-lab: error:") and message in captured.err


def test_explore_refuses_an_unknown_design(capsys):
    assert main(["explore", "--design", "nope"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert "nope" in captured.err


def test_explore_refuses_a_history_suffix_it_cannot_write(capsys, tmp_path):
    path = tmp_path / "x.json"
    assert main(["explore", "--design", "naive", "--history", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert not path.exists()


def test_explore_writes_the_failing_schedules_history_as_edn(capsys, tmp_path):
    path = tmp_path / "x.edn"
    args = ["explore", "--design", "naive", "--orders", "3", "--stock", "1"]
    assert main([*args, "--history", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    lines = path.read_text(encoding="utf-8").splitlines()
    # the final stock read back comes last: one read of the one SKU, which saw 0 after the
    # lost update (two sold, one deducted)
    *lines, read_invoke, read_done = lines
    assert ":f :read" in read_invoke and ":type :invoke" in read_invoke
    assert read_done.endswith(':value {:sku "sku-1", :value 0}}')
    pattern = re.compile(r"^\{:index (\d+), :time (\d+), :type :(\w+), :process (\d+), :f :deduct")
    by_process: dict[str, list[str]] = defaultdict(list)
    indices = []
    for line in lines:
        match = pattern.match(line)
        assert match, line
        indices.append(int(match[1]))
        by_process[match[4]].append(match[3])
    assert indices == list(range(len(lines)))
    assert len(by_process) == len(summary["heard"]) == 2  # the shrunk schedule's two clients
    for types in by_process.values():  # each invocation is followed by its completion
        assert types == ["invoke", "ok"]
    assert sum(":outcome :accepted" in line for line in lines) == 2


def test_explore_refuses_a_history_in_a_missing_directory_before_the_search(capsys, tmp_path):
    path = tmp_path / "gone" / "x.edn"
    assert main(["explore", "--design", "naive", "--history", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "directory" in captured.err


def test_explore_draws_the_failing_schedule(capsys, tmp_path):
    target = tmp_path / "schedule.png"
    code = main(["explore", "--design", "naive", "--diagram", str(target)])
    assert code == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_explore_refuses_a_diagram_it_cannot_write_before_the_search(capsys, tmp_path):
    code = main(["explore", "--design", "naive", "--diagram", str(tmp_path / "x.gif")])
    assert code == 2
    assert "--diagram" in capsys.readouterr().err
    code = main(["explore", "--design", "naive", "--diagram", str(tmp_path / "gone" / "x.png")])
    assert code == 2
