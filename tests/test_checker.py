"""The checker itself: feed it states with known faults and see it find each one."""

import pandas as pd

from inventory_lab import check
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
