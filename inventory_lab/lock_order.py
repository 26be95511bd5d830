"""Crossing carts: the deadlock unordered row locking produces; ordered locking has none.

Two carts hold the same two SKUs, listed in opposite orders: [a, b] and [b, a]. `db_only` takes a
checkout's lines in one transaction, and each line's conditional UPDATE keeps its stock row
locked until the commit. Taken as listed, the first cart locks a, the second locks b, and each
then waits for the row the other holds: a deadlock. The server finds the cycle and aborts one of
the two transactions with its own error (PostgreSQL's `40P01 deadlock detected` after its
`deadlock_timeout`, MariaDB's `1213 Deadlock found when trying to get lock` at once); the design
re-runs it, and counts it. Taken sorted by SKU, both carts lock a first: the second waits for
the first to commit, and no cycle can form.

The demonstration does not hope for the interleaving: each cart, after locking its first row,
waits until the other cart holds its own first row (the crossing) or is seen waiting for a lock
on the server (ordered locking: it queued behind us), read fresh from the server each time
(`lock_waiters`) and seen for longer than a passing wait lasts. SQLite has one writer for the whole
database: the second cart waits for the first one's commit whatever the order, so it shows no
deadlock either way (and no concurrency either); there the wait is a short timeout.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from inventory_lab.checker import CheckReport, check_lab
from inventory_lab.checkout import Checkout
from inventory_lab.designs.db_only import DbOnly
from inventory_lab.errors import LabError
from inventory_lab.lab import Lab
from inventory_lab.orders import Order
from inventory_lab.workload import Attempt, run_workload

CROSSING_STOCK = {"sku-a": 1000, "sku-b": 1000}
# A waiter is believed once it is still seen after 0.15 s (a lock wait that ends at once, or one
# left from the pair before, must not make the first cart go on before the crossing).
_STALE_S = 0.15

# Is any session of this database waiting for a row lock? (Constant SQL: no input in it.)
_PG_LOCK_WAITERS = sa.text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)
# InnoDB: information_schema.innodb_trx is a cache that InnoDB refreshes only once nobody has
# read it for 0.1 s, so while any other session polls it (another run's crossing carts, a lock
# meter) it keeps showing a stale view. SHOW ENGINE INNODB STATUS is built when asked: each
# waiting transaction's entry has a `LOCK WAIT` line, then the line naming its session.
_INNODB_STATUS = sa.text("SHOW ENGINE INNODB STATUS")
_WAITING_SESSION = re.compile(r"^LOCK WAIT [^\n]*\n(?:MariaDB|MySQL) thread id (\d+)", re.M)
_OF_THIS_DATABASE = sa.text(
    "SELECT count(*) FROM information_schema.processlist WHERE db = DATABASE() AND id IN :ids"
).bindparams(sa.bindparam("ids", expanding=True))
_LOCK_WAITERS = ("postgresql", "mysql")


@dataclass(frozen=True)
class CrossingRun:
    dialect: str
    ordered: bool
    pairs: int
    deadlocks: list[str]  # the server's own errors, one per aborted (and re-run) transaction
    records: pd.DataFrame
    report: CheckReport

    def summary(self) -> dict[str, object]:
        return {
            "database": self.dialect,
            "locking": "sorted by SKU" if self.ordered else "as listed in the cart",
            "pairs of carts": self.pairs,
            "deadlocks": len(self.deadlocks),
            "accepted": int((self.records["outcome"] == "accepted").sum() // 2),
            "partial": self.report.partial,
            "oversold": self.report.oversold,
        }


def lock_waiters(engine: Engine, dialect: str) -> int:
    """Sessions of this database waiting for a lock (0 where the server cannot say: SQLite)."""
    if dialect not in _LOCK_WAITERS:
        return 0
    with engine.connect() as conn:
        if dialect == "postgresql":
            return int(conn.execute(_PG_LOCK_WAITERS).scalar_one())
        status = conn.execute(_INNODB_STATUS).one()[-1]
        sessions = [int(found) for found in _WAITING_SESSION.findall(status)]
        if not sessions:
            return 0
        return int(conn.execute(_OF_THIS_DATABASE, {"ids": sessions}).scalar_one())


class _Crossing:
    """The `after_line` hook of one pair of carts: hold the first row until the crossing."""

    def __init__(self, lab: Lab, wait_s: float) -> None:
        self.lab = lab
        self.wait_s = wait_s if lab.dialect in _LOCK_WAITERS else min(wait_s, 0.2)
        self.holding: dict[str, threading.Event] = {}
        self.paused: set[str] = set()

    def reset(self, order_ids: list[str]) -> None:
        self.holding = {order_id: threading.Event() for order_id in order_ids}
        self.paused = set()

    def __call__(self, line: Order) -> None:
        if line.order_id in self.paused:  # its later lines, or its re-run after an abort
            return
        self.paused.add(line.order_id)
        self.holding[line.order_id].set()
        (peer,) = (e for order_id, e in self.holding.items() if order_id != line.order_id)
        deadline = time.monotonic() + self.wait_s
        waiting_since = None
        while time.monotonic() < deadline:
            if peer.is_set():
                return
            now = time.monotonic()
            if not lock_waiters(self.lab.engine, self.lab.dialect):
                waiting_since = None
            elif waiting_since is None:
                waiting_since = now
            elif now - waiting_since >= _STALE_S:  # still waiting after a fresh read: real
                return
            time.sleep(0.005)


def crossing_carts(lab: Lab, *, ordered: bool, pairs: int = 3, wait_s: float = 30.0) -> CrossingRun:
    """`pairs` times, two carts [a, b] and [b, a] sent at once through `db_only`, with lines
    locked sorted by SKU (`ordered`) or as listed; the deadlocks the server reported, and the
    checker's report (nothing partial, nothing oversold)."""
    if pairs < 1:
        raise LabError(f"pairs must be at least 1, got {pairs}")
    crossing = _Crossing(lab, wait_s)
    design = DbOnly(lab, ordered_locks=ordered, after_line=crossing)
    design.setup(CROSSING_STOCK)
    frames = []
    for i in range(pairs):
        carts = [
            Checkout.of(f"x{i}-ab", [("sku-a", 1), ("sku-b", 1)]),
            Checkout.of(f"x{i}-ba", [("sku-b", 1), ("sku-a", 1)]),
        ]
        crossing.reset([cart.order_id for cart in carts])
        frames.append(run_workload(design, [Attempt(cart, 0) for cart in carts], concurrency=2))
    records = pd.concat(frames, ignore_index=True)
    report = check_lab(lab, CROSSING_STOCK, records, redis_view=False)
    return CrossingRun(lab.dialect, ordered, pairs, list(design.deadlocks), records, report)
