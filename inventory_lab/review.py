"""The design review matrix: every design under every fault, several seeds, written expectations.

A *row* is a design with its options: each design as the lab recommends it, each Redis design
also with the database guard (`+guard`: gate 2's `UPDATE … WHERE num - q >= 0`), and the
article's handling of mid-flight faults (`as written`: any gate-2 error gives the stock back, a
re-warm overwrites Redis unfenced), without and with the guard, for the designs the article
describes: where the article's design oversells, the guard's column shows what stopping it
costs; and the real orders of notebook 12: the multi-line designs sending 2-line checkouts (a
checkout taken in part breaks the cell), `two_gate_lua` behind idempotency keys that store the
outcome, and the `reservation` design; and the designs beyond the article (notebook 11), as
the lab builds them. A *fault* is either in the workload (clients resend
orders; replies are lost) or struck by the nemesis (nemesis.py) while orders are in flight,
several times per run at seeded moments.

A cell runs its row under its fault once per seed: a small hot workload (seeded too) through
several clients, with the nemesis striking; then heals, drains, checks the invariants, reconciles
Redis with the database (repairing) and checks again. The cell's verdict is the *worst* seen over
its seeds. `expectation()` writes down, with the reason, what each cell must show, may show, and
must never show; `verdict` compares the worst seen with it, and the tests fail when a run
disagrees. A finding that shows in some seeds and not in others is written as "may", never
retried away. `run_seeds` keeps the runs themselves (records, the nemesis's history, the
checker's reports before and after the repair) for a notebook to tell a story with, and
`judged` turns runs already made into cells, judged the same way, without running them again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from tqdm import tqdm

from inventory_lab import nemesis, redis_cluster
from inventory_lab.backends import redis_client
from inventory_lab.checker import CheckReport, check_lab
from inventory_lab.designs import BEYOND_THE_ARTICLE, design_class, redis_design_names
from inventory_lab.designs.base import BaseDesign
from inventory_lab.designs.task_engine import TaskEngineDesign
from inventory_lab.designs.two_gate import TwoGate
from inventory_lab.experiment import machine
from inventory_lab.history import Event, from_records
from inventory_lab.lab import Lab
from inventory_lab.reconcile import reconcile
from inventory_lab.redis_cluster import LocalCluster
from inventory_lab.redis_server import RedisServer, available
from inventory_lab.stored_outcome import wrap
from inventory_lab.tasks import Status
from inventory_lab.workload import Workload, run_workload

WORKLOAD_FAULTS = ("none", "duplicate", "lost_reply")
FAULTS = (*WORKLOAD_FAULTS, *nemesis.FAULTS)
RECOMMENDED = "task_engine"
# the task engines: each row of them gets the same lease and retry options
TASK_ENGINES = (
    RECOMMENDED,
    "task_engine_merged",
    "task_engine_sharded_db",
    "task_engine_merged_sharded_db",
)
INVARIANTS = ("oversold", "double_deducted", "lost", "unaccounted")
BASE_WORKLOAD = Workload(orders=150, skus=2, stock=40, skew=1.1, seed=7)
CONCURRENCY = 6
FAILOVER_NODE_TIMEOUT_MS = 500  # the review's own cluster: a replica takes over within ~2 s
REDIS_DESIGNS = tuple(redis_design_names())
AS_WRITTEN = ("two_gate", "two_gate_lua", "task_engine")  # the article's own designs


VARIANTS = {
    "": "",
    "guard": " +guard",
    "as written": " (as written)",
    "as written +guard": " (as written) +guard",
    "lines": " (2-line checkouts)",
    "stored": " +stored outcomes",
}
MULTI_LINE = ("db_only", "two_gate_lua", "task_engine")  # the rows with checkouts


@dataclass(frozen=True)
class Row:
    design: str
    variant: str = ""  # a key of VARIANTS

    @property
    def label(self) -> str:
        return self.design + VARIANTS[self.variant]

    @property
    def lines(self) -> int:
        """SKUs per order: the `lines` rows send checkouts of two lines, all-or-nothing."""
        return 2 if self.variant == "lines" else 1

    @property
    def idempotency(self) -> str:
        """The article's SET NX code, or idempotency keys that store the outcome in front."""
        return "stored" if self.variant == "stored" else "set_nx"

    def options(self, concurrency: int) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.design == "naive":  # rounds of all clients: the race happens on every run
            options.update(lockstep=concurrency, lockstep_timeout_s=2.0)
        if self.design in TASK_ENGINES:
            options.update(lease_s=0.3, backoff_s=0.02, max_backoff_s=0.3, max_attempts=12)
        if "guard" in self.variant:
            options["db_guard"] = True
        if "as written" in self.variant:
            options["as_written"] = True
        return options


