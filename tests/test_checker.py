"""The checker itself: feed it states with known faults and see it find each one."""

from itertools import combinations

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from inventory_lab import check
from inventory_lab.checker import best_fill
from inventory_lab.workload import RECORD_COLUMNS


def _records(*rows):
    """Rows of (order_id, sku, qty, outcome)."""
    full = [[o, s, q, 0, 0, 0.0, 0.0, 0.0, outcome, ""] for o, s, q, outcome in rows]
    return pd.DataFrame(full, columns=RECORD_COLUMNS)


def _ledger(*rows):
    return pd.DataFrame(list(rows), columns=["order_id", "sku", "qty"])


def test_a_clean_state_passes():
    report = check(
        {"a": 2},
        {"a": 1},
        _ledger(("o1", "a", 1)),
        _records(("o1", "a", 1, "accepted"), ("o1", "a", 1, "duplicate")),
    )
    assert report.ok
    assert report.converged is None


def test_a_lost_update_oversell_is_found():
    # two buyers read 1, both wrote 0: two accepted, two ledger rows, stock moved by one
    report = check(
        {"a": 1},
        {"a": 0},
        _ledger(("o1", "a", 1), ("o2", "a", 1)),
        _records(("o1", "a", 1, "accepted"), ("o2", "a", 1, "accepted")),
    )
    assert report.oversold == 1
    assert report.unaccounted == 1
    assert report.double_deducted == 0
    assert not report.ok


def test_negative_stock_is_oversold_even_without_records():
    report = check({"a": 1}, {"a": -2}, _ledger(("o1", "a", 3)), _records())
    assert report.oversold == 2


def test_acceptances_beyond_the_stock_are_oversold_even_if_the_ledger_is_short():
    report = check(
        {"a": 1},
        {"a": 0},
        _ledger(("o1", "a", 1)),
        _records(("o1", "a", 1, "accepted"), ("o2", "a", 1, "accepted")),
    )
    assert report.oversold == 1
    assert report.lost == 1  # o2 was promised and never persisted


def test_a_double_deduction_is_found():
    report = check(
        {"a": 10, "b": 10},
        {"a": 8, "b": 9},
        _ledger(("o1", "a", 1), ("o1", "a", 1), ("o1", "b", 1)),
        _records(
            ("o1", "a", 1, "accepted"), ("o1", "a", 1, "accepted"), ("o1", "b", 1, "accepted")
        ),
    )
    assert report.double_deducted == 1
    assert report.oversold == 0
    assert report.unaccounted == 0


def test_redis_drift_is_reported_per_sku():
    report = check(
        {"a": 5, "b": 5, "c": 5},
        {"a": 4, "b": 5, "c": 5},
        _ledger(("o1", "a", 1)),
        _records(("o1", "a", 1, "accepted")),
        redis_stock={"a": 4, "b": 3, "c": None},
    )
    assert report.converged is False
    assert report.drift == {"b": -2, "c": -5}
    assert not report.ok


def test_converged_redis_passes():
    report = check({"a": 5}, {"a": 5}, _ledger(), _records(), redis_stock={"a": 5})
    assert report.converged is True and report.ok


def test_per_sku_table_explains_the_totals():
    report = check(
        {"a": 1, "b": 3},
        {"a": 0, "b": 2},
        _ledger(("o1", "a", 1), ("o2", "a", 1), ("o3", "b", 1)),
        _records(
            ("o1", "a", 1, "accepted"), ("o2", "a", 1, "accepted"), ("o3", "b", 1, "accepted")
        ),
    )
    table = report.per_sku.set_index("sku")
    assert table.loc["a", "oversold"] == 1 and table.loc["b", "oversold"] == 0
    assert table["oversold"].sum() == report.oversold


def test_a_duplicate_answer_with_nothing_behind_it_is_a_false_duplicate():
    report = check(
        {"a": 5},
        {"a": 4},
        _ledger(("o1", "a", 1)),
        _records(
            ("o1", "a", 1, "accepted"),
            ("o1", "a", 1, "duplicate"),  # true: o1 was done
            ("o2", "a", 1, "error"),
            ("o2", "a", 1, "duplicate"),  # false: o2 never reached the DB
        ),
    )
    assert report.false_duplicates == 1
    assert report.lost == 0  # o2 was never promised as accepted


def test_a_deduction_the_ledger_does_not_record_is_a_double_deduction():
    # one order line, one ledger row, and yet the stock moved twice
    report = check(
        {"a": 5}, {"a": 3}, _ledger(("o1", "a", 1)), _records(("o1", "a", 1, "accepted"))
    )
    assert report.double_deducted == 1
    assert report.unaccounted == 1
    assert not report.ok


def test_unknown_outcomes_are_resolved_from_the_state():
    report = check(
        {"a": 5},
        {"a": 3},
        _ledger(("o1", "a", 1), ("o2", "a", 1)),
        _records(
            ("o1", "a", 1, "unknown"),  # the commit's acknowledgement was lost: persisted
            ("o2", "a", 1, "accepted"),
            ("o3", "a", 1, "unknown"),  # the connection died before the commit: not persisted
        ),
    )
    assert report.ok
    assert (report.unknown_persisted, report.unknown_not_persisted) == (1, 1)
    assert report.lost == 0


