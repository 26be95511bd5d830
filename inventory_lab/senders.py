"""What a load generator's client sends an order to: a design, or a raw ceiling.

A benchmark figure means little alone; next to the fastest the same machinery can drive the same
server, it says how much of the ceiling a design reaches. So the load generator sends orders to a
`Target`, and a target is either a design (its `deduct`, exactly as a client calls it) or one of
three raw ceilings with nothing of the lab in the loop:

- `raw_evalsha`: the gate-1 Lua script by EVALSHA, straight through redis-py (hiredis parser),
  on the same keys and stock — every decision `two_gate_lua` makes at gate 1, and no gate 2;
- `raw_merged`: the same decisions merged per SKU by `two_gate_merged`'s window into one call of
  the batch script (options `window_ms`, `max_batch`), and no gate 2;
- `raw_sql`: `db_only`'s transaction (anti-repeat INSERT, conditional UPDATE, ledger INSERT,
  COMMIT) as constant SQL text on the bare DBAPI driver (psycopg, PyMySQL or sqlite3), no
  SQLAlchemy; parameters are always bound, never formatted in.

Each worker process opens its own sender (`open_sender`) with connection pools sized to its
client threads and warmed before the start, so that no connection is made in the measured window.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
from sqlalchemy.engine import make_url

from inventory_lab import keys, schema
from inventory_lab.backends import first_line, redis_client, sql_dialect
from inventory_lab.designs import design_class
from inventory_lab.designs.task_engine import TaskEngineDesign
from inventory_lab.designs.two_gate import DEFAULT_TTL_MS
from inventory_lab.designs.two_gate_merged import decide_in_one_call
from inventory_lab.gate_one_merging import DEFAULT_MAX_BATCH, DEFAULT_WINDOW_MS, MergingWindow
from inventory_lab.lab import Lab, open_lab
from inventory_lab.orders import Order, Outcome
from inventory_lab.scripts import lua_source
from inventory_lab.workload import deduct_as_client

log = logging.getLogger(__name__)

RAW_KINDS = ("raw_evalsha", "raw_merged", "raw_sql")
# Database connections the load may hold, all processes together: PostgreSQL allows 100 by
# default and the parent needs a few (task executors, probes). Past it, client threads queue for
# a pooled connection, as they would behind an app server's capped pool.
DB_CONNECTIONS = 64
_LUA_ANSWERS = {-1: Outcome.DUPLICATE, -2: Outcome.SOLD_OUT, -3: Outcome.ERROR}


@dataclass(frozen=True)
class Target:
    """A design by name (with options), or a raw ceiling: `raw_evalsha` or `raw_sql`."""

    kind: str  # a design name, or one of RAW_KINDS
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in RAW_KINDS:
            design_class(self.kind)  # unknown names fail here, in the parent

    @property
    def raw(self) -> bool:
        return self.kind in RAW_KINDS

    @property
    def label(self) -> str:
        return self.kind

    @property
    def uses_redis(self) -> bool:
        return self.kind in ("raw_evalsha", "raw_merged") or (
            not self.raw and design_class(self.kind).uses_redis
        )


class Sender(Protocol):
    def send(self, order: Order) -> Outcome: ...
    def close(self) -> None: ...


def prepare(target: Target, lab: Lab, initial: Mapping[str, int]) -> Any:
    """Load `initial` stock for the target (tables, and Redis warmed where it reads Redis).

    Returns the design instance the parent keeps for a design target (a task engine's executors
    run in it, and `drain()` is called on it after the load), else None.
    """
    if target.kind == "raw_sql":
        schema.reset(lab.engine, initial)
        return None
    if target.kind in ("raw_evalsha", "raw_merged"):
        design_class("two_gate_lua")(lab).setup(initial)
        return None
    instance = design_class(target.kind)(lab, **target.options)
    instance.setup(initial)
    return instance


def open_sender(target: Target, redis_url: str, db_url: str, namespace: str, layout: Any) -> Sender:
    """The sender a worker process drives, connected and warmed for `layout.clients` threads
    (at most this process's share of DB_CONNECTIONS database connections)."""
    clients = layout.clients
    if target.kind == "raw_evalsha":
        return RawEvalsha(redis_url, namespace, clients)
    if target.kind == "raw_merged":
        return RawMerged(redis_url, namespace, clients, **target.options)
    connections = max(1, min(clients, DB_CONNECTIONS // layout.processes))
    if target.kind == "raw_sql":
        return RawSql(db_url, connections)
    return DesignSender(target, redis_url, db_url, namespace, clients, connections)


class DesignSender:
    """A design's `deduct`, as a client calls it (bad input rejected, escaped errors unknown)."""

    def __init__(
        self,
        target: Target,
        redis_url: str,
        db_url: str,
        namespace: str,
        clients: int,
        connections: int,
    ) -> None:
        options = dict(target.options)
        if issubclass(design_class(target.kind), TaskEngineDesign):
            options["start_workers"] = False  # the parent's instance runs the executors
        self.lab = open_lab(
            redis_url, db_url, namespace=namespace, pool_size=connections, max_overflow=0
        )
        self.design = design_class(target.kind)(self.lab, **options)
        _ = self.design.catalog  # read once now, not in the first client's measured order
        _warm_sql_pool(self.lab, connections)
        _warm_redis_pool(self.lab.redis, clients)

    def send(self, order: Order) -> Outcome:
        return deduct_as_client(self.design, order).outcome

    def close(self) -> None:
        self.design.close()  # its background work first (a flag's subscription), then the lab
        self.lab.close()


class RawEvalsha:
    """The gate-1 script by EVALSHA and nothing else: the Redis ceiling of a Lua design."""

    def __init__(self, redis_url: str, namespace: str, clients: int) -> None:
        self.client = redis_client(redis_url)
        self.namespace = namespace
        self.script = self.client.register_script(lua_source("gate1"))
        self.client.script_load(self.script.script)  # loaded now: NOSCRIPT never in the window
        _warm_redis_pool(self.client, clients)

    def send(self, order: Order) -> Outcome:
        code_key = keys.anti_repeat_key(self.namespace, order.order_id, order.sku)
        stock_key = keys.stock_key(self.namespace, order.sku)
        try:
            left, _epoch = self.script(keys=[code_key, stock_key], args=[order.qty, DEFAULT_TTL_MS])
        except redis.RedisError:
            return Outcome.UNKNOWN
        return _LUA_ANSWERS.get(int(left), Outcome.ACCEPTED)

    def close(self) -> None:
        self.client.close()


class RawMerged:
    """Gate 1 merged and nothing else: `two_gate_merged`'s window and batch script, no gate 2 —
    the Redis ceiling of merging through Python, beside `RawEvalsha`'s one call per order."""

    def __init__(
        self,
        redis_url: str,
        namespace: str,
        clients: int,
        *,
        window_ms: float = DEFAULT_WINDOW_MS,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self.client = redis_client(redis_url)
        self.namespace = namespace
        self.script = self.client.register_script(lua_source("gate1_batch"))
        self.client.script_load(self.script.script)  # loaded now: NOSCRIPT never in the window
        self.window = MergingWindow(self._decide, window_ms=window_ms, max_batch=max_batch)
        _warm_redis_pool(self.client, clients)

    def _decide(self, orders: Sequence[Order]) -> tuple[str, list[int]]:
        return decide_in_one_call(self.script, self.namespace, orders, DEFAULT_TTL_MS)

    def send(self, order: Order) -> Outcome:
        try:
            _epoch, verdict = self.window.decide(order)
        except redis.RedisError:
            return Outcome.UNKNOWN
        return _LUA_ANSWERS.get(verdict, Outcome.ACCEPTED)

    def close(self) -> None:
        self.client.close()


# db_only's transaction as constant text; %s for psycopg and PyMySQL, ? for sqlite3.
_RAW_STATEMENTS = (
    "INSERT INTO anti_repeat (code) VALUES (%s)",
    "UPDATE stock SET num = num - %s WHERE sku = %s AND num - %s >= 0",
    "INSERT INTO orders (order_id, sku, qty, design) VALUES (%s, %s, %s, 'raw_sql')",
)


class RawSql:
    """`db_only`'s transaction on the bare driver: the database's ceiling through Python."""

    def __init__(self, db_url: str, connections: int) -> None:
        self.dialect = sql_dialect(db_url)
        self.url = make_url(db_url)
        statements = _RAW_STATEMENTS
        if self.dialect == "sqlite":
            statements = tuple(s.replace("%s", "?") for s in statements)
        self.insert_code, self.update_stock, self.insert_ledger = statements
        self.duplicate = _integrity_error(self.dialect)
        self._all = [self._connect() for _ in range(connections)]  # opened before the start
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for conn in self._all:
            self._idle.put(conn)

    def _connect(self) -> Any:
        url = self.url
        if self.dialect == "postgresql":
            import psycopg

            return psycopg.connect(
                host=url.host,
                port=url.port or 5432,
                user=url.username,
                password=url.password,
                dbname=url.database,
                connect_timeout=5,
            )
        if self.dialect == "mysql":
            import pymysql

            return pymysql.connect(
                host=url.host or "127.0.0.1",
                port=url.port or 3306,
                user=url.username,
                password=url.password or "",
                database=url.database,
                connect_timeout=5,
                autocommit=False,
            )
        conn = sqlite3.connect(url.database, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def send(self, order: Order) -> Outcome:
        conn = self._idle.get()  # more threads than connections queue here
        try:
            for _ in range(8):  # a deadlock or serialization failure is re-run
                try:
                    return self._transaction(conn, order)
                except self.duplicate:
                    conn.rollback()
                    return Outcome.DUPLICATE
                except Exception as exc:
                    conn.rollback()
                    if not _retryable(exc):  # counted as unknown in the load's outcomes
                        log.debug("raw_sql: %s unknown", order.anti_repeat_code, exc_info=True)
                        return Outcome.UNKNOWN
                    log.debug("raw_sql: %s re-run", order.anti_repeat_code, exc_info=True)
            return Outcome.ERROR
        finally:
            self._idle.put(conn)

    def _transaction(self, conn: Any, order: Order) -> Outcome:
        cursor = conn.cursor()
        try:
            cursor.execute(self.insert_code, (order.anti_repeat_code,))
            cursor.execute(self.update_stock, (order.qty, order.sku, order.qty))
            if cursor.rowcount == 0:
                conn.rollback()
                return Outcome.SOLD_OUT
            cursor.execute(self.insert_ledger, (order.order_id, order.sku, order.qty))
            conn.commit()
            return Outcome.ACCEPTED
        finally:
            cursor.close()

    def close(self) -> None:
        for conn in self._all:
            try:
                conn.close()
            except Exception:  # closing a broken connection: nothing left to do
                log.debug("raw_sql: closing a connection failed", exc_info=True)
        self._all.clear()


def _integrity_error(dialect: str) -> type[Exception]:
    if dialect == "postgresql":
        import psycopg

        return psycopg.errors.UniqueViolation
    if dialect == "mysql":
        import pymysql

        return pymysql.err.IntegrityError
    return sqlite3.IntegrityError


def _retryable(exc: Exception) -> bool:
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate in ("40001", "40P01"):
        return True
    args = getattr(exc, "args", ())
    if args and args[0] in (1205, 1213):
        return True
    return "database is locked" in first_line(exc)


def _warm_sql_pool(lab: Lab, clients: int) -> None:
    """Open `clients` pooled connections now, so that none is opened in the measured window."""
    held = [lab.engine.connect() for _ in range(clients)]
    for conn in held:
        conn.close()


def _warm_redis_pool(client: redis.Redis, clients: int) -> None:
    pool = client.connection_pool
    held = [pool.get_connection() for _ in range(clients)]
    for conn in held:
        pool.release(conn)
