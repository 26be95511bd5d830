"""One experiment: set up a design, run a workload against it, check the invariants, measure.

This is what the CLI's `run` and the notebooks call. The report carries the checker's findings,
the outcome counts, throughput and latency, and says which backends and machine it came from, so
that every number the lab shows can be traced to a run someone can repeat.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from inventory_lab.checker import CheckReport, check_lab
from inventory_lab.designs import Design, design_class, multi_line_design_names
from inventory_lab.errors import LabError
from inventory_lab.history import Event, from_records
from inventory_lab.lab import Lab
from inventory_lab.orders import Outcome
from inventory_lab.stored_outcome import wrap
from inventory_lab.workload import Workload, run_workload


def source_commit() -> str | None:
    """The git commit the lab runs from (with "-dirty" if tracked files outside data/ were
    changed), or None outside a git checkout: stored results say which code made them."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        )
        changed = subprocess.run(
            # results being written under data/ do not make the code that writes them dirty
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!data"],
            cwd=root,
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if changed.stdout.strip() else "")


def machine() -> str:
    """A short, stable description of where a run happened."""
    host = platform.node() or "unknown"
    return f"{host} ({platform.system()} {platform.machine()}, {os.cpu_count()} cpus)"


@dataclass(frozen=True)
class RunReport:
    design: str
    redis: str
    db: str
    machine: str
    started_at: str
    workload: dict[str, Any]
    concurrency: int
    attempts: int
    accepted: int
    sold_out: int
    duplicates: int
    rejected: int
    throttled: int
    errors: int
    unknown: int  # answers the client never got: resolved by the checker below
    oversold: int
    double_deducted: int
    lost: int
    unaccounted: int
    converged: bool | None
    false_sold_out: int  # units left unsold that sold-out refusals could have taken
    false_sold_out_orders: int  # the refused order lines behind those units
    false_duplicates: int
    unknown_persisted: int
    unknown_not_persisted: int
    elapsed_s: float
    throughput: float  # attempts answered per second
    latency_ms: dict[str, float]
    options: dict[str, Any] = field(default_factory=dict)
    partial: int = 0  # checkouts taken in part (multi-line orders)
    in_progress: int = 0  # answers "in progress" of a stored-outcome idempotency key
    mismatch: int = 0  # answers "mismatch" (the key was used with another payload)
    idempotency: str = "set_nx"  # the article's SET NX code, or stored outcomes in front

    @property
    def orders(self) -> int:
        return int(self.workload["orders"])

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["orders"] = self.orders
        return data


@dataclass(frozen=True)
class Experiment:
    report: RunReport
    check: CheckReport
    records: pd.DataFrame
    design: Design  # the instance, closed; its counters (given_back, watch_retries…) stay

    def events(self) -> list[Event]:
        """The run's history: each attempt an invocation and its completion, then the final
        stock read back (history.py)."""
        return from_records(self.records, final_stock=self.check.final_stock)


def run_experiment(
    lab: Lab,
    design: str = "db_only",
    workload: Workload | None = None,
    *,
    concurrency: int = 8,
    options: Mapping[str, Any] | None = None,
    progress: bool = False,
    idempotency: str = "set_nx",
) -> Experiment:
    """Reset the lab's state, run the workload against the named design, check and report.

    `idempotency="stored"` puts idempotency keys that store their outcome in front of the design
    (stored_outcome.py); `workload.lines > 1` sends checkouts (a design with `takes_lines`)."""
    workload = workload or Workload()
    options = dict(options or {})
    cls = design_class(design)
    if workload.lines > 1 and not cls.takes_lines:
        raise LabError(
            f"{design} takes one line per order; multi-line orders need one of "
            f"{', '.join(multi_line_design_names())}"
        )
    if workload.lines > 1 and idempotency != "set_nx":
        raise LabError("stored idempotency keys wrap single-line orders; use lines=1")
    instance = wrap(cls(lab, **options), lab, idempotency)
    initial = workload.initial_stock()
    attempts = workload.attempts()
    instance.setup(initial)
    try:
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        records = run_workload(instance, attempts, concurrency=concurrency, progress=progress)
        instance.drain()
        findings = check_lab(lab, initial, records, redis_view=cls.uses_redis)
    finally:
        instance.close()
    report = _report(lab, design, workload, concurrency, options, started_at, records, findings)
    report = replace(report, idempotency=idempotency)
    return Experiment(report=report, check=findings, records=records, design=instance)


def _report(
    lab: Lab,
    design: str,
    workload: Workload,
    concurrency: int,
    options: dict[str, Any],
    started_at: str,
    records: pd.DataFrame,
    findings: CheckReport,
) -> RunReport:
    counts = records["outcome"].value_counts()
    elapsed = float(records["end_s"].max()) if len(records) else 0.0
    latency = records["latency_ms"]
    return RunReport(
        design=design,
        redis=lab.redis_url,
        db=lab.db_url,
        machine=machine(),
        started_at=started_at,
        workload=asdict(workload),
        concurrency=concurrency,
        attempts=len(records),
        accepted=int(counts.get(Outcome.ACCEPTED.value, 0)),
        sold_out=int(counts.get(Outcome.SOLD_OUT.value, 0)),
        duplicates=int(counts.get(Outcome.DUPLICATE.value, 0)),
        rejected=int(counts.get(Outcome.REJECTED.value, 0)),
        throttled=int(counts.get(Outcome.THROTTLED.value, 0)),
        errors=int(counts.get(Outcome.ERROR.value, 0)),
        unknown=int(counts.get(Outcome.UNKNOWN.value, 0)),
        oversold=findings.oversold,
        double_deducted=findings.double_deducted,
        lost=findings.lost,
        unaccounted=findings.unaccounted,
        converged=findings.converged,
        false_sold_out=findings.false_sold_out,
        false_sold_out_orders=findings.false_sold_out_orders,
        false_duplicates=findings.false_duplicates,
        unknown_persisted=findings.unknown_persisted,
        unknown_not_persisted=findings.unknown_not_persisted,
        elapsed_s=round(elapsed, 4),
        throughput=round(len(records) / elapsed, 1) if elapsed > 0 else 0.0,
        latency_ms={
            "p50": round(float(latency.quantile(0.50)), 3) if len(latency) else 0.0,
            "p99": round(float(latency.quantile(0.99)), 3) if len(latency) else 0.0,
        },
        options=options,
        partial=findings.partial,
        in_progress=int(counts.get(Outcome.IN_PROGRESS.value, 0)),
        mismatch=int(counts.get(Outcome.MISMATCH.value, 0)),
    )


def sweep(
    lab: Lab,
    design: str,
    workloads: Mapping[str, Workload],
    concurrencies: Sequence[int],
    *,
    options: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run `design` for every (workload, concurrency) pair; one row of the report per run.

    The `workload` column holds the label given in `workloads` (e.g. "hot SKU", "spread").
    """
    rows = []
    cells = [(label, c) for label in workloads for c in concurrencies]
    for label, concurrency in tqdm(cells, desc=f"{design} sweep", disable=not progress):
        report = run_experiment(
            lab, design, workloads[label], concurrency=concurrency, options=options
        ).report
        row = report.to_dict()
        row.update(workload=label, p50_ms=row["latency_ms"]["p50"], p99_ms=row["latency_ms"]["p99"])
        rows.append(row)
    return pd.DataFrame(rows)
