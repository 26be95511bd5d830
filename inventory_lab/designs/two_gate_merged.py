"""`two_gate_merged`: `two_gate_lua` with request merging at gate 1 — one EVALSHA, many orders.

Beyond the article. Flash-sale systems merge requests for their hottest key: the orders for one
SKU that arrive within a short window (`window_ms`, or as soon as `max_batch` are waiting; see
`gate_one_merging.MergingWindow`) go to Redis as one call of scripts/gate1_batch.lua, which
decides them one after the other, in arrival order, exactly as that many calls of gate1.lua
would. Gate 2 is unchanged: each order still gets its own database transaction.

What it buys: one round trip per batch instead of one per order, and Redis does N decisions per
call (one script's overhead, one network packet each way), so a hot SKU's ceiling on Redis rises.
What it costs: latency — every order waits for its batch to be sent, up to the window, even when
it is alone (`window_stats()` measures the wait and the mean batch size).

Why the anti-repeat codes and the verdicts stay per order: merging is a transport, not a new
meaning. Each order keeps its own code (a client's retry is caught whatever batch it lands in,
even the same one — the script sets each code as it admits the order), and its own answer (a
sold-out order must not make the others in its batch fail, a duplicate must not be deducted),
so every invariant of `two_gate_lua` holds unchanged and gate 2 can settle each order alone.
An error of the batch's call reaches every order of it: none knows what Redis did, each frees
its own code (`TwoGate.deduct`), as a lost reply of its own call would.

Checkouts stay with `two_gate_lua` (`takes_lines = False`): one script for a checkout's lines
is already one round trip, and a checkout spans SKUs (slots) that per-SKU batches do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from redis.commands.core import Script

from inventory_lab import keys
from inventory_lab.checkout import Checkout
from inventory_lab.designs.base import BaseDesign, register
from inventory_lab.designs.two_gate import NOT_WARM, Admitted
from inventory_lab.designs.two_gate_lua import DUPLICATE, NOT_WARMED, SOLD_OUT, TwoGateLua
from inventory_lab.gate_one_merging import (
    DEFAULT_MAX_BATCH,
    DEFAULT_WINDOW_MS,
    MergingWindow,
    WindowStats,
)
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome, Result
from inventory_lab.scripts import lua_source


@register
class TwoGateMerged(TwoGateLua):
    name = "two_gate_merged"
    summary = "two_gate_lua with request merging: one Lua call decides a window's orders per SKU"
    # One round trip per *batch*: an order sent alone costs 1, a batch of n costs 1/n each.
    round_trips: ClassVar[int] = 1
    takes_lines = False

    def __init__(
        self,
        lab: Lab,
        *,
        window_ms: float = DEFAULT_WINDOW_MS,
        max_batch: int = DEFAULT_MAX_BATCH,
        **options: Any,
    ) -> None:
        # The window first: bad parameters are refused before anything is registered.
        self.window = MergingWindow(self.decide_batch, window_ms=window_ms, max_batch=max_batch)
        super().__init__(lab, **options)  # two_gate_lua's (ttl_ms, db_guard, as_written, ...)
        self.batch_script = lab.redis.register_script(lua_source("gate1_batch"))

    def gate_one(self, order: Order) -> Admitted | Result:
        """`two_gate_lua`'s answers, from this order's verdict in its batch."""
        epoch, verdict = self.window.decide(order)
        if verdict == DUPLICATE:
            return Result(Outcome.DUPLICATE, "gate 1: anti-repeat code exists")
        if verdict == SOLD_OUT:
            return Result(Outcome.SOLD_OUT, "gate 1: not enough stock")
        if verdict == NOT_WARMED:
            return NOT_WARM
        return Admitted(epoch if self.fenced else None, left=verdict)  # the stock after it

    def decide_batch(self, orders: Sequence[Order]) -> tuple[str, list[int]]:
        """One call of gate1_batch.lua for `orders` (one SKU, in arrival order): the epoch of
        the stock copy and each order's verdict (the stock after it, or a refusal code)."""
        return decide_in_one_call(self.batch_script, self.lab.namespace, orders, self.ttl_ms)

    def window_stats(self) -> WindowStats:
        """The latency the window added (p50/p99, µs) and the orders it merged per call."""
        return self.window.stats()

    def place(self, checkout: Checkout) -> Result:
        """Refused (LabError): checkouts go to `two_gate_lua`, whose `place` this does not
        inherit."""
        return BaseDesign.place(self, checkout)


def decide_in_one_call(
    script: Script, namespace: str, orders: Sequence[Order], ttl_ms: int
) -> tuple[str, list[int]]:
    """One call of gate1_batch.lua (`script`) for `orders` of one SKU, in arrival order: the
    epoch of the stock copy and each order's verdict (also the `raw_merged` ceiling's call)."""
    stock_key = keys.stock_key(namespace, orders[0].sku)
    code_keys = [keys.anti_repeat_key(namespace, order.order_id, order.sku) for order in orders]
    args = [ttl_ms, *(order.qty for order in orders)]
    epoch, *verdicts = script(keys=[stock_key, *code_keys], args=args)
    return str(epoch), [int(verdict) for verdict in verdicts]
