"""`db_only`: the article's baseline, one transaction per order line.

    BEGIN
      INSERT INTO anti_repeat(code) VALUES ('<order id>:<sku>')      -- duplicate => already done
      UPDATE stock SET num = num - :q WHERE sku = :s AND num - :q >= 0  -- 0 rows => sold out
    COMMIT

The conditional UPDATE is safe under concurrency because the database re-checks the WHERE
clause on the latest committed row after waiting for its lock (PostgreSQL READ COMMITTED,
InnoDB's locking read, SQLite's single writer). The article wrote `num - q > 0`, which refuses
the last unit; `as_written=True` keeps that slip so the lab can show it. An error after the
transaction was sent is resolved from the anti-repeat row (`resolve.persisted`) before the client
is answered: a lost commit acknowledgement is an acceptance, not an error. The statements are
`schema`'s, built once at import; an order only supplies their parameters.

A checkout (`place`) runs the same two statements for each of its lines in one transaction: a
line short of stock rolls back every line. Each conditional UPDATE locks its stock row until the
commit, so two carts that hold the same two SKUs and take them in opposite orders can each hold
one row and wait for the other's: a deadlock, which the server breaks by aborting one of them
(PostgreSQL's 40P01, MariaDB's 1213). The lines are therefore taken sorted by SKU
(`ordered_locks=True`, the default); `ordered_locks=False` takes them as the cart lists them, to
show the deadlocks (`deadlocks` counts them; the aborted transaction is re-run).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from inventory_lab import schema
from inventory_lab.backends import in_transaction, is_deadlock
from inventory_lab.checkout import Checkout
from inventory_lab.designs.base import BaseDesign, register
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome, Result
from inventory_lab.resolve import describe, persisted


class SoldOutLine(Exception):
    """Raised inside the transaction so that it rolls back the anti-repeat row (and every line)."""

    def __init__(self, sku: str) -> None:
        super().__init__(sku)
        self.sku = sku


@register
class DbOnly(BaseDesign):
    name = "db_only"
    summary = "anti-repeat row + conditional UPDATE in one DB transaction (the article's baseline)"
    takes_lines = True

    def __init__(
        self,
        lab: Lab,
        *,
        as_written: bool = False,
        ordered_locks: bool = True,
        after_line: Callable[[Order], None] | None = None,
    ) -> None:
        super().__init__(lab)
        self.as_written = as_written
        self.ordered_locks = ordered_locks
        # Called inside the transaction after each line's UPDATE (a test seam: the deadlock
        # demonstration holds a row lock there until the other cart holds its own).
        self.after_line = after_line
        self.deadlocks: list[str] = []  # the server's deadlock errors, each its transaction's
        # abort (the transaction was re-run)

    def deduct(self, order: Order) -> Result:
        self.check(order)
        return self._deduct_lines((order,))

    def place(self, checkout: Checkout) -> Result:
        self.check_lines(checkout)
        return self._deduct_lines(checkout.locking_order(ordered=self.ordered_locks))

    def _deduct_lines(self, lines: Sequence[Order]) -> Result:
        try:
            in_transaction(
                self.lab.engine, lambda conn: self._deduct_in(conn, lines), on_retry=self._retried
            )
        except IntegrityError:
            return Result(Outcome.DUPLICATE, "anti-repeat code exists")
        except SoldOutLine as short:
            return Result(Outcome.SOLD_OUT, f"conditional update matched no row ({short.sku})")
        except Exception as exc:  # sent, then failed: did it commit? (resolve.py)
            # every line's code is written in the one transaction: the first one tells for all
            probe = schema.anti_repeat.insert().values(code=lines[0].anti_repeat_code)
            if persisted(self.lab.engine, probe):  # OutcomeUnknown if the DB cannot say
                return Result(Outcome.ACCEPTED, f"reply lost ({describe(exc)}); it committed")
            return Result(Outcome.ERROR, f"{describe(exc)}; nothing persisted")
        return Result(Outcome.ACCEPTED)

    def _retried(self, exc: DBAPIError) -> None:
        if is_deadlock(exc):
            self.deadlocks.append(describe(exc))  # list.append is atomic under the GIL

    def _deduct_in(self, conn: Connection, lines: Sequence[Order]) -> None:
        update = (
            schema.DEDUCT_STOCK_AS_WRITTEN if self.as_written else schema.DEDUCT_STOCK_IF_ENOUGH
        )
        for line in lines:
            conn.execute(schema.INSERT_ANTI_REPEAT, {"code": line.anti_repeat_code})
            updated = conn.execute(update, schema.deduction_params(line.sku, line.qty))
            if updated.rowcount == 0:
                raise SoldOutLine(line.sku)
            schema.record_deduction(conn, line.order_id, line.sku, line.qty, self.name)
            if self.after_line is not None:
                self.after_line(line)
