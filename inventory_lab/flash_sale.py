"""Flash-sale experiments for the throttling chapter: admitted rate and the cost to other SKUs.

`admitted_at` replays request times through a limiter on a hand-moved clock, and
`max_in_any_window` finds the most admissions in any window: both exact, no backend involved.
`measure_admission` offers requests for one hot key at a fixed rate from P app instances — real
OS processes (spawned, or kept in `AppInstances` across measurements, since a spawned process
takes a second or two to import the lab) or threads — each with the limiter a `LimiterSpec`
describes, and records every admission, on the client's clock and, for the cluster-wide limiter,
on Redis's. Per-process limiters admit about P times the configured limit; the cluster-wide
Redis limiter admits the limit, whatever P is.

`flash_sale` runs a real design behind the limiters: a burst on one hot SKU plus background
traffic on the others, P app instances (threads, each with its own limiter) sharing one design.
It reports outcomes, how many requests reached Redis for the hot SKU, and the background SKUs'
latency.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import random
import threading
import time
import uuid
from collections.abc import Iterable
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
    ManualClock,
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

    def most_admitted(self, seconds: float, instances: int = 1) -> float:
        """The most this limiter can admit in `seconds` from `instances` app instances, whatever
        the timing: a window limiter `limit` per window touched (a partial one at each end), a
        bucket its burst plus what refills, each per instance; the cluster limiter `limit` per
        window over the span, once for all instances (they share it)."""
        if seconds < 0 or instances < 1:
            raise ValueError("seconds >= 0 and instances >= 1 are needed")
        windows = seconds * 1000.0 / self.window_ms
        if self.kind == "window":
            return instances * self.limit * (windows + 2)
        if self.kind == "bucket":
            return instances * (self.burst + self.rate * seconds)
        return self.limit * (windows + 1)

    def build(self) -> Limiter:
        if self.kind == "window":
            return WindowLimiter(self.window_ms, self.limit)
        if self.kind == "bucket":
            return TokenBucket(self.rate, self.burst)
        return RedisSlidingWindow(
            redis_client(self.redis_url), self.namespace, self.window_ms, self.limit
        )


def admitted_at(
    limiter: Limiter, clock: ManualClock, times_s: Iterable[float], key: str = "hot"
) -> pd.Series:
    """Replay requests at `times_s` through `limiter`, which reads `clock`: the times admitted.

    Exact and instant (the clock is moved to each request's time, nothing sleeps), so a
    limiter's answer to a stream can be checked to the microsecond.
    """
    kept = []
    for t in times_s:
        clock.now = t
        if limiter.try_acquire(key):
            kept.append(t)
    return pd.Series(kept, dtype=float)


Job = tuple[LimiterSpec, int, float, float, float]  # spec, instance, start_at, duration, rate
Offered = tuple[int, int, list[float], list[int]]  # instance, offered, admitted at, Redis µs


def _offer(
    spec: LimiterSpec, instance: int, start_at: float, duration_s: float, offered_per_s: float
) -> Offered:
    """One app instance: offer requests at a fixed rate from `start_at` (time.time(), shared by
    every instance so that all start together) for `duration_s`.

    Returns (instance, offered, admitted, redis_us): `admitted` starts with this instance's own
    start, then the client's time of each admission; `redis_us` is each admission's time on
    Redis's clock, for the cluster-wide limiter (empty for the others).
    """
    limiter = spec.build()
    on_redis = limiter if isinstance(limiter, RedisSlidingWindow) else None
    interval = 1.0 / offered_per_s
    if (wait := start_at - time.time()) > 0:
        time.sleep(wait)
    began = time.time()
    offered, admitted, redis_us = 0, [began], []  # the first entry: this instance's start
    next_at = began
    while (now := time.time()) < began + duration_s:
        if now < next_at:
            time.sleep(next_at - now)
        offered += 1
        if on_redis is not None:
            at_us = on_redis.admitted_at_us("hot")
            if at_us is not None:
                admitted.append(time.time())
                redis_us.append(at_us)
        elif limiter.try_acquire("hot"):
            admitted.append(time.time())
        next_at += interval
    return instance, offered, admitted, redis_us


def _serve(inbox: Any, outbox: Any) -> None:
    """An app instance's process: say it is ready (the lab imported), then run each job sent."""
    outbox.put(("ready", None))
    while (job := inbox.get()) is not None:
        try:
            outbox.put(("done", _offer(*job)))
        except Exception as exc:  # said to the parent, which raises it; the process lives on
            outbox.put(("error", f"{type(exc).__name__}: {exc}"))


class AppInstances:
    """P app instances as OS processes, spawned once and reused by every measurement given them.

    A spawned process first imports the lab (a second or two); a measurement lasts about a
    second. `with AppInstances(4) as apps:` pays the imports once, in parallel, and each
    `measure_admission(..., apps=apps)` then starts its instances at one shared instant.
    """

    def __init__(self, processes: int, *, ready_timeout_s: float = 120.0) -> None:
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ValueError(f"processes must be a positive integer, got {processes!r}")
        self.processes = processes
        self.ready_timeout_s = ready_timeout_s
        self._workers: list[Any] = []
        self._inboxes: list[Any] = []
        self._outbox: Any = None

    def __enter__(self) -> AppInstances:
        ctx = multiprocessing.get_context("spawn")
        self._outbox = ctx.Queue()
        self._inboxes = [ctx.Queue() for _ in range(self.processes)]
        self._workers = [
            ctx.Process(target=_serve, args=(inbox, self._outbox), daemon=True)
            for inbox in self._inboxes
        ]
        try:
            for worker in self._workers:
                worker.start()
            for _ in self._workers:
                self._outbox.get(timeout=self.ready_timeout_s)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for inbox, worker in zip(self._inboxes, self._workers, strict=True):
            if worker.is_alive():
                inbox.put(None)
        for worker in self._workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
                worker.join()
        self._workers, self._inboxes = [], []

    def run(self, jobs: list[Job], timeout_s: float = 60.0) -> list[Offered]:
        """Job i on process i, all at once; the results, one per job."""
        if not self._workers:
            raise RuntimeError("AppInstances is not running: use it in a with block")
        if len(jobs) > self.processes:
            raise ValueError(f"{len(jobs)} instances asked for, {self.processes} processes here")
        for inbox, job in zip(self._inboxes, jobs, strict=False):
            inbox.put(job)
        answers = [self._outbox.get(timeout=timeout_s) for _ in jobs]
        failed = [detail for kind, detail in answers if kind == "error"]
        if failed:
            raise RuntimeError(f"an app instance failed: {failed[0]}")
        return [detail for _, detail in answers]


def measure_admission(
    spec: LimiterSpec,
    *,
    instances: int = 1,
    duration_s: float = 1.0,
    offered_per_s: float = 2000.0,
    processes: bool = True,
    apps: AppInstances | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Admissions over time from `instances` app instances; and a summary against the limit.

    `processes`: each instance an OS process (in `apps` when given, else spawned for this call),
    or a thread of this process. One row per admission: instance, t_s (the client's clock,
    seconds since the first instance started) and redis_us (Redis's clock in microseconds since
    the first admission, for the cluster-wide limiter; missing for the others).
    """
    if instances < 1 or duration_s <= 0 or offered_per_s <= 0:
        raise ValueError("instances >= 1, duration_s > 0 and offered_per_s > 0 are needed")
    if apps is not None and not processes:
        raise ValueError("apps are processes: processes=False runs the instances as threads")
    if spec.kind == "cluster":
        # a fresh key for this measurement, so an earlier one's admissions do not count
        spec = LimiterSpec(
            **{
                **spec.__dict__,
                "namespace": keys.namespace_beside(spec.namespace, uuid.uuid4().hex[:6]),
            }
        )

    def jobs() -> list[Job]:  # started a moment from now, once every instance has its job
        start_at = time.time() + 0.2
        return [(spec, i, start_at, duration_s, offered_per_s) for i in range(instances)]

    if processes:
        if apps is not None:
            results = apps.run(jobs())
        else:
            with AppInstances(instances) as spawned:
                results = spawned.run(jobs())
    else:
        planned = jobs()
        results = [None] * instances

        def run(i: int) -> None:
            results[i] = _offer(*planned[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(instances)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    # Times on one axis: seconds since the first instance started (they start a few ms apart on
    # a busy machine, so the instances together cover a little more than `duration_s`).
    origin = min(times[0] for _, _, times, _ in results)
    span_s = max(times[0] for _, _, times, _ in results) + duration_s - origin
    rows = [
        (i, t - origin, redis[k] if redis else math.nan)
        for i, _, times, redis in results
        for k, t in enumerate(times[1:])
    ]
    admissions = pd.DataFrame(rows, columns=["instance", "t_s", "redis_us"])
    admissions = admissions.sort_values("t_s", ignore_index=True)
    if spec.kind == "cluster" and len(admissions):
        admissions["redis_us"] = (admissions["redis_us"] - admissions["redis_us"].min()).astype(
            "int64"
        )
    # Per instance, from its start to its last admission (a busy machine may let a decision come
    # after `duration_s`, so the stretch is read from the records, not assumed).
    stretches = [times[-1] - times[0] for _, _, times, _ in results]
    last_s = max(times[-1] for _, _, times, _ in results) - origin
    cluster_bound = spec.limit * (last_s * 1000 / spec.window_ms + 1)
    if spec.kind == "cluster":
        bound = cluster_bound
    else:
        bound = sum(spec.most_admitted(stretch) for stretch in stretches)
    offered = sum(n for _, n, _, _ in results)
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
        # The most the limiter can have admitted, whatever the timing: every admission was
        # decided between its instance's start and the moment it was recorded. Each instance's
        # own limiter over its own stretch; the shared one over all of them together.
        "bound": int(bound),
        "cluster_bound": int(cluster_bound),
    }
    return admissions, summary


def max_in_any_window(times: Iterable[float], window: float) -> int:
    """The most admissions found in any window (t - `window`, t] (a sliding check), `times` and
    `window` in one unit: seconds, or Redis's integer microseconds, which compare exactly."""
    values = sorted(times)
    best, left = 0, 0
    for right, t in enumerate(values):
        while t - values[left] >= window:
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
