"""Task-engine experiments: accepted now and persisted behind, drain rate, accept-to-persist lag,
and the failure runs.

`backlog_over_time` and `acceptance_vs_persistence` read one run's task table: when each task was
recorded (the order accepted) and when it was applied (persisted), both on the database's clock.
`drain_rate` records N tasks with the workers stopped, then starts W workers on S shards and
times the drain. `failure_run` runs a workload against `task_engine` with one fault switched on,
drains, checks, reconciles (repairs) and checks again, keeping everything a notebook needs to
tell the story: the records, the tasks with their timestamps, both checks and both
reconciliation reports. `retry_run` does the same with an apply that fails (`FailingApply`), so
that the exception worker's path FAILED -> retry -> DONE or DEAD fires.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import pandas as pd

from inventory_lab.checker import CheckReport, check_lab
from inventory_lab.designs.task_engine import TaskEngineDesign
from inventory_lab.faults import DbOutage, crash_between_gates
from inventory_lab.lab import Lab
from inventory_lab.orders import Order
from inventory_lab.reconcile import reconcile
from inventory_lab.tasks.workers import ApplyFn, TaskEngine
from inventory_lab.workload import Attempt, Workload, run_workload

FAULTS = ("none", "worker_crash", "crash_between_gates", "db_outage", "restart")


def drain_rate(
    lab: Lab, *, shards: int, workers: int, tasks: int = 1000, claim: str = "single"
) -> dict[str, object]:
    """Tasks applied per second by `workers` executors over `shards` task tables."""
    design = TaskEngineDesign(lab, shards=shards, workers=workers, start_workers=False, claim=claim)
    design.setup({"sku-hot": tasks})
    try:
        for i in range(tasks):
            design.store.add(Order(f"d-{i}", "sku-hot", 1))  # record tasks directly
        start = time.perf_counter()
        design.drain()
        seconds = time.perf_counter() - start
    finally:
        design.close()
    return {
        "db": lab.db_url,
        "shards": shards,
        "workers": workers,
        "claim": claim,
        "tasks": tasks,
        "seconds": round(seconds, 3),
        "rate": round(tasks / seconds, 1),
    }


def lag_ms(tasks: pd.DataFrame) -> pd.Series:
    """Accept-to-persisted lag of every completed task, in milliseconds."""
    done = tasks.dropna(subset=["done_time"])
    return (done["done_time"] - done["created_time"]) * 1000.0


def backlog_over_time(tasks: pd.DataFrame) -> pd.DataFrame:
    """Tasks accepted and persisted over time, and the backlog between them.

    `tasks` is `TaskStore.frame()`. One row per moment a task was recorded (its order accepted)
    or applied (persisted: `done_time`), in time order, both on the database's clock: t_ms since
    the first task was recorded, `accepted` and `persisted` (cumulative counts) and `backlog`
    (accepted, not yet persisted). A task recorded and done at the same instant counts as
    accepted first.
    """
    t0 = float(tasks["created_time"].min())
    done = tasks["done_time"].dropna()
    events = pd.DataFrame(
        {
            "t_ms": pd.concat([tasks["created_time"], done], ignore_index=True).sub(t0) * 1000.0,
            "accepted": [1] * len(tasks) + [0] * len(done),
            "persisted": [0] * len(tasks) + [1] * len(done),
        }
    )
    events = events.sort_values(["t_ms", "persisted"], kind="stable", ignore_index=True)
    events[["accepted", "persisted"]] = events[["accepted", "persisted"]].cumsum()
    events["backlog"] = events["accepted"] - events["persisted"]
    return events


def acceptance_vs_persistence(tasks: pd.DataFrame) -> dict[str, float | int]:
    """One run's acceptance against its persistence, from its task table (database clock).

    `accept_ms`: from the first task recorded to the last (the order path's work);
    `persist_ms`: from the first task applied to the last (the executors'); each with its rate.
    `waiting_at_last_acceptance`: tasks not applied before the last order was accepted (at least
    the last order's own); `drained_ms_after`: how long after the last acceptance the last task
    was applied (never negative: every task is applied after it was recorded).
    """
    created, done = tasks["created_time"], tasks["done_time"].dropna()
    if not len(done):
        raise ValueError("no task was applied: drain the engine before reading its lag")
    accept_s = float(created.max() - created.min())
    persist_s = float(done.max() - done.min())
    last_accepted = float(created.max())
    return {
        "tasks": len(tasks),
        "persisted": len(done),
        "accept_ms": round(accept_s * 1000.0, 1),
        "accepted_per_s": round(len(tasks) / accept_s, 1) if accept_s else float("inf"),
        "persist_ms": round(persist_s * 1000.0, 1),
        "persisted_per_s": round(len(done) / persist_s, 1) if persist_s else float("inf"),
        "waiting_at_last_acceptance": int(
            (tasks["done_time"].isna() | (tasks["done_time"] >= last_accepted)).sum()
        ),
        "drained_ms_after": round((float(done.max()) - last_accepted) * 1000.0, 1),
    }


@dataclass(frozen=True)
class FailureRun:
    fault: str
    records: pd.DataFrame
    tasks: pd.DataFrame
    counters: dict[str, int]
    before: CheckReport  # after drain, before reconciliation
    drift_before: pd.DataFrame
    drift_after: pd.DataFrame
    after: CheckReport  # after reconciliation (repair)
    crashed_orders: int
    killed_holding: tuple[tuple[int, int], ...] = ()  # (shard, id) a dead executor held
    applies: pd.DataFrame = field(default_factory=pd.DataFrame)  # retry_run: every apply call


def failure_run(
    lab: Lab,
    fault: str,
    workload: Workload | None = None,
    *,
    concurrency: int = 6,
    shards: int = 3,
    workers: int = 3,
    lease_s: float = 0.3,
) -> FailureRun:
    """Run `task_engine` under one fault, drain, check, reconcile, check again."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; choose one of {', '.join(FAULTS)}")
    workload = workload or Workload(orders=300, skus=2, stock=80, retries=0.3, seed=6)
    if fault == "restart":
        lease_s = 3600.0  # no unlock worker may free the dead boot's tasks: only the restart
    design = TaskEngineDesign(
        lab, shards=shards, workers=workers, lease_s=lease_s, backoff_s=0.02, max_attempts=50
    )
    initial = workload.initial_stock()
    attempts = workload.attempts()
    design.setup(initial)
    crashed: list[Order] = []
    pace: Callable[[int], None] | None = None
    try:
        if fault == "worker_crash":
            design.task_engine.kill_after_claim(2)
        fence: AbstractContextManager[object] = nullcontext()
        if fault == "crash_between_gates":
            fence = crash_between_gates(design, times=4)
        elif fault == "db_outage":
            # Paced by the workload, not the clock: the database is down from the first
            # quarter of the attempts to the half, however fast this machine runs them.
            fence = outage = DbOutage(lab.engine)
            down, up = len(attempts) // 4, len(attempts) // 2

            def pace(i: int) -> None:
                if i == down:
                    outage.active.set()
                elif i == up:
                    outage.active.clear()

        with fence as crashed_list:
            if fault == "restart":
                # every executor dies on its first claim, holding its batch, until the restart
                design.task_engine.kill_after_claim(workers)
                half = len(attempts) // 2
                first = run_workload(design, attempts[:half], concurrency=concurrency)
                _restart(design)
                second = run_workload(design, attempts[half:], concurrency=concurrency)
                records = pd.concat([first, second], ignore_index=True)
            else:
                records = run_workload(design, attempts, concurrency=concurrency, on_attempt=pace)
            if isinstance(crashed_list, list):
                crashed = list(crashed_list)
        design.drain()  # after the fault ended, as an operator would
        before = check_lab(lab, initial, records, redis_view=True)
        drift_before = reconcile(lab, repair=True)
        drift_after = reconcile(lab)
        after = check_lab(lab, initial, records, redis_view=True)
        counters = design.task_engine.counters.as_dict()
        tasks = design.store.frame()
        killed_holding = tuple(design.task_engine.killed_holding)
    finally:
        design.close()
    return FailureRun(
        fault,
        records,
        tasks,
        counters,
        before,
        drift_before,
        drift_after,
        after,
        len(crashed),
        killed_holding,
    )


class ApplyFailed(Exception):
    """A simulated failure of a task's apply: what a deadlock or a timeout is to the engine."""


class FailingApply:
    """The engine's `apply`, failing on purpose: the order named in `fails` fails that many
    times before its apply goes through (None: every time). Every call is logged."""

    def __init__(self, apply: ApplyFn, fails: Mapping[str, int | None]) -> None:
        for order_id, times in fails.items():
            if times is not None and (isinstance(times, bool) or not isinstance(times, int)):
                raise ValueError(f"fails[{order_id!r}] must be a count or None, got {times!r}")
            if times is not None and times < 1:
                raise ValueError(f"fails[{order_id!r}] must be at least 1, got {times}")
        self.apply = apply
        self.fails = dict(fails)
        self.calls: list[dict[str, object]] = []
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._t0 = time.perf_counter()

    def __call__(self, order: Order) -> bool:
        with self._lock:
            self._seen[order.order_id] += 1
            call = self._seen[order.order_id]
        times = self.fails.get(order.order_id, 0)
        failing = times is None or call <= times
        outcome = "failed"
        try:
            if failing:
                raise ApplyFailed(f"simulated failure {call} of {order.order_id}")
            fresh = self.apply(order)
            outcome = "applied" if fresh else "already applied"
            return fresh
        finally:
            with self._lock:
                self.calls.append(
                    {
                        "order_id": order.order_id,
                        "call": call,
                        "t_ms": round((time.perf_counter() - self._t0) * 1000.0, 1),
                        "outcome": outcome,
                    }
                )

    def frame(self) -> pd.DataFrame:
        """Every call in time order: order_id, call (1, 2, ... per order), t_ms, outcome."""
        with self._lock:
            calls = list(self.calls)
        return pd.DataFrame(calls, columns=["order_id", "call", "t_ms", "outcome"])


def retry_run(
    lab: Lab,
    fails: Mapping[str, int | None] | None = None,
    *,
    orders: int = 6,
    max_attempts: int = 3,
    backoff_s: float = 0.02,
) -> FailureRun:
    """`task_engine` with an apply that fails: the exception worker's path, end to end.

    `orders` orders r-0, r-1, ... of one unit each for `sku-r` (stock enough for all), sent by two
    clients; `fails` (default: r-0 fails every time, r-1 twice) names how often each order's
    apply fails. A failed task goes FAILED, back to NEW after its backoff, and DEAD once it has
    failed `max_attempts` times; then drain, check, reconcile (repair), check again, as
    `failure_run`. `applies` logs every apply call.
    """
    fails = {"r-0": None, "r-1": 2} if fails is None else dict(fails)
    ids = [f"r-{i}" for i in range(orders)]
    unknown = sorted(set(fails) - set(ids))
    if unknown:
        raise ValueError(f"fails names orders this run does not send: {', '.join(unknown)}")
    design = TaskEngineDesign(
        lab, shards=2, workers=2, lease_s=30.0, backoff_s=backoff_s, max_attempts=max_attempts
    )
    failing = FailingApply(design.apply, fails)
    design.task_engine.apply = failing
    initial = {"sku-r": orders}
    design.setup(initial)
    try:
        attempts = [Attempt(Order(order_id, "sku-r", 1), 0) for order_id in ids]
        records = run_workload(design, attempts, concurrency=2)
        design.drain()
        before = check_lab(lab, initial, records, redis_view=True)
        drift_before = reconcile(lab, repair=True)
        drift_after = reconcile(lab)
        after = check_lab(lab, initial, records, redis_view=True)
        counters = design.task_engine.counters.as_dict()
        tasks = design.store.frame()
    finally:
        design.close()
    return FailureRun(
        "apply_fails",
        records,
        tasks,
        counters,
        before,
        drift_before,
        drift_after,
        after,
        0,
        applies=failing.frame(),
    )


def _restart(design: TaskEngineDesign) -> None:
    """The old process is gone (its executors died holding tasks); a new one starts, recovers."""
    old = design.task_engine
    deadline = time.monotonic() + 10
    while old.counters.killed < old.workers and time.monotonic() < deadline:
        time.sleep(0.01)  # each executor dies on its first claim
    old.stop()
    design.task_engine = TaskEngine(
        design.store,
        design.apply,
        workers=old.workers,
        lease_s=3600,
        backoff_s=old.backoff_s,
        max_attempts=old.max_attempts,
        node=old.node,
    )
    for name, value in old.counters.as_dict().items():  # one set of counters for the whole run
        design.task_engine.counters.add(name, value)
    design.task_engine.killed_holding.extend(old.killed_holding)
    design.task_engine.start()  # start() recovers the dead boot's tasks without waiting for a lease
