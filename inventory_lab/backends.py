"""Turn a URL into a client: Redis (`fake` or `redis://…`) and SQL (SQLite, PostgreSQL, MariaDB).

This is the one place that knows about drivers and dialects. The embedded default needs no server:
`fake` is fakeredis with Lua (lupa) and SQLite is a file. Real servers are `redis://host:port/db`,
`postgresql+psycopg://user@host/db` and `mysql+pymysql://user@host/db`; `redis+cluster://host:port`
is a Redis Cluster (any one node: the client finds the others; see `redis_cluster`). Passwords
never leave this module unmasked: `mask_url` is what every report, log line and error message
shows.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import fakeredis
import redis
import sqlalchemy as sa
from redis.backoff import NoBackoff
from redis.cluster import ClusterPipeline, RedisCluster
from redis.commands.core import Script
from redis.exceptions import ClusterDownError, RedisClusterException, SlotNotCoveredError
from redis.retry import Retry
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from inventory_lab.errors import BackendError

FAKE_REDIS = "fake"
SQL_DRIVERS = {"sqlite": "sqlite", "postgresql+psycopg": "postgresql", "mysql+pymysql": "mysql"}
# One file per process: two runs at once never drop each other's tables. (Not a directory named
# like the package: a script run from the temp directory would import it instead.)
DEFAULT_SQLITE_DIR = Path(tempfile.gettempdir()) / "inventory-lab-data"
REDIS_URL_VARIABLE = "INVENTORY_LAB_REDIS_URL"
REDIS_CLUSTER_URL_VARIABLE = "INVENTORY_LAB_REDIS_CLUSTER_URL"
# a cluster URL's scheme -> the scheme redis-py's RedisCluster takes
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
DB_URLS_VARIABLE = "INVENTORY_LAB_DB_URLS"

_fake_servers: dict[str, fakeredis.FakeServer] = {}
_fake_lock = threading.Lock()

T = TypeVar("T")


def default_db_url() -> str:
    """A SQLite file of this process's own in the temp directory."""
    return f"sqlite:///{DEFAULT_SQLITE_DIR / f'lab-{os.getpid()}.sqlite'}"


def configured_redis_url() -> str | None:
    """The real Redis named by INVENTORY_LAB_REDIS_URL, if any (tests and notebooks use it)."""
    return os.environ.get(REDIS_URL_VARIABLE, "").strip() or None


def configured_redis_cluster_url() -> str | None:
    """The Redis Cluster named by INVENTORY_LAB_REDIS_CLUSTER_URL (`redis+cluster://…`), if any."""
    return os.environ.get(REDIS_CLUSTER_URL_VARIABLE, "").strip() or None


def configured_db_urls() -> list[str]:
    """The real databases named, comma-separated, by INVENTORY_LAB_DB_URLS."""
    return [u.strip() for u in os.environ.get(DB_URLS_VARIABLE, "").split(",") if u.strip()]


# scheme://user:password@host…: the password runs to the LAST '@' (it may hold '#', '?', '/' or
# '@', which a browser-style split would take for the end of it).
_USERINFO = re.compile(
    r"^(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@]*):(?P<password>.*)@(?P<tail>[^@]*)$", re.S
)


def mask_url(url: str) -> str:
    """The URL with its password replaced by '***', on one printable line (safe to print,
    log and store)."""
    match = _USERINFO.match(url)
    if match:
        url = f"{match['head']}:***@{match['tail']}"
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in url)


# --- Redis -------------------------------------------------------------------------------------


def redis_client(
    url: str = FAKE_REDIS, *, timeout_s: float = 5.0, client_name: str | None = None
) -> redis.Redis | RedisCluster:
    """A Redis client for `fake`, `fake://NAME` (a separate in-process server), `redis://…`, or
    a cluster client for `redis+cluster://host:port` (`RedisCluster`, same settings).

    Clients of the same fake name share one in-process server, like clients of one real server.
    A real client never resends a command by itself (redis-py can retry on a connection error):
    after the connection dropped, the command may have run, and a blind resend of a gate-1 script
    would find its own anti-repeat code and answer "duplicate". `client_name` (CLIENT SETNAME)
    lets the lab's own connections be told apart on a shared server.
    """
    if url == FAKE_REDIS or url.startswith("fake://"):
        name = url.removeprefix("fake://") if url != FAKE_REDIS else "default"
        with _fake_lock:
            server = _fake_servers.setdefault(name, fakeredis.FakeServer())
        return fakeredis.FakeRedis(server=server, decode_responses=True)
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in ("redis", "rediss", "unix", *CLUSTER_SCHEMES):
        raise BackendError(
            f"Redis URL must be 'fake' or start with redis://, rediss://, unix:// or "
            f"redis+cluster://; got {mask_url(url)!r}"
        )
    settings: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "max_connections": 256,
        "retry": Retry(NoBackoff(), 0),
        "client_name": client_name,
    }
    client: redis.Redis | RedisCluster
    try:
        if scheme in CLUSTER_SCHEMES:
            client = LabRedisCluster.from_url(_cluster_target(url, scheme), **settings)
        else:
            client = redis.Redis.from_url(url, **settings)
        client.ping()
    except (ValueError, TypeError, redis.RedisError, RedisClusterException) as exc:
        raise BackendError(f"Redis at {mask_url(url)} does not answer: {first_line(exc)}") from exc
    return client


