"""`two_gate` and its gate-1 variants: the article's Redis check, then the DB write.

Gate 1 (Redis), as the article writes it:
    SET <anti-repeat key> 1 NX PX <ttl>      -- nil => duplicate
    HINCRBY <sku stock> inStock -q           -- result >= 0 passes; < 0 => give back, sold out
Gate 2 (DB), one transaction that does not re-check the quantity:
    INSERT INTO anti_repeat(code) ...; UPDATE stock SET num = num - q WHERE sku = :s
A refusal in gate 2 gives the Redis stock back and frees the anti-repeat key.

The variants differ only in how gate 1 talks to Redis: each class has its own `gate_one`.
- `commands`: each command its own round trip (two, three when compensating);
- `pipeline`: SET and HINCRBY in one round trip, not atomic: other clients' commands interleave,
  and the decrement runs even for a duplicate, so it must be given back;
- `multi`: the same two commands in MULTI/EXEC: atomic, but it cannot branch on the SET's answer,
  so a duplicate still decrements and is given back;
- `watch`: WATCH the code and the stock, read both, then MULTI/EXEC the decrement; re-run when
  another client changed them (`watch_retries` counts how often).
`two_gate_lua` (its own module) does the whole of gate 1 in one script.

Faults that strike mid-flight (the lab's fixes, on by default; `as_written=True` keeps the
article's behaviour, to show what it costs):
- An error in gate 2 after its statements were sent is an *unknown* outcome: the commit may have
  landed and only its acknowledgement been lost. The design resolves it from the database first
  (`resolve.persisted`: probe the anti-repeat row) and gives stock back only when nothing was
  persisted; if the database cannot answer either, it undoes nothing and the client hears
  `unknown`. As written, any error gave the stock back: a lost acknowledgement sells the unit
  twice.
- Gate 1 returns the *epoch* of the Redis copy it decided on, gate 2 checks it under a share lock
  and a give-back only lands on that copy (see `redis_stock.warm_up`): a re-warm while orders sit
  between the gates cannot hand their units out again. As written, the re-warm overwrote Redis
  unfenced and gate 2 checked nothing.
- Redis that lost its data (a stock hash with no epoch) is noticed by gate 1 and re-warmed once,
  safely, instead of every order being refused as an unknown SKU.
- A Redis error in gate 1 is an `error`, not an unknown: nothing reached the database, so the
  order did not happen. A decrement that ran before its reply was lost stays in Redis until
  reconciliation (an undersell, never an oversell); the anti-repeat code is freed for a retry.

As written, a duplicate caught only by gate 2 (the Redis code expired, the DB row did not) keeps
the Redis decrement: Redis and the DB then disagree until reconciled. `give_back_duplicates=True`
is the fix: return the stock there too. Gate 2 trusts Redis; `db_guard=True` adds the last line
of defence — `UPDATE … WHERE num - q >= 0` — so that a Redis that lost writes turns an oversell
into a refusal (here: sold out; in the task engine: a failed, finally dead task). `gap_s`
widens, with a sleep, the window between a decrement-then-check variant's decrement and its
compensation, in which other buyers see stock that is not really gone (false sold-outs), and for
`watch` the window between its reads and EXEC (more retries); fakeredis's single lock makes both
windows tiny.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import ClassVar

import redis
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from inventory_lab import keys, schema
from inventory_lab.backends import in_transaction
from inventory_lab.designs.base import BaseDesign, register
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome, Result
from inventory_lab.redis_stock import StaleEpoch, check_epoch, give_back, read_redis_stock, warm_up
from inventory_lab.resolve import OutcomeUnknown, describe, persisted

DEFAULT_TTL_MS = 10_000  # the article's `EX 10`


class GuardRefused(Exception):
    """Gate 2's conditional update matched no row: Redis let through stock the DB does not have."""


@dataclass(frozen=True, slots=True)
class Admitted:
    """Gate 1 passed: stock decremented and code set on the copy of generation `epoch`."""

    epoch: str | None  # None: as written, no epoch is read
    left: int | None = None  # the stock after the decrement, where the variant learns it


