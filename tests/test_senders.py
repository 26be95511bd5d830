"""Senders: a design as a client calls it, and the raw ceilings doing the same work bare."""

import threading

import pytest

from inventory_lab import schema
from inventory_lab.bench import bench_session
from inventory_lab.errors import LabError
from inventory_lab.loadgen import Layout
from inventory_lab.orders import Order, Outcome
from inventory_lab.senders import RawEvalsha, RawMerged, RawSql, Target, open_sender, prepare


def test_a_target_is_a_design_or_a_raw_ceiling():
    assert Target("raw_sql").raw and not Target("raw_sql").uses_redis
    assert Target("raw_evalsha").uses_redis and Target("raw_merged").uses_redis
    assert Target("two_gate_lua").uses_redis and not Target("db_only").uses_redis
    with pytest.raises(LabError, match="unknown design"):
        Target("fastest_possible")


def test_raw_sql_runs_db_only_s_transaction_bare(db_url):
    with bench_session("fake", db_url) as session:
        prepare(Target("raw_sql"), session.lab, {"sku-0001": 2})
        sender = RawSql(session.db_url, connections=1)
        try:
            answers = [
                sender.send(Order(order_id, "sku-0001", 1)) for order_id in ("a", "b", "a", "c")
            ]
        finally:
            sender.close()
        assert answers == [Outcome.ACCEPTED, Outcome.ACCEPTED, Outcome.DUPLICATE, Outcome.SOLD_OUT]
        with session.lab.engine.connect() as conn:
            assert schema.read_stock(conn) == {"sku-0001": 0}
            ledger = conn.execute(schema.orders.select()).all()
        assert sorted(row.order_id for row in ledger) == ["a", "b"]


def test_raw_evalsha_makes_gate_one_s_decisions(paired_urls, bench_namespace):
    redis_url, db_url = paired_urls
    with bench_session(redis_url, db_url, namespace=bench_namespace) as session:
        prepare(Target("raw_evalsha"), session.lab, {"sku-0001": 1})
        sender = RawEvalsha(session.redis_url, bench_namespace, clients=1)
        try:
            # loaded when the sender opens, with no key touched: the first send is a hit
            assert sender.client.script_exists(sender.script.sha) == [True]
            answers = [sender.send(Order(o, "sku-0001", 1)) for o in ("a", "a", "b")]
        finally:
            sender.close()
    assert answers == [Outcome.ACCEPTED, Outcome.DUPLICATE, Outcome.SOLD_OUT]


def test_a_design_sender_answers_as_a_client_hears(paired_urls, bench_namespace):
    redis_url, db_url = paired_urls
    with bench_session(redis_url, db_url, namespace=bench_namespace) as session:
        instance = prepare(Target("two_gate_lua"), session.lab, {"sku-0001": 1})
        sender = open_sender(
            Target("two_gate_lua"), session.redis_url, session.db_url, bench_namespace, Layout(1, 2)
        )
        try:
            answers = [sender.send(Order(o, s, 1)) for o, s in (("a", "sku-0001"), ("b", "nope"))]
        finally:
            sender.close()
            instance.close()
    assert answers == [Outcome.ACCEPTED, Outcome.REJECTED]  # an unknown SKU is bad input


def test_raw_merged_decides_a_window_s_orders_in_one_call(paired_urls, bench_namespace):
    redis_url, db_url = paired_urls
    with bench_session(redis_url, db_url, namespace=bench_namespace) as session:
        prepare(Target("raw_merged"), session.lab, {"sku-0001": 2})
        # the window closes when 4 orders wait (never on time): one call decides all four
        sender = RawMerged(
            session.redis_url, bench_namespace, clients=4, window_ms=60_000.0, max_batch=4
        )
        calls = []
        decide = sender.window.decide_batch
        sender.window.decide_batch = lambda orders: calls.append(len(orders)) or decide(orders)
        answers: dict[str, Outcome] = {}

        def client(order_id: str) -> None:
            answers[order_id] = sender.send(Order(order_id, "sku-0001", 1))

        try:
            threads = [threading.Thread(target=client, args=(o,)) for o in "abcd"]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            sender.close()
    assert calls == [4]
    assert sorted(answers.values()) == sorted([Outcome.ACCEPTED] * 2 + [Outcome.SOLD_OUT] * 2)


def test_a_design_sender_closes_its_design(paired_urls, bench_namespace):
    redis_url, db_url = paired_urls
    with bench_session(redis_url, db_url, namespace=bench_namespace) as session:
        instance = prepare(Target("two_gate_local_flag"), session.lab, {"sku-0001": 1})
        sender = open_sender(
            Target("two_gate_local_flag"),
            session.redis_url,
            session.db_url,
            bench_namespace,
            Layout(1, 2),
        )
        assert sender.design.flags.listening
        sender.close()
        instance.close()
        assert not sender.design.flags.listening
