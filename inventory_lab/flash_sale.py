"""Flash-sale experiments for the throttling chapter: admitted rate and the cost to other SKUs.

`measure_admission` offers requests for one hot key at a fixed rate from P app instances — real
OS processes (spawned) or threads — each with the limiter a `LimiterSpec` describes, and records
every admission. Per-process limiters admit about P times the configured limit; the cluster-wide
Redis limiter admits the limit, whatever P is.

`flash_sale` runs a real design behind the limiters: a burst on one hot SKU plus background
traffic on the others, P app instances (threads, each with its own limiter) sharing one design.
It reports outcomes, how many requests reached Redis for the hot SKU, and the background SKUs'
latency.
"""

from __future__ import annotations

import itertools
import multiprocessing
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pandas as pd

from inventory_lab import keys
from inventory_lab.backends import redis_client
from inventory_lab.checker import check_lab
from inventory_lab.designs import design_class
from inventory_lab.designs.base import Design
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome, Result
from inventory_lab.throttle import (
    Limiter,
    RedisSlidingWindow,
    Throttled,
    TokenBucket,
    WindowLimiter,
)
from inventory_lab.workload import Attempt, run_workload

KINDS = ("window", "bucket", "cluster")


@dataclass(frozen=True)
class LimiterSpec:
    """What limiter each app instance builds (picklable, so a spawned process can build it)."""

    kind: str = "window"
    window_ms: int = 10
    limit: int = 2
    rate: float = 200.0  # bucket: tokens per second
    burst: int = 2  # bucket
    redis_url: str = "fake"  # cluster: where the shared limit lives
    namespace: str = "ilab-throttle"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"limiter kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    @property
    def configured_per_s(self) -> float:
        if self.kind == "bucket":
            return self.rate
        return self.limit * 1000.0 / self.window_ms

    def build(self) -> Limiter:
        if self.kind == "window":
            return WindowLimiter(self.window_ms, self.limit)
        if self.kind == "bucket":
            return TokenBucket(self.rate, self.burst)
        return RedisSlidingWindow(
            redis_client(self.redis_url), self.namespace, self.window_ms, self.limit
        )


def _offer(
    spec: LimiterSpec, instance: int, ready: Any, duration_s: float, offered_per_s: float
) -> tuple[int, int, list[float]]:
    """One app instance: offer requests at a fixed rate; return (instance, offered, admitted).

    `ready` is a barrier every instance (and the parent) waits on, so that all start together
    however long a spawned process took to import the lab.
    """
    limiter = spec.build()
    interval = 1.0 / offered_per_s
    ready.wait()
    start_at = time.time()
    offered, admitted = 0, [start_at]  # the first entry: this instance's start, absolute
    next_at = start_at
    while (now := time.time()) < start_at + duration_s:
        if now < next_at:
            time.sleep(next_at - now)
        offered += 1
        if limiter.try_acquire("hot"):
            admitted.append(time.time())
        next_at += interval
    return instance, offered, admitted


def _offer_into(queue: Any, *args: Any) -> None:
    queue.put(_offer(*args))


