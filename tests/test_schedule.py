"""Tests for schedule.py: reading packed Redis requests, footprints and when they conflict, SQL
summaries, and the scheduler itself running two naive deductions in an order chosen by hand."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.connection import Connection

from inventory_lab.designs import design_class
from inventory_lab.explorer import SKU, embedded_lab
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome
from inventory_lab.schedule import (
    EVERYTHING,
    Footprint,
    Scheduler,
    Task,
    footprint_of,
    parse_packed,
    summarize_sql,
)

# --- parse_packed ----------------------------------------------------------------------------


def test_parse_packed_reads_every_command_of_a_real_pipeline():
    packed = Connection().pack_commands(
        [("MULTI",), ("SET", "k", "a\r\nb"), ("HINCRBY", "h", "f", -2), ("EXEC",)]
    )
    assert parse_packed(packed) == [
        ["MULTI"],
        ["SET", "k", "a\r\nb"],  # lengths, not separators, delimit the words
        ["HINCRBY", "h", "f", "-2"],
        ["EXEC"],
    ]


def test_parse_packed_reads_one_command_and_bytes():
    assert parse_packed(Connection().pack_command("HGET", "ilab:{sku-1}:stock", "inStock")) == [
        ["HGET", "ilab:{sku-1}:stock", "inStock"]
    ]
    assert parse_packed(b"*1\r\n$4\r\nPING\r\n") == [["PING"]]


def test_parse_packed_refuses_what_is_not_resp():
    with pytest.raises(ValueError, match="RESP"):
        parse_packed(b"PING\r\n")


# --- footprint_of ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "commands, reads, writes",
    [
        ([["SET", "k", "v"]], set(), {"k"}),
        ([["HINCRBY", "h", "inStock", "-1"]], set(), {"h"}),
        ([["HGET", "h", "inStock"]], {"h"}, set()),
        ([["EVALSHA", "abc", "2", "k1", "k2", "k3-is-an-arg"]], set(), {"k1", "k2"}),
        ([["EVALSHA", "abc", "0", "arg"]], set(), set()),
        ([["DEL", "a", "b", "c"]], set(), {"a", "b", "c"}),
        ([["SCAN", "0"]], set(), {EVERYTHING}),
        ([["MULTI"], ["EXEC"]], set(), set()),
        # read and written in one request: a write
        ([["HGET", "h", "f"], ["HSET", "h", "f", "1"]], set(), {"h"}),
        ([["HGET", "a", "f"], ["SET", "b", "1"]], {"a"}, {"b"}),
    ],
)
def test_footprint_of(commands, reads, writes):
    assert footprint_of(commands) == Footprint(frozenset(reads), frozenset(writes))


def test_footprint_of_a_packed_transaction():
    packed = Connection().pack_commands(
        [("MULTI",), ("HGET", "s", "f"), ("SET", "t", 1), ("EXEC",)]
    )
    assert footprint_of(parse_packed(packed)) == Footprint(frozenset({"s"}), frozenset({"t"}))


# --- Footprint.conflicts ---------------------------------------------------------------------


def fp(reads: set[str] = frozenset(), writes: set[str] = frozenset()) -> Footprint:
    return Footprint(frozenset(reads), frozenset(writes))


@pytest.mark.parametrize(
    "a, b, conflict",
    [
        (fp(reads={"k"}), fp(reads={"k"}), False),
        (fp(reads={"k"}), fp(writes={"k"}), True),
        (fp(writes={"k"}), fp(reads={"k"}), True),
        (fp(writes={"k"}), fp(writes={"k"}), True),
        (fp(writes={"a"}), fp(writes={"b"}), False),
        (fp(reads={"a"}, writes={"b"}), fp(reads={"b"}), True),
        (fp(writes={EVERYTHING}), fp(reads={"x"}), True),
        (fp(reads={"x"}), fp(writes={EVERYTHING}), True),
        (fp(writes={EVERYTHING}), fp(), False),  # MULTI alone touches nothing
        (fp(), fp(), False),
    ],
)
def test_conflicts(a, b, conflict):
    assert a.conflicts(b) is conflict
    assert b.conflicts(a) is conflict


# --- summarize_sql ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement, summary",
    [
        ("INSERT INTO anti_repeat (code, sku) VALUES (?, ?)", "INSERT anti_repeat"),
        ("UPDATE stock SET qty=(stock.qty - ?) WHERE stock.sku = ?", "UPDATE stock"),
        ("SELECT stock.sku, stock.qty \nFROM stock \nWHERE stock.sku = ?", "SELECT stock"),
        ('DELETE FROM "orders" WHERE 1', "DELETE orders"),
        ("select count(*) from tasks_0", "SELECT tasks_0"),
        ("PRAGMA main.table_info(stock)", "PRAGMA"),
        ("   ", ""),
    ],
)
def test_summarize_sql(statement, summary):
    assert summarize_sql(statement) == summary


# --- the scheduler ---------------------------------------------------------------------------


@pytest.fixture
def naive() -> Iterator[tuple[Lab, object]]:
    with embedded_lab() as lab:
        design = design_class("naive")(lab)
        design.setup({SKU: 1})
        design.catalog  # noqa: B018  read now, not in a task's first step
        try:
            yield lab, design
        finally:
            design.close()


def deducting(design, order_id: str) -> Task:
    return Task(order_id, lambda: design.deduct(Order(order_id, SKU, 1)))


def test_the_runner_controls_the_order_lost_update(naive):
    lab, design = naive
    with Scheduler(lab) as scheduler:
        a, b = deducting(design, "o-1"), deducting(design, "o-2")
        with scheduler.running([a, b]) as runner:
            assert runner.enabled() == [a, b]  # both wait at their first step
            for task in (a, b, a, b):  # both read 1, both write 0
                runner.step(task)
            assert runner.enabled() == []
        steps = list(scheduler.steps)
    assert a.result.outcome == b.result.outcome == Outcome.ACCEPTED  # the lost update
    assert design.stock(SKU) == 0
    assert [s.task for s in steps] == ["o-1", "o-2", "o-1", "o-2"]
    assert [s.number for s in steps] == [1, 2, 3, 4]
    assert (a.first_step, a.last_step, b.first_step, b.last_step) == (1, 3, 2, 4)


def test_the_runner_controls_the_order_serial(naive):
    lab, design = naive
    with Scheduler(lab) as scheduler:
        a, b = deducting(design, "o-1"), deducting(design, "o-2")
        with scheduler.running([a, b]) as runner:
            runner.step(a)
            runner.step(a)
            assert a.status == "done" and runner.enabled() == [b]
            runner.step(b)
        steps = list(scheduler.steps)
    assert a.result.outcome == Outcome.ACCEPTED
    assert b.result.outcome == Outcome.SOLD_OUT
    assert [s.task for s in steps] == ["o-1", "o-1", "o-2"]


def test_a_sql_step_is_one_whole_transaction(naive):
    lab, design = naive
    with Scheduler(lab) as scheduler:
        a = deducting(design, "o-1")
        with scheduler.running([a]) as runner:
            while runner.enabled():
                runner.step(a)
        steps = list(scheduler.steps)
    assert steps and all(s.kind == "sql" for s in steps)
    for step in steps:
        assert step.sent[0] == "BEGIN"
        assert step.sent[-1] in ("COMMIT", "ROLLBACK")
        assert step.label == "; ".join(step.sent)
    assert "UPDATE stock" in steps[-1].sent and steps[-1].sent[-1] == "COMMIT"


def test_a_redis_step_is_labelled_by_its_commands(naive):
    lab, _design = naive
    key = f"{lab.namespace}:{{sku-1}}:probe"

    def body() -> str:
        lab.redis.set(key, "1")
        pipe = lab.redis.pipeline(transaction=True)
        pipe.get(key)
        pipe.delete(key)
        return str(pipe.execute())

    with Scheduler(lab) as scheduler:
        task = Task("t", body)
        with scheduler.running([task]) as runner:
            assert task.next_kind == "redis"
            assert task.next_footprint == fp(writes={key})
            runner.step(task)
            assert task.next_footprint == fp(writes={key})  # GET + DEL: a write
            runner.step(task)
        steps = list(scheduler.steps)
    assert task.result == "['1', 1]"
    assert [s.kind for s in steps] == ["redis", "redis"]
    assert steps[0].label == "SET {sku-1}:probe 1"
    assert steps[1].label == "MULTI | GET {sku-1}:probe | DEL {sku-1}:probe | EXEC"


def test_crash_leaves_the_task_done_without_its_result(naive):
    lab, design = naive
    with Scheduler(lab) as scheduler:
        a, b = deducting(design, "o-1"), deducting(design, "o-2")
        with scheduler.running([a, b]) as runner:
            runner.step(a)  # o-1 read the stock
            runner.crash(a)  # and died before writing
            runner.threads[a.name].join(5.0)
            assert a.status == "done" and a.result is None and a.error is None
            assert runner.enabled() == [b]
            with pytest.raises(ValueError, match="not waiting"):
                runner.step(a)
            with pytest.raises(ValueError, match="not waiting"):
                runner.crash(a)
            runner.step(b)
            runner.step(b)
        steps = list(scheduler.steps)
    assert b.result.outcome == Outcome.ACCEPTED  # the crashed order took nothing
    assert design.stock(SKU) == 0
    assert [s.task for s in steps] == ["o-1", "o-2", "o-2"]  # a crash is not a step


def test_crash_returns_once_the_task_is_done(naive):
    lab, design = naive
    with Scheduler(lab) as scheduler:
        a, b = deducting(design, "o-1"), deducting(design, "o-2")
        with scheduler.running([a, b]) as runner:
            runner.step(a)
            runner.crash(a)
            enabled = runner.enabled()
            status = a.status
    assert status == "done"
    assert enabled == [b]


def test_leaving_the_block_abandons_paused_tasks_and_removes_the_hooks(naive):
    lab, design = naive
    with Scheduler(lab) as scheduler:
        a = deducting(design, "o-1")
        with scheduler.running([a]) as runner:
            runner.step(a)
        assert a.status == "done" and a.result is None and a.error is None
    # no hooks left: a deduction outside any schedule runs straight through
    assert design.deduct(Order("o-2", SKU, 1)).outcome == Outcome.ACCEPTED
    assert design.stock(SKU) == 0


def test_scripts_are_named_in_step_labels():
    import hashlib

    from inventory_lab.schedule import describe_commands
    from inventory_lab.scripts import lua_source

    sha = {name: hashlib.sha1(lua_source(name).encode()).hexdigest() for name in ("gate1", "warm")}
    label = describe_commands(
        [
            ["EVALSHA", sha["gate1"], "2", "ns:{s}:ar:o-1", "ns:{s}:stock", "1", "10000"],
            ["SCRIPT", "EXISTS", sha["warm"]],
            ["SCRIPT", "LOAD", "return 1"],
            ["EVALSHA", "0" * 40, "1", "ns:{s}:stock"],
        ]
    )
    assert label == (
        "EVALSHA gate1 {s}:ar:o-1 {s}:stock | SCRIPT EXISTS warm | SCRIPT LOAD"
        " | EVALSHA 0000000 {s}:stock"
    )
