"""The load generator: schedules, layouts, merged records, and latency from the intended send."""

import itertools
import threading
import time

import pytest

from inventory_lab.bench import SCENARIOS, bench_session
from inventory_lab.checker import check_lab
from inventory_lab.loadgen import (
    Arrivals,
    Layout,
    _Job,
    _send_all,
    percentiles_ms,
    run_load,
)
from inventory_lab.orders import Order, Outcome
from inventory_lab.senders import Target, prepare
from inventory_lab.workload import Workload


def test_constant_arrivals_are_evenly_spaced():
    times = Arrivals("constant", rate=200).schedule(5)
    assert times == pytest.approx([0.0, 0.005, 0.010, 0.015, 0.020])


def test_poisson_arrivals_are_seeded_sorted_and_near_the_rate():
    arrivals = Arrivals("poisson", rate=1000)
    times = arrivals.schedule(5000, seed=3)
    assert times == arrivals.schedule(5000, seed=3)
    assert times != arrivals.schedule(5000, seed=4)
    assert all(a <= b for a, b in itertools.pairwise(times))
    assert 4.0 < times[-1] < 6.0  # 5000 arrivals at 1000/s: about 5 s (±20%: a 14-sigma band)


def test_a_burst_ramps_to_its_peak_then_holds_it():
    times = Arrivals("burst", rate=1000, ramp=0.2).schedule(1000)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g > 0 for g in gaps)
    assert gaps[5] > gaps[150] > gaps[198]  # the ramp: arrivals come faster and faster
    assert gaps[200:] == pytest.approx([0.001] * len(gaps[200:]))  # then the peak, held
    assert times[200] == pytest.approx(2 * 200 / 1000)  # a triangle's area: 200 arrivals by 0.4 s


def test_a_closed_loop_has_no_schedule():
    assert Arrivals().schedule(10) is None and not Arrivals().open_loop


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "bursty"},
        {"kind": "constant"},
        {"kind": "poisson", "rate": 0},
        {"kind": "burst", "rate": float("nan")},
        {"kind": "burst", "rate": 10, "ramp": 1.0},
    ],
)
def test_bad_arrivals_are_refused(kwargs):
    with pytest.raises(ValueError):
        Arrivals(**kwargs)


@pytest.mark.parametrize(
    ("concurrency", "processes", "layout"),
    [(16, 2, (2, 8)), (1, 2, (1, 1)), (5, 2, (1, 5)), (12, 4, (4, 3)), (256, 2, (2, 128))],
)
def test_a_layout_spreads_exactly_the_clients_asked_for(concurrency, processes, layout):
    spread = Layout.spread(concurrency, processes)
    assert (spread.processes, spread.clients) == layout
    assert spread.total == concurrency


class _StallingSender:
    """Answers at once, except order number `stall_at`, which takes `stall_s` (a server stall)."""

    def __init__(self, stall_at: int, stall_s: float) -> None:
        self.stall_at, self.stall_s = stall_at, stall_s
        self.stall_end: float | None = None
        self.calls = itertools.count()

    def send(self, order: Order) -> Outcome:
        if next(self.calls) == self.stall_at:
            time.sleep(self.stall_s)
            self.stall_end = time.monotonic()
        return Outcome.ACCEPTED

    def close(self) -> None:
        pass


def _send_in_process(arrivals: Arrivals, sender: _StallingSender, orders: int) -> dict:
    workload = Workload(orders=orders, skus=1, stock=orders)
    job = _Job(Target("db_only"), workload, arrivals, Layout(1, 1), "", "", "ns")
    attempts = workload.attempts()
    start_at = time.monotonic() + 0.01
    progress = type("Counter", (), {"value": 0, "get_lock": lambda self: threading.Lock()})()
    part = _send_all(
        sender,
        job,
        0,
        attempts,
        arrivals.schedule(orders),
        list(range(orders)),
        start_at,
        progress,
    )
    part["start_at"] = start_at
    return part


def test_open_loop_latency_counts_the_queue_behind_a_stall():
    """Coordinated omission, avoided: every order due during the stall is late by at least the
    rest of the stall, whatever else the machine is doing."""
    sender = _StallingSender(stall_at=20, stall_s=0.3)
    part = _send_in_process(Arrivals("constant", rate=500), sender, orders=300)
    stall_end = sender.stall_end - part["start_at"]
    due_in_stall = [row for row in part["rows"] if 0.04 < row[3] < stall_end]
    assert len(due_in_stall) >= 100  # 500/s over the 0.3 s stall minus the first 0.04 s
    for _i, _code, _client, intended, _start, end in due_in_stall:
        assert end >= stall_end - 1e-6  # queued behind the stall…
        assert end - intended >= stall_end - intended - 1e-6  # …and its latency says so