ROWS: tuple[Row, ...] = (
    Row("naive"),
    Row("db_only"),
    *(Row(name, variant) for name in REDIS_DESIGNS for variant in ("", "guard")),
    *(Row(name, v) for name in AS_WRITTEN for v in ("as written", "as written +guard")),
    *(Row(name, "lines") for name in MULTI_LINE),
    Row("two_gate_lua", "stored"),
    Row("reservation"),
    *(Row(name) for name in BEYOND_THE_ARTICLE),
)


def row_named(label: str) -> Row:
    for row in ROWS:
        if row.label == label:
            return row
    known = ", ".join(row.label for row in ROWS)
    raise ValueError(f"unknown row {label!r}; choose one of: {known}")


# --- what each cell is expected to show -------------------------------------------------------


@dataclass(frozen=True)
class Expectation:
    must: frozenset[str] = frozenset()  # invariants broken (after reconciliation) in the worst
    may: frozenset[str] = frozenset()  # invariants that may be broken
    drift: str = "never"  # Redis vs DB before the repair: "must", "may" or "never"
    why: str = ""


_NAIVE = frozenset({"oversold", "unaccounted"})
_DECREMENT_KEPT = ("two_gate", "two_gate_pipeline", "two_gate_multi", "two_gate_watch")
_RESENT = frozenset({"duplicate", "lost_reply"})


def expectation(row: Row, fault: str) -> Expectation:
    """What the cell (row, fault) must, may and must never show, and why."""
    design, variant = row.design, row.variant
    if design == "naive":
        if fault in ("db_outage", "db_kill"):
            return Expectation(
                may=_NAIVE | {"double_deducted"},
                why="lost updates oversell while the database answers; during the outage few "
                "orders get through, so a run may end before the race reaches the stock",
            )
        if fault in _RESENT:
            return Expectation(
                must=_NAIVE | {"double_deducted"},
                why="lock-step clients lose updates; without an anti-repeat code every resend "
                "deducts again",
            )
        return Expectation(
            must=_NAIVE,
            may=frozenset({"double_deducted"}),
            why="lock-step clients lose updates; a resend after an error may deduct again",
        )
    drift = "never"
    may: set[str] = set()
    why = []
    if design != "db_only":
        if fault == "redis_failover":
            return _failover_expectation(row)
        if fault == "crash_between_gates":
            drift, why = "must", ["Redis keeps the decrements of the orders the app died with"]
        elif fault == "anti_repeat_expiry" and design in _DECREMENT_KEPT:
            drift = "may"  # when a resend of an accepted order falls in the window
            why = ["a late resend's decrement stays when gate 2 calls it duplicate"]
        elif fault in ("redis_kill", "redis_restart", "redis_data_loss", "rewarm"):
            drift = "may"
            why = [
                "a command cut after it ran, codes lost with the data, or a decrement that "
                "landed on a copy that was then replaced, leave Redis short until reconciled"
            ]
        if variant.startswith("as written") and fault in (
            "lost_commit_ack",
            "db_kill",
            "rewarm",
            "redis_data_loss",
            "redis_restart",
        ):
            drift = "may"
            why.append(
                "as written, a lost commit acknowledgement gives the stock back and it is sold "
                "again, and an unfenced re-warm hands out again the units of orders between "
                "the gates"
            )
            if "guard" not in variant:
                may.add("oversold")
            elif design == RECOMMENDED:  # the guard refuses the task only after it was accepted
                may |= {"oversold", "lost"}
                why.append(
                    "the guard keeps the stock row from going below zero, but the task engine "
                    "has told the client `accepted` already: the promise is broken (oversold "
                    "counts promises) and the task dies (lost)"
                )
            else:
                why.append("the guard stops the oversell: gate 2 refuses, the client hears so")
    if not why:
        why = ["the design keeps every invariant; unknown outcomes are resolved before undoing"]
    return Expectation(may=frozenset(may), drift=drift, why="; ".join(why))


