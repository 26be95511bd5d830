"""The nemesis: faults that strike while orders are in flight, at seeded random moments.

A fault that strikes only between two quiet halves of a run proves little: the dangerous moments
are when an order has passed gate 1 and not yet committed gate 2, or a task is claimed and not
yet applied. The nemesis (Jepsen's name for it) runs in a thread beside the workload and strikes
several times per run, at seeded random moments; when the workload ends it heals everything.
Its moments are measured in the workload's progress, not in seconds: "when attempt 37 starts",
"until attempt 52 starts" (`run_workload(on_attempt=nemesis.on_attempt)`), so that every run
gets its strikes while orders are in flight, on a fast idle machine as on a busy slow one. Each
start and end is an event in its history, on the workload's clock, so a run's records and its
faults can be read side by side.

A fault is a *window* (switched on, later off: an outage, lost commit acknowledgements, killed or
paused connections, a stalled worker, crashes between the gates, expired anti-repeat codes) or
an *instant* (Redis loses its data, a re-warm, a worker dies, redis-server is killed and
restarted). `FAULTS` lists them with what each needs. `redis_failover` is a window on a Redis
Cluster of the caller's own: a master cut off from its frozen replica goes on acknowledging
writes, and at the window's end it dies and the replica is promoted without them (failover.py).

On real servers the Redis and database faults are the servers' own: `CLIENT KILL` of the lab's
connections (found by their client name), `CLIENT PAUSE` and kill -9 + restart of a redis-server
started for the purpose (`redis_server.RedisServer`, never a shared one), and
`pg_terminate_backend` / MariaDB's `KILL CONNECTION` of the sessions on the lab's database. On the
embedded default they are simulated at the client (faults.py).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from typing import Any

import fakeredis
import pandas as pd
import redis
import sqlalchemy as sa
from redis.cluster import RedisCluster
from sqlalchemy.pool import NullPool

from inventory_lab.designs.base import BaseDesign
from inventory_lab.designs.task_engine import TaskEngineDesign
from inventory_lab.designs.two_gate import TwoGate
from inventory_lab.failover import Failover, stock_hashes
from inventory_lab.faults import (
    DbOutage,
    LostCommitAck,
    RedisConnectionsKilled,
    RedisPaused,
    crash_between_gates,
    expire_before_retry,
)
from inventory_lab.lab import Lab
from inventory_lab.redis_cluster import LocalCluster
from inventory_lab.redis_server import RedisServer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fault:
    kind: str  # "window" or "instant"
    needs: str  # "redis" (a Redis design), "workers" (the task engine), "db server", ""
    what: str


FAULTS: dict[str, Fault] = {
    "anti_repeat_expiry": Fault(
        "window", "redis", "a resend finds its Redis anti-repeat code gone"
    ),
    "crash_between_gates": Fault("window", "redis", "the app dies after gate 1, before gate 2"),
    "worker_crash": Fault("instant", "workers", "a task executor dies holding a claimed task"),
    "worker_pause": Fault(
        "window", "workers", "executors stall past their lease between claim and apply"
    ),
    "redis_data_loss": Fault("instant", "redis", "Redis loses the lab's keys (stock, codes)"),
    "rewarm": Fault("instant", "redis", "an operator re-warms Redis from the database"),
    "redis_kill": Fault("window", "redis", "the lab's Redis connections are killed"),
    "redis_pause": Fault("window", "redis", "Redis pauses its clients (CLIENT PAUSE)"),
    "redis_restart": Fault("instant", "redis", "redis-server is killed (-9) and restarted empty"),
    "lost_commit_ack": Fault("window", "", "a COMMIT lands and its acknowledgement is lost"),
    "db_outage": Fault("window", "", "every statement and commit fails, mid-transaction too"),
    "db_kill": Fault("window", "db server", "the lab's database sessions are terminated"),
    "redis_failover": Fault(
        "window",
        "cluster",
        "a cluster master acknowledges writes its replica never gets, dies, and the replica is "
        "promoted (failover.py)",
    ),
}


def applies(fault: str, design: type[BaseDesign], lab: Lab) -> bool:
    """Whether `fault` has something to act on in `design` on `lab`'s backends."""
    needs = FAULTS[fault].needs
    if needs == "redis":
        return issubclass(design, TwoGate)
    if needs == "cluster":  # a cluster the lab runs: a redis-server of its own, on ports of its own
        return issubclass(design, TwoGate) and isinstance(lab.redis, RedisCluster)
    if needs == "workers":
        return issubclass(design, TaskEngineDesign)
    if needs == "db server":
        return lab.dialect != "sqlite"
    return True


