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
"""

from __future__ import annotations

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from inventory_lab import schema
from inventory_lab.backends import in_transaction
from inventory_lab.designs.base import BaseDesign, register
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome, Result
from inventory_lab.resolve import describe, persisted


class _SoldOut(Exception):
    """Raised inside the transaction so that it rolls back the anti-repeat row."""


@register
class DbOnly(BaseDesign):
    name = "db_only"
    summary = "anti-repeat row + conditional UPDATE in one DB transaction (the article's baseline)"

    def __init__(self, lab: Lab, *, as_written: bool = False) -> None:
        super().__init__(lab)
        self.as_written = as_written

    def deduct(self, order: Order) -> Result:
        self.check(order)
        try:
            in_transaction(self.lab.engine, lambda conn: self._deduct_in(conn, order))
        except IntegrityError:
            return Result(Outcome.DUPLICATE, "anti-repeat code exists")
        except _SoldOut:
            return Result(Outcome.SOLD_OUT, "conditional update matched no row")
        except Exception as exc:  # sent, then failed: did it commit? (resolve.py)
            probe = schema.anti_repeat.insert().values(code=order.anti_repeat_code)
            if persisted(self.lab.engine, probe):  # OutcomeUnknown if the DB cannot say
                return Result(Outcome.ACCEPTED, f"reply lost ({describe(exc)}); it committed")
            return Result(Outcome.ERROR, f"{describe(exc)}; nothing persisted")
        return Result(Outcome.ACCEPTED)

    def _deduct_in(self, conn: Connection, order: Order) -> None:
        conn.execute(schema.INSERT_ANTI_REPEAT, {"code": order.anti_repeat_code})
        update = (
            schema.DEDUCT_STOCK_AS_WRITTEN if self.as_written else schema.DEDUCT_STOCK_IF_ENOUGH
        )
        updated = conn.execute(update, schema.deduction_params(order.sku, order.qty))
        if updated.rowcount == 0:
            raise _SoldOut
        schema.record_deduction(conn, order.order_id, order.sku, order.qty, self.name)
