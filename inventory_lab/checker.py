"""The invariant checker: did the run oversell, deduct an order twice, lose an order, drift?

It trusts no design's own bookkeeping. It reads the final state of the backends (DB stock, the
order ledger, Redis stock where the design keeps one) and the per-attempt records the clients
saw, and compares them with the initial stock:

- oversold: per SKU, units sold beyond the initial stock — sold being the larger of what the
  ledger shows deducted and what clients were told was accepted — or, where larger, the units by
  which the stock fell below zero;
- double_deducted: order lines (order id + SKU) with more than one ledger row, plus the units by
  which the stock fell further than the ledger explains (a deduction applied again without a
  ledger row of its own: the ledger cannot name that line, so it counts one per unit);
- lost: order lines a client was told were accepted that left no ledger row and have no task
  still waiting to be applied;
- unaccounted: units by which the DB stock differs from initial minus the ledger (a lost update,
  or a deduction nobody recorded);
- converged: Redis stock equals DB stock minus pending tasks for every SKU (None when the design
  keeps no Redis view). Pending tasks are read from the task tables themselves (a task not yet
  applied: no anti-repeat row), never taken from a design's own bookkeeping;
- unknown_persisted / unknown_not_persisted: order lines whose client heard only `unknown` (an
  error after the write was sent), resolved from the state: a ledger row or a pending task means
  it happened;
- false_duplicates: order lines answered "duplicate" (= already done) that no ledger row backs
  and no client was told were accepted: SET NX stores no outcome, so a retry racing an order
  that then fails or sells out, or one after a crash between the gates, hears a lie;
- partial: orders (by order id) of several lines with some lines deducted and others not — a
  checkout must be taken whole or not at all. Lines come from the records (every line of a
  checkout is recorded); a line counts as deducted when it has a ledger row or a pending task;
- false_sold_out: units left unsold that buyers refused as sold out could have taken — an
  undersell, not a safety breach. Per SKU, what is left is the final DB stock minus the units of
  pending tasks (stock only falls during a run, so it was there all along); the refused order
  lines are those answered `sold_out` that were never served (no ledger row, no pending task, no
  `accepted` on a retry), each counted once; a checkout's lines only when every one of its
  lines would have fit. The units are the best fill of what is left with
  whole refused quantities: the largest sum of refused quantities that is at most what is left
  (an exact subset sum, not smallest-first, which would fit 2 of {2, 3} into 4 where 3 fits).
  So 187 refusals of 1 with 4 left are 4 units, one refusal of 5 with 4 left is 0, refusals of
  3 and 3 with 4 left are 3. Never more than what is left, nor than the refusals asked for;
- false_sold_out_orders: the refused order lines behind those units, each of which alone would
  have fit in what was left (187 in the first example above, 2 in the last): reports read
  "4 units left unsold, 187 refusals behind them". Zero exactly when false_sold_out is. Both
  are also in `per_sku`, one row per SKU, whose columns sum to the totals.

`check` is a pure function of those inputs, so tests can feed it a state with a known oversell;
`check_lab` reads the inputs from a lab.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa

from inventory_lab import schema
from inventory_lab.lab import Lab
from inventory_lab.orders import Outcome
from inventory_lab.redis_stock import read_redis_stock
from inventory_lab.tasks.store import TaskStore, unapplied_tasks, units_by_sku


@dataclass(frozen=True)
class CheckReport:
    oversold: int
    double_deducted: int
    lost: int
    unaccounted: int
    converged: bool | None
    partial: int = 0  # checkouts with some lines deducted and others not
    false_sold_out: int = 0  # units left unsold that sold-out refusals could have taken
    false_sold_out_orders: int = 0  # the refused order lines behind them
    false_duplicates: int = 0
    unknown_persisted: int = 0
    unknown_not_persisted: int = 0
    drift: dict[str, int] = field(default_factory=dict)  # sku -> redis minus DB, nonzero only
    pending: dict[str, int] = field(default_factory=dict)  # sku -> units of unapplied tasks
    per_sku: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    @property
    def ok(self) -> bool:
        return (
            self.oversold == 0
            and self.double_deducted == 0
            and self.lost == 0
            and self.unaccounted == 0
            and self.partial == 0
            and self.converged is not False
        )

    @property
    def final_stock(self) -> dict[str, int]:
        """Units per SKU the database held at the end (a history's final reads)."""
        if not len(self.per_sku):
            return {}
        finals = zip(self.per_sku["sku"], self.per_sku["db_final"], strict=True)
        return {str(sku): int(units) for sku, units in finals}

    def summary(self) -> dict[str, object]:
        return {
            "oversold": self.oversold,
            "double_deducted": self.double_deducted,
            "lost": self.lost,
            "unaccounted": self.unaccounted,
            "partial": self.partial,
            "converged": self.converged,
            "drift": dict(self.drift),
            "false_sold_out": self.false_sold_out,
            "false_sold_out_orders": self.false_sold_out_orders,
            "false_duplicates": self.false_duplicates,
            "unknown_persisted": self.unknown_persisted,
            "unknown_not_persisted": self.unknown_not_persisted,
        }


def check(
    initial: Mapping[str, int],
    db_stock: Mapping[str, int],
    ledger: pd.DataFrame,
    records: pd.DataFrame,
    redis_stock: Mapping[str, int | None] | None = None,
    pending_tasks: pd.DataFrame | None = None,
) -> CheckReport:
    """Compare the final state with the initial stock and what clients were told.

    `pending_tasks`: (order_id, sku, qty) of every task accepted but not yet applied; Redis should
    show the DB stock minus those, and their lines are not lost (yet).
    """
    if pending_tasks is None:
        pending_tasks = pd.DataFrame(columns=["order_id", "sku", "qty"])
    pending = units_by_sku(pending_tasks)
    waiting = set(zip(pending_tasks["order_id"], pending_tasks["sku"], strict=True))
    skus = sorted(set(initial) | set(db_stock))
    ledger_units = ledger.groupby("sku")["qty"].sum() if len(ledger) else pd.Series(dtype=int)
    accepted = records[records["outcome"] == Outcome.ACCEPTED.value]
    accepted_lines = accepted.drop_duplicates(["order_id", "sku"])
    accepted_units = accepted_lines.groupby("sku")["qty"].sum()

    rows = []
    for sku in skus:
        start = int(initial.get(sku, 0))
        final = int(db_stock.get(sku, 0))
        deducted = int(ledger_units.get(sku, 0))
        told = int(accepted_units.get(sku, 0))
        sold = max(deducted, told)
        redis_view = None if redis_stock is None else redis_stock.get(sku)
        rows.append(
            {
                "sku": sku,
                "initial": start,
                "db_final": final,
                "ledger_units": deducted,
                "accepted_units": told,
                "oversold": max(sold - start, -final, 0),
                "unaccounted": abs(start - deducted - final),
                "unrecorded": max(start - deducted - final, 0),
                "redis_final": redis_view,
            }
        )

    per_line = ledger.groupby(["order_id", "sku"]).size() if len(ledger) else pd.Series(dtype=int)
    double = int((per_line > 1).sum()) + sum(row["unrecorded"] for row in rows)
    persisted = set(per_line.index) if len(per_line) else set()
    told_accepted = set(zip(accepted_lines["order_id"], accepted_lines["sku"], strict=True))
    lost = len(told_accepted - persisted - waiting)
    unknown = records[records["outcome"] == Outcome.UNKNOWN.value]
    unknown_lines = set(zip(unknown["order_id"], unknown["sku"], strict=True)) - told_accepted
    unknown_persisted = len(unknown_lines & (persisted | waiting))

    partial = partial_orders(records, persisted | waiting)
    told_done = records[records["outcome"] == Outcome.DUPLICATE.value]
    told_done_lines = set(zip(told_done["order_id"], told_done["sku"], strict=True))
    false_duplicates = len(told_done_lines - persisted - waiting - told_accepted)
    sold_out = records[records["outcome"] == Outcome.SOLD_OUT.value]
    refused = sold_out.drop_duplicates(["order_id", "sku"])
    served = persisted | waiting | told_accepted
    left_of = {row["sku"]: max(row["db_final"] - pending.get(row["sku"], 0), 0) for row in rows}
    # a checkout refused whole could have been served only if each of its lines fits
    unfit = {
        order_id
        for order_id, sku, qty in zip(
            refused["order_id"], refused["sku"], refused["qty"], strict=True
        )
        if qty > left_of.get(sku, 0)
    }
    refused_qty: dict[str, list[int]] = {}
    for order_id, sku, qty in zip(refused["order_id"], refused["sku"], refused["qty"], strict=True):
        if (order_id, sku) not in served and order_id not in unfit:
            refused_qty.setdefault(sku, []).append(int(qty))
    for row in rows:
        left = left_of[row["sku"]]
        asked = refused_qty.get(row["sku"], [])
        row["false_sold_out"] = best_fill(asked, left)
        row["false_sold_out_orders"] = sum(1 for qty in asked if 0 < qty <= left)
    per_sku = pd.DataFrame(rows)

    drift: dict[str, int] = {}
    converged: bool | None = None
    if redis_stock is not None:
        for row in rows:
            redis_view = row["redis_final"]
            target = row["db_final"] - pending.get(row["sku"], 0)
            gap = (0 if redis_view is None else int(redis_view)) - target
            if redis_view is None or gap:
                drift[row["sku"]] = gap
        converged = not drift

    return CheckReport(
        oversold=int(per_sku["oversold"].sum()) if rows else 0,
        double_deducted=double,
        lost=lost,
        unaccounted=int(per_sku["unaccounted"].sum()) if rows else 0,
        converged=converged,
        partial=partial,
        drift=drift,
        false_sold_out=sum(row["false_sold_out"] for row in rows),
        false_sold_out_orders=sum(row["false_sold_out_orders"] for row in rows),
        false_duplicates=false_duplicates,
        unknown_persisted=unknown_persisted,
        unknown_not_persisted=len(unknown_lines) - unknown_persisted,
        pending=pending,
        per_sku=per_sku,
    )


def partial_orders(records: pd.DataFrame, deducted: set[tuple[str, str]]) -> int:
    """Orders with more than one line of which some, not all, were `deducted` (order id, SKU)."""
    lines = records.drop_duplicates(["order_id", "sku"])
    several = lines[lines.duplicated("order_id", keep=False)]
    if not len(several):
        return 0
    taken = [
        (order_id, sku) in deducted
        for order_id, sku in zip(several["order_id"], several["sku"], strict=True)
    ]
    per_order = (
        pd.Series(taken, index=several.index).groupby(several["order_id"]).agg(["sum", "size"])
    )
    return int(((per_order["sum"] > 0) & (per_order["sum"] < per_order["size"])).sum())


def best_fill(quantities: Iterable[int], room: int) -> int:
    """The most units of `room` that whole quantities from `quantities` fill (each used once).

    A bounded subset sum over a bitset (bit s set: some quantities sum to exactly s), each
    distinct quantity's copies added in chunks of 1, 2, 4… so that a thousand refusals of one
    unit cost ten shifts, not a thousand.
    """
    fitting = [qty for qty in quantities if 0 < qty <= room]
    if sum(fitting) <= room:  # the common case: everything refused would have fit
        return sum(fitting)
    within = (1 << (room + 1)) - 1
    reachable = 1
    for qty, count in Counter(fitting).items():
        copies = min(count, room // qty)
        chunk = 1
        while copies:
            take = min(chunk, copies)
            reachable |= (reachable << (qty * take)) & within
            copies -= take
            chunk *= 2
    return reachable.bit_length() - 1


def read_ledger(lab: Lab) -> pd.DataFrame:
    query = sa.select(schema.orders.c.order_id, schema.orders.c.sku, schema.orders.c.qty)
    with lab.engine.connect() as conn:
        rows = conn.execute(query).all()
    return pd.DataFrame(rows, columns=["order_id", "sku", "qty"])


def check_lab(
    lab: Lab,
    initial: Mapping[str, int],
    records: pd.DataFrame,
    *,
    redis_view: bool,
    task_tables: Sequence[sa.Table] | None = None,
    task_store: TaskStore | None = None,
) -> CheckReport:
    """Read the lab's final state and check it. `redis_view`: compare Redis stock too.

    Run it when the design is quiescent (after `drain()`): pending tasks are read from the task
    tables, Redis after the database. `task_tables`: the task tables, when the caller knows
    them (the explorer checks thousands of runs of one layout); by default they are reflected.
    `task_store`: the task engine's tables when some live in other databases than the lab's
    (read through the store, `TaskStore.unapplied`); it takes the place of `task_tables`.
    """
    with lab.engine.connect() as conn:
        db_stock = schema.read_stock(conn)
        if task_store is not None:
            pending_tasks = task_store.unapplied(conn)
        else:
            tables = schema.task_tables(lab.engine) if task_tables is None else task_tables
            pending_tasks = unapplied_tasks(conn, tables)
    redis_stock = read_redis_stock(lab, sorted(initial)) if redis_view else None
    return check(initial, db_stock, read_ledger(lab), records, redis_stock, pending_tasks)