def real_redis(lab: Lab) -> bool:
    return not isinstance(lab.redis, fakeredis.FakeRedis)


HISTORY_COLUMNS = ["t_s", "event", "fault", "detail"]


@dataclass(frozen=True)
class NemesisEvent:
    t_s: float  # seconds on the workload's clock (run_workload's t0)
    event: str  # "start", "end" or "strike" (an instant)
    fault: str
    detail: str = ""


class Nemesis:
    """Strikes `fault` at seeded random moments while the block runs (see the module docstring).

    `attempts`: how many attempts the workload sends; the nemesis strikes `strikes` (a range)
    times, the first at a random attempt in the first 30% of the run (while there is stock to
    sell), the others in the first 90%, a window lasting `window` (a range, as a share of the
    attempts). `server`: a redis-server of the caller's own, which
    `lab.redis` talks to, for the real `redis_restart` and `redis_pause`.
    """

    def __init__(
        self,
        lab: Lab,
        design: BaseDesign,
        fault: str,
        *,
        attempts: int,
        seed: int = 0,
        strikes: tuple[int, int] = (3, 5),
        window: tuple[float, float] = (0.03, 0.10),
        server: RedisServer | None = None,
        cluster: LocalCluster | None = None,
    ) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose one of {', '.join(FAULTS)}")
        if not applies(fault, type(design), lab):
            raise ValueError(f"{fault} has nothing to act on in {design.name} on {lab.db_url}")
        self.lab, self.design, self.fault = lab, design, fault
        self.server = server
        self.real = real_redis(lab)
        if fault in ("redis_restart", "redis_pause") and self.real and server is None:
            raise ValueError(f"{fault} on a real Redis needs a redis-server of its own (server=)")
        self._failover: Failover | None = None
        if fault == "redis_failover":
            if cluster is None:
                raise ValueError("redis_failover needs the LocalCluster the lab runs on (cluster=)")
            self._failover = Failover(cluster, stock_hashes(lab), lab.namespace)
            strikes = (1, 1)  # a failover takes a second or two: one per run, and a window
            window = (0.10, 0.25)  # long enough for the master to acknowledge writes in it
        self._rng = random.Random(seed)
        # the first strike lands in this share of the run, while there is stock to sell (the
        # failover's, earlier: its window must catch decrements, and the sale go on after it)
        self._first = 0.15 if fault == "redis_failover" else 0.3
        self.plan = self._schedule(attempts, strikes, window)
        self._waiting: dict[int, int] = {}  # attempt -> the nemesis's actions still due there
        for start, end in self.plan:
            for at in {start, end}:
                self._waiting[at] = self._waiting.get(at, 0) + 1
        self._progress = threading.Condition()
        self._started = 0  # attempts the workload has started
        self._holding = False  # new attempts wait (a failover under way)
        self._stop = threading.Event()
        self._stack = ExitStack()
        self._thread: threading.Thread | None = None
        self._active = threading.Event()  # the window faults' switch
        self._lock = threading.Lock()
        self.events: list[NemesisEvent] = []
        self.t0 = time.perf_counter()

    # --- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> Nemesis:
        self._install()
        self.t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, name="nemesis", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        with self._progress:
            self._progress.notify_all()
        if self._thread is not None:
            self._thread.join()
        self._heal()
        self._stack.close()

    @property
    def strikes(self) -> int:
        return sum(1 for e in self.events if e.event in ("start", "strike"))

    def history(self) -> pd.DataFrame:
        return pd.DataFrame([vars(e) for e in self.events], columns=HISTORY_COLUMNS)

    # --- the schedule -------------------------------------------------------------------------

    def _schedule(
        self, attempts: int, strikes: tuple[int, int], window: tuple[float, float]
    ) -> list[tuple[int, int]]:
        """(start, end) attempt numbers of each strike, end == start for an instant; strikes
        do not overlap (a window that would start inside the one before starts after it)."""
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        drawn = []
        for n in range(self._rng.randint(*strikes)):
            # the first strike early, while there is stock to sell; the others anywhere
            start = self._rng.randrange(max(int(attempts * (self._first if n == 0 else 0.9)), 1))
            length = 0
            if FAULTS[self.fault].kind == "window":
                length = max(1, round(attempts * self._rng.uniform(*window)))
            drawn.append((start, length))
        plan: list[tuple[int, int]] = []
        for start, length in sorted(drawn):
            if plan:
                start = max(start, plan[-1][1] + 1)
            if start < attempts:
                plan.append((start, min(start + length, attempts - 1)))
        return plan

    def on_attempt(self, index: int) -> None:
        """The workload starts attempt `index` (pass as `run_workload(on_attempt=...)`).

        The client that starts an attempt at which the nemesis acts waits until it has acted
        (the other clients go on, orders in flight): every planned strike happens, however busy
        the machine and however fast the run.
        """
        with self._progress:
            if index + 1 > self._started:
                self._started = index + 1
                self._progress.notify_all()
            if index in self._waiting:
                self._progress.wait_for(
                    lambda: self._waiting[index] == 0 or self._stop.is_set(), timeout=30
                )
            # a failover under way: new orders wait for it (the shop holds them for the second
            # or two it takes); the orders already in flight hear their errors
            self._progress.wait_for(lambda: not self._holding or self._stop.is_set(), timeout=30)

    def _reached(self, attempt: int, *, repeat: Callable[[], None] | None = None) -> bool:
        """Wait until the workload starts `attempt` (False: the run ended first), running
        `repeat` every 5 ms meanwhile."""
        with self._progress:
            while self._started <= attempt and not self._stop.is_set():
                if repeat is not None:
                    self._progress.release()
                    try:
                        repeat()
                    finally:
                        self._progress.acquire()
                self._progress.wait(0.005)
            return not self._stop.is_set()

    def _loop(self) -> None:
        for start, end in self.plan:
            if not self._reached(start):
                return
            try:
                if FAULTS[self.fault].kind == "instant":
                    self._record("strike", self.strike())
                    continue
                self._record("start", self._open())
                self._acted(start)
                self._reached(end, repeat=self._repeat())
                self._record("end", self._close())
            except Exception as exc:  # a fault that could not strike is an event, not a crash
                log.warning("nemesis: %s could not strike", self.fault, exc_info=True)
                self._record("failed", f"{type(exc).__name__}: {exc}"[:200])
            finally:  # never leave a client waiting at a strike that failed
                self._acted(start)
                self._acted(end)

    def _acted(self, attempt: int) -> None:
        """One action due at `attempt` is done: the client waiting there may go on."""
        with self._progress:
            if self._waiting.get(attempt, 0) > 0:
                self._waiting[attempt] -= 1
            self._progress.notify_all()

    def _record(self, event: str, detail: str = "") -> None:
        with self._lock:
            self.events.append(
                NemesisEvent(round(time.perf_counter() - self.t0, 6), event, self.fault, detail)
            )

    # --- the faults ---------------------------------------------------------------------------

    def _install(self) -> None:
        """Hooks that stay for the whole run and strike only while `_active` is set."""
        design, lab, active, seed = self.design, self.lab, self._active, self._rng.randrange(2**31)
        if self._failover is not None:  # settled before the sale starts: the cut is quick
            self._failover.prepare()
        if self.fault == "anti_repeat_expiry":
            self._stack.enter_context(expire_before_retry(design, active))  # type: ignore[arg-type]
        elif self.fault == "crash_between_gates":
            self._stack.enter_context(crash_between_gates(design, active=active))  # type: ignore[arg-type]
        elif self.fault == "lost_commit_ack":
            self._hook(LostCommitAck(lab.engine, probability=0.5, seed=seed))
        elif self.fault == "db_outage":
            self._hook(DbOutage(lab.engine))
        elif self.fault in ("redis_kill", "redis_restart") and not self.real:
            self._hook(RedisConnectionsKilled(lab.redis, probability=0.3, seed=seed))
        elif self.fault == "redis_pause" and not self.real:
            self._hook(RedisPaused(lab.redis, pause_s=0.02))
        if self.fault in ("redis_kill", "redis_pause") and self.real:
            pool = lab.redis.connection_pool
            kwargs = dict(pool.connection_kwargs)
            kwargs.pop("client_name", None)  # a client of its own, never killed with the lab's
            admin_pool = redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
            self._admin_redis = redis.Redis(connection_pool=admin_pool)
            self._stack.callback(self._admin_redis.close)
        if self.fault == "db_kill":
            self._admin_db = sa.create_engine(lab.engine.url, poolclass=NullPool)
            self._stack.callback(self._admin_db.dispose)
            # the pool logs every connection it finds killed when it resets it: expected here
            pool_log = logging.getLogger("sqlalchemy.pool")
            self._stack.callback(pool_log.setLevel, pool_log.level)
            pool_log.setLevel(logging.CRITICAL)

    def _hook(self, fault: Any) -> None:
        fault.active = self._active  # one switch for the hook and the schedule
        self._stack.enter_context(fault)

    def _open(self) -> str:
        if self._failover is not None:
            return self._failover.cut()
        if self.fault == "worker_pause":
            task_engine = self.design.task_engine  # type: ignore[attr-defined]
            task_engine.pause_after_claim_s = 2 * task_engine.lease_s
            return f"executors stall {task_engine.pause_after_claim_s:.2f} s after claiming"
        if self.fault == "redis_pause" and self.real:
            self._admin_redis.execute_command("CLIENT", "PAUSE", 50, "ALL")
            return "CLIENT PAUSE 50 ALL"
        self._active.set()
        return ""

    def _repeat(self) -> Callable[[], None] | None:
        if self.fault == "redis_kill" and self.real:
            return self.kill_redis_clients
        if self.fault == "db_kill":
            return self.kill_db_sessions
        return None

    def _close(self) -> str:
        if self.fault == "worker_pause":
            self.design.task_engine.pause_after_claim_s = 0.0  # type: ignore[attr-defined]
        self._active.clear()
        if self._failover is not None and self._failover.is_cut:
            self._hold(True)
            try:
                return self._failover.fail()
            finally:
                self._hold(False)
        return ""

    def _hold(self, holding: bool) -> None:
        with self._progress:
            self._holding = holding
            self._progress.notify_all()

    def strike(self) -> str:
        """Strike an instant fault now; returns what happened."""
        design, lab = self.design, self.lab
        if self.fault == "worker_crash":
            design.task_engine.kill_after_claim(1)  # type: ignore[attr-defined]
            return "the next executor to claim a task dies holding it"
        if self.fault == "redis_data_loss":
            return f"{lab.clear_redis()} keys lost"
        if self.fault == "rewarm":
            design.rewarm()  # type: ignore[attr-defined]
            return "re-warmed"
        if self.fault == "redis_restart":
            if self.real:
                assert self.server is not None
                self.server.restart()
                return f"kill -9 and restart of redis-server :{self.server.port}"
            keys_lost = lab.clear_redis()
            self._active.set()  # every connection's next commands die, as after a restart
            time.sleep(0.005)
            self._active.clear()
            return f"{keys_lost} keys lost, connections cut"
        raise AssertionError(self.fault)

    def kill_redis_clients(self) -> None:
        mine = f"ilab-{self.lab.namespace}"
        for client in self._admin_redis.client_list(_type="normal"):
            if client.get("name") == mine:
                with suppress(redis.ResponseError):  # it went by itself meanwhile
                    self._admin_redis.client_kill_filter(_id=client["id"])

    def kill_db_sessions(self) -> None:
        with self._admin_db.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
                return
            ids = conn.execute(
                sa.text(
                    "SELECT id FROM information_schema.processlist "
                    "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
                )
            ).scalars()
            for session in list(ids):
                with suppress(sa.exc.DBAPIError):  # it ended by itself meanwhile
                    conn.execute(sa.text("KILL CONNECTION :id"), {"id": int(session)})

    def _heal(self) -> None:
        """Every fault off, servers up, and no connection the fault broke left in a pool."""
        self._close()
        server = self.server
        down = server is not None and (server.process is None or server.process.poll() is not None)
        if self.fault == "redis_restart" and self.real and down:
            server.start()  # type: ignore[union-attr]
        if self.fault == "db_kill":
            self.lab.engine.dispose()
        if self.fault in ("redis_kill", "redis_restart"):
            self.lab.redis.connection_pool.disconnect()
        if self.fault == "redis_pause" and self.real:
            self._admin_redis.execute_command("CLIENT", "UNPAUSE")
        if self.fault == "worker_crash":
            self.design.task_engine.kill_after_claim(0)  # type: ignore[attr-defined]
        if self._failover is not None:  # the dead master back, as a replica, before the checks
            self._failover.rejoin()