def _failover_expectation(row: Row) -> Expectation:
    """Acknowledged gate-1 writes lost with a cluster master: only a guard at gate 2 stops
    the oversell (the epoch fence cannot: the promoted copy carries the epoch it had)."""
    why = [
        "the promoted replica lacks the decrements and codes the dead master acknowledged: Redis "
        "holds more than the database says is left until reconciliation, and sells it"
    ]
    may = set()
    if "guard" not in row.variant:
        may.add("oversold")
        why.append("without a guard, gate 2 persists what those units let through")
    elif row.design in TASK_ENGINES:
        may |= {"oversold", "lost"}
        why.append(
            "the guard refuses the task after the client heard `accepted`: the promise is broken "
            "(oversold counts promises) and the task dies (lost)"
        )
    else:
        why.append("the guard refuses at gate 2 what Redis let through; the client hears so")
    return Expectation(may=frozenset(may), drift="may", why="; ".join(why))


# --- one run, one cell ------------------------------------------------------------------------


CRASH_DETAIL = "SimulatedCrash: app died between the gates"
GUARD_DETAIL = "DB guard"  # in the detail of an order the guard refused at gate 2


@dataclass(frozen=True)
class SeedRun:
    """One seed of one cell, with everything a notebook needs to tell its story."""

    row: Row
    fault: str
    seed: int
    records: pd.DataFrame
    history: pd.DataFrame  # the nemesis's events, on the records' clock
    before: CheckReport  # after healing and draining, before reconciliation
    repair: pd.DataFrame | None  # reconcile(repair=True): the drift per SKU, and the repair
    after: CheckReport
    clients_s: float  # the clients' time, without the drain
    guard_refusals: int  # orders the DB guard refused: at gate 2, or as a task that died

    def events(self) -> list[Event]:
        """The run's history: the clients' invocations and completions and the nemesis's
        events, on one clock, then the stock the run left read back, before any repair
        (history.py)."""
        return from_records(self.records, self.history, final_stock=self.before.final_stock)

    @property
    def drift_before(self) -> int:
        return 0 if self.repair is None else int(self.repair["drift"].abs().sum())

    @property
    def died_between_gates(self) -> int:
        """Orders the app died with between the gates (what a must-drift cell needs to see)."""
        return int(self.records["detail"].str.startswith(CRASH_DETAIL).sum())

    @property
    def broken(self) -> tuple[str, ...]:
        names = tuple(name for name in INVARIANTS if getattr(self.after, name) > 0)
        names += ("partial",) if self.after.partial else ()  # a checkout taken in part
        return names + (("converged",) if self.after.converged is False else ())

    def summary(self) -> dict[str, Any]:
        """One line for a table: what the clients heard and what the checker found.

        `lowest_db_stock` is the lowest final stock row: below zero only when gate 2 deducted
        what the stock did not have (no guard).
        """
        outcomes = self.records["outcome"]
        return {
            "fault": self.fault,
            "row": self.row.label,
            "seed": self.seed,
            "strikes": int(self.history["event"].isin(["start", "strike"]).sum()),
            "accepted": int((outcomes == "accepted").sum()),
            "unknown": int((outcomes == "unknown").sum()),
            "unknown_persisted": self.before.unknown_persisted,
            "oversold": self.after.oversold,
            "lost": self.after.lost,
            "drift_before": self.drift_before,
            "guard_refusals": self.guard_refusals,
            "lowest_db_stock": int(self.after.per_sku["db_final"].min()),
        }


