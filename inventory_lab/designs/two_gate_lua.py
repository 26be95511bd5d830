"""`two_gate_lua`: gate 1 as one Lua script, atomic check-then-decrement; gate 2 as in `two_gate`.

The script (scripts/gate1.lua) checks the anti-repeat key, checks stock >= qty, decrements and
sets the key in one step on the server: one round trip, no negative stock seen by anyone, nothing
to give back on a refusal. It is loaded once and called by SHA (EVALSHA); after a restart or
SCRIPT FLUSH the server answers NOSCRIPT and redis-py's Script reloads it and calls again. Both
keys carry the SKU's hash tag, so on a cluster they share a slot. A duplicate that only gate 2
catches gives the Redis stock back (the fix the article leaves out). The script also answers with
the epoch of the stock copy it decided on, and "not warm" when the hash has none (Redis lost its
data): see `two_gate` for what the design does with both.
"""

from __future__ import annotations

from typing import ClassVar

from inventory_lab.designs.base import register
from inventory_lab.designs.two_gate import DEFAULT_TTL_MS, NOT_WARM, Admitted, TwoGate
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome, Result
from inventory_lab.scripts import lua_source

DUPLICATE, SOLD_OUT, NOT_WARMED = -1, -2, -3


@register
class TwoGateLua(TwoGate):
    name = "two_gate_lua"
    summary = "gate 1 as one Lua script (check, decrement, record atomically), then the DB"
    round_trips: ClassVar[int] = 1

    def __init__(
        self,
        lab: Lab,
        *,
        ttl_ms: int = DEFAULT_TTL_MS,
        give_back_duplicates: bool = True,
        db_guard: bool = False,
        as_written: bool = False,
    ) -> None:
        super().__init__(
            lab,
            ttl_ms=ttl_ms,
            give_back_duplicates=give_back_duplicates,
            db_guard=db_guard,
            as_written=as_written,
        )
        self.script = lab.redis.register_script(lua_source("gate1"))

    def gate_one(self, order: Order) -> Admitted | Result:
        left, epoch = self.script(keys=self.keys_for(order), args=(order.qty, self.ttl_ms))
        left = int(left)
        if left == DUPLICATE:
            return Result(Outcome.DUPLICATE, "gate 1: anti-repeat code exists")
        if left == SOLD_OUT:
            return Result(Outcome.SOLD_OUT, "gate 1: not enough stock")
        if left == NOT_WARMED:
            return NOT_WARM
        return Admitted(str(epoch) if self.fenced else None)
