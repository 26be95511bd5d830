"""The task engine with its shards in two databases (`task_engine_sharded_db` and its merged twin):
two SQLite files on the embedded default, two scratch databases on each real server."""

from collections import Counter

import pandas as pd
import pytest
import sqlalchemy as sa

from inventory_lab import BackendError, Order, Outcome, Workload, check_lab, run_workload, schema
from inventory_lab.designs import design_class
from inventory_lab.errors import InvalidInput
from inventory_lab.faults import LostCommitAck, hold_between_gates
from inventory_lab.redis_stock import read_redis_stock, redis_target
from inventory_lab.shard_databases import beside
from inventory_lab.tasks import Status
from inventory_lab.workload import RECORD_COLUMNS

PER_TASK, MERGED = "task_engine_sharded_db", "task_engine_merged_sharded_db"
DESIGNS = [PER_TASK, MERGED]


class Crash(BaseException):
    """The executor's process dies here (not an error it could record: nothing runs after)."""


def _design(lab, second_database, name=PER_TASK, **options):
    options.setdefault("start_workers", False)
    options.setdefault("shards", 4)
    return design_class(name)(lab, shard_urls=[second_database(lab)], **options)


def _orders_in(design, *, main: bool, n: int, sku="sku-1", qty=1, prefix="o"):
    """`n` orders whose shard lives in the lab's database (`main`) or in the other one."""
    store, found, i = design.store, [], 0
    while len(found) < n:
        order = Order(f"{prefix}-{i}", sku, qty)
        if store.in_main(store.shard_of(order.order_id)) is main:
            found.append(order)
        i += 1
    return found


def _accepted(orders):
    rows = [(o.order_id, o.sku, o.qty, 0, 0, 0.0, 0.0, 0.0, "accepted", "") for o in orders]
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def _ledger(lab):
    with lab.engine.connect() as conn:
        return Counter(conn.execute(sa.select(schema.orders.c.order_id)).scalars())


def _stock(lab):
    with lab.engine.connect() as conn:
        return schema.read_stock(conn)


def _tables(engine):
    return {name for name in sa.inspect(engine).get_table_names() if name.startswith("tasks_")}


def test_shard_n_lives_in_database_n_mod_d_and_so_do_its_tasks(lab, second_database):
    design = _design(lab, second_database)
    design.setup({"sku-1": 10})
    try:
        main, other = design.store.engines
        assert _tables(main) == {"tasks_0", "tasks_2"}
        assert _tables(other) == {"tasks_1", "tasks_3"}
        orders = _orders_in(design, main=True, n=2) + _orders_in(design, main=False, n=2)
        for order in orders:
            assert design.deduct(order).outcome is Outcome.ACCEPTED
        frame = design.store.frame()
        assert sorted(frame["order_id"]) == sorted(o.order_id for o in orders)
        assert (frame["shard"] % 2 == 0).sum() == 2  # two in the lab's database, two beside it
    finally:
        design.close()


@pytest.mark.parametrize("name", DESIGNS)
def test_every_invariant_holds_with_shards_in_two_databases(paired_lab, second_database, name):
    workload = Workload(orders=240, skus=2, stock=60, retries=0.3, seed=5)
    design = _design(paired_lab, second_database, name, workers=2, start_workers=True)
    design.setup(workload.initial_stock())
    try:
        records = run_workload(design, workload.attempts(), concurrency=6)
        design.drain()
        report = check_lab(
            paired_lab, workload.initial_stock(), records, redis_view=True, task_store=design.store
        )
    finally:
        design.close()
    assert (records["outcome"] == "error").sum() == 0
    assert report.ok and report.converged, report.summary()
    assert report.oversold == report.double_deducted == report.lost == 0
    assert design.pending() == {}
    counts = design.store.counts()
    assert counts[Status.DONE] == sum(_ledger(paired_lab).values())
    assert not any(counts[s] for s in (Status.NEW, Status.LOCKED, Status.FAILED, Status.DEAD))
    frame = design.store.frame()
    assert set(frame["shard"] % 2) == {0, 1}  # both databases took tasks