def applies(lab: Lab, row: Row, fault: str) -> bool:
    if fault in WORKLOAD_FAULTS:
        return True
    if fault in ("redis_restart", "redis_pause") and nemesis.real_redis(lab) and not available():
        return False  # needs a redis-server of its own
    if fault == "redis_failover":  # on a cluster of the review's own, beside a real Redis
        own = nemesis.real_redis(lab) and redis_cluster.available()
        # a checkout's one script cannot run on a cluster (its SKUs' keys lie in several slots:
        # CROSSSLOT, tests/test_redis_cluster.py): the checkout rows have nothing to show there
        return own and row.lines == 1 and issubclass(design_class(row.design), TwoGate)
    return nemesis.applies(fault, design_class(row.design), lab)


def run_seed(
    lab: Lab,
    row: Row | str,
    fault: str,
    seed: int = 0,
    *,
    base: Workload = BASE_WORKLOAD,
    concurrency: int = CONCURRENCY,
    server: RedisServer | None = None,
    cluster: LocalCluster | None = None,
) -> SeedRun:
    """One row under one fault with one seed: run, heal, drain, check, reconcile, check again.

    `server`: a redis-server of the review's own, for the real `redis_restart` / `redis_pause`
    (the cell then runs its Redis there; the database stays `lab`'s); `cluster`: a Redis
    Cluster of the review's own for `redis_failover` (started for the run when not given).
    """
    row = row_named(row) if isinstance(row, str) else row
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; choose one of {', '.join(FAULTS)}")
    workload = _workload(fault, replace(base, seed=base.seed + 1000 * seed, lines=row.lines))
    with ExitStack() as stack:
        if fault in ("redis_restart", "redis_pause") and nemesis.real_redis(lab):
            if server is None:
                server = stack.enter_context(RedisServer())
            lab = _beside(lab, server.url, stack)
        if fault == "redis_failover":
            if cluster is None:
                cluster = stack.enter_context(own_cluster())
            lab = _beside(lab, cluster.url, stack)
        cls = design_class(row.design)
        design: BaseDesign = cls(lab, **row.options(concurrency))
        stack.callback(design.close)
        front = wrap(design, lab, row.idempotency)  # what the clients call
        initial = workload.initial_stock()
        front.setup(initial)
        attempts = workload.attempts()
        nem = None
        if fault not in WORKLOAD_FAULTS:
            nem = nemesis.Nemesis(
                lab,
                design,
                fault,
                attempts=len(attempts),
                seed=seed,
                server=server,
                cluster=cluster,
            )
        with nem or nullcontext():
            records = run_workload(
                front,
                attempts,
                concurrency=concurrency,
                t0=None if nem is None else nem.t0,
                on_attempt=None if nem is None else nem.on_attempt,
            )
        history = pd.DataFrame(columns=nemesis.HISTORY_COLUMNS) if nem is None else nem.history()
        design.drain()
        guard_refusals = int(records["detail"].str.contains(GUARD_DETAIL).sum())
        if isinstance(design, TaskEngineDesign):
            guard_refusals += design.store.counts()[Status.DEAD]
        # a task engine's tables may live in other databases too: read them through its store
        store = design.store if isinstance(design, TaskEngineDesign) else None
        before = check_lab(lab, initial, records, redis_view=cls.uses_redis, task_store=store)
        repair = reconcile(lab, repair=True, task_store=store) if cls.uses_redis else None
        after = check_lab(lab, initial, records, redis_view=cls.uses_redis, task_store=store)
    clients_s = float(records["end_s"].max() - records["start_s"].min()) if len(records) else 0.0
    return SeedRun(
        row, fault, seed, records, history, before, repair, after, clients_s, guard_refusals
    )


