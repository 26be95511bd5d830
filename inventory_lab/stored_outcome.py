"""Idempotency keys that store the outcome, not only that an order started (issue 13).

The article's anti-repeat code, `SET code 1 NX EX 10`, remembers that an order with this code
started; it forgets how it ended. A retry that races an order which then sells out hears
"duplicate" — already done — about an order that was never done: the checker's
`false_duplicates`. Stripe's idempotency keys (and the IETF Idempotency-Key draft) keep more: the
first request's fingerprint and, once it has answered, its answer. This module builds that in
front of any design:

- one Redis hash per idempotency key, order id + SKU (`keys.idempotency_key`): the payload's
  fingerprint (sku and qty), the state (`in_flight` / `done`), the lease token of the request
  that runs it, and once done the stored answer (outcome + detail). In flight it expires with a
  short lease, so that a request that crashed does not block its key for ever; done, it is kept
  for a long retention;
- `begin` (scripts/idempotency_begin.lua, one atomic call): a fresh key runs ("go"), a key in
  flight with the same payload answers `in_progress` (HTTP 409), a key used with another payload
  `mismatch` (HTTP 422), a done key replays the stored answer;
- `finish` (scripts/idempotency_finish.lua): only the lease holder's lands. A final answer is
  stored; an `error` (nothing happened) or an escaped `unknown` releases the key instead, so
  that a retry runs again (the design's own anti-repeat row then guards the stock);
- `StoredOutcome` wraps any design with both; `wrap(design, lab, mode)` picks the article's
  `set_nx` (the design as it is) or `stored`;
- `false_duplicates_side_by_side`: both modes on the same forced race and the same workload,
  with the checker's verdicts, Redis round trips and memory per key.
"""

from __future__ import annotations

import enum
import hashlib
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import redis

from inventory_lab import keys
from inventory_lab.checker import CheckReport, check_lab
from inventory_lab.compensation_window import second_order_in_the_window
from inventory_lab.designs import design_class
from inventory_lab.designs.base import Design, validate_initial
from inventory_lab.errors import InvalidInput
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome, Result
from inventory_lab.redis_meter import metered
from inventory_lab.resolve import describe
from inventory_lab.scripts import lua_source
from inventory_lab.workload import Workload, run_workload

DEFAULT_LEASE_MS = 10_000  # as long as the article's code lives: a crashed request frees its key
DEFAULT_RETENTION_MS = 24 * 3600 * 1000  # Stripe keeps an idempotency key's answer for 24 hours

# Answers that are not final are never replayed: `error` (the order did not happen) and `unknown`
# (nobody knows) must let a retry run again; `throttled`, `in_progress` and `mismatch` say "not
# now" or "not this payload" about a request that never ran. Every other answer is stored.
NOT_FINAL = frozenset(
    {Outcome.ERROR, Outcome.UNKNOWN, Outcome.THROTTLED, Outcome.IN_PROGRESS, Outcome.MISMATCH}
)
REPLAYED = "replayed"


class Verdict(enum.StrEnum):
    """What `begin` decided for one request."""

    GO = "go"  # the key was free: this request holds the lease and runs
    IN_PROGRESS = "in_progress"  # the first request with this payload still runs
    MISMATCH = "mismatch"  # the key was used with another payload
    REPLAY = "replay"  # the first request answered: here is its stored answer


@dataclass(frozen=True, slots=True)
class Begun:
    verdict: Verdict
    stored: Result | None = None  # the stored answer, for a replay


def fingerprint(order: Order) -> str:
    """A stable hash of the payload an idempotency key guards: the SKU and the quantity."""
    payload = f"{order.sku}\n{order.qty}".encode()
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


