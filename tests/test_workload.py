import logging
import time

import pytest

from inventory_lab import Order, Outcome, Result, Workload, run_workload
from inventory_lab.workload import RECORD_COLUMNS


def test_the_same_seed_gives_the_same_attempts():
    assert Workload(seed=3).attempts() == Workload(seed=3).attempts()
    assert Workload(seed=3).attempts() != Workload(seed=4).attempts()


def test_skew_makes_the_first_sku_hot_and_zero_skew_spreads():
    hot = Workload(orders=5000, skus=50, skew=1.2).attempts()
    flat = Workload(orders=5000, skus=50, skew=0).attempts()
    share = lambda attempts: sum(a.order.sku == "sku-0001" for a in attempts) / len(attempts)  # noqa: E731
    assert share(hot) > 0.15
    assert share(flat) < 0.05


def test_retries_resend_the_same_order():
    attempts = Workload(orders=1000, retries=0.25).attempts()
    retries = [a for a in attempts if a.attempt == 1]
    originals = {a.order for a in attempts if a.attempt == 0}
    assert 180 < len(retries) < 320
    assert all(a.order in originals for a in retries)
    assert len(originals) == 1000


def test_quantities_stay_in_range_and_initial_stock_covers_every_sku():
    workload = Workload(orders=300, skus=7, stock=9, max_qty=3)
    assert {a.order.qty for a in workload.attempts()} == {1, 2, 3}
    assert workload.initial_stock() == {f"sku-{i:04d}": 9 for i in range(1, 8)}


@pytest.mark.parametrize(
    "kwargs", [{"orders": 0}, {"skus": 0}, {"stock": -1}, {"retries": 1.5}, {"skew": -1}]
)
def test_bad_workloads_are_refused(kwargs):
    with pytest.raises(ValueError):
        Workload(**kwargs)


class _Recorder:
    """A stand-in design that records which threads called it."""

    name = "recorder"

    def __init__(self, fail_on=None):
        self.fail_on = fail_on
        self.seen = []

    def deduct(self, order: Order) -> Result:
        time.sleep(0.0005)  # a round trip, so that the clients take turns
        self.seen.append(order.order_id)
        if order.order_id == self.fail_on:
            raise RuntimeError("server went away")
        if order.qty > 1:
            Order(order.order_id, "bad sku", 1)  # raises InvalidOrder
        return Result(Outcome.ACCEPTED)


def test_run_records_every_attempt_once_across_clients():
    workload = Workload(orders=200, retries=0.1)
    attempts = workload.attempts()
    design = _Recorder()
    records = run_workload(design, attempts, concurrency=5)
    assert list(records.columns) == RECORD_COLUMNS
    assert len(records) == len(attempts) == len(design.seen)
    assert records["client"].nunique() > 1
    assert (records["end_s"] >= records["start_s"]).all()


def test_run_turns_bad_input_into_rejected_and_failures_into_unknown(caplog):
    attempts = Workload(orders=50, max_qty=2, seed=1).attempts()
    victim = attempts[0].order.order_id
    with caplog.at_level(logging.DEBUG, logger="inventory_lab.workload"):
        records = run_workload(_Recorder(fail_on=victim), attempts, concurrency=3)
    swallowed = [r for r in caplog.records if r.name == "inventory_lab.workload"]
    assert len(swallowed) == 1 and swallowed[0].exc_info is not None  # logged, with its error
    outcomes = records.set_index("order_id")["outcome"]
    assert outcomes[victim] == "unknown"  # an error that escapes: the client cannot know
    wanted = {a.order.order_id for a in attempts if a.order.qty > 1 and a.order.order_id != victim}
    assert set(records.loc[records["outcome"] == "rejected", "order_id"]) == wanted


def test_concurrency_must_be_positive():
    with pytest.raises(ValueError):
        run_workload(_Recorder(), Workload(orders=5).attempts(), concurrency=0)


def test_a_lost_reply_is_recorded_as_unknown_then_resent():
    workload = Workload(orders=100, lost_replies=0.2, seed=5)
    lost = [a for a in workload.attempts() if a.reply_lost]
    assert 8 < len(lost) < 35
    records = run_workload(_Recorder(), workload.attempts(), concurrency=3)
    assert len(records) == 100 + len(lost)
    first_sends = records[records["order_id"].isin({a.order.order_id for a in lost})]
    by_attempt = first_sends.groupby("attempt")["outcome"].agg(set)
    assert by_attempt[0] == {"unknown"} and by_attempt[1] == {"accepted"}
    assert first_sends["detail"].str.contains("reply lost").sum() == len(lost)


class _FailingCheckouts:
    """A multi-line design whose checkouts all fail after being sent (unknown outcomes)."""

    name = "failing"

    def place(self, checkout):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"connection dropped after {checkout.order_id} was sent")


def test_a_checkout_that_fails_is_recorded_unknown_on_every_line():
    """Regression: logging the escaped error read `anti_repeat_code`, which a checkout has not:
    the client thread died and the attempt's records were lost."""
    attempts = Workload(orders=6, skus=3, lines=2, seed=2).attempts()
    records = run_workload(_FailingCheckouts(), attempts, concurrency=2)
    assert len(records) == 2 * len(attempts)
    assert (records["outcome"] == "unknown").all()
    assert records["detail"].str.contains("connection dropped").all()


def test_lines_draw_distinct_skus_and_keep_the_single_line_draws():
    single = Workload(orders=50, skus=4, seed=3).attempts()
    multi = Workload(orders=50, skus=4, seed=3, lines=3).attempts()
    assert all(len(set(a.order.skus)) == 3 for a in multi)
    # the first line of each checkout is the single-line workload's order
    assert [a.order.lines[0] for a in multi[:1]] == [single[0].order]
    with pytest.raises(ValueError, match="lines"):
        Workload(skus=2, lines=3)
