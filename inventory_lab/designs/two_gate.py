"""`two_gate` and its gate-1 variants: the article's Redis check, then the DB write.

Gate 1 (Redis), as the article writes it:
    SET <anti-repeat key> 1 NX PX <ttl>      -- nil => duplicate
    HINCRBY <sku stock> inStock -q           -- result >= 0 passes; < 0 => give back, sold out
Gate 2 (DB), one transaction that does not re-check the quantity:
    INSERT INTO anti_repeat(code) ...; UPDATE stock SET num = num - q WHERE sku = :s
A failure in gate 2 gives the Redis stock back and frees the anti-repeat key.

The variants differ only in how gate 1 talks to Redis (`gate1=`):
- `commands`: each command its own round trip (two, three when compensating);
- `pipeline`: SET and HINCRBY in one round trip, not atomic: other clients' commands interleave,
  and the decrement runs even for a duplicate, so it must be given back;
- `multi`: the same two commands in MULTI/EXEC: atomic, but it cannot branch on the SET's answer,
  so a duplicate still decrements and is given back;
- `watch`: WATCH the code and the stock, read both, then MULTI/EXEC the decrement; re-run when
  another client changed them (`watch_retries` counts how often).
`two_gate_lua` (its own module) does the whole of gate 1 in one script.

As written, a duplicate caught only by gate 2 (the Redis code expired, the DB row did not) keeps
the Redis decrement: Redis and the DB then disagree until reconciled. `give_back_duplicates=True`
is the fix: return the stock there too. Gate 2 trusts Redis; `db_guard=True` adds the last line
PITFALLS asks for — `UPDATE … WHERE num - q >= 0` — so a Redis that lost writes turns an oversell
into a refusal (here: sold out; in the task engine: a failed, finally dead task). `gap_s`
widens, with a sleep, the window between a decrement-then-check variant's decrement and its
compensation, in which other buyers see stock that is not really gone (false sold-outs), and for
`watch` the window between its reads and EXEC (more retries); fakeredis's single lock makes both
windows tiny.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import ClassVar

import redis
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from inventory_lab import keys, schema
from inventory_lab.backends import in_transaction
from inventory_lab.designs.base import BaseDesign, register
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome, Result
from inventory_lab.redis_stock import give_back, read_redis_stock, warm_up

DEFAULT_TTL_MS = 10_000  # the article's `EX 10`


class GuardRefused(Exception):
    """Gate 2's conditional update matched no row: Redis let through stock the DB does not have."""


