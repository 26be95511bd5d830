"""The nemesis: seeded strikes while orders are in flight, each in the history; real faults hit
only the lab's own connections and servers."""

import pytest
import redis
import sqlalchemy as sa

from inventory_lab import Order, Outcome, Workload, check_lab, run_workload
from inventory_lab.designs import design_class
from inventory_lab.nemesis import FAULTS, Nemesis, applies, real_redis
from inventory_lab.reconcile import reconcile

WORKLOAD = Workload(orders=150, skus=2, stock=40, retries=0.3, seed=5)
ENGINE = {"lease_s": 0.3, "backoff_s": 0.02, "max_attempts": 50}


def _run(lab, design, fault, seed=1, **options):
    attempts = WORKLOAD.attempts()
    with Nemesis(lab, design, fault, attempts=len(attempts), seed=seed, **options) as nemesis:
        records = run_workload(
            design, attempts, concurrency=6, t0=nemesis.t0, on_attempt=nemesis.on_attempt
        )
    design.drain()
    return records, nemesis


# db_kill needs a database server; redis_failover a cluster, and strikes once (test_failover.py)
@pytest.mark.parametrize("fault", [f for f in FAULTS if f not in ("db_kill", "redis_failover")])
def test_every_fault_strikes_while_orders_are_in_flight(default_lab, fault):
    design = design_class("task_engine")(default_lab, **ENGINE)
    design.setup(WORKLOAD.initial_stock())
    try:
        records, nemesis = _run(default_lab, design, fault)
    finally:
        design.close()
    history = nemesis.history()
    starts = history[history["event"].isin(["start", "strike"])]
    assert 3 <= len(starts) == len(nemesis.plan) <= 5, history
    assert "failed" not in set(history["event"])
    if FAULTS[fault].kind == "window":  # every window closed, after it opened
        ends = history[history["event"] == "end"]
        assert len(ends) == len(starts)
        assert (ends["t_s"].to_numpy() >= starts["t_s"].to_numpy()).all()
    in_flight = [((records["start_s"] <= t) & (records["end_s"] >= t)).any() for t in starts["t_s"]]
    assert any(in_flight)  # the nemesis struck while orders were in flight
    reconcile(default_lab, repair=True)
    report = check_lab(default_lab, WORKLOAD.initial_stock(), records, redis_view=True)
    assert report.ok, report.summary()


def test_the_schedule_is_seeded_and_in_the_first_part_of_the_run(default_lab):
    design = design_class("two_gate_lua")(default_lab)
    plans = [
        Nemesis(default_lab, design, "db_outage", attempts=200, seed=s).plan for s in (1, 1, 2)
    ]
    assert plans[0] == plans[1] != plans[2]
    for plan in plans:
        assert plan[0][0] < 60 and all(start <= end < 200 for start, end in plan)


def test_a_fault_with_nothing_to_act_on_is_refused(default_lab):
    with pytest.raises(ValueError, match="nothing to act on"):
        Nemesis(default_lab, design_class("two_gate")(default_lab), "worker_pause", attempts=9)
    with pytest.raises(ValueError, match="nothing to act on"):
        Nemesis(default_lab, design_class("db_only")(default_lab), "db_kill", attempts=9)
    assert not applies("rewarm", design_class("db_only"), default_lab)
    with pytest.raises(ValueError, match="unknown fault"):
        Nemesis(default_lab, design_class("db_only")(default_lab), "meteor", attempts=9)


def test_a_real_redis_restart_needs_a_server_of_its_own(server_lab):
    design = design_class("two_gate_lua")(server_lab)
    if not real_redis(server_lab):
        Nemesis(server_lab, design, "redis_restart", attempts=9)  # simulated: no server needed
        return
    with pytest.raises(ValueError, match="of its own"):
        Nemesis(server_lab, design, "redis_restart", attempts=9)


def test_kill_minus_nine_of_an_own_redis_server_loses_everything_and_the_design_rewarms(
    server_lab,
):
    design = design_class("two_gate_lua")(server_lab)
    design.setup({"sku-1": 3})
    assert design.deduct(Order("o-1", "sku-1", 1)).outcome is Outcome.ACCEPTED
    server = getattr(server_lab, "server", None)
    detail = Nemesis(server_lab, design, "redis_restart", attempts=9, server=server).strike()
    if server is not None:
        assert "kill -9" in detail and server.restarts == 1
        server_lab.redis.connection_pool.disconnect()  # what the nemesis's heal does
        assert server_lab.redis.dbsize() == 0
    else:
        assert "keys lost" in detail
    assert design.deduct(Order("o-2", "sku-1", 1)).outcome is Outcome.ACCEPTED
    assert design.rewarms == 1 and design.stock("sku-1") == 1


def test_client_kill_cuts_only_the_labs_own_connections(redis_lab):
    if not real_redis(redis_lab):
        pytest.skip("CLIENT KILL is a real server's command; fakeredis simulates it")
    design = design_class("two_gate_lua")(redis_lab)
    design.setup({"sku-1": 3})
    kwargs = dict(redis_lab.redis.connection_pool.connection_kwargs)
    kwargs.pop("client_name")
    bystander = redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=redis_lab.redis.connection_pool.connection_class, **kwargs
        )
    )
    try:
        ids = bystander.client_id(), redis_lab.redis.client_id()
        nemesis = Nemesis(redis_lab, design, "redis_kill", attempts=9)
        with nemesis:
            nemesis.kill_redis_clients()
        # redis-py noticed the closed socket and connected anew: a new connection, a new id
        assert redis_lab.redis.client_id() != ids[1]
        assert bystander.client_id() == ids[0]  # not the lab's: left alone
    finally:
        bystander.close()


def test_db_kill_terminates_the_labs_database_sessions(lab):
    if lab.dialect == "sqlite":
        pytest.skip("SQLite has no server sessions")
    design = design_class("db_only")(lab)
    design.setup({"sku-1": 3})
    with lab.engine.connect() as held:
        held.execute(sa.text("SELECT 1"))
        nemesis = Nemesis(lab, design, "db_kill", attempts=9)
        with nemesis:
            nemesis.kill_db_sessions()
            with pytest.raises(sa.exc.DBAPIError):
                held.execute(sa.text("SELECT 1"))
    assert design.deduct(Order("o-1", "sku-1", 1)).outcome is Outcome.ACCEPTED
