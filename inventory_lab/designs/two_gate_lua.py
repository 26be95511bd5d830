"""`two_gate_lua`: gate 1 as one Lua script, atomic check-then-decrement; gate 2 as in `two_gate`.

The script (scripts/gate1.lua) checks the anti-repeat key, checks stock >= qty, decrements and
sets the key in one step on the server: one round trip, no negative stock seen by anyone, nothing
to give back on a refusal. It is loaded once and called by SHA (EVALSHA); after a restart or
SCRIPT FLUSH the server answers NOSCRIPT and redis-py's Script reloads it and calls again. Both
keys carry the SKU's hash tag, so on a cluster they share a slot. A duplicate that only gate 2
catches gives the Redis stock back (the fix the article leaves out). The script also answers with
the epoch of the stock copy it decided on, and "not warm" when the hash has none (Redis lost its
data): see `two_gate` for what the design does with both.

A checkout (`place`) goes through gate 1 as one script too (scripts/gate1_lines.lua): every line
is checked, then every line decremented, or none is — atomic, because one script runs alone on
the server. Gate 2 then writes every line in one transaction, its rows taken in SKU order. On a
Redis Cluster one script can only touch keys of one slot, and each SKU's keys carry their own
hash tag: there, `per_line_gate=True` passes each line through the one-line gate in turn and,
when a line is refused, gives back the lines already taken (a saga's compensation). Between the
taking and the giving back, other buyers see those units gone: refusals that were not needed
(false sold-outs), which the lab counts (`compensations`) and shows (`between_lines` holds a
checkout there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import ClassVar

import redis
from sqlalchemy.engine import Connection

from inventory_lab.checkout import Checkout
from inventory_lab.designs.base import register
from inventory_lab.designs.two_gate import DEFAULT_TTL_MS, NOT_WARM, Admitted, TwoGate
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome, Result
from inventory_lab.resolve import describe
from inventory_lab.scripts import lua_source

DUPLICATE, SOLD_OUT, NOT_WARMED = -1, -2, -3


@register
class TwoGateLua(TwoGate):
    name = "two_gate_lua"
    summary = "gate 1 as one Lua script (check, decrement, record atomically), then the DB"
    round_trips: ClassVar[int] = 1
    takes_lines = True

    def __init__(
        self,
        lab: Lab,
        *,
        ttl_ms: int = DEFAULT_TTL_MS,
        give_back_duplicates: bool = True,
        db_guard: bool = False,
        as_written: bool = False,
        per_line_gate: bool = False,
        between_lines: Callable[[Order], None] | None = None,
    ) -> None:
        super().__init__(
            lab,
            ttl_ms=ttl_ms,
            give_back_duplicates=give_back_duplicates,
            db_guard=db_guard,
            as_written=as_written,
        )
        self.script = lab.redis.register_script(lua_source("gate1"))
        self.lines_script = lab.redis.register_script(lua_source("gate1_lines"))
        self.per_line_gate = per_line_gate
        # Called after a line passed the per-line gate, before the next (a test seam: it holds a
        # checkout between its lines, where the saga has taken stock it may give back).
        self.between_lines = between_lines
        self.compensations = 0  # checkouts whose taken lines a refused line made give back

    def gate_one(self, order: Order) -> Admitted | Result:
        left, epoch = self.script(keys=self.keys_for(order), args=(order.qty, self.ttl_ms))
        left = int(left)
        if left == DUPLICATE:
            return Result(Outcome.DUPLICATE, "gate 1: anti-repeat code exists")
        if left == SOLD_OUT:
            return Result(Outcome.SOLD_OUT, "gate 1: not enough stock")
        if left == NOT_WARMED:
            return NOT_WARM
        return Admitted(str(epoch) if self.fenced else None, left)

    # --- checkouts ----------------------------------------------------------------------------

    def place(self, checkout: Checkout) -> Result:
        """Every line of `checkout` or none: gate 1 for all lines, then one gate-2 transaction."""
        self.check_lines(checkout)
        lines = checkout.locking_order()
        gate = self._gate_one_per_line if self.per_line_gate else self._gate_one_lines
        try:
            admitted = gate(lines)
            if admitted is NOT_WARM:  # Redis lost its data: re-warm once, as `deduct` does
                for line in lines:
                    self._recover_redis(line)
                admitted = gate(lines)
        except redis.RedisError as exc:  # nothing reached the database (see `deduct`)
            with suppress(redis.RedisError):
                self.free_codes(lines)
            return Result(Outcome.ERROR, f"gate 1: {describe(exc)}; nothing reached the database")
        if isinstance(admitted, Result):
            return admitted
        return self.gate_two_lines(admitted)

    def _gate_one_lines(self, lines: Sequence[Order]) -> list[tuple[Order, str | None]] | Result:
        """One script decides every line: all admitted, or a refusal that took nothing."""
        keys = [key for line in lines for key in self.keys_for(line)]
        args = [self.ttl_ms, *(line.qty for line in lines)]
        status, refusing, *epochs = self.lines_script(keys=keys, args=args)
        status = int(status)
        if status == 0:
            return [
                (line, str(epoch) if self.fenced else None)
                for line, epoch in zip(lines, epochs, strict=True)
            ]
        sku = lines[int(refusing) - 1].sku
        if status == DUPLICATE:
            return Result(Outcome.DUPLICATE, f"gate 1: anti-repeat code exists ({sku})")
        if status == SOLD_OUT:
            return Result(Outcome.SOLD_OUT, f"gate 1: not enough stock ({sku})")
        return NOT_WARM

    def _gate_one_per_line(self, lines: Sequence[Order]) -> list[tuple[Order, str | None]] | Result:
        """The saga: each line through the one-line gate; a refusal gives back the lines taken."""
        taken: list[tuple[Order, str | None]] = []
        for line in lines:
            try:
                admitted = self.gate_one(line)
            except redis.RedisError:
                self._undo_lines(taken)
                raise
            if not isinstance(admitted, Admitted):  # a refusal, or NOT_WARM
                if taken:
                    self._undo_lines(taken)
                    with self._counter_lock:
                        self.compensations += 1
                if admitted is NOT_WARM:
                    return NOT_WARM
                return Result(admitted.outcome, f"{admitted.detail} ({line.sku})")
            taken.append((line, admitted.epoch))
            if self.between_lines is not None and len(taken) < len(lines):
                self.between_lines(line)
        return taken

    def gate_two_lines(self, admitted: Sequence[tuple[Order, str | None]]) -> Result:
        """Persist every line in one transaction (rows taken in SKU order: no deadlock)."""

        def persist(conn: Connection) -> None:
            for order, epoch in admitted:
                self.persist_deduction(conn, order, epoch, fence=self.fenced)

        return self.run_gate_two_lines(admitted, persist)
