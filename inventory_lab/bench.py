"""The benchmark: designs under named scenarios, from P processes × C clients, next to the
ceilings measured in the same run, with the resource that saturated.

A scenario is a workload and an arrival pattern:

| scenario | SKUs | stock | arrivals | what it shows |
|---|---|---|---|---|
| `flash-sale` | 1 | 1% of the orders | open loop: a burst ramps to a peak | gate 1 takes a sale |
| `one-row` | 1 | never sells out | closed loop | the hot row's ceiling (the article's start) |
| `steady-hot` | 100, Zipf 1.2 | never sells out | closed loop | one hot SKU and a tail |
| `spread` | 1,000 uniform | never sells out | closed loop | no hot row at all |

Each cell runs one target (a design, or a raw ceiling from `senders`) with `loadgen`, checks a
design's run with the checker (a benchmark that oversold would be measuring a bug), and samples
CPU around the measured window (`saturation`). For an open-loop burst with no rate given, the
peak is 1.5× the raw EVALSHA rate the same layout reached just before, closed loop: past every
design's capacity, so the rate measured is the capacity and the latency shows the queue.

`targets` turns cells into the ratios the lab promises to report — each a ratio of two rates
measured in one run on one machine, never a timed assertion.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd
from tqdm import tqdm

from inventory_lab import schema
from inventory_lab.backends import FAKE_REDIS, serve_fake_redis
from inventory_lab.ceilings import Ceiling, pgbench_tps, redis_benchmark_rps
from inventory_lab.checker import CheckReport, check_lab
from inventory_lab.experiment import machine
from inventory_lab.lab import Lab, open_lab
from inventory_lab.loadgen import Arrivals, Layout, LoadRun, run_load
from inventory_lab.orders import Outcome
from inventory_lab.saturation import FAKE_SERVER, CpuMeter, LockMeter, verdict
from inventory_lab.senders import Target, prepare
from inventory_lab.workload import Workload

NAMESPACE = "ilab-bench"
BURST_OVER_CEILING = 1.5
TARGET_CLIENTS = 16


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    skus: int
    skew: float
    stock_fraction: float | None  # stock per SKU as a fraction of the orders; None: never out
    arrivals: str  # 'closed' or 'burst'

    def workload(self, orders: int, seed: int = 42) -> Workload:
        if self.stock_fraction is None:
            stock = min(orders, schema.MAX_STOCK)
        else:
            stock = max(1, int(orders * self.stock_fraction))
        return Workload(orders=orders, skus=self.skus, stock=stock, skew=self.skew, seed=seed)


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("flash-sale", "1 SKU, stock 1% of demand, burst arrivals", 1, 0.0, 0.01, "burst"),
        Scenario("one-row", "1 SKU that never sells out, closed loop", 1, 0.0, None, "closed"),
        Scenario("steady-hot", "100 SKUs, Zipf 1.2, never sells out", 100, 1.2, None, "closed"),
        Scenario("spread", "1,000 SKUs, uniform, never sells out", 1000, 0.0, None, "closed"),
    )
}


@dataclass
class BenchSession:
    """Where a bench runs: one lab (its URLs reachable from worker processes) and the layout."""

    lab: Lab
    redis_url: str  # unmasked: the workers connect with it; never printed (see `describe`)
    db_url: str
    processes: int
    fake_redis: bool = False  # fakeredis served over TCP by this process: no redis-benchmark

    def describe(self) -> dict[str, str]:
        redis = "fakeredis (served over TCP)" if self.fake_redis else self.lab.redis_url
        return {"redis": redis, "db": self.lab.db_url, "machine": machine()}


@contextmanager
def bench_session(
    redis_url: str = FAKE_REDIS,
    db_url: str | None = None,
    *,
    processes: int = 2,
    namespace: str = NAMESPACE,
) -> Iterator[BenchSession]:
    """A lab whose backends other processes can reach: fakeredis is served over TCP, and the
    default SQLite file is named for the workers to open."""
    if redis_url == FAKE_REDIS or redis_url.startswith("fake://"):
        with (
            serve_fake_redis() as served,
            bench_session(served, db_url, processes=processes, namespace=namespace) as s,
        ):
            s.fake_redis = True
            yield s
        return
    with open_lab(redis_url, db_url, namespace=namespace, pool_size=4) as lab:
        real_db = db_url or f"sqlite:///{lab.scratch_file}"
        yield BenchSession(lab, redis_url, real_db, processes)
        lab.clear_redis()


@dataclass(frozen=True)
class CheckedLoad:
    """One load and the checker's verdict on it (None for a raw ceiling: nothing to check)."""

    run: LoadRun
    check: CheckReport | None


