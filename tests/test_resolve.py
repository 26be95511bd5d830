"""Unknown outcomes resolved from the database: a lost acknowledgement, an outage, a commit in
flight, on every database backend."""

import threading

import pytest
import sqlalchemy as sa

from inventory_lab import schema
from inventory_lab.backends import in_transaction
from inventory_lab.faults import DbOutage, SimulatedLostAck, SimulatedOutage, lost_commit_ack
from inventory_lab.resolve import OutcomeUnknown, persisted


def _tables(lab):
    schema.reset(lab.engine, {"sku-1": 5})


def _probe(code):
    return schema.anti_repeat.insert().values(code=code)


def _write(conn, code):
    conn.execute(_probe(code))


def _codes(lab):
    with lab.engine.connect() as conn:
        return sorted(conn.execute(sa.select(schema.anti_repeat.c.code)).scalars())


def test_a_lost_acknowledgement_is_an_error_for_a_write_that_committed(lab):
    _tables(lab)
    with lost_commit_ack(lab.engine) as fault, pytest.raises(SimulatedLostAck):
        in_transaction(lab.engine, lambda conn: _write(conn, "o-1:sku-1"))
    assert fault.struck == 1
    assert _codes(lab) == ["o-1:sku-1"]  # it committed
    assert persisted(lab.engine, _probe("o-1:sku-1")) is True
    assert persisted(lab.engine, _probe("o-2:sku-1")) is False
    assert _codes(lab) == ["o-1:sku-1"]  # the probes left nothing behind


def test_an_outage_mid_transaction_rolls_back_and_resolves_as_not_persisted(lab):
    _tables(lab)
    with DbOutage(lab.engine) as outage:

        def work(conn):
            _write(conn, "o-1:sku-1")  # sent and done
            outage.active.set()  # the outage starts in the middle of the transaction
            conn.execute(sa.select(schema.stock.c.num))

        with pytest.raises(SimulatedOutage):
            in_transaction(lab.engine, work)
        with pytest.raises(OutcomeUnknown, match="could not resolve"):
            persisted(lab.engine, _probe("o-1:sku-1"))  # the database cannot say either
        outage.active.clear()
    assert persisted(lab.engine, _probe("o-1:sku-1")) is False
    assert _codes(lab) == []


@pytest.mark.parametrize("commits", [True, False])
def test_the_probe_waits_for_a_transaction_in_flight(lab, commits):
    """A plain SELECT would answer "not there" while the other transaction is still open; the
    probe's insert waits for it and gives the final answer."""
    _tables(lab)
    inserted, finish = threading.Event(), threading.Event()

    def in_flight():
        with lab.engine.connect() as conn:
            transaction = conn.begin()
            _write(conn, "o-1:sku-1")
            inserted.set()
            finish.wait(60)
            transaction.commit() if commits else transaction.rollback()

    writer = threading.Thread(target=in_flight)
    writer.start()
    assert inserted.wait(60)
    answers = []
    prober = threading.Thread(
        target=lambda: answers.append(persisted(lab.engine, _probe("o-1:sku-1")))
    )
    prober.start()
    prober.join(0.3)
    assert answers == []  # still waiting: the other transaction holds the key
    finish.set()
    writer.join(60)
    prober.join(60)
    assert answers == [commits]