class TwoGate(BaseDesign):
    """Gate 1 in Redis, gate 2 in the DB. Subclasses pick the gate-1 variant."""

    uses_redis: ClassVar[bool] = True
    gate1: ClassVar[str] = "commands"
    # Redis round trips per order on the happy path (accepted), as the variant is written.
    round_trips: ClassVar[int] = 2

    def __init__(
        self,
        lab: Lab,
        *,
        ttl_ms: int = DEFAULT_TTL_MS,
        give_back_duplicates: bool = False,
        gap_s: float = 0.0,
        db_guard: bool = False,
    ) -> None:
        super().__init__(lab)
        if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or ttl_ms <= 0:
            raise ValueError(f"ttl_ms must be a positive integer, got {ttl_ms!r}")
        if gap_s < 0:
            raise ValueError("gap_s must be >= 0")
        self.ttl_ms = ttl_ms
        self.gap_s = gap_s
        self.give_back_duplicates = give_back_duplicates
        self.db_guard = db_guard
        self._counter_lock = threading.Lock()
        self.watch_retries = 0
        self.given_back = 0

    # --- the protocol -------------------------------------------------------------------------

    def setup(self, initial: Mapping[str, int]) -> None:
        super().setup(initial)
        self.lab.clear_redis()
        warm_up(self.lab)

    def deduct(self, order: Order) -> Result:
        self.check(order)
        refused = self.gate_one(order)
        if refused is not None:
            return refused
        return self.gate_two(order)

    def rewarm(self) -> dict[str, int]:
        """After Redis lost its data: load stock from the DB again (as the article would)."""
        return warm_up(self.lab)

    def stock(self, sku: str) -> int:
        value = read_redis_stock(self.lab, [sku])[sku]
        return 0 if value is None else value

    # --- the gates ----------------------------------------------------------------------------

    def keys_for(self, order: Order) -> tuple[str, str]:
        ns = self.lab.namespace
        return keys.anti_repeat_key(ns, order.order_id, order.sku), keys.stock_key(ns, order.sku)

    def gate_one(self, order: Order) -> Result | None:
        """Check in Redis; None means passed (stock decremented, code set)."""
        code_key, stock_key = self.keys_for(order)
        r = self.lab.redis
        if self.gate1 == "commands":
            if not r.set(code_key, "1", nx=True, px=self.ttl_ms):
                return Result(Outcome.DUPLICATE, "gate 1: anti-repeat code exists")
            left = r.hincrby(stock_key, keys.STOCK_FIELD, -order.qty)
            return self._settle(order, fresh=True, left=int(left))
        if self.gate1 in ("pipeline", "multi"):
            pipe = r.pipeline(transaction=self.gate1 == "multi")
            pipe.set(code_key, "1", nx=True, px=self.ttl_ms)
            pipe.hincrby(stock_key, keys.STOCK_FIELD, -order.qty)
            fresh, left = pipe.execute()
            return self._settle(order, fresh=bool(fresh), left=int(left))
        return self._gate_one_watch(order, code_key, stock_key)

    def _settle(self, order: Order, *, fresh: bool, left: int) -> Result | None:
        """After a decrement-then-check: give back what a refused order took."""
        if self.gap_s:
            time.sleep(self.gap_s)  # widen the window in which others see the decrement
        code_key = self.keys_for(order)[0]
        if not fresh:  # the code was there: the decrement must not stand
            self.compensate(order)
            return Result(Outcome.DUPLICATE, "gate 1: anti-repeat code exists")
        if left < 0:
            self.compensate(order)
            self.lab.redis.delete(code_key)  # not done: a retry must not look "already done"
            return Result(Outcome.SOLD_OUT, f"gate 1: HINCRBY gave {left}")
        return None

    def _gate_one_watch(self, order: Order, code_key: str, stock_key: str) -> Result | None:
        with self.lab.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(code_key, stock_key)
                    if pipe.exists(code_key):
                        pipe.unwatch()
                        return Result(Outcome.DUPLICATE, "gate 1: anti-repeat code exists")
                    left = int(pipe.hget(stock_key, keys.STOCK_FIELD) or 0)
                    if left < order.qty:
                        pipe.unwatch()
                        return Result(Outcome.SOLD_OUT, f"gate 1: {left} left")
                    if self.gap_s:
                        time.sleep(self.gap_s)  # widen the read-to-EXEC window: more retries
                    pipe.multi()
                    pipe.set(code_key, "1", px=self.ttl_ms)
                    pipe.hincrby(stock_key, keys.STOCK_FIELD, -order.qty)
                    pipe.execute()
                    return None
                except redis.WatchError:
                    with self._counter_lock:
                        self.watch_retries += 1

    def gate_two(self, order: Order) -> Result:
        """Persist the deduction: anti-repeat row + unconditional UPDATE, one transaction."""
        try:
            in_transaction(self.lab.engine, lambda conn: self._persist(conn, order))
        except IntegrityError:
            if self.give_back_duplicates:
                self.compensate(order)
            return Result(Outcome.DUPLICATE, "gate 2: anti-repeat row exists")
        except GuardRefused:
            self.compensate(order)
            self.lab.redis.delete(self.keys_for(order)[0])
            return Result(Outcome.SOLD_OUT, "gate 2: the DB guard refused what Redis let through")
        except Exception:
            self.compensate(order)
            self.lab.redis.delete(self.keys_for(order)[0])
            raise
        return Result(Outcome.ACCEPTED)

    def _persist(self, conn: Connection, order: Order) -> None:
        conn.execute(schema.anti_repeat.insert().values(code=order.anti_repeat_code))
        left = schema.stock.c.num - order.qty
        update = sa.update(schema.stock).where(schema.stock.c.sku == order.sku).values(num=left)
        if self.db_guard:  # the last line: never below zero, whatever Redis believed
            update = update.where(left >= 0)
        if conn.execute(update).rowcount == 0 and self.db_guard:
            raise GuardRefused(order.anti_repeat_code)
        schema.record_deduction(conn, order.order_id, order.sku, order.qty, self.name)

    def compensate(self, order: Order) -> None:
        """Give back the stock gate 1 took for an order that does not go through."""
        give_back(self.lab, order.sku, order.qty)
        with self._counter_lock:
            self.given_back += 1


@register
class TwoGateCommands(TwoGate):
    name = "two_gate"
    summary = "the article: SET NX EX + HINCRBY in Redis, then the DB transaction (2 round trips)"


@register
class TwoGatePipeline(TwoGate):
    name = "two_gate_pipeline"
    summary = "gate 1 as one pipeline: 1 round trip, not atomic, a duplicate still decrements"
    gate1 = "pipeline"
    round_trips = 1


@register
class TwoGateMulti(TwoGate):
    name = "two_gate_multi"
    summary = "gate 1 in MULTI/EXEC: atomic, but cannot branch on SET NX's answer"
    gate1 = "multi"
    round_trips = 1


@register
class TwoGateWatch(TwoGate):
    name = "two_gate_watch"
    summary = "gate 1 as WATCH + check + MULTI/EXEC: no negative stock, retries under contention"
    gate1 = "watch"
    round_trips = 4  # WATCH, EXISTS, HGET, then MULTI..EXEC sent together