def test_closed_loop_latency_is_service_time_only():
    sender = _StallingSender(stall_at=20, stall_s=0.1)
    part = _send_in_process(Arrivals(), sender, orders=100)
    assert all(intended == start for _i, _c, _k, intended, start, _e in part["rows"])
    slow = [row for row in part["rows"] if row[5] - row[4] >= 0.1]
    assert len(slow) >= 1  # the stalled order itself; the others were never sent meanwhile


def test_percentiles_of_an_empty_histogram_are_zero():
    from inventory_lab.loadgen import new_histogram

    assert percentiles_ms(new_histogram()) == {"p50": 0.0, "p99": 0.0, "p99.9": 0.0, "max": 0.0}


@pytest.mark.parametrize("design", ["db_only", "two_gate_lua"])
def test_records_from_every_process_merge_into_one_checked_run(
    paired_urls, bench_namespace, design
):
    redis_url, db_url = paired_urls
    workload = SCENARIOS["flash-sale"].workload(300)
    with bench_session(redis_url, db_url, namespace=bench_namespace) as session:
        target = Target(design)
        instance = prepare(target, session.lab, workload.initial_stock())
        try:
            run = run_load(
                target,
                workload,
                layout=Layout(2, 3),
                arrivals=Arrivals("poisson", rate=3000),
                redis_url=session.redis_url,
                db_url=session.db_url,
                namespace=bench_namespace,
            )
            instance.drain()
            check = check_lab(session.lab, workload.initial_stock(), run.records, redis_view=True)
        finally:
            instance.close()
    records = run.records
    sent = {a.order.order_id for a in workload.attempts()}
    assert set(records["order_id"]) == sent and len(records) == len(sent)
    assert set(records["client"]) <= set(range(6)) and records["client"].nunique() > 1
    assert (records["end_s"] >= records["start_s"]).all()
    assert (records["start_s"] >= records["intended_s"] - 1e-3).all()  # never sent early
    assert run.latency.get_total_count() == len(records) == run.service.get_total_count()
    assert (records["outcome"] == "accepted").sum() == 3  # stock is 1% of 300
    assert check.oversold == 0 and check.lost == 0 and check.double_deducted == 0
    assert len(run.client_cpu_s) == 2 and all(cpu > 0 for cpu in run.client_cpu_s)


def test_a_worker_that_cannot_connect_fails_the_load_with_its_reason(tmp_path):
    workload = Workload(orders=10, skus=1, stock=10)
    with pytest.raises(RuntimeError, match="failed to connect: BackendError") as failed:
        run_load(
            Target("db_only"),
            workload,
            layout=Layout(2, 1),
            redis_url="redis://127.0.0.1:1/0",
            db_url="postgresql+psycopg://u:s3cret@127.0.0.1:1/x",
        )
    assert "s3cret" not in str(failed.value)


_DYING_PARENT = """
import multiprocessing, os, sys
from inventory_lab.loadgen import Layout, run_load
from inventory_lab.senders import Target
from inventory_lab.workload import Workload

def die():
    print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
    os._exit(1)

if __name__ == "__main__":
    run_load(Target("raw_sql"), Workload(orders=10, skus=1, stock=10), layout=Layout(2, 1),
             redis_url="redis://127.0.0.1:1/0", db_url=sys.argv[1], on_ready=die)
"""


def test_workers_leave_when_their_parent_dies(tmp_path):
    """A parent killed between the workers' connect and the start leaves no worker waiting."""
    import subprocess
    import sys

    import psutil

    from inventory_lab import schema
    from inventory_lab.backends import sql_engine

    db = f"sqlite:///{tmp_path / 'dying.sqlite'}"
    engine = sql_engine(db)
    schema.reset(engine, {"sku-0001": 10})
    engine.dispose()
    script = tmp_path / "dying_parent.py"
    script.write_text(_DYING_PARENT)
    done = subprocess.run(
        [sys.executable, str(script), db], capture_output=True, text=True, timeout=120
    )
    pids = [int(pid) for pid in done.stdout.split()[-2:] if pid.isdigit()]
    assert done.returncode == 1 and len(pids) == 2, done.stderr
    deadline = time.monotonic() + 60  # "eventually", on any machine: they poll every 0.5 s
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in pids if psutil.pid_exists(pid) and _not_zombie(pid)]
        time.sleep(0.2)
    assert alive == []


def _not_zombie(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
