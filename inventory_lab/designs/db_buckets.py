"""`db_buckets`: `db_only` with each SKU's stock split over B rows (stock buckets).

Beyond the article. One hot SKU is one row, and every order for it waits for that row's lock:
the database's ceiling is one row's commit rate. Sharded counters split the value: here the
SKU's stock lives in B rows of `stock_buckets` (the `stock` row keeps 0), the units spread as
evenly as they go. An order goes to its *home* bucket, `crc32(order id) % B`, so that the
orders of a flash sale spread over B row locks; when its home bucket cannot take its quantity it
falls over to the next buckets in turn, in the same transaction:

    BEGIN
      INSERT INTO anti_repeat(code) VALUES ('<order id>:<sku>')       -- duplicate => already done
      UPDATE stock_buckets SET num = num - :q
        WHERE sku = :s AND bucket = :b AND num - :q >= 0                -- b = home, home+1, ...
      INSERT INTO orders ...                                           -- the ledger
    COMMIT

No oversell: each bucket's conditional UPDATE is `db_only`'s, and a SKU's units are the sum of
its buckets (`schema.read_stock`). The price is the *false sold-out*: an order of q units is
refused when no single bucket holds q, even if together they do — at most B × (q − 1) units
can be stranded that way, none for one-unit orders (a bucket only ever goes down, so an order
that found every bucket empty was right). The checker's `false_sold_out` measures it.
`fallovers` counts the orders that were not taken by their home bucket.

The buckets' arithmetic (split, home bucket, visiting order) is `stock_buckets`'s. The error
handling, duplicates and checkouts are `db_only`'s (a checkout's lines each take their
own bucket; InnoDB may deadlock two orders that fall over into each other's buckets: the
transaction is re-run, and `deadlocks` counts it).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from sqlalchemy.engine import Connection

from inventory_lab import schema
from inventory_lab.designs.base import register
from inventory_lab.designs.db_only import DbOnly, SoldOutLine
from inventory_lab.lab import Lab
from inventory_lab.orders import Order
from inventory_lab.stock_buckets import DEFAULT_BUCKETS, check_bucket_count, split, visiting_order


@register
class DbBuckets(DbOnly):
    name = "db_buckets"
    summary = "db_only with each SKU's stock over B rows: an order takes its bucket, else the next"

    def __init__(self, lab: Lab, *, buckets: int = DEFAULT_BUCKETS, **options: object) -> None:
        self.buckets = check_bucket_count(buckets)
        super().__init__(lab, **options)  # type: ignore[arg-type]
        self.fallovers = 0
        self._fallover_lock = threading.Lock()

    def setup(self, initial: Mapping[str, int]) -> None:
        super().setup(initial)
        rows = [
            {"sku": sku, "bucket": b, "num": units}
            for sku, total in initial.items()
            for b, units in enumerate(split(total, self.buckets))
        ]
        with self.lab.engine.begin() as conn:
            conn.execute(schema.stock.update().values(num=0))
            if rows:
                conn.execute(schema.stock_buckets.insert(), rows)

    def _deduct_in(self, conn: Connection, lines: Sequence[Order]) -> None:
        for line in lines:
            conn.execute(schema.INSERT_ANTI_REPEAT, {"code": line.anti_repeat_code})
            for step, bucket in enumerate(visiting_order(line.order_id, self.buckets)):
                params = {"stock_sku": line.sku, "stock_bucket": bucket, "units": line.qty}
                if conn.execute(schema.DEDUCT_BUCKET_IF_ENOUGH, params).rowcount == 1:
                    if step:
                        with self._fallover_lock:
                            self.fallovers += 1
                    break
            else:
                raise SoldOutLine(line.sku)
            schema.record_deduction(conn, line.order_id, line.sku, line.qty, self.name)
            if self.after_line is not None:
                self.after_line(line)