def test_pending_tasks_of_the_other_database_are_read_by_checker_and_rewarm(lab, second_database):
    design = _design(lab, second_database)
    initial = {"sku-1": 10}
    design.setup(initial)
    try:
        here = _orders_in(design, main=True, n=1, qty=1)
        there = _orders_in(design, main=False, n=2, qty=2)
        for order in here + there:
            assert design.deduct(order).outcome is Outcome.ACCEPTED
        assert design.pending() == {"sku-1": 5}
        with lab.engine.connect() as conn:
            assert redis_target(conn, task_store=design.store) == {"sku-1": 5}
            assert redis_target(conn) == {"sku-1": 9}  # the lab's database alone misses 4 units
        records = _accepted(here + there)
        report = check_lab(lab, initial, records, redis_view=True, task_store=design.store)
        assert report.ok and report.converged and report.pending == {"sku-1": 5}
        blind = check_lab(lab, initial, records, redis_view=True)  # without the other database
        assert blind.lost == 2 and blind.converged is False  # the checker finds what it misses

        lab.clear_redis()  # Redis lost its data: the re-warm must subtract every database's tasks
        assert design.rewarm() == {"sku-1": 5}
        assert read_redis_stock(lab, ["sku-1"]) == {"sku-1": 5}
        design.drain()
        assert _stock(lab) == {"sku-1": 5} and design.pending() == {}
        after = check_lab(lab, initial, records, redis_view=True, task_store=design.store)
        assert after.ok and after.converged, after.summary()
    finally:
        design.close()


@pytest.mark.parametrize("name", DESIGNS)
def test_a_crash_after_the_main_commit_before_done_reapplies_as_a_no_op(
    lab, second_database, name, monkeypatch
):
    """Regression-style, with a seam: the executor dies after the stock, anti-repeat and ledger
    rows committed in the main database and before its task is marked DONE in its shard."""
    design = _design(lab, second_database, name, node="app-1")
    initial = {"sku-1": 10}
    design.setup(initial)
    orders = _orders_in(design, main=False, n=3, qty=2)
    try:
        for order in orders:
            assert design.deduct(order).outcome is Outcome.ACCEPTED
        completion = "complete_held" if name == MERGED else "complete"

        def crash(*_args, **_kwargs):
            raise Crash

        monkeypatch.setattr(design.store, completion, crash)
        with pytest.raises(Crash):
            design.task_engine.work_once()
        monkeypatch.undo()
        with lab.engine.connect() as conn:
            applied = Counter(conn.execute(sa.select(schema.anti_repeat.c.code)).scalars())
        assert applied  # the main database committed ...
        assert design.store.counts()[Status.LOCKED] >= 1  # ... and the shard never heard of it
        assert design.pending() == {"sku-1": 6 - 2 * len(applied)}  # applied is not pending
    finally:
        design.close()

    # The process restarts: same node, a new boot; start-up recovery frees the tasks at once.
    restarted = _design(lab, second_database, name, node="app-1")
    try:
        assert restarted.task_engine.recover() >= 1
        while restarted.task_engine.work_once():
            pass
        assert restarted.task_engine.counters.already_applied >= 1  # the no-op re-apply
        assert restarted.store.counts()[Status.DONE] == 3
        assert _stock(lab) == {"sku-1": 4}  # 3 orders of 2, each deducted once
        assert _ledger(lab) == Counter(o.order_id for o in orders)
        report = check_lab(
            lab, initial, _accepted(orders), redis_view=True, task_store=restarted.store
        )
        assert report.ok and report.converged, report.summary()
        assert restarted.pending() == {}
    finally:
        restarted.close()


def test_a_lost_commit_ack_in_the_shards_database_is_resolved_there(lab, second_database):
    design = _design(lab, second_database)
    initial = {"sku-1": 5}
    design.setup(initial)
    try:
        [order] = _orders_in(design, main=False, n=1, qty=2)
        with LostCommitAck(design.store.engines[1]) as lost:
            lost.active.set()
            result = design.deduct(order)
        assert lost.struck == 1
        assert result.outcome is Outcome.ACCEPTED and "it committed" in result.detail
        assert design.pending() == {"sku-1": 2}
        design.drain()
        report = check_lab(
            lab, initial, _accepted([order]), redis_view=True, task_store=design.store
        )
        assert report.ok and report.converged, report.summary()
        assert _stock(lab) == {"sku-1": 3}
    finally:
        design.close()


