"""The load generator: P worker processes × C client threads each, closed or open loop.

One Python process cannot measure a server: its clients share one interpreter lock, so the
harness saturates first and every figure describes the harness. Here each of P processes runs
C client threads (threads, not asyncio, because every design is written against the synchronous
redis-py and SQLAlchemy APIs the article's Java code resembles; an asyncio rewrite would be a
second implementation of each design to keep honest). Processes escape the lock; threads in a
process overlap their waits on the network. All of them start on one barrier and their records
are merged into one frame the checker reads, exactly as it reads `run_workload`'s.

Two modes:
- **closed loop**: each client sends its next order when the last one is answered. The offered
  load adapts to the server, which hides a stall: a client stuck for a second sends nothing, so
  the one slow answer is all the tail shows.
- **open loop**: orders arrive on a schedule (`Arrivals`: constant, Poisson, or a flash-sale
  burst that ramps to a peak and holds), whatever the server does. Latency is measured from the
  *intended* send time, so time spent queued behind a stalled server counts (no coordinated
  omission).

Percentiles come from HDR histograms (microseconds, 3 significant digits), one per thread, merged.
Clocks: `time.monotonic()` is CLOCK_MONOTONIC on Linux, one clock for every process of the
machine, so the parent's start time and every worker's records share a time line.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from hdrh.histogram import HdrHistogram
from tqdm import tqdm

from inventory_lab.backends import first_line
from inventory_lab.orders import Outcome
from inventory_lab.senders import Sender, Target, open_sender
from inventory_lab.workload import RECORD_COLUMNS, Workload

HIST_MAX_US = 600_000_000  # 10 minutes: any answer slower than that is recorded as 10 minutes
ARRIVAL_KINDS = ("closed", "constant", "poisson", "burst")
_OUTCOMES = list(Outcome)
_CODE = {outcome: i for i, outcome in enumerate(_OUTCOMES)}
_START_DELAY_S = 0.05  # workers sleep until a common start a little after the go signal
_BARRIER_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Arrivals:
    """When orders are sent: `closed` (as fast as answers come back) or on a schedule.

    `rate` is orders per second (for `burst`, the peak). A burst ramps linearly from zero to
    the peak while the first `ramp` fraction of the orders arrives, then holds the peak: a flash
    sale's opening second.
    """

    kind: str = "closed"
    rate: float = 0.0
    ramp: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in ARRIVAL_KINDS:
            raise ValueError(f"arrivals must be one of {', '.join(ARRIVAL_KINDS)}")
        if self.kind != "closed" and not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError("an open-loop schedule needs a rate > 0 orders/s")
        if not 0.0 <= self.ramp < 1.0:
            raise ValueError("ramp must be a fraction in [0, 1)")

    @property
    def open_loop(self) -> bool:
        return self.kind != "closed"

    def schedule(self, n: int, seed: int = 0) -> list[float] | None:
        """Intended send times in seconds from the start, one per attempt (None: closed loop)."""
        if self.kind == "closed":
            return None
        if self.kind == "constant":
            return [i / self.rate for i in range(n)]
        if self.kind == "poisson":
            rng = random.Random(seed)
            times, now = [], 0.0
            for _ in range(n):
                times.append(now)
                now += rng.expovariate(self.rate)
            return times
        ramped = int(n * self.ramp)
        ramp_s = 2.0 * ramped / self.rate  # ramped = rate * ramp_s / 2 (a triangle's area)
        # during the ramp, arrivals so far = rate t² / (2 ramp_s): invert it for each arrival
        times = [math.sqrt(2.0 * ramp_s * k / self.rate) for k in range(ramped)]
        times += [ramp_s + (k - ramped) / self.rate for k in range(ramped, n)]
        return times

    def describe(self) -> str:
        if self.kind == "closed":
            return "closed loop"
        extra = f", ramp over {self.ramp:.0%} of orders" if self.kind == "burst" else ""
        return f"open loop, {self.kind} arrivals at {self.rate:,.0f}/s{extra}"


@dataclass(frozen=True)
class Layout:
    """P processes × C client threads in each."""

    processes: int = 1
    clients: int = 1  # per process

    def __post_init__(self) -> None:
        if not 1 <= self.processes <= 64 or not 1 <= self.clients <= 1024:
            raise ValueError("processes must be in [1, 64] and clients per process in [1, 1024]")

    @property
    def total(self) -> int:
        return self.processes * self.clients

    @classmethod
    def spread(cls, concurrency: int, processes: int) -> Layout:
        """Exactly `concurrency` clients, evenly over as many of `processes` as divide them."""
        if concurrency < 1 or processes < 1:
            raise ValueError("concurrency and processes must be >= 1")
        p = next(p for p in range(min(processes, concurrency), 0, -1) if concurrency % p == 0)
        return cls(p, concurrency // p)

    def __str__(self) -> str:
        return f"{self.processes}×{self.clients}"


@dataclass(frozen=True)
class LoadRun:
    """What one load produced: the records (for the checker), histograms, CPU and timing."""

    target: Target
    layout: Layout
    arrivals: Arrivals
    records: pd.DataFrame  # RECORD_COLUMNS + intended_s
    latency: HdrHistogram  # µs from the intended send time (= start in closed loop)
    service: HdrHistogram  # µs from the actual send
    elapsed_s: float  # first intended send to last answer
    client_cpu_s: list[float]  # CPU seconds each worker process spent in the run
    # time.monotonic() of the start: every time in `records` is seconds since it, so an event
    # timed on the machine's clock (a stall's `held_from`) maps onto the run's time line
    start_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def decisions_per_s(self) -> float:
        return len(self.records) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def rate_of(self, outcome: Outcome) -> float:
        count = int((self.records["outcome"] == outcome.value).sum())
        return count / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentiles_ms(self, *, from_intended: bool = True) -> dict[str, float]:
        hist = self.latency if from_intended else self.service
        return percentiles_ms(hist)


def percentiles_ms(hist: HdrHistogram) -> dict[str, float]:
    """p50, p99, p99.9 and max of a µs histogram, in ms."""
    if hist.get_total_count() == 0:
        return {"p50": 0.0, "p99": 0.0, "p99.9": 0.0, "max": 0.0}
    return {
        "p50": hist.get_value_at_percentile(50.0) / 1000.0,
        "p99": hist.get_value_at_percentile(99.0) / 1000.0,
        "p99.9": hist.get_value_at_percentile(99.9) / 1000.0,
        "max": hist.get_max_value() / 1000.0,
    }


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, HIST_MAX_US, 3)


# --- the parent ----------------------------------------------------------------------------


def run_load(
    target: Target,
    workload: Workload,
    *,
    layout: Layout,
    arrivals: Arrivals | None = None,
    redis_url: str,
    db_url: str,
    namespace: str = "ilab",
    progress: bool = False,
    on_ready: Callable[[], None] | None = None,
    on_finished: Callable[[], None] | None = None,
) -> LoadRun:
    """Send `workload`'s attempts at `target` from `layout`'s processes; the records, merged.

    The target must already be set up (stock loaded, Redis warmed): workers only send. Every
    process must reach the backends over the network or a shared file, so `redis_url` is a real
    `redis://` URL (serve fakeredis over TCP with `backends.serve_fake_redis`) and `db_url` a
    server or a SQLite file. `on_ready` runs once every worker is connected, just before the
    start (the bench samples CPU there); `on_finished` once every worker has answered its last
    order, before any worker disconnects.
    """
    arrivals = arrivals or Arrivals()
    ctx = mp.get_context("spawn")  # no fork of a parent holding threads and open sockets
    ready = ctx.Barrier(layout.processes + 1, timeout=_BARRIER_TIMEOUT_S)
    finished = ctx.Barrier(layout.processes + 1, timeout=_BARRIER_TIMEOUT_S)
    go = ctx.Event()
    sampled = ctx.Event()  # the parent has read the servers' CPU: workers may disconnect
    start_at = ctx.Value("d", 0.0)
    results = ctx.Queue()
    progress_counter = ctx.Value("q", 0)
    job = _Job(target, workload, arrivals, layout, redis_url, db_url, namespace)
    workers = [
        ctx.Process(
            target=_worker,
            args=(job, index, ready, finished, go, sampled, start_at, results, progress_counter),
            name=f"load-{index}",
            daemon=True,
        )
        for index in range(layout.processes)
    ]
    for worker in workers:
        worker.start()
    try:
        _wait(ready, workers, results, "connect")
        if on_ready is not None:
            on_ready()
        start_at.value = time.monotonic() + _START_DELAY_S
        go.set()
        _watch_progress(progress, progress_counter, workload.orders, ready, finished, target)
        _wait(finished, workers, results, "finish")
        if on_finished is not None:
            on_finished()
        sampled.set()
        parts = [_result(results, workers) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.terminate()
    return _merge(job, parts, start_at.value)


@dataclass(frozen=True)
class _Job:
    target: Target
    workload: Workload
    arrivals: Arrivals
    layout: Layout
    redis_url: str
    db_url: str
    namespace: str


def _wait(barrier: Any, workers: list[Any], results: Any, stage: str) -> None:
    """Wait on a barrier with the workers; a worker's error, not a timeout, if one failed."""
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        raise RuntimeError(f"a load worker failed to {stage}: {_error_of(results)}") from None


