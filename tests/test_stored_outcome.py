"""Idempotency keys that store the outcome: the begin/finish state machine on every Redis, the
wrapper in front of real designs (replays deduct once, concurrent duplicates run once, a
non-final answer frees the key), and the side-by-side with SET NX, checked by the checker."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import pytest

from inventory_lab import Order, Outcome, keys
from inventory_lab.checker import read_ledger
from inventory_lab.designs import design_class, design_names
from inventory_lab.designs.base import Design
from inventory_lab.errors import InvalidInput, InvalidOrder, LabError
from inventory_lab.lab import Lab
from inventory_lab.orders import Result
from inventory_lab.stored_outcome import (
    DEFAULT_RETENTION_MS,
    IDEMPOTENCY_MODES,
    IdempotencyKeys,
    StoredOutcome,
    Verdict,
    false_duplicates_side_by_side,
    fingerprint,
    forced_retry_during_refusal,
    wrap,
)
from inventory_lab.workload import Workload

ORDER = Order("o-1", "sku-1", 1)
STOCK = {"sku-1": 5, "sku-2": 5}
WAIT_S = 10.0  # a bound on waits for another thread or an expiry, never a duration a race needs


def stored(lab: Lab, name: str = "two_gate_lua", **options: Any) -> StoredOutcome:
    wrapper = StoredOutcome(design_class(name)(lab), lab, **options)
    wrapper.setup(STOCK)
    return wrapper


def wait_until_gone(lab: Lab, key: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while lab.redis.exists(key):
        assert time.monotonic() < deadline, f"{key} outlived its lease by {WAIT_S} s"
        time.sleep(0.005)


# --- begin / finish ---------------------------------------------------------------------------


def test_a_fresh_key_runs_then_is_in_progress_then_replays_what_was_stored(redis_lab):
    idem = IdempotencyKeys(redis_lab, lease_ms=60_000)
    key = idem.key(ORDER)
    assert idem.begin(ORDER, "a").verdict is Verdict.GO
    record = idem.record(ORDER)
    assert record == {"fingerprint": fingerprint(ORDER), "state": "in_flight", "token": "a"}
    assert 0 < redis_lab.redis.pttl(key) <= 60_000  # the lease, not the retention
    assert idem.begin(ORDER, "b").verdict is Verdict.IN_PROGRESS
    assert idem.record(ORDER) == record  # asking changed nothing

    assert idem.finish(ORDER, "a", Result(Outcome.SOLD_OUT, "gate 1: not enough stock"))
    record = idem.record(ORDER)
    assert record["state"] == "done" and "token" not in record
    assert 60_000 < redis_lab.redis.pttl(key) <= DEFAULT_RETENTION_MS
    for token in ("c", "d"):
        begun = idem.begin(ORDER, token)
        assert begun.verdict is Verdict.REPLAY
        assert begun.stored == Result(Outcome.SOLD_OUT, "gate 1: not enough stock")
    assert idem.record(ORDER) == record


def test_another_payload_under_the_same_key_is_a_mismatch_in_flight_and_done(redis_lab):
    idem = IdempotencyKeys(redis_lab)
    other_qty = Order(ORDER.order_id, ORDER.sku, 2)
    assert fingerprint(other_qty) != fingerprint(ORDER)
    assert fingerprint(Order("o-2", ORDER.sku, 1)) == fingerprint(ORDER)  # the payload only
    assert idem.begin(ORDER, "a").verdict is Verdict.GO
    assert idem.begin(other_qty, "b").verdict is Verdict.MISMATCH
    assert idem.finish(ORDER, "a", Result(Outcome.ACCEPTED))
    done = idem.record(ORDER)
    assert idem.begin(other_qty, "c").verdict is Verdict.MISMATCH
    assert idem.record(ORDER) == done


def test_a_lease_that_expires_frees_the_key_of_a_request_that_crashed(redis_lab):
    idem = IdempotencyKeys(redis_lab, lease_ms=20)
    assert idem.begin(ORDER, "crashed").verdict is Verdict.GO  # and never finishes
    wait_until_gone(redis_lab, idem.key(ORDER))
    assert idem.begin(ORDER, "retry").verdict is Verdict.GO


def test_only_the_lease_holders_finish_lands(redis_lab):
    idem = IdempotencyKeys(redis_lab, lease_ms=20)
    assert idem.begin(ORDER, "slow").verdict is Verdict.GO
    wait_until_gone(redis_lab, idem.key(ORDER))  # the slow request's lease ran out
    idem.lease_ms = 60_000
    assert idem.begin(ORDER, "retry").verdict is Verdict.GO
    taken_over = idem.record(ORDER)
    assert not idem.finish(ORDER, "slow", Result(Outcome.ACCEPTED))
    assert not idem.release(ORDER, "slow")
    assert idem.record(ORDER) == taken_over
    assert idem.finish(ORDER, "retry", Result(Outcome.SOLD_OUT))
    assert not idem.finish(ORDER, "retry", Result(Outcome.ACCEPTED))  # done: nobody holds it
    assert idem.begin(ORDER, "later").stored == Result(Outcome.SOLD_OUT)


@pytest.mark.parametrize("outcome", [Outcome.ERROR, Outcome.UNKNOWN, Outcome.THROTTLED])
def test_an_answer_that_is_not_final_releases_the_key(redis_lab, outcome):
    idem = IdempotencyKeys(redis_lab)
    assert idem.begin(ORDER, "a").verdict is Verdict.GO
    assert idem.finish(ORDER, "a", Result(outcome, "nothing happened"))
    assert idem.record(ORDER) == {}
    assert idem.begin(ORDER, "b").verdict is Verdict.GO


@pytest.mark.parametrize("value", [0, -5, 1.5, True, "10"])
def test_a_lease_or_retention_that_is_no_positive_integer_is_refused(redis_lab, value):
    with pytest.raises(InvalidInput, match="lease_ms"):
        IdempotencyKeys(redis_lab, lease_ms=value)
    with pytest.raises(InvalidInput, match="retention_ms"):
        IdempotencyKeys(redis_lab, retention_ms=value)


def test_the_key_shares_its_skus_slot_and_the_namespace():
    key = keys.idempotency_key("ns", "o-1", "sku-1")
    assert key.startswith("ns:") and "{sku-1}" in key
    assert key != keys.anti_repeat_key("ns", "o-1", "sku-1")


# --- the wrapper ------------------------------------------------------------------------------


def test_replays_answer_what_was_stored_and_deduct_once(paired_lab):
    wrapper = stored(paired_lab)
    first = wrapper.deduct(ORDER)
    assert first.outcome is Outcome.ACCEPTED
    record = wrapper.idempotency.record(ORDER)
    assert (record["outcome"], record["detail"]) == (first.outcome.value, first.detail)
    for _ in range(4):
        again = wrapper.deduct(ORDER)
        assert again.outcome is first.outcome and again.detail.startswith("replayed")
    assert wrapper.idempotency.record(ORDER) == record
    assert wrapper.stock("sku-1") == 4
    ledger = read_ledger(paired_lab)
    assert list(ledger["order_id"]) == ["o-1"] and int(ledger["qty"].sum()) == 1


def test_a_sold_out_is_stored_and_replayed_even_after_stock_comes_back(redis_lab):
    wrapper = stored(redis_lab)
    big = Order("o-big", "sku-1", 6)
    assert wrapper.deduct(big).outcome is Outcome.SOLD_OUT
    stock_key = keys.stock_key(redis_lab.namespace, "sku-1")
    redis_lab.redis.hincrby(stock_key, keys.STOCK_FIELD, 5)  # stock came back
    replay = wrapper.deduct(big)
    assert replay.outcome is Outcome.SOLD_OUT and replay.detail.startswith("replayed")


def test_the_same_key_with_another_quantity_is_a_mismatch_and_changes_nothing(redis_lab):
    wrapper = stored(redis_lab)
    assert wrapper.deduct(ORDER).outcome is Outcome.ACCEPTED
    assert wrapper.deduct(Order("o-1", "sku-1", 3)).outcome is Outcome.MISMATCH
    assert wrapper.stock("sku-1") == 4 and len(read_ledger(redis_lab)) == 1


class HeldDesign:
    """A real design whose deduct signals that it started, then waits to be released."""

    def __init__(self, design: Design) -> None:
        self.design = design
        self.entered, self.release = threading.Event(), threading.Event()
        self.calls = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.design, name)

    def deduct(self, order: Order) -> Result:
        with self._lock:
            self.calls += 1
        self.entered.set()
        assert self.release.wait(WAIT_S)
        return self.design.deduct(order)


def test_concurrent_duplicates_run_once_and_the_others_hear_in_progress(redis_lab):
    held = HeldDesign(design_class("two_gate_lua")(redis_lab))
    wrapper = StoredOutcome(held, redis_lab)
    wrapper.setup(STOCK)
    clients = 6
    start, answers = threading.Barrier(clients), queue.Queue()

    def client() -> None:
        start.wait(WAIT_S)
        answers.put(wrapper.deduct(ORDER))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    # Every client but the one inside the design answers while it is held: had two got in,
    # two would be held and this would time out.
    early = [answers.get(timeout=WAIT_S) for _ in range(clients - 1)]
    assert held.entered.is_set() and held.calls == 1
    assert {result.outcome for result in early} == {Outcome.IN_PROGRESS}
    held.release.set()
    assert answers.get(timeout=WAIT_S).outcome is Outcome.ACCEPTED
    for thread in threads:
        thread.join(WAIT_S)
    assert wrapper.deduct(ORDER).detail.startswith("replayed") and held.calls == 1
    assert wrapper.stock("sku-1") == 4 and len(read_ledger(redis_lab)) == 1


class FailingOnce:
    """A real design whose first deduct fails: with an `error` answer (nothing ran) or by
    raising after the real deduction ran (the reply lost: an unknown outcome)."""

    def __init__(self, design: Design, *, raise_after: bool) -> None:
        self.design, self.raise_after, self.calls = design, raise_after, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.design, name)

    def deduct(self, order: Order) -> Result:
        self.calls += 1
        if self.calls > 1:
            return self.design.deduct(order)
        if not self.raise_after:
            return Result(Outcome.ERROR, "the database did not answer; nothing persisted")
        self.design.deduct(order)
        raise ConnectionError("reply lost")


def test_an_error_releases_the_key_and_a_retry_runs_again(redis_lab):
    inner = FailingOnce(design_class("two_gate_lua")(redis_lab), raise_after=False)
    wrapper = StoredOutcome(inner, redis_lab)
    wrapper.setup(STOCK)
    assert wrapper.deduct(ORDER).outcome is Outcome.ERROR
    assert wrapper.idempotency.record(ORDER) == {}
    assert wrapper.deduct(ORDER).outcome is Outcome.ACCEPTED and inner.calls == 2
    assert wrapper.deduct(ORDER).detail.startswith("replayed") and inner.calls == 2


def test_an_escaped_unknown_releases_the_key_and_the_designs_code_guards_the_stock(redis_lab):
    inner = FailingOnce(design_class("two_gate_lua")(redis_lab), raise_after=True)
    wrapper = StoredOutcome(inner, redis_lab)
    wrapper.setup(STOCK)
    with pytest.raises(ConnectionError):
        wrapper.deduct(ORDER)
    assert wrapper.idempotency.record(ORDER) == {}
    retry = wrapper.deduct(ORDER)  # runs again: the design's own anti-repeat code answers
    assert retry.outcome is Outcome.DUPLICATE and inner.calls == 2
    assert wrapper.stock("sku-1") == 4 and len(read_ledger(redis_lab)) == 1


def test_bad_input_is_refused_before_any_key_is_taken(redis_lab):
    wrapper = stored(redis_lab)
    unknown = Order("o-1", "sku-nope", 1)
    with pytest.raises(InvalidOrder, match="unknown SKU"):
        wrapper.deduct(unknown)
    with pytest.raises(InvalidOrder, match="expected an Order"):
        wrapper.deduct("o-1:sku-1")  # type: ignore[arg-type]
    assert wrapper.idempotency.record(unknown) == {}
    assert wrapper.deduct(ORDER).outcome is Outcome.ACCEPTED
    before = wrapper.idempotency.record(ORDER)
    with pytest.raises(InvalidInput):
        wrapper.setup({"sku-1": -1})
    assert wrapper.idempotency.record(ORDER) == before


def test_setup_forgets_the_stored_answers_even_for_a_design_without_redis(paired_lab):
    wrapper = stored(paired_lab, "db_only")
    assert wrapper.deduct(ORDER).outcome is Outcome.ACCEPTED
    wrapper.setup(STOCK)
    assert wrapper.idempotency.record(ORDER) == {}
    assert wrapper.deduct(ORDER).outcome is Outcome.ACCEPTED  # fresh tables, fresh key


def test_wrap_picks_the_mode_and_the_wrapper_is_a_design_but_no_registered_one(redis_lab):
    design = design_class("two_gate_lua")(redis_lab)
    assert IDEMPOTENCY_MODES == ("set_nx", "stored")
    assert wrap(design, redis_lab, "set_nx") is design
    wrapper = wrap(design, redis_lab, "stored", lease_ms=500)
    assert isinstance(wrapper, StoredOutcome) and isinstance(wrapper, Design)
    assert wrapper.name == "two_gate_lua+stored" and wrapper.uses_redis
    assert wrapper.idempotency.lease_ms == 500
    assert wrapper.name not in design_names()
    with pytest.raises(InvalidInput, match="idempotency mode"):
        wrap(design, redis_lab, "stripe")
    with pytest.raises(InvalidInput, match="no options"):
        wrap(design, redis_lab, "set_nx", lease_ms=500)


# --- the side-by-side -------------------------------------------------------------------------


def test_a_retry_during_a_refusal_hears_in_progress_then_the_stored_sold_out(redis_lab):
    run = forced_retry_during_refusal(redis_lab, "stored")
    assert run.held and run.design == "two_gate+stored"
    assert run.first.outcome is Outcome.SOLD_OUT
    assert run.during.outcome is Outcome.IN_PROGRESS
    assert run.later.outcome is Outcome.SOLD_OUT and run.later.detail.startswith("replayed")
    assert run.report.false_duplicates == 0 and run.report.ok
    assert list(run.records["attempt"]) == [0, 1, 2]


def test_the_forced_race_needs_a_design_with_a_give_back(redis_lab):
    with pytest.raises(LabError, match="no gate 1"):
        forced_retry_during_refusal(redis_lab, "stored", "db_only")
    assert list(redis_lab.redis.scan_iter(match=keys.namespace_pattern(redis_lab.namespace))) == []


SMALL = Workload(orders=60, skus=2, stock=12, retries=0.4, lost_replies=0.1, seed=3)


def test_side_by_side_set_nx_lies_where_the_stored_outcome_does_not(paired_lab):
    table = false_duplicates_side_by_side(paired_lab, workload=SMALL, concurrency=4)
    rows = table.set_index("mode")
    assert list(rows.index) == list(IDEMPOTENCY_MODES)
    set_nx, kept = rows.loc["set_nx"], rows.loc["stored"]
    assert set_nx["forced: retry during refusal told"] == "duplicate"
    assert set_nx["forced false_duplicates"] > 0
    assert kept["forced: retry during refusal told"] == "in_progress"
    assert kept["forced: later retry told"] == "sold_out"
    assert kept["forced false_duplicates"] == 0 and kept["workload false_duplicates"] == 0
    assert table["forced checker ok"].all() and table["checker ok"].all()
    assert (table["oversold"] == 0).all() and (table["double_deducted"] == 0).all()
    assert kept["workload replayed"] > 0  # the lost replies' resends, at least
    assert kept["round trips per attempt"] > set_nx["round trips per attempt"]
    assert kept["bytes per key"] > set_nx["bytes per key"] > 0
    fake = paired_lab.redis_url.startswith("fake")
    expected = "estimate: stored bytes" if fake else "MEMORY USAGE"
    assert set(table["memory measured by"]) == {expected}