def _positive_ms(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInput(f"{what} must be a positive integer of milliseconds, got {value!r:.40}")
    return value


class IdempotencyKeys:
    """The records of a lab's idempotency keys: begin, finish, release, read."""

    def __init__(
        self,
        lab: Lab,
        *,
        lease_ms: int = DEFAULT_LEASE_MS,
        retention_ms: int = DEFAULT_RETENTION_MS,
    ) -> None:
        self.lab = lab
        self.lease_ms = _positive_ms("lease_ms", lease_ms)
        self.retention_ms = _positive_ms("retention_ms", retention_ms)
        self._begin = lab.redis.register_script(lua_source("idempotency_begin"))
        self._finish = lab.redis.register_script(lua_source("idempotency_finish"))

    def key(self, order: Order) -> str:
        return keys.idempotency_key(self.lab.namespace, order.order_id, order.sku)

    def begin(self, order: Order, token: str) -> Begun:
        """One atomic call: run (holding the lease as `token`), in progress, mismatch, replay."""
        reply = self._begin(keys=[self.key(order)], args=[fingerprint(order), token, self.lease_ms])
        verdict = Verdict(reply[0])
        if verdict is Verdict.REPLAY:
            return Begun(verdict, Result(Outcome(reply[1]), reply[2]))
        return Begun(verdict)

    def finish(self, order: Order, token: str, result: Result) -> bool:
        """Store a final answer (done, kept for the retention), or release the key for a
        non-final one; only when `token` holds the lease. True when it landed."""
        mode = "release" if result.outcome in NOT_FINAL else "store"
        args = [token, mode, result.outcome.value, result.detail, self.retention_ms]
        return bool(self._finish(keys=[self.key(order)], args=args))

    def release(self, order: Order, token: str) -> bool:
        """Free the key (when `token` holds its lease): a retry runs again."""
        return self.finish(order, token, Result(Outcome.UNKNOWN))

    def record(self, order: Order) -> dict[str, str]:
        """The stored record of `order`'s key ({} when there is none)."""
        return self.lab.redis.hgetall(self.key(order))


class StoredOutcome:
    """Any design behind idempotency keys that store their outcome (see the module docstring).

    `lease_lost` counts requests whose lease had expired when they finished (their answer was
    returned to their client but not stored: the request that took the key over stores its own);
    `unstored` counts finishes Redis failed (the key then expires with its lease).
    """

    uses_redis = True

    def __init__(
        self,
        design: Design,
        lab: Lab,
        *,
        lease_ms: int = DEFAULT_LEASE_MS,
        retention_ms: int = DEFAULT_RETENTION_MS,
    ) -> None:
        self.inner = design
        self.lab = lab
        self.idempotency = IdempotencyKeys(lab, lease_ms=lease_ms, retention_ms=retention_ms)
        self.lease_lost = 0
        self.unstored = 0
        self._counter_lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"{self.inner.name}+stored"

    @property
    def summary(self) -> str:
        return f"{self.inner.summary}; behind idempotency keys that store their outcome"

    def setup(self, initial: Mapping[str, int]) -> None:
        """Validate, forget every stored answer of the lab, then set the inner design up."""
        validate_initial(initial)  # bad input changes no state: before any key is deleted
        self.lab.clear_redis()  # a design without Redis would leave old records behind
        self.inner.setup(initial)

    def check(self, order: Order) -> None:
        self.inner.check(order)

    def deduct(self, order: Order) -> Result:
        self.check(order)  # bad input is rejected before any key is taken
        token = uuid.uuid4().hex
        try:
            begun = self.idempotency.begin(order, token)
        except redis.RedisError as exc:
            return Result(Outcome.ERROR, f"idempotency key: {describe(exc)}; nothing ran")
        if begun.verdict is Verdict.REPLAY:
            assert begun.stored is not None
            stored = begun.stored
            detail = f"{REPLAYED}: {stored.detail}" if stored.detail else REPLAYED
            return Result(stored.outcome, detail)
        if begun.verdict is Verdict.IN_PROGRESS:
            return Result(Outcome.IN_PROGRESS, "the first request with this key is still running")
        if begun.verdict is Verdict.MISMATCH:
            return Result(Outcome.MISMATCH, "this key was used with another payload")
        try:
            result = self.inner.deduct(order)
        except BaseException:
            # Escaped: an unknown outcome. A retry must run again; the inner design's own
            # anti-repeat row keeps a second deduction out if the first did happen.
            self._finish(order, token, Result(Outcome.UNKNOWN))
            raise
        self._finish(order, token, result)
        return result

    def _finish(self, order: Order, token: str, result: Result) -> None:
        try:
            landed = self.idempotency.finish(order, token, result)
        except redis.RedisError:
            landed, failed = True, True
        else:
            failed = False
        with self._counter_lock:
            self.lease_lost += not landed
            self.unstored += failed

    def drain(self) -> None:
        self.inner.drain()

    def stock(self, sku: str) -> int:
        return self.inner.stock(sku)

    def pending(self) -> dict[str, int]:
        return self.inner.pending()

    def close(self) -> None:
        self.inner.close()


IDEMPOTENCY_MODES = ("set_nx", "stored")


def wrap(design: Design, lab: Lab, mode: str, **options: Any) -> Design:
    """`design` as it is ("set_nx": its own anti-repeat code only) or behind stored-outcome
    keys ("stored"; `options` are StoredOutcome's lease_ms and retention_ms)."""
    if mode not in IDEMPOTENCY_MODES:
        raise InvalidInput(f"idempotency mode must be one of {IDEMPOTENCY_MODES}, got {mode!r:.40}")
    if mode == "set_nx":
        if options:
            raise InvalidInput(f"set_nx takes no options, got {sorted(options)}")
        return design
    return StoredOutcome(design, lab, **options)  # type: ignore[return-value]


# --- the comparison ---------------------------------------------------------------------------

FORCED_SKU = "sku-1"
FORCED_ORDER = Order("o-refused", FORCED_SKU, 1)
SIDE_BY_SIDE_WORKLOAD = Workload(
    orders=300, skus=4, stock=40, skew=1.1, retries=0.3, lost_replies=0.05, seed=13
)


@dataclass(frozen=True)
class ForcedRetry:
    """One order that sells out, its retry forced into the moment the order is between its
    decrement and its give-back, and a later retry after the order answered."""

    mode: str
    design: str
    first: Result
    during: Result  # the retry sent while the first was held
    later: Result  # the retry sent after the first answered
    held: bool  # the first order reached its give-back (the window existed)
    records: pd.DataFrame
    report: CheckReport


def forced_retry_during_refusal(
    lab: Lab,
    mode: str,
    design: str = "two_gate",
    *,
    order: Order = FORCED_ORDER,
    options: Mapping[str, Any] | None = None,
    timeout_s: float = 30.0,
) -> ForcedRetry:
    """`order` against no stock; held at its compensation (`compensation_window`) while its
    retry is sent; released; retried once more. Deterministic.

    `design` must decrement before it checks (a TwoGate variant with a give-back window): set_nx
    then tells the retry "duplicate", stored tells it "in_progress" and replays the sold-out.
    """
    run = second_order_in_the_window(
        lab,
        design,
        {order.sku: 0},
        order,
        order,
        then=order,
        front=lambda inner: wrap(inner, lab, mode),
        options=options,
        timeout_s=timeout_s,
    )
    assert run.then is not None  # sent: `then` was given
    return ForcedRetry(
        mode, run.design, run.first, run.second, run.then, run.held, run.records, run.report
    )


def memory_per_key(lab: Lab, names: list[str]) -> tuple[float, str]:
    """Mean bytes per key of `names` that exist: Redis's own `MEMORY USAGE` where the server
    has it, else an estimate of the stored bytes (key + field names + values, or key + value),
    and which it was."""
    present = [name for name in names if lab.redis.exists(name)]
    if not present:
        return float("nan"), "no keys"
    try:
        sizes = [int(lab.redis.memory_usage(name) or 0) for name in present]
        return sum(sizes) / len(sizes), "MEMORY USAGE"
    except redis.ResponseError:  # fakeredis has no MEMORY command
        sizes = [_stored_bytes(lab, name) for name in present]
        return sum(sizes) / len(sizes), "estimate: stored bytes"


def _stored_bytes(lab: Lab, name: str) -> int:
    size = len(name.encode())
    if lab.redis.type(name) == "hash":
        fields = lab.redis.hgetall(name)
        return size + sum(len(f.encode()) + len(v.encode()) for f, v in fields.items())
    return size + len(str(lab.redis.get(name) or "").encode())


def _idempotency_keys_of(lab: Lab, mode: str, instance: Design, orders: list[Order]) -> list[str]:
    """The Redis keys that make each order idempotent in `mode`: the design's anti-repeat
    codes (set_nx; none for a design without Redis), or the stored-outcome records."""
    if mode == "stored":
        return [keys.idempotency_key(lab.namespace, o.order_id, o.sku) for o in orders]
    if not instance.uses_redis:
        return []
    return [keys.anti_repeat_key(lab.namespace, o.order_id, o.sku) for o in orders]


def workload_run(
    lab: Lab,
    mode: str,
    design: str = "two_gate_lua",
    *,
    workload: Workload = SIDE_BY_SIDE_WORKLOAD,
    concurrency: int = 8,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`workload` (with its retries and lost replies) against `design` in `mode`, checked;
    Redis round trips counted on the wire (a script's first call on a server that does not
    know it costs a NOSCRIPT and a load: a few in a run), memory per idempotency key after."""
    inner = design_class(design)(lab, **dict(options or {}))
    instance = wrap(inner, lab, mode)
    initial = workload.initial_stock()
    attempts = workload.attempts()
    try:
        instance.setup(initial)
        with metered(lab.redis) as meter:
            records = run_workload(instance, attempts, concurrency=concurrency)
        instance.drain()
    finally:
        instance.close()
    report = check_lab(lab, initial, records, redis_view=inner.uses_redis)
    orders = list(dict.fromkeys(attempt.order for attempt in attempts))
    per_key, measured_by = memory_per_key(lab, _idempotency_keys_of(lab, mode, inner, orders))
    outcomes = records["outcome"]
    return {
        "design": instance.name,
        "workload attempts": len(records),
        "workload false_duplicates": report.false_duplicates,
        "workload in_progress": int((outcomes == Outcome.IN_PROGRESS.value).sum()),
        "workload replayed": int(records["detail"].str.startswith(REPLAYED).sum()),
        "checker ok": report.ok,
        "oversold": report.oversold,
        "double_deducted": report.double_deducted,
        "round trips per attempt": meter.count / len(records),
        "bytes per key": per_key,
        "memory measured by": measured_by,
    }


def false_duplicates_side_by_side(
    lab: Lab,
    design: str = "two_gate_lua",
    *,
    forced_design: str = "two_gate",
    workload: Workload = SIDE_BY_SIDE_WORKLOAD,
    concurrency: int = 8,
    options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per idempotency mode (set_nx, stored): the forced retry during a refusal, then
    `workload` against `design`, each checked by the checker.

    The forced race needs a design that decrements before it checks (`forced_design`, the
    article's `two_gate` by default): `two_gate_lua` decides before it decrements and never
    reaches a give-back, so it has no such window to force a retry into.
    """
    rows = []
    for mode in IDEMPOTENCY_MODES:
        forced = forced_retry_during_refusal(lab, mode, forced_design)
        row: dict[str, Any] = {
            "mode": mode,
            "forced design": forced.design,
            "forced: first told": forced.first.outcome.value,
            "forced: retry during refusal told": forced.during.outcome.value,
            "forced: later retry told": forced.later.outcome.value,
            "forced false_duplicates": forced.report.false_duplicates,
            "forced checker ok": forced.report.ok,
        }
        row |= workload_run(
            lab, mode, design, workload=workload, concurrency=concurrency, options=options
        )
        rows.append(row)
    return pd.DataFrame(rows)
