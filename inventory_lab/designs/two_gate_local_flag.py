"""`two_gate_local_flag`: `two_gate_lua` behind a local sold-out flag in each app process.

Beyond the article (see `sold_out_flag`): once this process has seen a SKU's stock at zero — gate
1 accepted an order and left 0, or refused a one-unit order — it answers "sold out" itself for
`flag_ttl_s`, and Redis hears only from orders that can still succeed. A refusal of a larger
quantity raises no flag: the stock may still hold fewer units than that, which others can buy.

Stock that comes back clears every process's flag: a restock (`restock.restock`) publishes the
SKU, and so does this design when it gives stock back (gate 2 refused an order gate 1 took) and
when it re-warms Redis. The ticket taken before gate 1 keeps a "zero" answered before a restock
message from flagging the restocked stock. `audit=True` (a measurement, not the design) reads
Redis after each local refusal to count the *false sold-outs*: refusals while Redis still held
the order's quantity.

One design instance stands for one app process: its flags are its own. Checkouts stay with
`two_gate_lua`.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from typing import Any

import redis

from inventory_lab.checkout import Checkout
from inventory_lab.designs.base import BaseDesign, register
from inventory_lab.designs.two_gate import Admitted
from inventory_lab.designs.two_gate_lua import TwoGateLua
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome, Result
from inventory_lab.redis_stock import read_redis_stock
from inventory_lab.restock import announce_stock_rose
from inventory_lab.sold_out_flag import DEFAULT_TTL_S, SoldOutFlags

LOCAL_DETAIL = "local sold-out flag: Redis not asked"


@register
class TwoGateLocalFlag(TwoGateLua):
    name = "two_gate_local_flag"
    summary = "two_gate_lua behind a sold-out flag in each app process: no Redis call once gone"
    takes_lines = False

    def __init__(
        self,
        lab: Lab,
        *,
        flag_ttl_s: float = DEFAULT_TTL_S,
        listen: bool = True,
        audit: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(lab, **options)
        self.flags = SoldOutFlags(lab.redis, lab.namespace, ttl_s=flag_ttl_s, listen=listen)
        self.audit = audit
        self.answered_locally = 0  # orders refused by the flag: Redis calls saved
        self.false_sold_outs = 0  # of those, refused while Redis held enough (audit=True)

    def setup(self, initial: Mapping[str, int]) -> None:
        super().setup(initial)
        for sku in initial:  # fresh stock: no process's flag holds any more
            self.flags.clear(sku)
            announce_stock_rose(self.lab, sku)

    def place(self, checkout: Checkout) -> Result:
        return BaseDesign.place(self, checkout)

    def gate_one(self, order: Order) -> Admitted | Result:
        """The flag answers first (the order is checked already: bad input is refused before
        any flag is read); otherwise gate 1 in Redis, whose zero raises the flag."""
        if self.flags.is_set(order.sku):
            with self._counter_lock:
                self.answered_locally += 1
            if self.audit:
                self._audit(order)
            return Result(Outcome.SOLD_OUT, LOCAL_DETAIL)
        ticket = self.flags.ticket(order.sku)
        admitted = super().gate_one(order)
        if isinstance(admitted, Admitted):
            gone = admitted.left == 0
        else:  # a one-unit order refused: not one unit left
            gone = admitted.outcome is Outcome.SOLD_OUT and order.qty == 1
        if gone:
            self.flags.set(order.sku, ticket)
        return admitted

    def compensate(self, order: Order, epoch: str | None = None) -> None:
        """Give the stock back, then tell every process that it rose."""
        super().compensate(order, epoch)
        self._stock_rose(order.sku)

    def rewarm(self) -> dict[str, int]:
        written = super().rewarm()
        for sku, num in written.items():
            if num > 0:
                self._stock_rose(sku)
        return written

    def close(self) -> None:
        self.flags.close()
        super().close()

    def _stock_rose(self, sku: str) -> None:
        self.flags.clear(sku)
        # a lost message costs false sold-outs until the TTL, never an oversell: not an error
        with suppress(redis.RedisError):
            announce_stock_rose(self.lab, sku)

    def _audit(self, order: Order) -> None:
        with suppress(redis.RedisError):
            left = read_redis_stock(self.lab, [order.sku])[order.sku]
            if left is not None and left >= order.qty:
                with self._counter_lock:
                    self.false_sold_outs += 1