def run_seeds(
    lab: Lab,
    rows: Sequence[Row | str],
    fault: str,
    *,
    seeds: int = 1,
    base: Workload = BASE_WORKLOAD,
    concurrency: int = CONCURRENCY,
) -> list[SeedRun]:
    """Each row under one fault for seeds 0 … seeds - 1 (row by row): the runs themselves, each
    with its records, the nemesis's history and the checker's reports, for a notebook to tabulate
    (`SeedRun.summary`), draw, and hand to `judged`. A fault with nothing to act on in a row
    (or on these backends) is refused before anything runs."""
    chosen = [row_named(row) if isinstance(row, str) else row for row in rows]
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; choose one of {', '.join(FAULTS)}")
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, not {seeds}")
    for row in chosen:
        if not applies(lab, row, fault):
            raise ValueError(f"{fault} has nothing to act on in {row.label} on these backends")
    return [
        run_seed(lab, row, fault, seed, base=base, concurrency=concurrency)
        for row in chosen
        for seed in range(seeds)
    ]


def _workload(fault: str, base: Workload) -> Workload:
    if fault == "none":
        return base
    if fault == "lost_reply":
        return replace(base, lost_replies=0.3)
    if fault == "redis_failover":  # the sale goes on after the failover, until it sells out
        return replace(base, orders=2 * base.orders, retries=0.3)
    return replace(base, retries=0.3)  # clients resend, after errors too


def _beside(lab: Lab, redis_url: str, stack: ExitStack) -> Lab:
    """The lab's database with the Redis at `redis_url` (a server or a cluster of the review's
    own; the lab's engine is not closed here)."""
    client = redis_client(redis_url, client_name=f"ilab-{lab.namespace}")
    stack.callback(client.close)
    return replace(lab, redis=client, redis_url=redis_url, scratch_file=None)


def own_cluster() -> LocalCluster:
    """A Redis Cluster for the failover cells, on free ports of its own (never a shared one), with
    a short node timeout: a failover takes a second or two."""
    return LocalCluster(redis_cluster.free_base_port(), node_timeout_ms=FAILOVER_NODE_TIMEOUT_MS)


@dataclass(frozen=True)
class Cell:
    row: str
    design: str
    variant: str
    fault: str
    applies: bool
    seeds: int
    attempts: int  # summed over the seeds, like the counts below
    accepted: int
    errors: int
    unknown: int
    unknown_persisted: int
    guard_refusals: int  # orders the DB guard refused (gate 2, or a task that died), all seeds
    strikes: int  # the nemesis's strikes, over the seeds
    oversold: int  # the worst seed's count, like every finding below
    double_deducted: int
    lost: int
    unaccounted: int
    false_duplicates: int
    false_sold_out: int  # units left unsold that sold-out refusals could have taken
    false_sold_out_orders: int  # the refusals behind them (the worst seed's, taken on its own)
    drift_before: int
    converged_after: bool | None
    throughput: float  # attempts per second of the clients' time (no drain), over the seeds
    broken: tuple[str, ...]  # invariants broken after reconciliation in any seed
    must: tuple[str, ...]
    may: tuple[str, ...]
    expected_drift: str
    why: str
    verdict: str  # "as expected" or what differed
    per_seed: list[dict[str, Any]] = field(default_factory=list)


def run_cell(
    lab: Lab,
    row: Row | str,
    fault: str,
    *,
    seeds: int = 1,
    base: Workload = BASE_WORKLOAD,
    concurrency: int = CONCURRENCY,
    server: RedisServer | None = None,
    cluster: LocalCluster | None = None,
) -> Cell:
    """One row under one fault for `seeds` seeds; the worst seen, judged against `expectation`."""
    row = row_named(row) if isinstance(row, str) else row
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; choose one of {', '.join(FAULTS)}")
    expected = expectation(row, fault)
    if not applies(lab, row, fault):
        return _not_applicable(row, fault, expected)
    runs = [
        run_seed(
            lab,
            row,
            fault,
            seed,
            base=base,
            concurrency=concurrency,
            server=server,
            cluster=cluster,
        )
        for seed in range(seeds)
    ]
    return _cell(row, fault, runs, expected)