def checked_load(
    session: BenchSession,
    target: Target,
    workload: Workload,
    *,
    layout: Layout,
    arrivals: Arrivals | None = None,
    progress: bool = False,
    on_ready: Callable[[], None] | None = None,
    on_finished: Callable[[], None] | None = None,
) -> CheckedLoad:
    """Load the stock, run the load from `layout`'s processes, drain the design, check it."""
    initial = workload.initial_stock()
    instance = prepare(target, session.lab, initial)
    try:
        run = run_load(
            target,
            workload,
            layout=layout,
            arrivals=arrivals,
            redis_url=session.redis_url,
            db_url=session.db_url,
            namespace=session.lab.namespace,
            progress=progress,
            on_ready=on_ready,
            on_finished=on_finished,
        )
        if instance is None:
            return CheckedLoad(run, None)
        instance.drain()
        check = check_lab(session.lab, initial, run.records, redis_view=target.uses_redis)
    finally:
        if instance is not None:
            instance.close()
    return CheckedLoad(run, check)


def run_cell(
    session: BenchSession,
    target: Target,
    scenario: Scenario,
    concurrency: int,
    *,
    orders: int,
    arrivals: Arrivals | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """One target under one scenario at one concurrency: its rates, latency, check and CPU."""
    if session.fake_redis:  # served by this process: its CPU is fakeredis's
        meter = CpuMeter(None, session.db_url, extra={FAKE_SERVER: os.getpid()})
    else:
        meter = CpuMeter(session.redis_url, session.db_url)
    locks = LockMeter(session.lab.engine)

    def started() -> None:
        meter.start()
        locks.start()

    def finished() -> None:
        meter.stop()
        locks.stop()

    loaded = checked_load(
        session,
        target,
        scenario.workload(orders),
        layout=Layout.spread(concurrency, session.processes),
        arrivals=arrivals,
        progress=progress,
        on_ready=started,
        on_finished=finished,
    )
    run = loaded.run
    cpu = meter.window(run.client_cpu_s)
    return _row(run, scenario, concurrency, cpu, locks.average, loaded.check)


def queued_at_client(run: LoadRun) -> str | None:
    """Open loop only: did arrivals outrun the clients? (p99 from the intended send well above
    p99 from the actual send: orders waited for a free client before they were sent.)"""
    if not run.arrivals.open_loop:
        return None
    intended = run.percentiles_ms()["p99"]
    sent = run.percentiles_ms(from_intended=False)["p99"]
    if intended <= 2 * sent:
        return None
    return (
        f"arrivals outran the {run.layout.total} clients (p99 {intended:.0f} ms from the "
        f"intended send, {sent:.0f} ms from the actual one)"
    )


def _row(
    run: LoadRun,
    scenario: Scenario,
    concurrency: int,
    cpu: Any,
    lock_waiters: float | None,
    check: Any,
) -> dict:
    latency = run.percentiles_ms()
    return {
        "scenario": scenario.name,
        "target": run.target.label,
        "clients": concurrency,
        "layout": str(run.layout),
        "arrivals": run.arrivals.describe(),
        "orders": len(run.records),
        "decisions_per_s": round(run.decisions_per_s, 1),
        "accepted_per_s": round(run.rate_of(Outcome.ACCEPTED), 1),
        "p50_ms": round(latency["p50"], 3),
        "p99_ms": round(latency["p99"], 3),
        "p99.9_ms": round(latency["p99.9"], 3),
        "max_ms": round(latency["max"], 3),
        "service_p99_ms": round(run.percentiles_ms(from_intended=False)["p99"], 3),
        "oversold": None if check is None else check.oversold,
        "double_deducted": None if check is None else check.double_deducted,
        "lost": None if check is None else check.lost,
        "cpu_cores": cpu.as_dict(),
        "lock_waiters": None if lock_waiters is None else round(lock_waiters, 2),
        "saturated": verdict(cpu, lock_waiters=lock_waiters, queued=queued_at_client(run)),
    }


def burst_for(
    session: BenchSession, scenario: Scenario, concurrency: int, orders: int, rate: float | None
) -> Arrivals:
    """The scenario's arrivals: closed loop, or a burst at `rate` (default: 1.5× the raw
    EVALSHA ceiling of this layout, measured now)."""
    if scenario.arrivals == "closed":
        return Arrivals()
    if rate is None:
        probe = run_cell(session, Target("raw_evalsha"), scenario, concurrency, orders=orders)
        rate = BURST_OVER_CEILING * probe["decisions_per_s"]
    return Arrivals("burst", rate=max(1.0, rate))


def tool_ceilings(session: BenchSession, concurrency: int, *, pgbench_s: int) -> list[Ceiling]:
    """pgbench on one row (stock that cannot run out) and redis-benchmark's EVALSHA of gate 1."""
    sku = SCENARIOS["one-row"].workload(1).sku_names()[0]
    found = []
    if not session.fake_redis:
        prepare(Target("raw_evalsha"), session.lab, {sku: schema.MAX_STOCK})
        found.append(
            redis_benchmark_rps(session.redis_url, session.lab.namespace, sku, clients=concurrency)
        )
    if session.lab.dialect == "postgresql":
        schema.reset(session.lab.engine, {sku: schema.MAX_STOCK})
        found.append(pgbench_tps(session.db_url, sku, clients=concurrency, seconds=pgbench_s))
    return found


def run_bench(
    session: BenchSession,
    scenarios: Sequence[str],
    targets: Sequence[str],
    concurrencies: Sequence[int],
    *,
    orders: int = 5000,
    rate: float | None = None,
    pgbench_s: int = 3,
    progress: bool = True,
) -> tuple[pd.DataFrame, list[Ceiling]]:
    """Every target under every scenario at every concurrency, and the tools' ceilings."""
    cells = [(s, c, t) for s in scenarios for c in concurrencies for t in targets]
    frame = run_cells(session, cells, orders=orders, rate=rate, progress=progress)
    ceilings: list[Ceiling] = []
    for concurrency in concurrencies:
        ceilings.extend(tool_ceilings(session, concurrency, pgbench_s=pgbench_s))
    return frame, ceilings


def run_cells(
    session: BenchSession,
    cells: Sequence[tuple[str, int, str]],
    *,
    orders: int,
    rate: float | None,
    progress: bool,
    desc: str = "bench",
) -> pd.DataFrame:
    """One row per (scenario, concurrency, target); a burst's rate is found once per
    (scenario, concurrency) and shared by its targets."""
    rows = []
    arrivals: dict[tuple[str, int], Arrivals] = {}
    for scenario_name, concurrency, target_name in tqdm(cells, desc=desc, disable=not progress):
        scenario = SCENARIOS[scenario_name]
        key = (scenario_name, concurrency)
        if key not in arrivals:
            arrivals[key] = burst_for(session, scenario, concurrency, orders, rate)
        target = Target(target_name)
        rows.append(
            run_cell(session, target, scenario, concurrency, orders=orders, arrivals=arrivals[key])
        )
    return pd.DataFrame(rows)


# --- the targets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetRatio:
    claim: str
    numerator: str  # what was measured, in words
    denominator: str
    ratio: float | None
    goal: float
    saturated: str

    @property
    def met(self) -> bool | None:
        return None if self.ratio is None else self.ratio >= self.goal


# The cells the targets need, all at TARGET_CLIENTS clients: (scenario, target).
TARGET_CELLS = (
    ("flash-sale", "raw_evalsha"),
    ("flash-sale", "two_gate_lua"),
    ("one-row", "db_only"),
    ("one-row", "raw_sql"),
    ("spread", "db_only"),
)


def run_targets(
    session: BenchSession,
    *,
    orders: int = 5000,
    rate: float | None = None,
    pgbench_s: int = 3,
    progress: bool = True,
) -> tuple[pd.DataFrame, list[Ceiling], list[TargetRatio]]:
    """The cells behind the lab's promised ratios, the tools' ceilings, and the ratios."""
    cells = [(scenario, TARGET_CLIENTS, target) for scenario, target in TARGET_CELLS]
    frame = run_cells(session, cells, orders=orders, rate=rate, progress=progress, desc="targets")
    ceilings = tool_ceilings(session, TARGET_CLIENTS, pgbench_s=pgbench_s)
    return frame, ceilings, ratios(frame, ceilings)


def ratios(frame: pd.DataFrame, ceilings: Sequence[Ceiling]) -> list[TargetRatio]:
    """The promised ratios from cells at TARGET_CLIENTS clients (None where a side is missing)."""

    def cell(scenario: str, target: str) -> dict[str, Any] | None:
        found = frame[
            (frame["scenario"] == scenario)
            & (frame["target"] == target)
            & (frame["clients"] == TARGET_CLIENTS)
        ]
        return None if found.empty else found.iloc[0].to_dict()

    pgbench = next((c.rate for c in ceilings if c.tool == "pgbench" and c.rate), None)
    lua, raw = cell("flash-sale", "two_gate_lua"), cell("flash-sale", "raw_evalsha")
    hot, spread = cell("one-row", "db_only"), cell("spread", "db_only")
    n = TARGET_CLIENTS

    def ratio(top: float | None, bottom: float | None) -> float | None:
        if top is None or not bottom:
            return None
        return round(top / bottom, 3)

    def rate(row: dict[str, Any] | None, column: str) -> float | None:
        return None if row is None else float(row[column])

    def saturated(row: dict[str, Any] | None) -> str:
        return "not measured" if row is None else str(row["saturated"])

    return [
        TargetRatio(
            "two_gate_lua flash-sale decisions/s vs the raw EVALSHA loop, same layout",
            f"two_gate_lua, flash-sale, {n} clients",
            f"raw EVALSHA of gate 1, flash-sale, {n} clients",
            ratio(rate(lua, "decisions_per_s"), rate(raw, "decisions_per_s")),
            0.9,
            saturated(lua),
        ),
        TargetRatio(
            "db_only accepted/s on one hot row vs pgbench, same client count",
            f"db_only, one-row, {n} clients",
            f"pgbench, db_only's transaction on one row, {n} clients",
            ratio(rate(hot, "accepted_per_s"), pgbench),
            0.7,
            saturated(hot),
        ),
        TargetRatio(
            "the article: Redis gate 1 absorbs a flash sale the one row could not",
            f"two_gate_lua, flash-sale decisions/s, {n} clients",
            f"pgbench on one row, {n} clients",
            ratio(rate(lua, "decisions_per_s"), pgbench),
            5.0,
            saturated(lua),
        ),
        TargetRatio(
            "the article: spreading rows lifts the DB's ceiling",
            f"db_only accepted/s, spread, {n} clients",
            f"db_only accepted/s, one-row, {n} clients",
            ratio(rate(spread, "accepted_per_s"), rate(hot, "accepted_per_s")),
            2.0,
            saturated(spread),
        ),
    ]


def ratio_table(found: Sequence[TargetRatio]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "claim": r.claim,
                "ratio": r.ratio,
                "goal": f">= {r.goal:g}",
                "met": {True: "yes", False: "no", None: "not measured"}[r.met],
                "saturated": r.saturated,
            }
            for r in found
        ]
    )
