"""Stock buckets measured: the one-row cells against their bucketed twins (each cell checked),
and the false sold-outs B buckets cost, never above their bound. Rates are printed by the
bench, never asserted."""

import pandas as pd
import pytest

from inventory_lab.bench import bench_session
from inventory_lab.beyond import run_parts
from inventory_lab.buckets_bench import bucket_false_sold_outs


@pytest.mark.parametrize("design", ["db_buckets", "two_gate_buckets"])
def test_false_sold_outs_stay_under_their_bound_and_one_bucket_has_none(paired_lab, design):
    frame = bucket_false_sold_outs(paired_lab, design=design, bucket_counts=(1, 4, 16))
    assert frame["ok"].all() and (frame["oversold"] == 0).all()
    assert (frame["false_sold_out"] <= frame["bound"]).all()
    one = frame.set_index("buckets").loc[1]
    assert one["false_sold_out"] == 0 and one["fallovers"] == 0  # one bucket strands nothing
    assert (frame["sold"] + frame["left"] == 200).all()


def test_the_buckets_part_runs_each_design_and_its_twin_on_one_row_checked(tmp_path):
    with bench_session("fake", f"sqlite:///{tmp_path / 'b.sqlite'}", namespace="t-bk") as s:
        body = run_parts(s, ["buckets"], bucket_orders=200)
    rates = pd.DataFrame(body["bucket_rates"])
    assert list(rates["target"]) == ["db_only", "db_buckets", "two_gate_lua", "two_gate_buckets"]
    assert list(rates["buckets"]) == [1, 8, 1, 8]
    assert (rates[["oversold", "double_deducted", "lost"]] == 0).all().all()
    assert (rates["accepted_per_s"] > 0).all()
    twins = rates.set_index("target")["over_one"]
    assert twins["db_only"] == twins["two_gate_lua"] == 1.0
    assert twins["db_buckets"] > 0 and twins["two_gate_buckets"] > 0
    designs = {row["design"] for row in body["bucket_false_sold_outs"]}
    assert designs == {"db_buckets", "two_gate_buckets"}
