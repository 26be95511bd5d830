"""Which resource saturated: process groups from URLs, CPU windows, and the verdict."""

import os

from inventory_lab.backends import configured_redis_url
from inventory_lab.saturation import CpuMeter, CpuWindow, server_process_names, verdict


def test_local_servers_are_found_by_name_and_redis_by_port():
    groups = server_process_names(
        "redis://127.0.0.1:6390/2", "postgresql+psycopg://u:pw@localhost/db"
    )
    assert groups == {"redis-server": ("redis-server", ":6390"), "postgres": ("postgres", "")}
    assert server_process_names(None, "mysql+pymysql://root@127.0.0.1/test") == {
        "mariadbd": ("mariadbd", "")
    }
    assert server_process_names("redis://cache.example:6379/0", "sqlite:///x.db") == {}


def test_the_verdict_names_what_ran_out():
    idle = CpuWindow(wall_s=1, machine=0.4, cores=2, servers={"redis-server": 0.2}, clients=[0.1])
    assert verdict(idle).startswith("no CPU saturated")
    gil = CpuWindow(wall_s=1, machine=1.2, cores=2, servers={}, clients=[0.97, 0.2])
    assert verdict(gil).startswith("client processes (0.97 cores")
    redis = CpuWindow(wall_s=1, machine=1.1, cores=2, servers={"redis-server": 0.95}, clients=[])
    assert "redis-server (0.95 cores" in verdict(redis)
    full = CpuWindow(wall_s=1, machine=1.9, cores=2, servers={"postgres": 1.0}, clients=[0.6])
    assert verdict(full).startswith("machine CPU (1.9 of 2 cores: clients 0.60, postgres 1.00")


def test_the_meter_counts_cpu_spent_in_the_window():
    meter = CpuMeter(configured_redis_url(), None, extra={"this process": os.getpid()})
    meter.start()
    total = 0
    for i in range(2_000_000):  # burn some CPU in this process
        total += i
    meter.stop()
    window = meter.window([0.5])
    assert window.servers["this process"] > 0
    assert window.machine > 0 and window.cores == os.cpu_count()
    assert window.as_dict()["clients"] > 0


def test_the_verdict_names_row_locks_and_a_queue_at_the_client():
    calm = CpuWindow(wall_s=1, machine=0.5, cores=2, servers={}, clients=[0.2])
    assert verdict(calm, lock_waiters=0.4).startswith("no CPU saturated")
    locked = verdict(calm, lock_waiters=11.5)
    assert locked == "row locks (11.5 sessions waiting for one, on average)"
    queued = verdict(calm, queued="arrivals outran the 4 clients")
    assert queued == "arrivals outran the 4 clients"


def test_the_lock_meter_sees_a_session_wait_for_a_row(lab):
    import threading
    import time

    import sqlalchemy as sa

    from inventory_lab import schema
    from inventory_lab.saturation import LockMeter

    schema.reset(lab.engine, {"sku-0001": 10})
    meter = LockMeter(lab.engine, every_s=0.01)
    if meter.query is None:  # SQLite: its writers wait inside the busy handler, unseen
        meter.start()
        meter.stop()
        assert meter.average is None
        return
    update = sa.update(schema.stock).values(num=schema.stock.c.num - 1)
    holder = lab.engine.connect()
    holder.begin()
    holder.execute(update)  # holds the row
    waiter = threading.Thread(target=lambda: _update_in_own_transaction(lab.engine, update))
    meter.start()
    waiter.start()
    deadline = time.monotonic() + 30
    while not any(meter.samples) and time.monotonic() < deadline:
        time.sleep(0.01)
    holder.commit()
    holder.close()
    waiter.join()
    meter.stop()
    assert max(meter.samples) >= 1 and meter.average > 0


def test_the_lock_meter_reads_innodb_no_faster_than_it_refreshes(lab):
    from inventory_lab.saturation import INNODB_TRX_REFRESH_S, LockMeter

    meter = LockMeter(lab.engine, every_s=0.01)
    if lab.dialect == "mysql":  # read every 10 ms, INNODB_TRX would show its first answer forever
        assert meter.every_s >= INNODB_TRX_REFRESH_S > 0.1
    else:
        assert meter.every_s == 0.01


def _update_in_own_transaction(engine, update):
    with engine.begin() as conn:
        conn.execute(update)