def _error_of(results: Any) -> str:
    try:
        while True:
            kind, payload = results.get(timeout=2)
            if kind == "error":
                return str(payload)
    except queue.Empty:
        return "no error reported (did it crash?)"


def _result(results: Any, workers: list[Any]) -> dict[str, Any]:
    kind, payload = results.get(timeout=_BARRIER_TIMEOUT_S)
    if kind == "error":
        raise RuntimeError(f"a load worker failed: {payload}")
    return payload


def _watch_progress(
    show: bool, counter: Any, total: int, ready: Any, finished: Any, target: Target
) -> None:
    if not show:
        return
    with tqdm(total=total, desc=target.label, unit="order") as bar:
        while counter.value < total and finished.n_waiting < finished.parties - 1:
            bar.update(counter.value - bar.n)
            time.sleep(0.2)
        bar.update(counter.value - bar.n)


def _merge(job: _Job, parts: list[dict[str, Any]], start_at: float) -> LoadRun:
    attempts = job.workload.attempts()
    rows = []
    latency, service = new_histogram(), new_histogram()
    cpu = []
    last_end = 0.0
    for part in parts:
        latency.add(HdrHistogram.decode(part["latency"]))
        service.add(HdrHistogram.decode(part["service"]))
        cpu.append(part["cpu_s"])
        for i, code, client, intended, start, end in part["rows"]:
            order = attempts[i].order
            rows.append(
                [
                    order.order_id,
                    order.sku,
                    order.qty,
                    attempts[i].attempt,
                    client,
                    start,
                    end,
                    (end - start) * 1000.0,
                    _OUTCOMES[code].value,
                    "",
                    intended,
                ]
            )
            last_end = max(last_end, end)
    records = pd.DataFrame(rows, columns=[*RECORD_COLUMNS, "intended_s"])
    records = records.sort_values("start_s", ignore_index=True)
    return LoadRun(
        target=job.target,
        layout=job.layout,
        arrivals=job.arrivals,
        records=records,
        latency=latency,
        service=service,
        elapsed_s=last_end,
        client_cpu_s=cpu,
        start_at=start_at,
    )