NOT_WARM = Result(Outcome.ERROR, "gate 1: Redis holds no warmed stock for this SKU")


class TwoGate(BaseDesign):
    """Gate 1 in Redis, gate 2 in the DB. Each subclass is a gate-1 variant: its `gate_one`."""

    uses_redis: ClassVar[bool] = True
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
        as_written: bool = False,
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
        self.as_written = as_written
        self._counter_lock = threading.Lock()
        self._rewarm_lock = threading.Lock()
        self.watch_retries = 0
        self.given_back = 0
        self.rewarms = 0  # re-warms after gate 1 found Redis empty
        self.resolved = {"persisted": 0, "not_persisted": 0, "stale_epoch": 0}
        # gate 2 ended unknown and the DB could not say either: resolved later, in `drain()`
        self._unresolved: list[tuple[Order, str | None, sa.Insert]] = []

    @property
    def fenced(self) -> bool:
        """Epochs read at gate 1, checked at gate 2, given back only to their own copy."""
        return not self.as_written

    # --- the protocol -------------------------------------------------------------------------

    def setup(self, initial: Mapping[str, int]) -> None:
        super().setup(initial)
        self.lab.clear_redis()
        self.copy_stock(fenced=True)

    def deduct(self, order: Order) -> Result:
        self.check(order)
        try:
            admitted = self.gate_one(order)
            if admitted is NOT_WARM:  # Redis lost its data (or was never warmed): re-warm, once
                self._recover_redis(order)
                admitted = self.gate_one(order)
        except redis.RedisError as exc:
            # Nothing reached the database: the order did not happen, whatever Redis did. A
            # decrement that ran before the reply was lost stays until reconciliation (an
            # undersell); the code is freed, so that a retry is not told "already done".
            with suppress(redis.RedisError):
                self.free_codes([order])
            return Result(Outcome.ERROR, f"gate 1: {describe(exc)}; nothing reached the database")
        if isinstance(admitted, Result):
            return admitted
        return self.gate_two(order, admitted.epoch)

    def drain(self, timeout_s: float = 30.0) -> None:
        """Resolve the orders whose outcome was left unknown (the DB could not answer then),
        waiting for the database up to `timeout_s`; OutcomeUnknown if it never answers."""
        deadline = time.monotonic() + timeout_s
        while self.settle_unknowns():
            if time.monotonic() > deadline:
                raise OutcomeUnknown(
                    f"{len(self._unresolved)} orders still unresolved after {timeout_s} s"
                )
            time.sleep(0.05)

    def settle_unknowns(self) -> int:
        """Probe each order left unknown; give back what was not persisted. Returns how many
        are still unknown (the database still does not answer)."""
        with self._counter_lock:
            waiting, self._unresolved = self._unresolved, []
        still = []
        for order, epoch, probe in waiting:
            try:
                done = persisted(self.probe_engine(order), probe)
            except OutcomeUnknown:
                still.append((order, epoch, probe))
                continue
            self._count("persisted" if done else "not_persisted")
            if not done:
                self.undo_gate_one(order, epoch)
        with self._counter_lock:
            self._unresolved.extend(still)
        return len(still)

    def rewarm(self) -> dict[str, int]:
        """Load stock from the DB into Redis again: fenced by a new epoch (as written: a plain
        overwrite, which hands out again the units of orders between the gates)."""
        return self.copy_stock(fenced=self.fenced)

    def copy_stock(self, *, fenced: bool) -> dict[str, int]:
        """Copy the database's stock into Redis in the design's layout (`redis_stock.warm_up`)."""
        return warm_up(self.lab, fenced=fenced)

    def _recover_redis(self, order: Order) -> None:
        with self._rewarm_lock:  # one thread re-warms; the others find it done
            stock_key = self.keys_for(order)[1]
            if not self.lab.redis.hexists(stock_key, keys.EPOCH_FIELD):
                self.rewarm()
                with self._counter_lock:
                    self.rewarms += 1

    def stock(self, sku: str) -> int:
        value = read_redis_stock(self.lab, [sku])[sku]
        return 0 if value is None else value

    # --- the gates ----------------------------------------------------------------------------

    def keys_for(self, order: Order) -> tuple[str, str]:
        ns = self.lab.namespace
        return keys.anti_repeat_key(ns, order.order_id, order.sku), keys.stock_key(ns, order.sku)

    def gate_one(self, order: Order) -> Admitted | Result:
        """Check in Redis: Admitted (stock decremented, code set) or the refusal. Each variant
        talks to Redis its own way."""
        raise NotImplementedError

    def _gate_one_in_one_request(self, order: Order, *, transaction: bool) -> Admitted | Result:
        """SET NX and HINCRBY sent together (a pipeline, or MULTI/EXEC when `transaction`): the
        decrement runs whatever the SET answers, so a refusal is given back afterwards."""
        code_key, stock_key = self.keys_for(order)
        pipe = self.lab.redis.pipeline(transaction=transaction)
        if self.fenced:  # read before the decrement: a re-warm in between refuses, never sells
            pipe.hget(stock_key, keys.EPOCH_FIELD)
        pipe.set(code_key, "1", nx=True, px=self.ttl_ms)
        pipe.hincrby(stock_key, keys.STOCK_FIELD, -order.qty)
        replies = pipe.execute()
        epoch = replies[0] if self.fenced else None
        fresh, left = replies[-2:]
        if self.fenced and epoch is None:  # the decrement hit a missing hash: no give-back
            if fresh:
                self.lab.redis.delete(code_key)
            return NOT_WARM
        return self._settle(order, fresh=bool(fresh), left=int(left), epoch=epoch)

    def _settle(
        self, order: Order, *, fresh: bool, left: int, epoch: str | None
    ) -> Result | Admitted:
        """After a decrement-then-check: give back what a refused order took."""
        if self.gap_s:
            time.sleep(self.gap_s)  # widen the window in which others see the decrement
        if not fresh:  # the code was there: the decrement must not stand
            self.compensate(order, epoch)
            return Result(Outcome.DUPLICATE, "gate 1: anti-repeat code exists")
        if left < 0:
            self.compensate(order, epoch)
            # not done: a retry must not look "already done"
            self.free_codes([order])
            return Result(Outcome.SOLD_OUT, f"gate 1: HINCRBY gave {left}")
        return Admitted(epoch)

    def gate_two(self, order: Order, epoch: str | None = None) -> Result:
        """Persist the deduction: anti-repeat row + unconditional UPDATE, one transaction."""
        return self.run_gate_two(
            order, epoch, lambda conn: self.persist_deduction(conn, order, epoch, fence=self.fenced)
        )

    def probe_for(self, order: Order) -> sa.Insert:
        """The insert of gate 2's unique key for `order` (its anti-repeat code), which
        `resolve.persisted` runs to learn whether gate 2 committed; built only when needed."""
        return schema.anti_repeat.insert().values(code=order.anti_repeat_code)

    def probe_engine(self, order: Order) -> Engine:
        """The database `probe_for(order)` runs on: the lab's (the task engine with shards in
        other databases: the order's shard's)."""
        return self.lab.engine

    def run_gate_two(
        self, order: Order, epoch: str | None, persist: Callable[[Connection], None]
    ) -> Result:
        """Run gate 2's transaction `persist` and settle every way it can end (see the module
        docstring): `gate_two` persists the deduction, the task engine records a task."""
        return self.run_gate_two_lines(((order, epoch),), persist)

    def run_gate_two_lines(
        self, admitted: Sequence[tuple[Order, str | None]], persist: Callable[[Connection], None]
    ) -> Result:
        """`run_gate_two` for the lines gate 1 admitted together (a checkout): one transaction,
        and every way it ends settles every line — a checkout is undone whole."""
        try:
            in_transaction(self.lab.engine, persist)
        except IntegrityError:
            if len(admitted) > 1:  # not every line may be a duplicate: undo the checkout whole
                self._undo_lines(admitted)
            elif self.give_back_duplicates:
                self.compensate(*admitted[0])
            return Result(Outcome.DUPLICATE, "gate 2: anti-repeat row exists")
        except GuardRefused:
            self._undo_lines(admitted)
            return Result(Outcome.SOLD_OUT, "gate 2: the DB guard refused what Redis let through")
        except StaleEpoch as stale:
            # The copy that admitted this order was replaced by a re-warm that never counted it:
            # nothing to give back (that would create stock); free the codes for a retry. (A
            # line whose own copy was not replaced keeps its decrement until reconciliation:
            # an undersell, never an oversell.)
            self.free_codes(order for order, _ in admitted)
            self._count("stale_epoch")
            return Result(Outcome.ERROR, f"gate 2: {stale}; nothing persisted, retry")
        except Exception as exc:
            if self.as_written:  # the article: an error is a failure, give everything back
                self._undo_lines(admitted)
                raise
            return self._resolve(admitted, exc)
        return Result(Outcome.ACCEPTED)

    def _undo_lines(self, admitted: Sequence[tuple[Order, str | None]]) -> None:
        for order, epoch in admitted:
            self.undo_gate_one(order, epoch)

    def _resolve(self, admitted: Sequence[tuple[Order, str | None]], exc: Exception) -> Result:
        """An error after gate 2's statements were sent: ask the database before undoing. The
        lines were written in one transaction: the first line's key tells for all."""
        probe = self.probe_for(admitted[0][0])
        try:
            done = persisted(self.probe_engine(admitted[0][0]), probe)
        except OutcomeUnknown as unknown:  # undo nothing now; `drain()` resolves it later
            with self._counter_lock:
                self._unresolved.extend(
                    (order, epoch, self.probe_for(order)) for order, epoch in admitted
                )
            raise OutcomeUnknown(f"gate 2: {unknown}") from exc
        if done:
            self._count("persisted")
            return Result(Outcome.ACCEPTED, f"gate 2: reply lost ({describe(exc)}); it committed")
        self._count("not_persisted")
        self._undo_lines(admitted)
        return Result(
            Outcome.ERROR, f"gate 2: {describe(exc)}; nothing persisted, stock given back"
        )

    def persist_deduction(
        self, conn: Connection, order: Order, epoch: str | None, *, fence: bool
    ) -> None:
        """In `conn`'s transaction: the anti-repeat row, the stock update (guarded with
        `db_guard`: GuardRefused when it matches no row), the ledger row; with `fence`, the
        epoch check (StaleEpoch). Gate 2 here; a task executor's apply in the task engine."""
        code = order.anti_repeat_code
        conn.execute(schema.INSERT_ANTI_REPEAT, {"code": code})
        if fence:  # after the first write: on SQLite that write took the one writer's lock
            check_epoch(conn, order.sku, epoch)
        guard = self.db_guard  # the last line: never below zero, whatever Redis believed
        update = schema.DEDUCT_STOCK_IF_ENOUGH if guard else schema.DEDUCT_STOCK
        updated = conn.execute(update, schema.deduction_params(order.sku, order.qty))
        if guard and updated.rowcount == 0:
            raise GuardRefused(code)
        schema.record_deduction(conn, order.order_id, order.sku, order.qty, self.name)

    def compensate(self, order: Order, epoch: str | None = None) -> None:
        """Give back the stock gate 1 took for an order that does not go through (fenced: only
        to the copy that took it)."""
        give_back(self.lab, order.sku, order.qty, epoch if self.fenced else None)
        with self._counter_lock:
            self.given_back += 1

    def undo_gate_one(self, order: Order, epoch: str | None) -> None:
        """The order is not done: give its stock back and free its code for a retry."""
        self.compensate(order, epoch)
        self.free_codes([order])

    def code_keys(self, order: Order) -> list[str]:
        """Every Redis anti-repeat key gate 1 may have set for `order` (one; a design whose
        order may be decided on one of several keys names them all)."""
        return [self.keys_for(order)[0]]

    def free_codes(self, orders: Iterable[Order]) -> None:
        """Delete the orders' anti-repeat codes: they are not done, a retry must not hear
        "already done"."""
        self.lab.redis.delete(*(key for order in orders for key in self.code_keys(order)))

    def _count(self, what: str) -> None:
        with self._counter_lock:
            self.resolved[what] += 1


