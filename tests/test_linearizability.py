"""The linearizability checker: hand-written histories with a known answer, the search against
brute force on random small histories, histories of real runs, the window, the time budget."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inventory_lab import history
from inventory_lab.errors import InvalidInput
from inventory_lab.experiment import run_experiment
from inventory_lab.explorer import Spec, explore
from inventory_lab.history import READ, Event, Operation
from inventory_lab.lab import open_lab
from inventory_lab.linearizability import (
    brute_force,
    check_history,
    check_operations,
    describe,
)
from inventory_lab.orders import Outcome
from inventory_lab.scenarios import forced_lost_update
from inventory_lab.workload import Workload

ACC, SOLD, DUP = Outcome.ACCEPTED, Outcome.SOLD_OUT, Outcome.DUPLICATE
UNK, ERR = Outcome.UNKNOWN, Outcome.ERROR


def op(order_id: str, outcome: Outcome, start: float, end: float = 0.0, *, qty: int = 1,
       sku: str = "A", index: int = 0) -> Operation:  # fmt: skip
    end = math.inf if outcome == UNK else end
    return Operation(0, order_id, sku, qty, outcome, float(start), float(end), index)


def rd(value: int, start: float, end: float, *, sku: str = "A", outcome: Outcome = ACC,
       process: int = 9) -> Operation:  # fmt: skip
    """A read of `sku` that saw `value` units (outcome accepted: it answered)."""
    return Operation(process, "", sku, 0, outcome, float(start), float(end), 0, READ, value)


def numbered(*ops: Operation) -> list[Operation]:
    return [Operation(**{**_fields(o), "index": i}) for i, o in enumerate(ops)]


def _fields(o: Operation) -> dict:
    return {name: getattr(o, name) for name in Operation.__slots__}


def ids(ops) -> list[str]:
    return [o.order_id for o in ops]


def replays(order: list[Operation], units: int) -> bool:
    """The model, written again here: does this order give every definite answer?"""
    done: set[str] = set()
    for o in order:
        if o.f == READ:
            if o.value != units:
                return False
            continue
        answer = DUP if o.order_id in done else ACC if units >= o.qty else SOLD
        if o.outcome != UNK and answer != o.outcome:
            return False
        if answer == ACC:
            units -= o.qty
            done.add(o.order_id)
    return True


# --- hand-written histories -------------------------------------------------------------------


def test_a_sequential_history_is_valid_in_its_own_order():
    ops = numbered(op("o-1", ACC, 0, 1), op("o-2", ACC, 2, 3), op("o-3", SOLD, 4, 5))
    verdict = check_operations(ops, {"A": 2})
    assert verdict.valid and verdict.sku is None
    assert ids(verdict.linearization["A"]) == ["o-1", "o-2", "o-3"]
    assert verdict.window == () and verdict.culprit is None


def test_a_concurrent_oversell_is_invalid_and_its_window_is_the_two_deducts():
    ops = numbered(op("o-1", ACC, 0, 2), op("o-2", ACC, 1, 3))
    verdict = check_operations(ops, {"A": 1})
    assert verdict.result == "invalid" and verdict.sku == "A"
    assert ids(verdict.window) == ["o-1", "o-2"]
    assert verdict.culprit.order_id == "o-2"  # its completion is the one that broke it
    assert "stock 1: o-1 accepted 1, o-2 accepted 1; no order" in verdict.explanation
    assert "only 0 left" in verdict.explanation


def test_a_sold_out_while_stock_was_left_is_invalid():
    ops = numbered(op("o-1", ACC, 0, 1), op("o-2", SOLD, 2, 3))
    verdict = check_operations(ops, {"A": 2})
    assert verdict.result == "invalid"
    assert ids(verdict.window) == ["o-2"]
    assert "o-2 answered sold_out for 1, but 1 left" in verdict.explanation


def test_a_sold_out_is_valid_when_a_concurrent_deduct_took_the_last_unit():
    ops = numbered(op("o-1", ACC, 0, 3), op("o-2", SOLD, 1, 2))
    verdict = check_operations(ops, {"A": 1})
    assert verdict.valid
    assert ids(verdict.linearization["A"]) == ["o-1", "o-2"]


def test_an_unknown_deduct_that_must_have_happened_explains_a_later_sold_out():
    ops = numbered(op("u", UNK, 0), op("o-2", SOLD, 1, 2))
    verdict = check_operations(ops, {"A": 1})
    assert verdict.valid
    assert ids(verdict.linearization["A"]) == ["u", "o-2"]


def test_an_unknown_deduct_may_never_have_happened():
    ops = numbered(op("u", UNK, 0), op("o-2", ACC, 1, 2))
    verdict = check_operations(ops, {"A": 1})
    assert verdict.valid
    assert ids(verdict.linearization["A"]) == ["o-2"]  # u dropped


def test_an_unknown_deduct_cannot_take_effect_before_it_started():
    ops = numbered(op("o-1", SOLD, 0, 1), op("u", UNK, 2))
    assert check_operations(ops, {"A": 1}).result == "invalid"


def test_a_line_accepted_twice_is_a_double_deduction():
    ops = numbered(op("o-1", ACC, 0, 1), op("o-1", ACC, 2, 3))
    verdict = check_operations(ops, {"A": 5})
    assert verdict.result == "invalid"
    assert "its line was already done" in verdict.explanation
    concurrent = numbered(op("o-1", ACC, 0, 2), op("o-1", ACC, 1, 3))
    assert check_operations(concurrent, {"A": 5}).result == "invalid"


def test_a_duplicate_for_a_line_nobody_did_is_invalid():
    ops = numbered(op("o-1", DUP, 0, 1))
    verdict = check_operations(ops, {"A": 5})
    assert verdict.result == "invalid"
    assert "o-1 answered duplicate for 1, but its line was not done" in verdict.explanation


def test_a_duplicate_after_an_unknown_original_is_valid():
    ops = numbered(op("o-1", UNK, 0), op("o-1", DUP, 1, 2))
    verdict = check_operations(ops, {"A": 5})
    assert verdict.valid
    assert ids(verdict.linearization["A"]) == ["o-1", "o-1"]


def test_failed_attempts_are_left_out():
    ops = numbered(
        op("o-1", ERR, 0, 1),
        op("o-2", Outcome.THROTTLED, 0, 1),
        op("o-3", Outcome.REJECTED, 0, 1),
        op("o-4", ACC, 2, 3),
        op("o-5", SOLD, 4, 5),
        op("o-9", ERR, 0, 1, sku="no-such-sku"),  # failed: not even its SKU is read
    )
    verdict = check_operations(ops, {"A": 1})
    assert verdict.valid
    assert ids(verdict.linearization["A"]) == ["o-4", "o-5"]


def test_skus_are_checked_on_their_own():
    ops = numbered(op("o-1", ACC, 0, 1, sku="A"), op("o-2", ACC, 0, 1, sku="B"))
    assert check_operations(ops, {"A": 1, "B": 1}).valid
    # A's spare unit does not cover B's oversell.
    verdict = check_operations(ops, {"A": 2, "B": 0})
    assert verdict.result == "invalid" and verdict.sku == "B"
    assert ids(verdict.window) == ["o-2"]


def test_the_window_is_where_the_history_first_breaks_not_its_end():
    ops = numbered(
        op("o-1", ACC, 0, 2),
        op("o-2", ACC, 1, 3),  # the lost update: broken once o-2 is heard
        *(op(f"s-{n}", SOLD, 4 + 2 * n, 5 + 2 * n) for n in range(10)),
    )
    verdict = check_operations(ops, {"A": 1})
    assert verdict.culprit.order_id == "o-2"
    assert ids(verdict.window) == ["o-1", "o-2"]


def test_an_operation_still_running_at_the_break_is_in_the_window_as_running():
    ops = numbered(op("o-1", ACC, 0, 1), op("o-3", ACC, 0.5, 10), op("o-2", ACC, 2, 3))
    verdict = check_operations(ops, {"A": 1})
    assert verdict.culprit.order_id == "o-2"
    assert ids(verdict.window) == ["o-3", "o-2"]  # o-1 ended before o-2 began
    assert "o-3 still running" in verdict.explanation


def test_the_window_alone_may_fit_and_the_explanation_says_so():
    # u took the unit to explain a's sold-out, so c cannot have it; from stock 1, u and c alone fit.
    ops = numbered(op("u", UNK, 0), op("a", SOLD, 1, 2), op("c", ACC, 3, 4))
    verdict = check_operations(ops, {"A": 1})
    assert verdict.result == "invalid" and ids(verdict.window) == ["u", "c"]
    assert "these alone would fit" in verdict.explanation
    assert "u unknown, took effect (1->0) -> a sold_out (0->0)" in verdict.explanation


def test_touching_intervals_overlap_in_seconds_but_follow_event_order_in_a_history():
    # o-1 sold out while 1 unit was left, unless o-2 (starting as o-1 ended) took it first.
    ops = numbered(op("o-1", SOLD, 0, 1), op("o-2", ACC, 1, 2))
    assert check_operations(ops, {"A": 1}).valid
    events = [
        Event(0, 0.0, 0, "invoke", "deduct", {"order_id": "o-1", "sku": "A", "qty": 1}),
        Event(1, 1.0, 0, "ok", "deduct", {"order_id": "o-1", "outcome": "sold_out"}),
        Event(2, 1.0, 0, "invoke", "deduct", {"order_id": "o-2", "sku": "A", "qty": 1}),
        Event(3, 2.0, 0, "ok", "deduct", {"order_id": "o-2", "outcome": "accepted"}),
    ]
    verdict = check_history(events, {"A": 1})
    assert verdict.result == "invalid"
    assert verdict.culprit.end_s == 1.0  # reported in the run's seconds, not event indices


def test_describe_says_what_was_found():
    bad = check_operations(numbered(op("o-1", ACC, 0, 2), op("o-2", ACC, 1, 3)), {"A": 1})
    text = describe(bad)
    assert text.startswith("not linearizable: SKU A, window of 2 operations")
    assert "o-2 answered accepted for 1" in text
    good = check_operations(numbered(op("o-1", ACC, 0, 1)), {"A": 1})
    assert describe(good).startswith("linearizable: 1 SKU(s), an order of 1 operations")


@pytest.mark.parametrize(
    ("ops", "initial", "message"),
    [
        ([op("o-1", ACC, 0, 1, sku="B")], {"A": 1}, "no initial stock"),
        ([op("o-1", ACC, 0, 1)], {"A": -1}, "integer >= 0"),
        ([op("o-1", ACC, 0, 1, qty=0)], {"A": 1}, "not positive"),
        ([op("o-1", ACC, 2, 1)], {"A": 1}, "ends before it starts"),
    ],
)
def test_bad_input_is_refused(ops, initial, message):
    with pytest.raises(InvalidInput, match=message):
        check_operations(ops, initial)
    with pytest.raises(InvalidInput, match=message):
        brute_force(ops, initial)


def test_a_time_limit_must_be_positive_and_brute_force_stays_small():
    with pytest.raises(ValueError, match="time_limit_s"):
        check_operations([], {}, time_limit_s=0)
    many = [op(f"o-{n}", ACC, n, n + 1) for n in range(10)]
    with pytest.raises(ValueError, match="at most"):
        brute_force(many, {"A": 10})


# --- reads ------------------------------------------------------------------------------------


def test_a_read_sees_exactly_the_units_left():
    ops = numbered(op("o-1", ACC, 0, 1), rd(1, 2, 3), op("o-2", ACC, 4, 5), rd(0, 6, 7))
    verdict = check_operations(ops, {"A": 2})
    assert verdict.valid
    assert [o.value if o.f == READ else o.order_id for o in verdict.linearization["A"]] == [
        "o-1", 1, "o-2", 0,
    ]  # fmt: skip
    wrong = numbered(op("o-1", ACC, 0, 1), rd(2, 2, 3), op("o-2", ACC, 4, 5))
    verdict = check_operations(wrong, {"A": 2})
    assert verdict.result == "invalid" and verdict.culprit.f == READ
    assert ids(verdict.window) == [""]  # the read alone: o-1 ended before it began
    assert "process 9's read saw 2, but 1 left" in verdict.explanation  # not the final read
    assert brute_force(ops, {"A": 2}) and not brute_force(wrong, {"A": 2})


def test_a_read_concurrent_with_a_deduct_may_see_either_value():
    for seen, first in ((1, READ), (0, "deduct")):
        ops = numbered(op("o-1", ACC, 0, 3), rd(seen, 1, 2))
        verdict = check_operations(ops, {"A": 1})
        assert verdict.valid, seen
        assert verdict.linearization["A"][0].f == first
    assert check_operations(numbered(op("o-1", ACC, 0, 3), rd(2, 1, 2)), {"A": 1}).result == (
        "invalid"
    )
    # once the deduct has ended, a later read can no longer see the unit it took
    assert check_operations(numbered(op("o-1", ACC, 0, 1), rd(1, 2, 3)), {"A": 1}).result == (
        "invalid"
    )


def test_a_read_of_a_negative_stock_is_always_invalid():
    ops = numbered(op("o-1", ACC, 0, 1), op("o-2", SOLD, 2, 3), rd(-1, 4, 5))
    verdict = check_operations(ops, {"A": 1})
    assert verdict.result == "invalid"
    assert "the final read saw -1, but no order leaves fewer than 0" in verdict.explanation
    assert "once the final read (saw -1) is heard" in describe(verdict)


def test_reads_that_did_not_answer_say_nothing_and_bad_reads_are_refused():
    ops = numbered(
        op("o-1", ACC, 0, 1),
        rd(7, 2, 3, outcome=ERR),  # failed: its value (none really) is not read
        rd(7, 2, math.inf, outcome=UNK),
        rd(5, 2, 3, sku="no-such-sku", outcome=ERR),
    )
    verdict = check_operations(ops, {"A": 1})
    assert verdict.valid and ids(verdict.linearization["A"]) == ["o-1"]
    assert brute_force(ops, {"A": 1})
    for bad in (rd(None, 0, 1), rd(True, 0, 1)):
        with pytest.raises(InvalidInput, match="is no integer"):
            check_operations([bad], {"A": 1})
    with pytest.raises(InvalidInput, match="no initial stock"):
        check_operations([rd(0, 0, 1, sku="B")], {"A": 1})


def test_the_lost_ack_oversell_shows_only_in_the_final_read():
    # o-1's commit landed but its reply was lost (unknown), o-2 accepted, stock 1.
    answers = [op("o-1", UNK, 0), op("o-2", ACC, 1, 2)]
    assert check_operations(numbered(*answers), {"A": 1}).valid  # drop o-1: the answers fit
    oversold = numbered(*answers, rd(-1, 3, 3))
    verdict = check_operations(oversold, {"A": 1})
    assert verdict.result == "invalid" and verdict.culprit.f == READ
    assert not brute_force(oversold, {"A": 1})
    assert check_operations(numbered(*answers, rd(0, 3, 3)), {"A": 1}).valid


def test_the_explorer_lost_ack_failure_is_linearizable_in_answers_but_not_in_the_final_read():
    found = explore(Spec("two_gate_lua", faults=("lost_ack",), as_written=True))
    records = found.shrunk.records
    final = found.shrunk.report.per_sku.set_index("sku")["db_final"]["sku-1"]
    assert final == -1  # two ledger rows from one unit
    assert check_history(history.from_records(records), {"sku-1": 1}).valid
    events = history.from_records(records, final_stock={"sku-1": final})
    verdict = check_history(events, {"sku-1": 1})
    assert verdict.result == "invalid" and verdict.culprit.f == READ
    assert "the final read saw -1, but no order leaves fewer than 0" in verdict.explanation


# --- the search against brute force -----------------------------------------------------------


@st.composite
def small_histories(draw):
    skus = draw(st.sampled_from([["A"], ["A", "B"]]))
    initial = {sku: draw(st.integers(0, 3)) for sku in skus}
    ops = []
    for index in range(draw(st.integers(1, 7))):
        start = draw(st.integers(0, 6))
        outcome = draw(st.sampled_from([ACC, ACC, SOLD, DUP, UNK, ERR]))
        ops.append(
            op(
                draw(st.sampled_from(["o-1", "o-2", "o-3"])),
                outcome,
                start,
                start + draw(st.integers(0, 4)),
                qty=draw(st.integers(1, 2)),
                sku=draw(st.sampled_from(skus)),
                index=index,
            )
        )
    for _ in range(draw(st.integers(0, 2))):
        start = draw(st.integers(0, 8))
        read = rd(draw(st.integers(-1, 3)), start, start + draw(st.integers(0, 4)))
        ops.append(replace(read, sku=draw(st.sampled_from(skus)), index=len(ops)))
    return ops, initial


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_histories())
def test_the_search_agrees_with_brute_force(case):
    ops, initial = case
    verdict = check_operations(ops, initial)
    assert verdict.result == ("valid" if brute_force(ops, initial) else "invalid")
    if verdict.valid:  # the order it gives is one: real time, every definite answer, per SKU
        for sku, order in verdict.linearization.items():
            definite = [o for o in ops if o.sku == sku and o.outcome in (ACC, SOLD, DUP)]
            assert sorted(o.index for o in order if o.outcome != UNK) == [o.index for o in definite]
            assert all(not b.end_s < a.start_s for i, a in enumerate(order) for b in order[i + 1 :])
            assert replays(list(order), initial[sku])
    else:  # the window ends with its culprit's completion and holds it
        # (start_s/end_s here are the drawn integer instants of the history, not clock
        # readings: this is the window's definition, whatever the machine's speed)
        assert verdict.culprit in verdict.window
        assert all(o.start_s <= verdict.culprit.end_s for o in verdict.window)


# --- histories of real runs --------------------------------------------------------------------


def test_a_db_only_run_is_linearizable():
    workload = Workload(orders=60, skus=1, stock=20)
    with open_lab() as lab:
        run = run_experiment(lab, "db_only", workload, concurrency=4)
    events = history.from_records(run.records)
    verdict = check_history(events, workload.initial_stock())
    assert verdict.valid, describe(verdict)
    (order,) = verdict.linearization.values()
    assert sum(o.outcome == ACC for o in order) == 20  # 60 buyers, 20 units


def test_the_naive_lost_update_is_not_and_its_window_is_the_two_buyers():
    with open_lab() as lab:
        records, _ = forced_lost_update(lab, buyers=2, stock=1)
    verdict = check_history(history.from_records(records), {"sku-hot": 1})
    assert verdict.result == "invalid" and verdict.sku == "sku-hot"
    assert sorted(ids(verdict.window)) == ["buyer-0", "buyer-1"]
    assert "no order of these gives every answer" in verdict.explanation


def test_naive_in_lockstep_is_not_linearizable():
    workload = Workload(orders=12, skus=1, stock=6)
    with open_lab() as lab:
        run = run_experiment(lab, "naive", workload, concurrency=2, options={"lockstep": 2})
    assert run.check.oversold > 0  # the checker's view of the final state agrees
    verdict = check_history(history.from_records(run.records), workload.initial_stock())
    assert verdict.result == "invalid"
    # Lost updates hide until the model's stock runs out: the break is the 7th acceptance of 6.
    culprit = verdict.culprit
    assert culprit.outcome == ACC and culprit in verdict.window
    heard = history.operations(history.from_records(run.records))
    assert sum(o.outcome == ACC and o.end_s <= culprit.end_s for o in heard) == 7
    assert "answered accepted for 1, but only 0 left" in verdict.explanation


# --- the time budget ---------------------------------------------------------------------------


def test_a_large_concurrent_history_answers_unknown_past_its_budget():
    # 120 overlapping deducts of 2 from 101 units, every one accepted: no order fits, but only
    # after trying the subsets of 50; the budget runs out long before.
    ops = [op(f"o-{n}", ACC, 0, 1, qty=2, index=n) for n in range(120)]
    verdict = check_operations(ops, {"A": 101}, time_limit_s=0.05)
    assert verdict.result == "unknown" and verdict.sku == "A"
    assert verdict.explored > 0
    assert describe(verdict).startswith("unknown:")
