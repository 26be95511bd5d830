"""The gate-1 variants' experiments: round trips per path, the crash before a compensation,
refusals near sell-out, the forced small order, WATCH's retries and the switch interval."""

import sys

import pytest

from inventory_lab import Workload
from inventory_lab.errors import LabError
from inventory_lab.gate_one_variants import (
    DECIDE_FIRST,
    DECREMENT_FIRST,
    VARIANTS,
    crash_at_every_compensation,
    order_in_the_window,
    refusals_near_sell_out,
    round_trip_table,
    switch_interval,
    watch_retries,
)

CRASHY = Workload(orders=40, skus=1, stock=10, skew=0, retries=0.4, seed=9)


def test_round_trips_per_path_are_the_ones_each_variant_is_written_to_send(redis_lab):
    table = round_trip_table(redis_lab, orders=3)
    assert (table["accepted"] == table["declared (accepted)"]).all()
    assert table.loc[list(VARIANTS), ["accepted", "duplicate", "sold out"]].values.tolist() == [
        [2, 1, 4],
        [1, 2, 3],
        [1, 2, 3],
        [4, 3, 4],
        [1, 1, 1],
    ]


@pytest.mark.parametrize("name", VARIANTS)
def test_a_crash_before_every_compensation_leaves_redis_short_only_when_it_decrements_first(
    redis_lab, name
):
    run = crash_at_every_compensation(redis_lab, name, CRASHY, concurrency=4)
    drift = sum(run.report.drift.values())
    assert run.report.oversold == 0 and run.report.double_deducted == 0
    assert run.repaired.converged is True
    if name in DECREMENT_FIRST:
        assert run.crashed and drift == -sum(order.qty for order in run.crashed)
        assert run.redis - run.db == drift
    else:
        assert not run.crashed and drift == 0 and run.report.converged is True


def test_a_crash_at_the_first_compensations_only_leaks_exactly_their_units(redis_lab):
    run = crash_at_every_compensation(
        redis_lab, "two_gate_pipeline", CRASHY, concurrency=4, times=3
    )
    assert len(run.crashed) == 3
    assert sum(run.report.drift.values()) == -sum(order.qty for order in run.crashed)


def test_near_sell_out_the_decide_first_variants_sell_everything(redis_lab):
    near = Workload(orders=30, skus=1, stock=30, skew=0, max_qty=3, seed=1)
    for name in VARIANTS:
        row = refusals_near_sell_out(redis_lab, name, near, concurrency=4, gap_s=0.001)
        assert row["oversold"] == 0 and row["converged"] is True
        assert 0 <= row["false_sold_out (units)"] <= row["stock left"]
        if name in DECIDE_FIRST:
            assert row["stock left"] == 0 and row["false_sold_out (units)"] == 0
    assert (
        refusals_near_sell_out(redis_lab, "two_gate_lua", near, concurrency=2, gap_s=0.001)["gap_s"]
        == 0.0
    )  # the script has no window to widen


def test_the_forced_small_order_is_refused_only_by_the_decrement_first_variants(redis_lab):
    for name in VARIANTS:
        run = order_in_the_window(redis_lab, name)
        expected = 1 if name in DECREMENT_FIRST else 0
        assert run.report.false_sold_out == expected and run.held == (name in DECREMENT_FIRST)
    with pytest.raises(LabError, match="small <= stock < big"):
        order_in_the_window(redis_lab, "two_gate", stock=3, big=3)


def test_watch_never_retries_alone_and_never_oversells(redis_lab):
    contended = Workload(orders=30, skus=1, stock=30, skew=0)
    rows = watch_retries(redis_lab, contended, [1, 4], label="test", options={"gap_s": 0.001})
    assert rows[0]["watch_retries"] == 0
    assert all(row["accepted"] == 30 and row["oversold"] == 0 for row in rows)


def test_the_switch_interval_is_restored_and_must_be_positive():
    before = sys.getswitchinterval()
    with switch_interval(1e-4):
        assert sys.getswitchinterval() == pytest.approx(1e-4)
    assert sys.getswitchinterval() == before
    with pytest.raises(LabError, match="> 0"), switch_interval(0):
        pass
    assert sys.getswitchinterval() == before


def test_a_design_without_gate_one_is_refused(redis_lab):
    with pytest.raises(LabError, match="no gate 1"):
        crash_at_every_compensation(redis_lab, "db_only", CRASHY, concurrency=2)