def _cluster_target(url: str, scheme: str) -> str:
    """`redis+cluster://…` as the `redis://…` URL RedisCluster takes; a cluster has only
    database 0, so any other is refused."""
    target = CLUSTER_SCHEMES[scheme] + url[len(scheme) :]
    address, _, query = target.split("://", 1)[1].rsplit("@", 1)[-1].partition("?")
    if address.partition("/")[2] not in ("", "0") or re.search(r"(^|&)db=(?!0(&|$))", query):
        raise BackendError(f"a Redis Cluster has database 0 only; got {mask_url(url)!r}")
    return target


class _ClusterScript(Script):
    """A Lua script that also runs queued in a cluster pipeline. redis-py refuses `evalsha`
    there (and a pipeline cannot load a script): the script is loaded on every master once per
    pipeline, then EVALSHA is queued as a plain command, routed by its keys' slot."""

    def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        if not isinstance(client, ClusterPipeline):
            return super().__call__(keys, args, client)
        loaded = vars(client).setdefault("_lab_loaded_scripts", set())
        if self.sha not in loaded:
            self.sha = self.registered_client.script_load(self.script)
            loaded.add(self.sha)
        keys = list(keys or ())
        return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *(args or ()))


class LabRedisCluster(RedisCluster):
    """redis-py's cluster client, whose scripts also run inside its pipelines, and whose script
    calls the server judges: keys of several slots go to the first key's master, which answers
    CROSSSLOT (a ResponseError, handled as any Redis error), where redis-py would refuse the
    call itself with an exception of its own."""

    def register_script(self, script: Any) -> Script:
        return _ClusterScript(self, script)

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """As redis-py's, except that a slot no master serves for the moment (a failover under
        way) is a Redis error like the others (ClusterDownError), not redis-py's own
        exception: the designs answer it as any Redis error, never as an unknown outcome."""
        try:
            return super().execute_command(*args, **kwargs)
        except SlotNotCoveredError as exc:
            raise ClusterDownError(f"CLUSTERDOWN {exc}") from exc

    def determine_slot(self, *args: Any) -> int | None:
        try:
            return super().determine_slot(*args)
        except RedisClusterException:
            if str(args[0]).upper() not in ("EVAL", "EVALSHA") or int(args[2]) < 2:
                raise
            return int(self.keyslot(args[3]))


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _no_delay_server() -> type:
    """fakeredis's TCP server, answering without Nagle's delay (as redis-server does).

    Without TCP_NODELAY a reply written in pieces waits for the client's delayed ACK: about
    40 ms per pipelined request on Linux loopback, which a benchmark would charge to the design.
    """
    from fakeredis import TcpFakeServer

    class NoDelayFakeServer(TcpFakeServer):
        def get_request(self) -> tuple[socket.socket, object]:
            conn, address = super().get_request()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return conn, address

    return NoDelayFakeServer