# --- a worker process ----------------------------------------------------------------------


def _worker(
    job: _Job,
    index: int,
    ready: Any,
    finished: Any,
    go: Any,
    sampled: Any,
    start_at: Any,
    results: Any,
    progress: Any,
) -> None:
    _exit_with_parent()
    try:
        sender = open_sender(job.target, job.redis_url, job.db_url, job.namespace, job.layout)
    except BaseException as exc:
        results.put(("error", _why(exc)))
        ready.abort()
        return
    try:
        attempts = job.workload.attempts()
        schedule = job.arrivals.schedule(len(attempts), seed=job.workload.seed)
        mine = list(range(index, len(attempts), job.layout.processes))
        ready.wait()
        if not go.wait(timeout=_BARRIER_TIMEOUT_S):
            raise RuntimeError("the parent never gave the start")
        part = _send_all(sender, job, index, attempts, schedule, mine, start_at.value, progress)
        finished.wait()
        sampled.wait(timeout=_BARRIER_TIMEOUT_S)
        results.put(("ok", part))
    except BaseException as exc:
        results.put(("error", _why(exc)))
        ready.abort()
        finished.abort()
    finally:
        sender.close()


def _exit_with_parent() -> None:
    """Leave when the parent dies: nobody would give the start or read the results (a worker
    would otherwise wait at a barrier, or block flushing its results into a full pipe)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _why(exc: BaseException) -> str:
    """One line for the parent: the type and first line (URLs in the lab's errors are masked)."""
    return f"{type(exc).__name__}: {first_line(exc)}"


def _send_all(
    sender: Sender,
    job: _Job,
    index: int,
    attempts: list[Any],
    schedule: list[float] | None,
    mine: list[int],
    start_at: float,
    progress: Any,
) -> dict[str, Any]:
    """Run this process's C client threads over its share of the attempts."""
    clients = job.layout.clients
    taken = iter(mine)  # next() on a list iterator is atomic under the GIL
    lock = threading.Lock()
    per_thread: list[tuple[list[tuple[int, int, int, float, float, float]], Any, Any]] = []

    def client(number: int) -> None:
        rows: list[tuple[int, int, int, float, float, float]] = []
        latency, service = new_histogram(), new_histogram()
        client_id = index * clients + number
        done = 0
        for i in taken:
            if schedule is not None:
                intended = start_at + schedule[i]
                wait = intended - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            order = attempts[i].order
            start = time.monotonic()
            outcome = sender.send(order)
            end = time.monotonic()
            if schedule is None:
                intended = start
            rows.append(
                (
                    i,
                    _CODE[outcome],
                    client_id,
                    intended - start_at,
                    start - start_at,
                    end - start_at,
                )
            )
            latency.record_value(max(1, min(HIST_MAX_US, int((end - intended) * 1e6))))
            service.record_value(max(1, min(HIST_MAX_US, int((end - start) * 1e6))))
            done += 1
            if done % 64 == 0:
                with progress.get_lock():
                    progress.value += 64
        with progress.get_lock():
            progress.value += done % 64
        with lock:
            per_thread.append((rows, latency, service))

    delay = start_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    cpu0 = time.process_time()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu = time.process_time() - cpu0
    latency, service = new_histogram(), new_histogram()
    rows = []
    for part_rows, part_latency, part_service in per_thread:
        rows.extend(part_rows)
        latency.add(part_latency)
        service.add(part_service)
    return {"rows": rows, "latency": latency.encode(), "service": service.encode(), "cpu_s": cpu}
