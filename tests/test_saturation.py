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