@contextmanager
def serve_fake_redis() -> Iterator[str]:
    """A fakeredis server on a loopback TCP port, for other processes; yields its redis:// URL."""
    port = free_port()
    server = _no_delay_server()(("127.0.0.1", port), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, name="fake-redis-tcp", daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def hooked_connections(client: redis.Redis, hook: Callable[[Any], None]) -> Iterator[None]:
    """While the block runs, `hook(conn)` runs once on each connection `client`'s pool hands
    out, to set instance attributes over its methods (`send_packed_command`, `read_response`):
    how the lab meters round trips, injects faults and schedules steps, on fakeredis and on real
    Redis alike. A connection an enclosing hook already patched is left to it. On leaving, the
    attributes each hook set are removed and the pool hands out connections as before."""
    pool = client.connection_pool
    original_get = pool.get_connection
    enclosing = vars(pool).get("get_connection")  # an enclosing hook's, restored on leaving
    added: list[tuple[Any, set[str]]] = []

    def get_connection(*args: Any, **kwargs: Any) -> Any:
        conn = original_get(*args, **kwargs)
        if "send_packed_command" not in vars(conn):
            before = set(vars(conn))
            hook(conn)
            added.append((conn, set(vars(conn)) - before))
        return conn

    pool.get_connection = get_connection  # type: ignore[method-assign]
    try:
        yield
    finally:
        if enclosing is None:
            del pool.get_connection
        else:
            pool.get_connection = enclosing  # type: ignore[method-assign]
        for conn, names in added:
            for name in names:
                delattr(conn, name)


# --- SQL ---------------------------------------------------------------------------------------


def sql_dialect(url: str) -> str:
    """'sqlite', 'postgresql' or 'mysql' for a supported URL; BackendError otherwise."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise BackendError(f"not a database URL: {mask_url(url)!r}") from exc
    dialect = SQL_DRIVERS.get(parsed.drivername)
    if dialect is None:
        supported = ", ".join(f"{d}://" for d in SQL_DRIVERS)
        raise BackendError(f"unsupported database URL {mask_url(url)!r}: use one of {supported}")
    return dialect


def sql_engine(
    url: str | None = None, *, pool_size: int = 16, max_overflow: int | None = None
) -> Engine:
    """A SQLAlchemy 2 engine for the URL (default: a SQLite file in the temp directory).

    The pool keeps `pool_size` connections and opens up to `max_overflow` more under load
    (default 4× the pool; 0 makes threads queue for a connection, as a capped app server does).
    """
    overflow = pool_size * 4 if max_overflow is None else max_overflow
    url = url or default_db_url()
    dialect = sql_dialect(url)
    if dialect == "sqlite" and (make_url(url).database or ":memory:") == ":memory:":
        raise BackendError(
            "in-memory SQLite is not supported: every connection would see a database of its "
            "own; give a file, sqlite:///path"
        )
    try:
        if dialect == "sqlite":
            engine = _sqlite_engine(url, pool_size, overflow)
        else:
            engine = sa.create_engine(
                url,
                pool_size=pool_size,
                max_overflow=overflow,
                pool_recycle=3600,
                connect_args={"connect_timeout": 5},
            )
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except (DBAPIError, ArgumentError, OSError, TypeError, ValueError) as exc:
        # TypeError / ValueError: a query parameter the driver does not know, a NUL in a path
        raise BackendError(
            f"database at {mask_url(url)} does not answer: {first_line(exc)}"
        ) from exc
    return engine


def _sqlite_engine(url: str, pool_size: int, max_overflow: int) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args={"timeout": 30, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # WAL lets readers run beside the one writer; the busy timeout makes writers queue
        # instead of failing at once with "database is locked".
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


class db_now(FunctionElement):
    """The database server's clock in epoch seconds (a float), in SQL.

    Leases and backoffs compare times written by many workers: taking them all from the one
    database clock means a worker whose own clock runs fast or slow cannot steal or keep a task.
    """

    type = sa.Double()
    inherit_cache = True


@compiles(db_now)
def _db_now_printed(_element: db_now, _compiler: object, **_kw: object) -> str:
    # Only for printing a statement (str(), the statement meter): every supported database has
    # its own rendering below.
    return "db_now()"


@compiles(db_now, "postgresql")
def _db_now_postgresql(_element: db_now, _compiler: object, **_kw: object) -> str:
    return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"


@compiles(db_now, "mysql")
@compiles(db_now, "mariadb")
def _db_now_mysql(_element: db_now, _compiler: object, **_kw: object) -> str:
    return "CAST(UNIX_TIMESTAMP(SYSDATE(6)) AS DOUBLE)"


@compiles(db_now, "sqlite")
def _db_now_sqlite(_element: db_now, _compiler: object, **_kw: object) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


def is_retryable(exc: DBAPIError) -> bool:
    """A deadlock, serialization failure or lock timeout: the transaction may simply be re-run."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)  # psycopg 3
    if sqlstate in ("40001", "40P01"):
        return True
    args = getattr(orig, "args", ())
    if args and args[0] in (1205, 1213):  # MariaDB/MySQL: lock wait timeout, deadlock
        return True
    return isinstance(exc, OperationalError) and "database is locked" in str(orig)


def is_deadlock(exc: DBAPIError) -> bool:
    """The server's own deadlock error: PostgreSQL's 40P01, MariaDB/MySQL's 1213."""
    if getattr(exc.orig, "sqlstate", None) == "40P01":
        return True
    args = getattr(exc.orig, "args", ())
    return bool(args) and args[0] == 1213


def in_transaction(
    engine: Engine,
    work: Callable[[Connection], T],
    *,
    attempts: int = 8,
    on_retry: Callable[[DBAPIError], None] | None = None,
) -> T:
    """Run `work` in one transaction; re-run it when the database reports a deadlock.

    Under a hot row MariaDB picks deadlock victims and PostgreSQL may too; re-running the whole
    transaction is the documented answer. Any other error propagates (the transaction rolled back).
    `on_retry(error)` is told of each re-run's cause (the designs count deadlocks with it).
    """
    for attempt in range(attempts):
        try:
            with engine.begin() as conn:
                return work(conn)
        except DBAPIError as exc:
            if attempt == attempts - 1 or not is_retryable(exc):
                raise
            if on_retry is not None:
                on_retry(exc)
            time.sleep(0.001 * 2**attempt)
    raise AssertionError("unreachable")


def first_line(exc: BaseException) -> str:
    """The exception's first line of text (its type name if it has none), printable."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)
