"""Task-engine experiments: drain rate, accept-to-persist lag, and the failure runs.

`drain_rate` records N tasks with the workers stopped, then starts W workers on S shards and
times the drain. `failure_run` runs a workload against `task_engine` with one fault switched on,
drains, checks, reconciles (repairs) and checks again, keeping everything a notebook needs to
tell the story: the records, the tasks with their timestamps, both checks and both
reconciliation reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import pandas as pd

from inventory_lab.checker import CheckReport, check_lab
from inventory_lab.designs.task_engine import TaskEngineDesign
from inventory_lab.faults import DbOutage, crash_between_gates
from inventory_lab.lab import Lab
from inventory_lab.orders import Order
from inventory_lab.reconcile import reconcile
from inventory_lab.tasks.workers import TaskEngine
from inventory_lab.workload import Workload, run_workload

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
    finally:
        design.close()
    return FailureRun(
        fault, records, tasks, counters, before, drift_before, drift_after, after, len(crashed)
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
    design.task_engine.start()  # start() recovers the dead boot's tasks without waiting for a lease
