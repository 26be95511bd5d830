"""Merging at gate 2, measured: how fast the executors persist one hot SKU's backlog, task by
task (`task_engine`) and one SKU's batch per transaction (`task_engine_merged`), beside pgbench
running db_only's transaction on one row, all in one `BenchSession`.

For each design, with its executors stopped, the stock of one hot SKU is loaded and N tasks are
recorded straight into the task tables, each row as the design's order path writes it (gate 1 is
bypassed, then Redis is re-warmed from the database minus the backlog: what gate 1 would have
left). Then the executors start and the drain is timed on the database's clock, from just before
they start to the last task's `done_time`. Each drain is checked (`check_lab`): nothing oversold,
deducted twice or lost, Redis equal to the database minus pending tasks, and the database stock
equal to the initial stock minus the units applied. pgbench (PostgreSQL only) then runs
db_only's transaction — one unit, one commit — on one row with as many clients as there are
executors: the hot row's ceiling when every unit takes its own transaction, which the merged
drain is meant to pass. The rates are units persisted per second; they are measured here and
never asserted by a test.

`drain_by_placement` drains the same backlog, spread over a few hot SKUs, with the task tables
placed three ways: every shard in the lab's database (`task_engine`), the shards spread over the
lab's database and a second one on the same server (`task_engine_sharded_db`, shard n in database
n % 2), and over the lab's database and one on a second server, when its URL is given. Each
per-task apply then commits in the lab's database and its claim and completion in the shard's:
what moving two of a task's three transactions off the stock's database buys, or costs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa
from tqdm import tqdm

from inventory_lab import schema
from inventory_lab.backends import db_now
from inventory_lab.bench import BenchSession
from inventory_lab.ceilings import pgbench_tps
from inventory_lab.checker import CheckReport, check_lab
from inventory_lab.designs import design_class
from inventory_lab.errors import BackendError
from inventory_lab.orders import MAX_QTY, Order, Outcome
from inventory_lab.shard_databases import beside
from inventory_lab.tasks.merging import DEFAULT_MAX_BATCH, check_max_batch
from inventory_lab.workload import RECORD_COLUMNS

HOT_SKU = "sku-drain"
PER_TASK, MERGED, PGBENCH = "task_engine", "task_engine_merged", "pgbench"


@dataclass(frozen=True)
class DrainRates:
    """One row per source, the checker's report on each drain, and the ratios the lab reports."""

    rows: pd.DataFrame  # source, units_per_s, note, tasks, seconds, checker_ok
    merged_over_pgbench: float | None  # None: no pgbench rate (not PostgreSQL, no tool)
    merged_over_per_task: float
    checks: dict[str, CheckReport]  # per drained design
    batches: dict[str, int]  # the merged executors' batch counters

    @property
    def checker_ok(self) -> bool:
        return bool(self.rows["checker_ok"].dropna().all())


