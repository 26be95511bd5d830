"""`inventory-lab run --history PATH`: the run's history written as JSON lines or EDN, every
invocation paired with its completion; a path it cannot write is refused before the run."""

from __future__ import annotations

import json

import pytest

from inventory_lab.cli import main
from inventory_lab.history import INFO, INVOKE, operations, read_jsonl


def run_args(tmp_path, history: str) -> list[str]:
    return [
        "run",
        "--design",
        "two_gate_lua",
        "--db",
        f"sqlite:///{tmp_path / 'cli.sqlite'}",
        "--orders",
        "80",
        "--skus",
        "2",
        "--stock",
        "20",
        "--concurrency",
        "4",
        "--retries",
        "0.3",
        "--lost-replies",
        "0.3",
        "--json",
        "--history",
        history,
    ]


def test_run_writes_a_history_whose_events_pair_up(capsys, tmp_path):
    path = tmp_path / "run.jsonl"
    assert main(run_args(tmp_path, str(path))) == 0
    report = json.loads(capsys.readouterr().out)  # stdout is still one JSON object
    events = read_jsonl(path)
    ops = [op for op in operations(events) if op.f == "deduct"]
    reads = [e for e in events if e.f == "read"]
    assert len(ops) == report["attempts"] == sum(e.type == INVOKE for e in events) - len(reads) / 2
    # no invocation left open; then one final read per SKU
    assert len(events) == 2 * report["attempts"] + len(reads)
    assert reads and events[-len(reads) :] == reads
    assert sum(op.outcome == "accepted" for op in ops) == report["accepted"]
    assert sum(e.type == INFO for e in events) == report["unknown"] > 0


def test_run_writes_edn_when_asked(capsys, tmp_path):
    path = tmp_path / "run.edn"
    assert main(run_args(tmp_path, str(path))) == 0
    report = json.loads(capsys.readouterr().out)
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    deducts = [line for line in lines if ":f :deduct" in line]
    reads = [line for line in lines if ":f :read" in line]
    assert len(deducts) == 2 * report["attempts"] and len(deducts) + len(reads) == len(lines)
    assert all(line.startswith("{:index ") for line in lines)
    assert sum(":type :invoke" in line for line in deducts) == report["attempts"]
    assert reads and lines[-len(reads) :] == reads  # the final stock, read back last


@pytest.mark.parametrize("name, message", [("run.json", ".jsonl"), ("gone/run.edn", "directory")])
def test_a_history_path_it_cannot_write_is_refused_before_the_run(capsys, tmp_path, name, message):
    assert main(run_args(tmp_path, str(tmp_path / name))) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing run: not even the database was created
