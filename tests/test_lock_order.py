"""Crossing carts: the server's own deadlock with unordered locking, none with ordered locking."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from inventory_lab import schema
from inventory_lab.backends import in_transaction
from inventory_lab.errors import LabError
from inventory_lab.lock_order import crossing_carts, lock_waiters


@pytest.mark.parametrize("ordered", [False, True])
def test_crossing_carts_deadlock_only_when_locked_as_listed(lab, ordered):
    run = crossing_carts(lab, ordered=ordered, pairs=2)
    # every cart went through in the end (a deadlock victim is re-run), taken whole
    assert (run.records["outcome"] == "accepted").all()
    assert run.report.ok and run.report.partial == 0
    if lab.dialect == "sqlite" or ordered:
        # SQLite has one writer: the second cart queues whatever the order; ordered locking
        # queues it behind the first cart's first row
        assert run.deadlocks == []
    else:
        assert len(run.deadlocks) == 2  # one victim per crossing pair
        expected = "deadlock detected" if lab.dialect == "postgresql" else "1213"
        assert all(expected in error for error in run.deadlocks), run.deadlocks
    assert run.summary()["deadlocks"] == len(run.deadlocks)


def test_lock_waiters_sees_a_cart_queued_behind_another(lab):
    """One transaction holds sku-a's row; another UPDATE of it waits: the server shows one
    waiter (InnoDB's view lags up to 0.1 s: polled); SQLite cannot say (0)."""
    crossing_carts(lab, ordered=True, pairs=1)  # the tables and stock
    if lab.dialect == "sqlite":
        assert lock_waiters(lab.engine, lab.dialect) == 0
        return
    seen = _waiter_seen(lab, polls=1000)
    assert seen == 1


def test_lock_waiters_is_fresh_while_other_sessions_poll_innodb(lab):
    """Regression: InnoDB refreshes information_schema.innodb_trx only after 0.1 s without a
    reader, so another session polling it (another run's crossing carts, a meter) kept
    `lock_waiters` reading a stale view that never showed this database's waiter."""
    if lab.dialect != "mysql":
        pytest.skip("the cache is InnoDB's")
    crossing_carts(lab, ordered=True, pairs=1)  # the tables and stock
    polling = threading.Event()

    def poll_innodb_trx() -> None:
        with lab.engine.connect() as conn:
            while not polling.is_set():
                conn.execute(sa.text("SELECT count(*) FROM information_schema.innodb_trx")).all()
                time.sleep(0.02)

    poller = threading.Thread(target=poll_innodb_trx)
    poller.start()
    try:
        time.sleep(0.3)  # the poller has read the (empty) view: from now on it is never idle
        seen = _waiter_seen(lab, polls=300)
    finally:
        polling.set()
        poller.join(10)
    assert seen == 1


def _waiter_seen(lab, *, polls: int) -> int:
    """Hold sku-a's row, start another UPDATE of it, and poll `lock_waiters` (every 10 ms, at
    most `polls` times) until it sees the waiter; then let the waiter through. Returns the
    last count read."""
    update = schema.DEDUCT_STOCK_IF_ENOUGH
    params = schema.deduction_params("sku-a", 1)
    with lab.engine.connect() as holder:
        holder.execute(update, params)  # holds the row lock until the rollback below
        waiter = threading.Thread(
            target=lambda: in_transaction(lab.engine, lambda c: c.execute(update, params))
        )
        waiter.start()
        seen = 0
        for _ in range(polls):
            seen = lock_waiters(lab.engine, lab.dialect)
            if seen:
                break
            time.sleep(0.01)
        holder.rollback()
    waiter.join(30)
    return seen


def test_crossing_carts_needs_a_pair(lab):
    with pytest.raises(LabError, match="pairs"):
        crossing_carts(lab, ordered=True, pairs=0)
