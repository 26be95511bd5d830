"""Beyond the article in one session: each part's table, the JSON the CLI writes, read back."""

import json

import pandas as pd
import pytest

from inventory_lab.bench import bench_session
from inventory_lab.beyond import PARTS, read_reference, run_parts
from inventory_lab.cli import main


def test_each_part_lands_in_one_json_ready_body(tmp_path):
    with bench_session("fake", f"sqlite:///{tmp_path / 'b.sqlite'}", namespace="t-beyond") as s:
        body = run_parts(s, ["flags", "window", "drain"], drain_tasks=300)
    assert {"redis", "db", "machine", "commit", "processes", "flags", "window"} <= set(body)
    assert "merging_rates" not in body
    path = tmp_path / "beyond.json"
    path.write_text(json.dumps(body))
    back = read_reference(path)
    assert list(back["flags"]["flags"]) == ["none", "pubsub", "ttl only"]
    assert back["flags"]["checker_ok"].all() and back["window"]["checker_ok"].all()
    drained = back["drain_rates"].set_index("source")
    assert drained.loc[["task_engine", "task_engine_merged"], "checker_ok"].all()
    assert (
        body["drain_ratios"]["tasks"] == 300 and body["drain_ratios"]["merged_over_pgbench"] is None
    )


def test_an_unknown_part_is_refused_before_anything_runs(tmp_path):
    db = f"sqlite:///{tmp_path / 'b.sqlite'}"
    with (
        bench_session("fake", db, namespace="t-beyond") as session,
        pytest.raises(ValueError, match="unknown part"),
    ):
        run_parts(session, ["flags", "teleport"])
    assert PARTS == ("flags", "merging", "window", "drain", "buckets", "cluster", "shards")


def test_the_cli_prints_the_parts_and_refuses_unknown_ones(capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    assert main(["beyond", "--parts", "flags", "--db", db, "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert [row["flags"] for row in body["flags"]] == ["none", "pubsub", "ttl only"]
    assert main(["beyond", "--parts", "flags,teleport", "--db", db]) == 2
    assert "unknown part" in capsys.readouterr().err


def test_the_shards_part_drains_in_one_and_two_databases_and_cluster_needs_a_cluster(tmp_path):
    with bench_session("fake", f"sqlite:///{tmp_path / 'b.sqlite'}", namespace="t-beyond") as s:
        body = run_parts(s, ["shards", "cluster"], shard_tasks=200)
    drained = pd.DataFrame(body["shard_drain"])
    assert set(drained["placement"]) == {"one database", "two databases"}  # no second server
    assert drained["checker_ok"].all() and len(drained) == 4  # per task, and merged
    assert all(r["one database"] == 1.0 for r in body["shard_ratios"].values())
    assert body["cluster_masters"] is None and "./lab cluster up" in body["cluster_note"]