def _sold_out(sku, *quantities, first=0):
    """One sold-out refusal per quantity, each from an order of its own."""
    return [(f"r{first + n}", sku, qty, "sold_out") for n, qty in enumerate(quantities)]


def test_many_refusals_competing_for_a_few_units_leave_only_those_units_unsold():
    # regression: 187 buyers refused with 4 units left is 4 units left unsold, not 187
    report = check({"a": 4}, {"a": 4}, _ledger(), _records(*_sold_out("a", *[1] * 187)))
    assert report.false_sold_out == 4
    assert report.false_sold_out_orders == 187


def test_a_refusal_larger_than_what_is_left_is_no_false_sold_out():
    report = check({"a": 4}, {"a": 4}, _ledger(), _records(*_sold_out("a", 5)))
    assert (report.false_sold_out, report.false_sold_out_orders) == (0, 0)


def test_refused_quantities_that_fit_only_one_at_a_time_count_the_best_fill():
    # 3 and 3 with 4 left: one of them could have been served, not both
    report = check({"a": 4}, {"a": 4}, _ledger(), _records(*_sold_out("a", 3, 3)))
    assert (report.false_sold_out, report.false_sold_out_orders) == (3, 2)


def test_the_unsold_units_are_the_best_fill_not_the_smallest_first():
    # smallest first would serve the 2 and then not fit the 3: the 3 alone leaves less unsold
    report = check({"a": 4}, {"a": 4}, _ledger(), _records(*_sold_out("a", 2, 3)))
    assert report.false_sold_out == 3
    report = check({"a": 5}, {"a": 5}, _ledger(), _records(*_sold_out("a", 2, 3, 4)))
    assert report.false_sold_out == 5


def test_refusals_that_all_fit_count_every_unit_they_asked_for():
    report = check({"a": 10}, {"a": 10}, _ledger(), _records(*_sold_out("a", 1, 2, 3, 11)))
    assert (report.false_sold_out, report.false_sold_out_orders) == (6, 3)


def test_false_sold_outs_are_counted_per_sku():
    report = check(
        {"a": 4, "b": 1, "c": 0},
        {"a": 4, "b": 1, "c": 0},
        _ledger(),
        _records(
            *_sold_out("a", 1, 1), *_sold_out("b", 1, 2, first=2), *_sold_out("c", 1, first=4)
        ),
    )
    table = report.per_sku.set_index("sku")
    assert table["false_sold_out"].to_dict() == {"a": 2, "b": 1, "c": 0}
    assert table["false_sold_out_orders"].to_dict() == {"a": 2, "b": 1, "c": 0}
    assert (report.false_sold_out, report.false_sold_out_orders) == (3, 3)


def test_a_refused_order_counts_once_and_not_at_all_once_it_was_served():
    report = check(
        {"a": 5},
        {"a": 3},
        _ledger(("o1", "a", 1)),
        _records(
            ("o1", "a", 1, "sold_out"),  # refused, then served on a retry: nothing left unsold
            ("o1", "a", 1, "accepted"),
            ("o2", "a", 1, "sold_out"),  # refused twice: one buyer, one unit
            ("o2", "a", 1, "sold_out"),
        ),
    )
    assert (report.false_sold_out, report.false_sold_out_orders) == (1, 1)


def test_an_oversold_sku_has_no_false_sold_out():
    report = check({"a": 1}, {"a": -1}, _ledger(), _records(*_sold_out("a", 1)))
    assert (report.false_sold_out, report.false_sold_out_orders) == (0, 0)


def test_units_a_pending_task_will_take_are_not_left_unsold():
    # 4 in the DB, 3 of them promised to a task not yet applied: 1 left for the refusals
    report = check(
        {"a": 4},
        {"a": 4},
        _ledger(),
        _records(("t1", "a", 3, "accepted"), *_sold_out("a", 1, 1, 2)),
        pending_tasks=pd.DataFrame([("t1", "a", 3)], columns=["order_id", "sku", "qty"]),
    )
    assert (report.false_sold_out, report.false_sold_out_orders) == (1, 2)


def test_the_summary_reports_the_units_and_the_refusals_behind_them():
    summary = check({"a": 4}, {"a": 4}, _ledger(), _records(*_sold_out("a", 1, 1, 1))).summary()
    assert (summary["false_sold_out"], summary["false_sold_out_orders"]) == (3, 3)


@given(st.lists(st.integers(1, 6), max_size=8), st.integers(0, 20))
def test_best_fill_is_the_largest_subset_sum_within_the_room(quantities, room):
    sums = {sum(c) for n in range(len(quantities) + 1) for c in combinations(quantities, n)}
    assert best_fill(quantities, room) == max(s for s in sums if s <= room)


def test_best_fill_handles_many_refusals_and_a_large_room():
    assert best_fill([1] * 100_000, 4) == 4
    assert best_fill([3] * 100_000 + [7] * 1_000, 1_000_000) == 307_000  # all fit
    assert best_fill([3] * 400_000, 1_000_000) == 999_999
    assert best_fill([3] * 400_000 + [7], 1_000_000) == 1_000_000  # 333 331 threes and the 7
    assert best_fill([2] * 500_000, 999_999) == 999_998