@register
class TwoGateCommands(TwoGate):
    name = "two_gate"
    summary = "the article: SET NX PX + HINCRBY in Redis, then the DB transaction (2 round trips)"

    def gate_one(self, order: Order) -> Admitted | Result:
        """SET NX, then HINCRBY, each its own round trip: a refusal is given back."""
        code_key, stock_key = self.keys_for(order)
        r = self.lab.redis
        if self.fenced:  # SET NX and the epoch read in one round trip, before the decrement
            pipe = r.pipeline(transaction=False)
            pipe.set(code_key, "1", nx=True, px=self.ttl_ms)
            pipe.hget(stock_key, keys.EPOCH_FIELD)
            fresh, epoch = pipe.execute()
        else:
            fresh, epoch = r.set(code_key, "1", nx=True, px=self.ttl_ms), None
        if not fresh:
            return Result(Outcome.DUPLICATE, "gate 1: anti-repeat code exists")
        if self.fenced and epoch is None:
            r.delete(code_key)
            return NOT_WARM
        left = r.hincrby(stock_key, keys.STOCK_FIELD, -order.qty)
        return self._settle(order, fresh=True, left=int(left), epoch=epoch)


@register
class TwoGatePipeline(TwoGate):
    name = "two_gate_pipeline"
    summary = "gate 1 as one pipeline: 1 round trip, not atomic, a duplicate still decrements"
    round_trips = 1

    def gate_one(self, order: Order) -> Admitted | Result:
        return self._gate_one_in_one_request(order, transaction=False)