def drain_rates(
    session: BenchSession,
    *,
    tasks: int = 20_000,
    batch: int = DEFAULT_MAX_BATCH,
    shards: int = 4,
    workers: int = 4,
    qty: int = 1,
    pgbench_clients: int | None = None,
    pgbench_s: int = 5,
    timeout_s: float = 600.0,
    progress: bool = False,
) -> DrainRates:
    """Drain `tasks` tasks of `qty` units of one SKU with each design, then run pgbench (see
    the module docstring). `batch`: the merged executors' `max_batch`; `pgbench_clients`:
    default `workers`."""
    for name, value, low in (("tasks", tasks, 1), ("shards", shards, 1), ("workers", workers, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    check_max_batch(batch)
    if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= MAX_QTY:
        raise ValueError(f"qty must be an integer in [1, {MAX_QTY}], got {qty!r}")
    if tasks * qty > schema.MAX_STOCK:
        raise ValueError(f"tasks * qty must fit the stock column ({schema.MAX_STOCK})")
    clients = workers if pgbench_clients is None else pgbench_clients
    common = {"shards": shards, "workers": workers, "start_workers": False}
    steps: list[tuple[str, dict[str, Any]]] = [
        (PER_TASK, common),
        (MERGED, {**common, "max_batch": batch}),
        (PGBENCH, {}),
    ]
    rows: list[dict[str, Any]] = []
    checks: dict[str, CheckReport] = {}
    batches: dict[str, int] = {}
    for name, options in tqdm(steps, desc="drain", disable=not progress):
        if name == PGBENCH:
            rows.append(_pgbench_row(session, clients, pgbench_s))
            continue
        row, check, counters = _drain(session, name, options, tasks, qty, timeout_s)
        rows.append(row)
        checks[name] = check
        if name == MERGED:
            batches = counters
    frame = pd.DataFrame(rows, dtype=object)  # a missing rate stays None, not NaN
    rate = {row["source"]: row["units_per_s"] for row in rows}
    merged, per_task, pgbench = rate[MERGED], rate[PER_TASK], rate[PGBENCH]
    return DrainRates(
        rows=frame,
        merged_over_pgbench=None if not pgbench else round(merged / pgbench, 3),
        merged_over_per_task=round(merged / per_task, 3),
        checks=checks,
        batches=batches,
    )


def _drain(
    session: BenchSession,
    name: str,
    options: dict[str, Any],
    tasks: int,
    qty: int,
    timeout_s: float,
    skus: int = 1,
) -> tuple[dict[str, Any], CheckReport, dict[str, int]]:
    """One design drains the backlog (round robin over `skus` hot SKUs); its row, the
    checker's report and its batch counters."""
    lab = session.lab
    names = [HOT_SKU] if skus == 1 else [f"{HOT_SKU}-{k}" for k in range(skus)]
    orders = [Order(f"d-{i}", names[i % skus], qty) for i in range(tasks)]
    initial = dict(Counter(o.sku for o in orders))
    initial = {sku: n * qty for sku, n in initial.items()}
    design = design_class(name)(lab, **options)
    try:
        design.setup(initial)
        design.store.add_many(orders)  # type: ignore[attr-defined]
        design.rewarm()  # type: ignore[attr-defined]  # Redis: the DB minus the backlog
        engine = design.task_engine  # type: ignore[attr-defined]
        with lab.engine.connect() as conn:
            started = float(conn.execute(sa.select(db_now())).scalar_one())
        engine.start()
        if not engine.wait_drained(timeout_s):
            raise TimeoutError(f"{name}: tasks still pending after {timeout_s} s")
        engine.stop()
        done = design.store.frame()["done_time"]  # type: ignore[attr-defined]
        seconds = max(float(done.max()) - started, 1e-6)
        counters = engine.batch_counters.as_dict() if hasattr(engine, "batch_counters") else {}
    finally:
        design.close()
    records = pd.DataFrame(
        [
            (o.order_id, o.sku, o.qty, 0, 0, 0.0, 0.0, 0.0, Outcome.ACCEPTED.value, "")
            for o in orders
        ],
        columns=RECORD_COLUMNS,
    )
    store = design.store  # type: ignore[attr-defined]  # its tables may be in other databases
    check = check_lab(lab, initial, records, redis_view=True, task_store=store)
    units = tasks * qty
    with lab.engine.connect() as conn:
        left = schema.read_stock(conn)
    ok = check.ok and check.converged is True and all(left[sku] == 0 for sku in initial)
    if counters:
        mean = counters["merged_tasks"] / counters["batches"] if counters["batches"] else 0.0
        how = (
            f"batches of up to {options['max_batch']}: {counters['batches']} transactions, "
            f"{mean:.1f} tasks each"
        )
    else:
        how = "one transaction per task"
    return (
        {
            "source": name,
            "units_per_s": round(units / seconds, 1),
            "note": f"{how}; {options['workers']} executors, {options['shards']} shards",
            "tasks": tasks,
            "seconds": round(seconds, 3),
            "checker_ok": bool(ok),
        },
        check,
        counters,
    )


def _pgbench_row(session: BenchSession, clients: int, seconds: int) -> dict[str, Any]:
    """pgbench on one row that cannot run out (PostgreSQL only; elsewhere None, with why)."""
    if session.lab.dialect == "postgresql":
        schema.reset(session.lab.engine, {HOT_SKU: schema.MAX_STOCK})
    ceiling = pgbench_tps(session.db_url, HOT_SKU, clients=clients, seconds=seconds)
    note = ceiling.note or f"db_only's transaction on one row, {clients} clients, {seconds} s"
    return {
        "source": PGBENCH,
        "units_per_s": None if ceiling.rate is None else round(ceiling.rate, 1),
        "note": note,
        "tasks": None,
        "seconds": None if ceiling.rate is None else float(seconds),
        "checker_ok": None,
    }


ONE_DATABASE, TWO_DATABASES, TWO_SERVERS = "one database", "two databases", "two servers"


@dataclass(frozen=True)
class PlacementRates:
    """One row per placement of the task tables, and the checker's report on each drain."""

    rows: pd.DataFrame  # placement, design, units_per_s, note, tasks, seconds, checker_ok
    checks: dict[str, CheckReport]  # per placement

    @property
    def checker_ok(self) -> bool:
        return bool(self.rows["checker_ok"].all())

    def over_one_database(self) -> dict[str, float]:
        """Each placement's rate divided by the one-database rate measured in the same call."""
        rate = dict(zip(self.rows["placement"], self.rows["units_per_s"], strict=True))
        return {name: round(r / rate[ONE_DATABASE], 3) for name, r in rate.items()}


def drain_by_placement(
    session: BenchSession,
    *,
    tasks: int = 10_000,
    skus: int = 2,
    shards: int = 4,
    workers: int = 4,
    qty: int = 1,
    merged: bool = False,
    second_server_url: str | None = None,
    placements: Sequence[str] = (ONE_DATABASE, TWO_DATABASES, TWO_SERVERS),
    timeout_s: float = 600.0,
    progress: bool = False,
) -> PlacementRates:
    """Drain `tasks` tasks of `qty` units, round robin over `skus` hot SKUs, with the shards in
    the lab's database, in two databases of its server (the second: `shard_databases.beside`,
    created if missing) and, given `second_server_url` (a database on another server, created
    if missing), in two servers; each drain checked (see the module docstring). `merged`: the
    merging executors (`task_engine_merged` and its sharded twin) instead of one transaction
    per task. The two-server placement is skipped without `second_server_url`."""
    for name, value in (("tasks", tasks), ("skus", skus), ("shards", shards), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if shards < 2:
        raise ValueError("shards must be at least 2 to spread them over two databases")
    if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= MAX_QTY:
        raise ValueError(f"qty must be an integer in [1, {MAX_QTY}], got {qty!r}")
    if tasks * qty > schema.MAX_STOCK:
        raise ValueError(f"tasks * qty must fit the stock column ({schema.MAX_STOCK})")
    unknown = set(placements) - {ONE_DATABASE, TWO_DATABASES, TWO_SERVERS}
    if unknown or not placements:
        raise ValueError(
            f"placements: choose from {ONE_DATABASE!r}, {TWO_DATABASES!r}, "
            f"{TWO_SERVERS!r}; got {list(placements)!r}"
        )
    if second_server_url is not None and session.lab.dialect == "sqlite":
        raise BackendError("a second server needs a database server: the lab's is SQLite")
    base = MERGED if merged else PER_TASK
    common: dict[str, Any] = {"shards": shards, "workers": workers, "start_workers": False}
    if merged:
        common["max_batch"] = DEFAULT_MAX_BATCH
    steps: list[tuple[str, str, dict[str, Any]]] = []
    for placement in placements:
        if placement == ONE_DATABASE:
            steps.append((placement, base, common))
        elif placement == TWO_DATABASES:
            second = beside(session.db_url)
            steps.append((placement, f"{base}_sharded_db", {**common, "shard_urls": [second]}))
        elif second_server_url is not None:
            shard_urls = [second_server_url]
            steps.append((placement, f"{base}_sharded_db", {**common, "shard_urls": shard_urls}))
    rows: list[dict[str, Any]] = []
    checks: dict[str, CheckReport] = {}
    for placement, name, options in tqdm(steps, desc="placement", disable=not progress):
        row, check, _counters = _drain(session, name, options, tasks, qty, timeout_s, skus)
        rows.append({"placement": placement, "design": name, **row})
        checks[placement] = check
    frame = pd.DataFrame(rows).drop(columns=["source"])
    return PlacementRates(rows=frame, checks=checks)
