"""Tests for explorer.py: each failure of the article's designs found by the search, the fixes
found clean, shrinking, replay, sleep sets against a brute-force enumeration, random walks, the
records a schedule leaves, and Spec's refusals. Tiny specs (two or three orders, stock 1)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inventory_lab.errors import LabError
from inventory_lab.explorer import (
    SAFETY,
    Execution,
    Explorer,
    Move,
    Spec,
    count_switches,
    embedded_lab,
    explore,
    format_schedule,
)
from inventory_lab.lab import Lab


@pytest.fixture
def lab() -> Iterator[Lab]:
    with embedded_lab() as fresh:
        yield fresh


def search(lab: Lab, spec: Spec, find=None, **bounds):
    explorer = Explorer(lab, spec) if find is None else Explorer(lab, spec, find=find)
    return explorer, explorer.search(**bounds)


def all_schedules(explorer: Explorer) -> list[Execution]:
    """Every schedule, no reduction: each run follows a prefix, then the first enabled move,
    and every other move enabled past the prefix starts a prefix of its own."""
    prefixes: list[list[Move]] = [[]]
    runs = []
    while prefixes:
        prefix = prefixes.pop()
        seen: list[list[Move]] = []

        def choose(enabled, _last, prefix=prefix, seen=seen):
            moves = [m for m, _ in enabled]
            move = prefix[len(seen)] if len(seen) < len(prefix) else moves[0]
            seen.append(moves)
            return move

        execution = explorer.run(choose)
        for depth in range(len(prefix), len(seen)):
            prefixes += [[*execution.moves[:depth], alt] for alt in seen[depth][1:]]
        runs.append(execution)
    return runs


# --- the failures, found -----------------------------------------------------------------------


def test_naive_oversells(lab):
    _, found = search(lab, Spec("naive", orders=3, stock=1))
    assert found.failure is not None and found.failures == 1
    assert found.failure.findings["oversold"] >= 1
    heard = found.failure.tasks
    assert sum(outcome == "accepted" for outcome in heard.values()) >= 2


@pytest.mark.parametrize("design", ["two_gate_pipeline", "two_gate"])
def test_the_pipeline_and_commands_variants_refuse_units_that_were_there(lab, design):
    _, found = search(lab, Spec(design, orders=2, stock=1, qty=(2, 1)))
    assert found.failure is not None
    assert "false_sold_out" in found.failure.findings
    assert "oversold" not in found.failure.findings
    assert set(found.failure.tasks.values()) == {"sold_out"}  # the qty-1 order refused too


@pytest.mark.parametrize("fault", ["rewarm", "lost_ack"])
def test_the_lua_design_as_written_oversells_under_a_fault(lab, fault):
    _, found = search(
        lab, Spec("two_gate_lua", orders=2, stock=1, faults=(fault,), as_written=True)
    )
    assert found.failure is not None
    assert found.failure.findings.get("oversold", 0) >= 1
    assert Move(fault) in found.failure.moves  # the fault took its step


def test_the_task_engine_as_written_oversells_after_a_rewarm(lab):
    spec = Spec("task_engine", orders=2, stock=1, faults=("rewarm",), as_written=True)
    _, found = search(lab, spec, preemption_bound=1)
    assert found.failure is not None
    assert found.failure.findings.get("oversold", 0) >= 1


# --- the fixes, clean --------------------------------------------------------------------------


def test_the_lua_design_with_the_fixes_survives_rewarm_and_lost_ack(lab):
    # bound 2 keeps it to a few seconds; the full search (about 300 schedules) is clean too
    spec = Spec("two_gate_lua", orders=2, stock=1, faults=("rewarm", "lost_ack"))
    _, found = search(lab, spec, find=SAFETY, preemption_bound=2)
    assert found.complete and found.failures == 0 and found.failure is None
    assert found.schedules > 10  # the faults really were interleaved


@pytest.mark.parametrize("fault", ["rewarm", "lost_ack"])
def test_the_lua_design_with_the_fixes_survives_each_fault_unbounded(lab, fault):
    spec = Spec("two_gate_lua", orders=2, stock=1, faults=(fault,))
    _, found = search(lab, spec, find=SAFETY)
    assert found.complete and found.failures == 0


def test_the_lua_design_refuses_no_units_that_were_there(lab):
    _, found = search(lab, Spec("two_gate_lua", orders=2, stock=1, qty=(2, 1)))
    assert found.complete and found.failures == 0


def test_db_only_is_clean(lab):
    _, found = search(lab, Spec("db_only", orders=3, stock=1))
    assert found.complete and found.failures == 0
    assert found.schedules >= 6  # three transactions' orders at least (3!)


def test_a_crash_at_any_step_breaks_no_safety_property(lab):
    spec = Spec("two_gate_lua", orders=2, stock=1, faults=("crash",))
    explorer, found = search(lab, spec, find=SAFETY)
    assert found.complete and found.failures == 0
    crashed = explorer.replay([Move("o-1", "crash")])
    assert crashed.tasks["o-1"] == "unknown"
    assert crashed.tasks["o-2"] == "accepted"  # o-1 took nothing: the unit was there
    assert not crashed.findings


# --- shrinking, replay, determinism ------------------------------------------------------------


def test_shrink_gives_two_orders_for_the_naive_oversell(lab):
    explorer, found = search(lab, Spec("naive", orders=3, stock=1))
    spec, shrunk = explorer.shrink(found.failure)
    assert spec.orders == 2 and spec.design == "naive"
    assert "oversold" in shrunk.findings
    assert {move.task for move in shrunk.moves} == {"o-1", "o-2"}
    assert shrunk.switches <= found.failure.switches
    assert shrunk.switches == count_switches(shrunk.moves) >= 1  # a race needs a switch


def test_shrink_drops_a_fault_that_is_not_needed(lab):
    spec = Spec("naive", orders=2, stock=1, faults=("crash",))
    explorer, found = search(lab, spec, find=("oversold",))
    smaller, shrunk = explorer.shrink(found.failure)
    assert smaller.faults == () and smaller.orders <= spec.orders
    assert "oversold" in shrunk.findings


def test_replay_reproduces_a_failure(lab):
    explorer, found = search(
        lab, Spec("two_gate_lua", orders=2, stock=1, faults=("lost_ack",), as_written=True)
    )
    failure = found.failure
    for _ in range(2):
        again = explorer.replay(failure.moves)
        assert again.findings == failure.findings
        assert again.moves == failure.moves
        assert [(s.task, s.kind, s.label) for s in again.steps] == [
            (s.task, s.kind, s.label) for s in failure.steps
        ]
        assert again.tasks == failure.tasks
    assert "oversold" in format_schedule(again)


# --- sleep sets ----------------------------------------------------------------------------


def test_sleep_sets_prune_schedules_that_commute(lab):
    spec = Spec("two_gate_lua", orders=3, stock=1)
    _, found = search(lab, spec)
    assert found.complete and found.failures == 0
    assert found.pruned > 0
    every = all_schedules(Explorer(lab, spec))
    assert len({tuple(e.moves) for e in every}) == len(every)  # the enumeration is sound
    assert found.schedules < len(every)
    assert not any(e.failed for e in every)  # and the reduction hid no failure


def test_the_reduction_keeps_a_failing_schedule(lab):
    spec = Spec("naive", orders=2, stock=1)
    every = all_schedules(Explorer(lab, spec))
    _, found = search(lab, spec, stop_at_first=False)
    assert found.complete
    assert found.failures >= 1 and found.failures <= sum(e.failed for e in every)
    assert found.schedules <= len(every)


# --- random walks --------------------------------------------------------------------------


def test_random_walks_find_the_naive_oversell_the_same_way_each_time(lab):
    explorer = Explorer(lab, Spec("naive", orders=2, stock=1))
    first = explorer.random_walks(50, seed=1)
    again = explorer.random_walks(50, seed=1)
    assert first.schedules == 50
    assert first.failure is not None and "oversold" in first.failure.findings
    assert first.failures == again.failures
    assert first.failure.moves == again.failure.moves


# --- records -------------------------------------------------------------------------------


def test_records_are_one_per_order_on_the_step_clock(lab):
    explorer = Explorer(lab, Spec("naive", orders=2, stock=1, resends=1))
    execution = explorer.replay([Move("o-1"), Move("o-2"), Move("o-1'")])
    records = execution.records
    assert len(records) == 3
    assert list(records["order_id"]) == ["o-1", "o-2", "o-1"]
    assert list(records["attempt"]) == [0, 0, 1]  # the resend is the same order again
    assert list(records["outcome"]) == [execution.tasks[t] for t in ("o-1", "o-2", "o-1'")]
    assert (records["start_s"] <= records["end_s"]).all()
    steps = len(execution.steps)
    assert records["start_s"].min() == 0 and records["end_s"].max() == steps
    # o-1 invoked before step 1, o-2 before step 2
    assert list(records["start_s"])[:2] == [0.0, 1.0]


def test_records_after_a_lost_update(lab):
    explorer = Explorer(lab, Spec("naive", orders=2, stock=1))
    execution = explorer.replay([Move("o-1"), Move("o-2"), Move("o-1"), Move("o-2")])
    assert execution.tasks == {"o-1": "accepted", "o-2": "accepted"}
    assert execution.findings.get("oversold") == 1
    assert list(zip(execution.records["start_s"], execution.records["end_s"], strict=True)) == [
        (0.0, 3.0),
        (1.0, 4.0),
    ]


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"orders": 0}, "orders"),
        ({"orders": 9}, "orders"),
        ({"stock": -1}, "stock"),
        ({"qty": (0,)}, "positive"),
        ({"qty": (1, -2)}, "positive"),
        ({"qty": (True,)}, "integers"),
        ({"qty": ()}, "integers"),
        ({"qty": (1.5,)}, "integers"),
        ({"resends": 3}, "resends"),
        ({"faults": ("nope",)}, "unknown faults"),
    ],
)
def test_spec_refuses_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Spec("naive", **kwargs)


@pytest.mark.parametrize("fault", ["rewarm", "lost_ack", "expiry"])
def test_spec_refuses_a_redis_fault_on_db_only(fault):
    with pytest.raises(ValueError, match="only `crash`"):
        Spec("db_only", faults=(fault,))
    assert Spec("db_only", faults=("crash",)).faults == ("crash",)


def test_spec_refuses_an_unknown_design():
    with pytest.raises(LabError):
        Spec("nope")


def test_explorer_refuses_an_unknown_finding(lab):
    with pytest.raises(ValueError, match="unknown findings"):
        Explorer(lab, Spec("naive"), find=("oversold", "nope"))


# --- explore -------------------------------------------------------------------------------


def test_explore_shrinks_and_summarizes():
    result = explore(Spec("naive", orders=3, stock=1))
    summary = result.summary()
    assert result.shrunk_spec is not None and result.shrunk_spec.orders == 2
    assert summary["findings"]["oversold"] >= 1
    assert summary["schedule"] == [str(move) for move in result.shrunk.moves]
    assert set(summary["heard"]) == {"o-1", "o-2"}


def test_explore_without_a_failure_has_no_schedule():
    result = explore(Spec("db_only", orders=2, stock=1))
    summary = result.summary()
    assert result.shrunk is None and summary["complete"] and summary["failures"] == 0
    assert "schedule" not in summary and "findings" not in summary


def test_a_lab_can_be_explored_for_another_design_after_a_redis_design(lab):
    Explorer(lab, Spec("two_gate_lua", orders=2, stock=1)).replay([])
    execution = Explorer(lab, Spec("naive", orders=2, stock=1)).replay([])
    assert execution.tasks == {"o-1": "accepted", "o-2": "sold_out"}


# --- steps, faults on the wire, the schedule's history ------------------------------------------


def test_steps_of_each_design_are_its_round_trips_and_transactions():
    from inventory_lab.explorer import steps_of

    naive = steps_of("naive")
    assert [s.kind for s in naive] == ["sql", "sql"]
    assert naive[0].sent[0] == "BEGIN" and naive[0].sent[-1] == "ROLLBACK"
    lua = steps_of("two_gate_lua")
    assert [s.kind for s in lua] == ["redis", "sql"]
    assert lua[0].label.startswith("EVALSHA gate1 ")  # the script by its name, not its SHA
    commands = steps_of("two_gate", qty=2)  # refused: decrement, give back, free the code
    assert [s.kind for s in commands] == ["redis"] * 4
    assert commands[2].label.startswith("EVALSHA give_back")
    assert commands[3].label.startswith("DEL ")


def test_steps_table_names_the_task_engine_executor():
    from inventory_lab.explorer import steps_table

    table = steps_table(["db_only", "task_engine"])
    assert set(table["design"]) == {"db_only", "task_engine"}
    engine = table[table["design"] == "task_engine"]
    assert set(engine["task"]) == {"o-1", "executor"}
    assert engine["sent"].str.contains("INSERT tasks_0").any()
    assert list(table.columns) == ["design", "step", "task", "kind", "sent"]


def test_a_lost_redis_reply_leaves_the_decrement_behind(lab):
    spec = Spec("two_gate", faults=("lost_reply",))
    _, found = search(lab, spec, find=("false_sold_out",))
    failure = found.failure
    assert failure is not None
    lost = [s for s in failure.steps if "(reply lost)" in s.replies]
    assert len(lost) == 1 and lost[0].kind == "redis"
    # the client whose reply was lost heard an error; the unit stays taken in Redis until
    # reconciliation: an undersell, never an oversell
    assert "error" in failure.tasks.values()
    assert failure.report is not None and failure.report.oversold == 0
    assert not any(s.label.startswith(("HELLO", "CLIENT")) for s in failure.steps)


def test_a_lost_commit_reply_is_marked_on_its_step(lab):
    spec = Spec("two_gate_lua", faults=("lost_ack",), as_written=True)
    _, found = search(lab, spec, find=SAFETY)
    assert found.failure is not None
    marked = [s for s in found.failure.steps if "(COMMIT's reply lost)" in s.replies]
    assert len(marked) == 1 and marked[0].sent[-1] == "COMMIT"


def test_the_schedules_history_has_the_faults_as_nemesis_events(lab):
    from inventory_lab import history

    spec = Spec("two_gate_lua", faults=("rewarm",), as_written=True)
    _, found = search(lab, spec, find=SAFETY)
    failure = found.failure
    assert failure is not None
    events = failure.events()
    nemesis = [e for e in events if e.process == history.NEMESIS]
    rewarm_steps = [s for s in failure.steps if s.task == "rewarm"]
    assert len(nemesis) == len(rewarm_steps) >= 1
    assert all(e.f == "rewarm" and e.type == history.INFO for e in nemesis)
    clients = [e for e in events if e.process != history.NEMESIS and e.f == history.DEDUCT]
    assert len(clients) == 2 * len(failure.records)
    reads = [e for e in events if e.f == history.READ]
    assert events[-2:] == reads and reads[-1].value["value"] == -1  # the oversold stock
    assert [e.index for e in events] == list(range(len(events)))


def test_a_crash_is_a_nemesis_event_of_the_history(lab):
    from inventory_lab import history

    spec = Spec("two_gate_lua", faults=("crash",))
    _, found = search(lab, spec)  # a crash between the gates leaves a unit unsold
    failure = found.failure
    assert failure is not None and "false_sold_out" in failure.findings
    crashes = [e for e in failure.events() if e.f == "crash"]
    assert len(crashes) == 1 and crashes[0].process == history.NEMESIS
    assert "unknown" in failure.tasks.values()


@pytest.mark.parametrize("stock", [1, 2])
def test_linearizability_with_final_reads_agrees_with_the_checker_on_every_naive_schedule(
    lab, stock
):
    """Two judges, one from the final state and one from the answers plus a final read: on
    every schedule of naive's two orders, the history is invalid exactly when the checker
    finds units oversold or unaccounted for (a lost update)."""
    from inventory_lab import linearizability

    explorer = Explorer(lab, Spec("naive", orders=2, stock=stock), find=SAFETY)
    runs = all_schedules(explorer)
    verdicts = set()
    for execution in runs:
        report = execution.report
        assert report is not None
        broken = report.oversold > 0 or report.unaccounted > 0
        verdict = linearizability.check_history(execution.events(), {"sku-1": stock})
        assert (verdict.result == linearizability.INVALID) == broken, execution.moves
        verdicts.add(verdict.result)
    assert verdicts == {linearizability.VALID, linearizability.INVALID}  # both kinds occur