def _cell(row: Row, fault: str, runs: list[SeedRun], expected: Expectation) -> Cell:
    broken = sorted({name for run in runs for name in run.broken})
    drift = max(run.drift_before for run in runs)
    differences = []
    if not expected.must <= set(broken) <= expected.must | expected.may:
        differences.append(
            f"broke {broken}, expected {sorted(expected.must)}"
            + (f" (may: {sorted(expected.may)})" if expected.may else "")
        )
    # "must" drift is owed by the orders the app died with: a window in which no order passed
    # gate 1 (the stock already gone) leaves nothing to drift
    died = any(run.died_between_gates for run in runs)
    if (expected.drift == "must" and died and drift == 0) or (
        expected.drift == "never" and drift > 0
    ):
        differences.append(f"drift before repair {drift}, expected drift: {expected.drift}")
    worst = {name: max(getattr(run.after, name) for run in runs) for name in INVARIANTS}
    outcomes = pd.concat([run.records["outcome"] for run in runs])
    clients_s = sum(run.clients_s for run in runs)
    return Cell(
        row=row.label,
        design=row.design,
        variant=row.variant,
        fault=fault,
        applies=True,
        seeds=len(runs),
        attempts=len(outcomes),
        accepted=int((outcomes == "accepted").sum()),
        errors=int((outcomes == "error").sum()),
        unknown=int((outcomes == "unknown").sum()),
        unknown_persisted=sum(run.before.unknown_persisted for run in runs),
        guard_refusals=sum(run.guard_refusals for run in runs),
        strikes=sum(int(run.history["event"].isin(["start", "strike"]).sum()) for run in runs),
        false_duplicates=max(run.after.false_duplicates for run in runs),
        false_sold_out=max(run.after.false_sold_out for run in runs),
        false_sold_out_orders=max(run.after.false_sold_out_orders for run in runs),
        drift_before=drift,
        converged_after=all(run.after.converged is not False for run in runs)
        if runs[0].after.converged is not None
        else None,
        throughput=round(len(outcomes) / clients_s, 1) if clients_s > 0 else 0.0,
        broken=tuple(broken),
        must=tuple(sorted(expected.must)),
        may=tuple(sorted(expected.may)),
        expected_drift=expected.drift,
        why=expected.why,
        verdict="; ".join(differences) or "as expected",
        per_seed=[
            {
                "seed": run.seed,
                "strikes": int(run.history["event"].isin(["start", "strike"]).sum()),
                "broken": list(run.broken),
                "drift_before": run.drift_before,
                **{name: getattr(run.after, name) for name in INVARIANTS},
                # one seed's unsold units beside the refusals behind them (the cell's two are
                # each the worst over the seeds, possibly from different seeds)
                "false_sold_out": run.after.false_sold_out,
                "false_sold_out_orders": run.after.false_sold_out_orders,
            }
            for run in runs
        ],
        **worst,
    )


def _not_applicable(row: Row, fault: str, expected: Expectation) -> Cell:
    return Cell(
        row=row.label,
        design=row.design,
        variant=row.variant,
        fault=fault,
        applies=False,
        seeds=0,
        attempts=0,
        accepted=0,
        errors=0,
        unknown=0,
        unknown_persisted=0,
        guard_refusals=0,
        strikes=0,
        oversold=0,
        double_deducted=0,
        lost=0,
        unaccounted=0,
        false_duplicates=0,
        false_sold_out=0,
        false_sold_out_orders=0,
        drift_before=0,
        converged_after=None,
        throughput=0.0,
        broken=(),
        must=tuple(sorted(expected.must)),
        may=tuple(sorted(expected.may)),
        expected_drift=expected.drift,
        why="nothing for this fault to act on in this design (or on these backends)",
        verdict="as expected",
    )