def measure_admission(
    spec: LimiterSpec,
    *,
    instances: int = 1,
    duration_s: float = 1.0,
    offered_per_s: float = 2000.0,
    processes: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Admissions over time from `instances` app instances; and a summary against the limit."""
    if instances < 1 or duration_s <= 0 or offered_per_s <= 0:
        raise ValueError("instances >= 1, duration_s > 0 and offered_per_s > 0 are needed")
    if spec.kind == "cluster":
        # a fresh key for this measurement, so an earlier one's admissions do not count
        spec = LimiterSpec(
            **{
                **spec.__dict__,
                "namespace": keys.namespace_beside(spec.namespace, uuid.uuid4().hex[:6]),
            }
        )
    if processes:
        ctx = multiprocessing.get_context("spawn")
        ready, queue = ctx.Barrier(instances, timeout=120), ctx.Queue()
        workers = [
            ctx.Process(target=_offer_into, args=(queue, spec, i, ready, duration_s, offered_per_s))
            for i in range(instances)
        ]
        for worker in workers:
            worker.start()
        results = [queue.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join()
    else:
        ready = threading.Barrier(instances, timeout=60)
        results = [None] * instances

        def run(i: int) -> None:
            results[i] = _offer(spec, i, ready, duration_s, offered_per_s)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(instances)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    # Times on one axis: seconds since the first instance started (they leave the barrier a few
    # ms apart, so the instances together cover a little more than `duration_s`).
    origin = min(times[0] for _, _, times in results)
    span_s = max(times[0] for _, _, times in results) + duration_s - origin
    rows = [(i, t - origin) for i, _, times in results for t in times[1:]]
    admissions = pd.DataFrame(rows, columns=["instance", "t_s"]).sort_values("t_s")
    offered = sum(n for _, n, _ in results)
    admitted_per_s = len(admissions) / duration_s
    summary = {
        "kind": spec.kind,
        "instances": instances,
        "processes": processes,
        "configured_per_s": spec.configured_per_s,
        "offered": offered,
        "admitted": len(admissions),
        "admitted_per_s": round(admitted_per_s, 1),
        "ratio_to_limit": round(admitted_per_s / spec.configured_per_s, 2),
        "span_s": round(span_s, 4),
        # the most a limit of K per W can admit over the span, for the cluster-wide limiter
        "cluster_bound": int(spec.limit * (span_s * 1000 / spec.window_ms + 1)),
    }
    return admissions, summary


def max_in_any_window(times_s: pd.Series, window_s: float) -> int:
    """The most admissions found in any interval of `window_s` (a sliding check)."""
    values = sorted(times_s)
    best, left = 0, 0
    for right, t in enumerate(values):
        while t - values[left] >= window_s:
            left += 1
        best = max(best, right - left + 1)
    return best


class Fleet:
    """P app instances in front of one shared design; each client thread belongs to one."""

    def __init__(self, design: Design, limiters: list[Limiter], hot_skus: set[str]) -> None:
        self.design = design
        self.instances = [Throttled(design, lim, hot_skus=hot_skus) for lim in limiters]
        self.name = f"{design.name}+{len(limiters)}x"
        self.uses_redis = design.uses_redis
        self._local = threading.local()
        self._next = itertools.count()

    def deduct(self, order: Order) -> Result:
        if not hasattr(self._local, "index"):
            self._local.index = next(self._next) % len(self.instances)
        return self.instances[self._local.index].deduct(order)


def flash_sale(
    lab: Lab,
    spec: LimiterSpec | None,
    *,
    instances: int = 4,
    design: str = "two_gate_lua",
    hot_orders: int = 2000,
    background_orders: int = 400,
    background_skus: int = 20,
    hot_stock: int = 100,
    concurrency: int = 8,
    seed: int = 1,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A burst on one hot SKU plus background traffic; `spec=None` means no limiter at all."""
    rng = random.Random(seed)
    hot = "sku-hot"
    background = [f"sku-bg-{i:03d}" for i in range(background_skus)]
    initial = {hot: hot_stock, **dict.fromkeys(background, 10**6)}
    target = design_class(design)(lab)
    target.setup(initial)
    attempts = [Attempt(Order(f"h-{i}", hot, 1), 0) for i in range(hot_orders)]
    for i in range(background_orders):
        attempts.insert(
            rng.randrange(len(attempts) + 1), Attempt(Order(f"b-{i}", rng.choice(background), 1), 0)
        )
    try:
        if spec is None:
            front: Any = target
        else:
            shared = None
            if spec.kind == "cluster":  # the limit lives in the lab's own Redis
                shared = RedisSlidingWindow(
                    lab.redis,
                    keys.namespace_beside(lab.namespace, "throttle"),
                    spec.window_ms,
                    spec.limit,
                )
            limiters = [shared or spec.build() for _ in range(instances)]
            front = Fleet(target, limiters, {hot})
        started = time.perf_counter()
        records = run_workload(front, attempts, concurrency=concurrency)
        elapsed = time.perf_counter() - started
        target.drain()
        findings = check_lab(lab, initial, records, redis_view=target.uses_redis)
    finally:
        target.close()
    is_hot = records["sku"] == hot
    hot_records = records[is_hot]
    reached = hot_records[hot_records["outcome"] != Outcome.THROTTLED.value]
    summary = {
        "limiter": "none" if spec is None else spec.kind,
        "instances": instances if spec is not None else 1,
        "configured_per_s": None if spec is None else spec.configured_per_s,
        "elapsed_s": round(elapsed, 3),
        "accepted": int((records["outcome"] == Outcome.ACCEPTED.value).sum()),
        "throttled": int((records["outcome"] == Outcome.THROTTLED.value).sum()),
        "sold_out": int((records["outcome"] == Outcome.SOLD_OUT.value).sum()),
        "hot_reaching_redis": len(reached),
        "hot_reaching_redis_per_s": round(len(reached) / elapsed, 1),
        "background_p99_ms": round(float(records.loc[~is_hot, "latency_ms"].quantile(0.99)), 3),
        "background_p50_ms": round(float(records.loc[~is_hot, "latency_ms"].quantile(0.50)), 3),
        "oversold": findings.oversold,
        "double_deducted": findings.double_deducted,
        "converged": findings.converged,
    }
    return records, summary
