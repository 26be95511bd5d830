"""The order path is lean: statements built once and reused, the same statements per order, and
redis-py on hiredis. (How fast it is lives in the benchmarks; here, what keeps it fast.)"""

import pytest
import redis.utils
import sqlalchemy as sa
from sqlalchemy import event

from inventory_lab import Order, Outcome, schema
from inventory_lab.designs import design_class
from inventory_lab.resolve import persisted
from inventory_lab.tasks import TaskStore

# design, options, statements each accepted order executes (the design's round trips to the DB)
CASES = [
    ("db_only", {}, 3),  # anti-repeat row, conditional update, ledger row
    ("db_only", {"as_written": True}, 3),
    ("two_gate", {}, 4),  # anti-repeat row, epoch share lock, update, ledger row
    ("two_gate", {"db_guard": True}, 4),
    ("two_gate", {"as_written": True}, 3),  # no epoch fence
    ("two_gate_lua", {}, 4),
    # task row (one shard: each shard's insert is its own statement), epoch share lock
    ("task_engine", {"start_workers": False, "shards": 1}, 2),
]


@pytest.mark.parametrize(("name", "options", "per_order"), CASES)
def test_every_order_reuses_the_same_statement_objects(lab, name, options, per_order):
    """Built once, at import (or per task store): no order builds a construct of its own."""
    design = design_class(name)(lab, **options)
    try:
        design.setup({"sku-1": 100})
        executed: list[object] = []

        def seen(_conn, clauseelement, *_args):  # type: ignore[no-untyped-def]
            executed.append(clauseelement)

        event.listen(lab.engine, "before_execute", seen)
        try:
            runs = []
            for n in range(4):
                executed.clear()
                assert design.deduct(Order(f"o-{n}", "sku-1", 1)).outcome is Outcome.ACCEPTED
                runs.append([id(statement) for statement in executed])
        finally:
            event.remove(lab.engine, "before_execute", seen)
        assert len(runs[0]) == per_order
        assert all(run == runs[0] for run in runs)  # the very same objects, order after order
    finally:
        design.close()


@pytest.mark.parametrize("db_guard", [False, True])
def test_a_task_applied_by_a_worker_reuses_gate_twos_statements(lab, db_guard):
    design = design_class("task_engine")(lab, start_workers=False, db_guard=db_guard)
    try:
        design.setup({"sku-1": 100})
        executed: list[object] = []

        def seen(_conn, clauseelement, *_args):  # type: ignore[no-untyped-def]
            executed.append(clauseelement)

        event.listen(lab.engine, "before_execute", seen)
        try:
            assert design.apply(Order("o-1", "sku-1", 2)) is True
            first = [id(statement) for statement in executed]
            executed.clear()
            assert design.apply(Order("o-2", "sku-1", 3)) is True
        finally:
            event.remove(lab.engine, "before_execute", seen)
        assert [id(statement) for statement in executed] == first and len(first) == 3
        assert design.apply(Order("o-1", "sku-1", 2)) is False  # applied before: idempotent
        with lab.engine.connect() as conn:
            assert schema.read_stock(conn) == {"sku-1": 95}
    finally:
        design.close()


def test_the_probe_finds_the_task_the_order_path_recorded(lab):
    """`record` (built once) and `insert_statement` (the probe) write the same row: the probe
    of a recorded task answers "committed", of another "not"."""
    store = TaskStore(lab.engine, shards=3)
    store.reset()
    recorded = Order("o-1", "sku-1", 2)
    with lab.engine.begin() as conn:
        shard = store.record(conn, recorded)
    assert shard == store.shard_of("o-1")
    assert persisted(lab.engine, store.insert_statement(recorded)) is True
    assert persisted(lab.engine, store.insert_statement(Order("o-2", "sku-1", 2))) is False
    with lab.engine.connect() as conn:
        row = conn.execute(sa.select(store.tables[shard])).one()
    assert (row.code, row.order_id, row.sku, row.qty, row.status, row.attempts) == (
        "o-1:sku-1",
        "o-1",
        "sku-1",
        2,
        0,
        0,
    )
    assert abs(row.created_time - row.modify_time) < 1  # both on the database's clock


def test_the_deductions_read_as_the_designs_say():
    def sql(statement):  # type: ignore[no-untyped-def]
        return " ".join(str(statement).split())

    base = "UPDATE stock SET num=(stock.num - :units) WHERE stock.sku = :stock_sku"
    assert sql(schema.DEDUCT_STOCK) == base
    assert sql(schema.DEDUCT_STOCK_IF_ENOUGH) == f"{base} AND stock.num - :units >= :param_1"
    assert sql(schema.DEDUCT_STOCK_AS_WRITTEN) == f"{base} AND stock.num - :units > :param_1"
    assert sql(schema.INSERT_ANTI_REPEAT) == "INSERT INTO anti_repeat (code) VALUES (:code)"


def test_redis_py_parses_replies_with_hiredis():
    assert redis.utils.HIREDIS_AVAILABLE  # hiredis is a dependency; redis-py picks it up