def review(
    lab: Lab,
    rows: list[str] | None = None,
    faults: list[str] | None = None,
    *,
    seeds: int = 1,
    progress: bool = True,
) -> pd.DataFrame:
    """Every row under every fault for `seeds` seeds; one row per cell (see `Cell`)."""
    chosen = [row_named(label) for label in rows] if rows else list(ROWS)
    faults = faults or list(FAULTS)
    cells = [(row, fault) for row in chosen for fault in faults]
    found = []
    started = time.perf_counter()
    with ExitStack() as stack:
        server = None
        own = {"redis_restart", "redis_pause"} & set(faults)
        if own and nemesis.real_redis(lab) and available():
            server = stack.enter_context(RedisServer())
        cluster = None
        if "redis_failover" in faults and nemesis.real_redis(lab) and redis_cluster.available():
            cluster = stack.enter_context(own_cluster())
        for row, fault in tqdm(cells, desc="review", disable=not progress):
            found.append(run_cell(lab, row, fault, seeds=seeds, server=server, cluster=cluster))
    return _frame(lab, found, time.perf_counter() - started)


def judged(lab: Lab, runs: Iterable[SeedRun]) -> pd.DataFrame:
    """Seed runs already made (`run_seed`, `run_seeds`) as the review's cells: grouped by row and
    fault in the order they first appear, each cell the worst of its seeds judged against
    `expectation`, in the frame `review` returns. `lab` is the lab they ran on (the frame names
    its backends). Judging costs no run: a notebook shows the verdicts on the runs it told its
    story with."""
    grouped: dict[tuple[Row, str], list[SeedRun]] = {}
    for run in runs:
        grouped.setdefault((run.row, run.fault), []).append(run)
    if not grouped:
        raise ValueError("no seed runs to judge")
    found = [
        _cell(row, fault, seeded, expectation(row, fault))
        for (row, fault), seeded in grouped.items()
    ]
    return _frame(lab, found, 0.0)


def _frame(lab: Lab, cells: list[Cell], seconds: float) -> pd.DataFrame:
    frame = pd.DataFrame([asdict(cell) for cell in cells])
    frame.insert(0, "machine", machine())
    frame.insert(0, "db", lab.db_url)
    frame.insert(0, "redis", lab.redis_url)
    frame.attrs["seconds"] = round(seconds, 1)
    return frame


def where_found(matrices: list[pd.DataFrame], finding: str) -> pd.Series:
    """Per row label: the faults under which `finding` (a cell column: oversold, lost,
    drift_before, false_duplicates…) was above zero in any of the matrices, or "none"."""
    cells = pd.concat(matrices, ignore_index=True)
    hits = cells[cells[finding].fillna(0) > 0]
    rows = list(dict.fromkeys(cells["row"]))
    found = {
        row: ", ".join(f for f in FAULTS if f in set(hits.loc[hits["row"] == row, "fault"]))
        for row in rows
    }
    return pd.Series({row: faults or "none" for row, faults in found.items()}, name=finding)


def save_review(frame: pd.DataFrame, path: str | Path) -> Path:
    """Append a review's cells to the `review` table of a DuckDB results file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    listed = ["broken", "must", "may", "per_seed"]
    stored = frame.assign(
        **{name: frame[name].map(lambda v: json.dumps(list(v))) for name in listed},
        at=pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
    )
    with duckdb.connect(str(path)) as con:
        con.register("cells", stored)
        con.execute("CREATE TABLE IF NOT EXISTS review AS SELECT * FROM cells LIMIT 0")
        # a file made by an older lab gains the columns added since (false_sold_out_orders…);
        # the names and types are the cells' own columns (Cell's fields), never input
        have = {row[0] for row in con.execute("DESCRIBE review").fetchall()}
        for name, kind, *_ in con.execute("DESCRIBE cells").fetchall():
            if name not in have:
                con.execute(f'ALTER TABLE review ADD COLUMN "{name}" {kind}')
        con.execute("INSERT INTO review BY NAME SELECT * FROM cells")
    return path
