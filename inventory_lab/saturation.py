"""Which resource ran out: CPU of the client processes, of redis-server, of the database, of the
machine, and the database's row locks, sampled around one measured window.

A rate is a statement about whatever saturated first. On a 2-core machine that is often not the
design: the load generator's own processes, or all cores together, can be the wall. `CpuMeter`
reads the CPU seconds of the servers' processes (found by name and, for Redis, by port; local
servers only) and of the whole machine at the start and end of a window; `verdict` names the
resource that was busy, in cores, against what it can give (redis-server executes commands on one
thread; a client process mostly runs on one, behind its interpreter lock). `LockMeter` asks the
database how many sessions wait for a lock: on one hot row, that queue is the ceiling, and it
moves with how long each transaction holds the row (its round trips and the client's own time).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import psutil
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

BUSY = 0.85  # a resource this busy, as a fraction of what it can give, counts as saturated
FAKE_SERVER = "fakeredis (bench process)"
_LOCAL = {"127.0.0.1", "localhost", "::1", None, ""}


@dataclass
class CpuWindow:
    """CPU used in one window, in cores (CPU seconds per wall second)."""

    wall_s: float
    machine: float  # all cores together, everything on the machine
    cores: int
    servers: dict[str, float] = field(default_factory=dict)  # 'redis-server', 'postgres', …
    clients: list[float] = field(default_factory=list)  # each load process

    def as_dict(self) -> dict[str, float]:
        out = {"machine": round(self.machine, 2), "clients": round(sum(self.clients), 2)}
        out.update({name: round(v, 2) for name, v in self.servers.items()})
        return out


def server_process_names(redis_url: str | None, db_url: str | None) -> dict[str, tuple[str, str]]:
    """{group: (process name, port text or '')} for the local servers behind the URLs."""
    groups: dict[str, tuple[str, str]] = {}
    if redis_url and redis_url.startswith("redis://"):
        url = make_url(redis_url.replace("redis://", "redis+x://", 1))
        if url.host in _LOCAL:
            groups["redis-server"] = ("redis-server", f":{url.port or 6379}")
    if db_url:
        url = make_url(db_url)
        if url.host in _LOCAL and url.drivername.startswith("postgresql"):
            groups["postgres"] = ("postgres", "")
        elif url.host in _LOCAL and url.drivername.startswith("mysql"):
            groups["mariadbd"] = ("mariadbd", "")
    return groups


class CpuMeter:
    """Sample at `start()` and `stop()`; `window(client_cpu_s)` is what was used between."""

    def __init__(
        self, redis_url: str | None, db_url: str | None, *, extra: dict[str, int] | None = None
    ) -> None:
        self.groups = server_process_names(redis_url, db_url)
        self.extra = dict(extra or {})  # {group: pid}, e.g. the process serving fakeredis
        self._t0 = 0.0
        self._machine0 = 0.0
        self._procs0: dict[str, dict[int, float]] = {}
        self._t1 = 0.0
        self._machine1 = 0.0
        self._procs1: dict[str, dict[int, float]] = {}

    def start(self) -> None:
        self._t0, self._machine0, self._procs0 = time.monotonic(), _machine_busy(), self._read()

    def stop(self) -> None:
        self._t1, self._machine1, self._procs1 = time.monotonic(), _machine_busy(), self._read()

    def _read(self) -> dict[str, dict[int, float]]:
        seen: dict[str, dict[int, float]] = {group: {} for group in self.groups}
        for proc in psutil.process_iter(["name", "cmdline", "cpu_times"]):
            info = proc.info
            for group, (name, port) in self.groups.items():
                names = (name, "mysqld") if name == "mariadbd" else (name,)
                if info["name"] not in names or info["cpu_times"] is None:
                    continue
                if port and not any(port in part for part in info["cmdline"] or ()):
                    continue
                times = info["cpu_times"]
                seen[group][proc.pid] = times.user + times.system
        for group, pid in self.extra.items():
            times = psutil.Process(pid).cpu_times()
            seen[group] = {pid: times.user + times.system}
        return seen

    def window(self, client_cpu_s: list[float]) -> CpuWindow:
        """CPU used between start() and stop(), every part over the same span (the load
        processes' own CPU seconds included), so that the parts add up to at most the machine."""
        span = max(1e-9, self._t1 - self._t0)
        servers = {}
        for group, after in self._procs1.items():
            before = self._procs0.get(group, {})
            # a process born in the window counts from zero; one that died in it is not seen
            used = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
            servers[group] = used / span
        return CpuWindow(
            wall_s=span,
            machine=(self._machine1 - self._machine0) / span,
            cores=os.cpu_count() or 1,
            servers=servers,
            clients=[c / span for c in client_cpu_s],
        )


def _machine_busy() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


# Sessions waiting for a lock right now, as the server itself reports them (constant SQL).
_LOCK_WAITERS = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'",
    "mysql": "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'",
}