def test_a_rewarm_while_an_order_is_between_the_gates_refuses_it_before_its_shard(
    lab, second_database
):
    design = _design(lab, second_database)
    initial = {"sku-1": 3}
    design.setup(initial)
    try:
        [order] = _orders_in(design, main=False, n=1)
        with hold_between_gates(design, lambda _order: design.rewarm()):
            result = design.deduct(order)
        assert result.outcome is Outcome.ERROR and "re-warmed" in result.detail
        assert design.store.frame().empty  # refused before anything reached the shard
        records = pd.DataFrame(
            [(order.order_id, "sku-1", 1, 0, 0, 0.0, 0.0, 0.0, "error", result.detail)],
            columns=RECORD_COLUMNS,
        )
        report = check_lab(lab, initial, records, redis_view=True, task_store=design.store)
        assert report.ok and report.converged, report.summary()
        assert design.deduct(order).outcome is Outcome.ACCEPTED  # the retry goes through
    finally:
        design.close()


def test_a_task_applied_but_not_done_in_the_other_database_is_not_pending(lab, second_database):
    design = _design(lab, second_database)
    design.setup({"sku-1": 5})
    try:
        [order] = _orders_in(design, main=False, n=1, qty=2)
        assert design.deduct(order).outcome is Outcome.ACCEPTED
        assert design.apply(order) is True  # applied in the main database, still NEW in its shard
        assert design.store.counts()[Status.NEW] == 1
        assert design.pending() == {}
        with lab.engine.connect() as conn:
            assert redis_target(conn, task_store=design.store) == {"sku-1": 3}
    finally:
        design.close()


def test_the_embedded_default_puts_the_shards_in_a_file_beside_the_labs(default_lab):
    design = design_class(PER_TASK)(default_lab, start_workers=False)
    try:
        other = design.store.engines[1]
        lab_file = default_lab.engine.url.database
        assert other.url.database == lab_file.removesuffix(".sqlite") + "-shards.sqlite"
        design.setup({"sku-1": 2})
        [order] = _orders_in(design, main=False, n=1)
        assert design.deduct(order).outcome is Outcome.ACCEPTED
        design.drain()
        assert _stock(default_lab) == {"sku-1": 1}
    finally:
        design.close()


def test_a_second_database_is_had_after_a_design_made_its_own_beside_the_lab(lab, second_database):
    """The review runs the sharded designs with their default placement (a database beside the
    lab's); a test that asks for a second database afterwards must get one of its own (the
    landing CI failed on this: both were named `<lab's database>_shards`)."""
    design = design_class(PER_TASK)(lab, start_workers=False)
    try:
        design.setup({"sku-1": 1})
        default_url = design.store.engines[1].url.render_as_string(hide_password=False)
    finally:
        design.close()
    second = second_database(lab)
    assert second != default_url
    other = _design(lab, second_database)
    try:
        other.setup({"sku-1": 1})
        assert other.store.engines[1].url.render_as_string(hide_password=False) == second
    finally:
        other.close()


def test_beside_names_a_sibling_file_or_a_database_on_the_same_server():
    assert beside("sqlite:////tmp/x/lab.sqlite") == "sqlite:////tmp/x/lab-shards.sqlite"
    url = "postgresql+psycopg://u:secret@db:5432/test"
    assert beside(url) == "postgresql+psycopg://u:secret@db:5432/test_shards"


@pytest.mark.parametrize(
    ("shard_urls", "error"),
    [
        ("sqlite:////tmp/one.sqlite", InvalidInput),  # a string, not a list of them
        ([], InvalidInput),
        ([None], InvalidInput),
        (["redis://localhost/0"], BackendError),
        (["sqlite:////tmp/a.sqlite", "sqlite:////tmp/./a.sqlite"], InvalidInput),
    ],
)
def test_bad_shard_urls_are_refused_and_change_nothing(default_lab, shard_urls, error):
    design_class("task_engine")(default_lab, start_workers=False).setup({"sku-1": 4})
    with pytest.raises(error):
        design_class(PER_TASK)(default_lab, shard_urls=shard_urls)
    assert _stock(default_lab) == {"sku-1": 4}


def test_the_labs_own_database_is_refused_as_a_shard_database(lab):
    own = lab.engine.url.render_as_string(hide_password=False)
    with pytest.raises(InvalidInput, match="own database") as refused:
        design_class(PER_TASK)(lab, shard_urls=[own])
    if lab.engine.url.password:
        assert lab.engine.url.password not in str(refused.value)