@register
class TwoGateMulti(TwoGate):
    name = "two_gate_multi"
    summary = "gate 1 in MULTI/EXEC: atomic, but cannot branch on SET NX's answer"
    round_trips = 1

    def gate_one(self, order: Order) -> Admitted | Result:
        return self._gate_one_in_one_request(order, transaction=True)


@register
class TwoGateWatch(TwoGate):
    name = "two_gate_watch"
    summary = "gate 1 as WATCH + check + MULTI/EXEC: no negative stock, retries under contention"
    round_trips = 4  # WATCH, EXISTS, HGET, then MULTI..EXEC sent together

    def gate_one(self, order: Order) -> Admitted | Result:
        """Check before decrementing: nothing to give back; re-run when another client changed
        the code or the stock between the reads and EXEC."""
        code_key, stock_key = self.keys_for(order)
        with self.lab.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(code_key, stock_key)
                    if pipe.exists(code_key):
                        pipe.unwatch()
                        return Result(Outcome.DUPLICATE, "gate 1: anti-repeat code exists")
                    left, epoch = pipe.hmget(stock_key, [keys.STOCK_FIELD, keys.EPOCH_FIELD])
                    if self.fenced and epoch is None:
                        pipe.unwatch()
                        return NOT_WARM
                    left = int(left or 0)
                    if left < order.qty:
                        pipe.unwatch()
                        return Result(Outcome.SOLD_OUT, f"gate 1: {left} left")
                    if self.gap_s:
                        time.sleep(self.gap_s)  # widen the read-to-EXEC window: more retries
                    pipe.multi()
                    pipe.set(code_key, "1", px=self.ttl_ms)
                    pipe.hincrby(stock_key, keys.STOCK_FIELD, -order.qty)
                    pipe.execute()
                    return Admitted(epoch if self.fenced else None)
                except redis.WatchError:
                    with self._counter_lock:
                        self.watch_retries += 1