INNODB_TRX_REFRESH_S = 0.15


class LockMeter:
    """How many sessions wait for a lock, on average over a window, sampled every `every_s`
    from the server's own view (PostgreSQL's pg_stat_activity, InnoDB's transactions). None
    where the database does not say (SQLite's writers wait inside their busy handler)."""

    def __init__(self, engine: Engine, *, every_s: float = 0.02) -> None:
        name = "mysql" if engine.dialect.name == "mariadb" else engine.dialect.name
        self.query = _LOCK_WAITERS.get(name)
        self.engine = engine
        # InnoDB refreshes INNODB_TRX only when it was not read for 0.1 s: read it more often
        # and it never changes again.
        self.every_s = max(every_s, INNODB_TRX_REFRESH_S) if name == "mysql" else every_s
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.query is None:
            return
        self._thread = threading.Thread(target=self._sample, name="lock-meter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def average(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None

    def _sample(self) -> None:
        assert self.query is not None
        statement = sa.text(self.query)
        # AUTOCOMMIT: PostgreSQL freezes pg_stat_activity for the length of a transaction
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            while not self._stop.wait(self.every_s):
                self.samples.append(int(conn.execute(statement).scalar_one()))


def verdict(
    window: CpuWindow, *, lock_waiters: float | None = None, queued: str | None = None
) -> str:
    """The saturated resource, in words, with the numbers behind it: CPU (of what), row locks
    (sessions waiting, on average), and a queue at the client (open loop: arrivals outran the
    clients)."""
    found = []
    if window.machine >= BUSY * window.cores:
        users = {"clients": sum(window.clients), **window.servers}
        known = sum(users.values())
        users["kernel and the rest"] = max(0.0, window.machine - known)
        shares = ", ".join(f"{name} {used:.2f}" for name, used in users.items())
        found.append(f"machine CPU ({window.machine:.1f} of {window.cores} cores: {shares})")
    busiest_client = max(window.clients, default=0.0)
    if busiest_client >= BUSY:
        found.append(
            f"client processes ({busiest_client:.2f} cores in the busiest of "
            f"{len(window.clients)}: its interpreter lock)"
        )
    redis_cpu = window.servers.get("redis-server", 0.0)
    if redis_cpu >= BUSY:
        found.append(f"redis-server ({redis_cpu:.2f} cores: its one command thread)")
    fake = window.servers.get(FAKE_SERVER, 0.0)
    if fake >= BUSY:
        found.append(f"{FAKE_SERVER} ({fake:.2f} cores: one interpreter)")
    for name in ("postgres", "mariadbd"):
        used = window.servers.get(name, 0.0)
        if used >= BUSY * window.cores:
            found.append(f"{name} ({used:.1f} cores)")
    if lock_waiters is not None and lock_waiters >= 1.0:
        found.append(f"row locks ({lock_waiters:.1f} sessions waiting for one, on average)")
    if queued:
        found.append(queued)
    if found:
        return "; ".join(found)
    return "no CPU saturated: the time went to waiting (round trips, row locks, fsync)"
