"""Backends as parametrized fixtures: the embedded default everywhere, real servers where given.

`INVENTORY_LAB_REDIS_URL` (one URL) and `INVENTORY_LAB_DB_URLS` (comma-separated SQLAlchemy URLs)
name real servers, `INVENTORY_LAB_REDIS_CLUSTER_URL` a Redis Cluster (`cluster_lab`). Each real
database gets a scratch database of its own, dropped at the end; each test gets its own Redis key
namespace, deleted at the end. Without the variables the real cases skip; with CI=true a missing
or unreachable server fails the run instead.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from inventory_lab import BackendError, Lab, open_lab, redis_server
from inventory_lab.backends import (
    configured_db_urls,
    configured_redis_cluster_url,
    configured_redis_url,
    mask_url,
    sql_dialect,
)
from inventory_lab.shard_databases import beside

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REAL_REDIS = configured_redis_url()
REAL_DBS = configured_db_urls()
REAL_REDIS_CLUSTER = configured_redis_cluster_url()  # redis+cluster://… (`./lab cluster up`)
RUN_ID = uuid.uuid4().hex[:8]
# A test's second database: not `_shards`, the name a sharded design makes beside the lab's
# database when it is given none (the review does so), which would then exist already.
SECOND_SUFFIX = "_second"


def wait_until(predicate, timeout_s: float = 5.0) -> bool:
    """Poll `predicate` every 10 ms until it holds (True) or `timeout_s` passes (False): for what
    another thread does soon (a pub/sub message handled), never a measured time."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _missing(what: str) -> None:
    message = f"{what} (set INVENTORY_LAB_REDIS_URL / INVENTORY_LAB_DB_URLS; install redis-server)"
    if IN_CI:
        pytest.fail(f"CI=true but {message}", pytrace=False)
    pytest.skip(message)


def _db_id(url: str) -> str:
    return url if url in ("sqlite", "real-db") else sql_dialect(url)


DB_PARAMS = ["sqlite", *(REAL_DBS or ["real-db"])]
REDIS_PARAMS = ["fake", REAL_REDIS or "real-redis"]


class _ScratchDatabases:
    """One scratch database per real server URL for the whole session."""

    def __init__(self) -> None:
        self.created: dict[tuple[str, str], str] = {}  # (server URL, suffix) -> scratch URL

    def url_for(self, server_url: str, suffix: str = "") -> str:
        """The session's scratch database on the server (`suffix`: a second one beside it)."""
        if (server_url, suffix) not in self.created:
            self.created[server_url, suffix] = self._create(server_url, suffix)
        return self.created[server_url, suffix]

    def second_for(self, scratch_url: str) -> str:
        """A second scratch database on the server of `scratch_url` (one of this session's)."""
        for (server_url, suffix), url in list(self.created.items()):
            if not suffix and url == scratch_url:
                return self.url_for(server_url, SECOND_SUFFIX)
        raise LookupError(f"not a scratch database of this session: {mask_url(scratch_url)}")

    def _create(self, server_url: str, suffix: str = "") -> str:
        name = f"ilab_test_{RUN_ID}{suffix}"
        engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                quoted = conn.dialect.identifier_preparer.quote(name)
                conn.execute(sa.text(f"CREATE DATABASE {quoted}"))
        except sa.exc.DBAPIError as exc:
            _missing(f"database {mask_url(server_url)} does not answer: {exc.orig}")
        finally:
            engine.dispose()
        return make_url(server_url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        for (server_url, suffix), scratch_url in self.created.items():
            names = [make_url(scratch_url).database]
            if not suffix:  # and the database a design may have made beside it (its shards)
                names.append(make_url(beside(scratch_url)).database)
            engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                for name in names:
                    quoted = conn.dialect.identifier_preparer.quote(name)
                    force = " WITH (FORCE)" if conn.dialect.name == "postgresql" else ""
                    conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted}{force}"))
            engine.dispose()


@pytest.fixture(scope="session")
def scratch_databases() -> Iterator[_ScratchDatabases]:
    scratch = _ScratchDatabases()
    yield scratch
    scratch.drop_all()


@pytest.fixture
def second_database(tmp_path, scratch_databases):
    """`second_database(lab)`: the URL of a second database beside the lab's, of its kind (the
    task engine's shards in two databases): a second SQLite file, or a second scratch database
    on the lab's real server, dropped with the first."""

    def url_beside(lab: Lab) -> str:
        if lab.dialect == "sqlite":
            return f"sqlite:///{tmp_path / 'shards.sqlite'}"
        return scratch_databases.second_for(lab.engine.url.render_as_string(hide_password=False))

    return url_beside


@pytest.fixture(params=DB_PARAMS, ids=_db_id)
def db_url(request: pytest.FixtureRequest, tmp_path, scratch_databases) -> str:
    """A database URL: a fresh SQLite file, or a scratch database on each real server given."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lab.sqlite'}"
    if request.param == "real-db":
        _missing("no real database configured")
    return scratch_databases.url_for(request.param)


@pytest.fixture(params=REDIS_PARAMS)
def redis_url(request: pytest.FixtureRequest) -> str:
    """`fake` (an in-process server of this test's own) or the real Redis given."""
    if request.param == "fake":
        return f"fake://{uuid.uuid4().hex}"
    if request.param == "real-redis":
        _missing("no real Redis configured")
    return request.param


def _open(redis: str, db: str) -> Iterator[Lab]:
    namespace = f"t{RUN_ID}-{uuid.uuid4().hex[:8]}"
    try:
        lab = open_lab(redis, db, namespace=namespace, pool_size=8)
    except BackendError as exc:
        _missing(str(exc))
    try:
        yield lab
    finally:
        lab.clear_redis()
        lab.close()


@pytest.fixture
def lab(db_url: str) -> Iterator[Lab]:
    """A lab on fakeredis and each database backend (for the DB-side designs)."""
    yield from _open(f"fake://{uuid.uuid4().hex}", db_url)


@pytest.fixture
def redis_lab(redis_url: str, tmp_path) -> Iterator[Lab]:
    """A lab on each Redis backend, with a SQLite file beside it."""
    yield from _open(redis_url, f"sqlite:///{tmp_path / 'lab.sqlite'}")


@pytest.fixture
def cluster_url() -> str:
    """The Redis Cluster named by INVENTORY_LAB_REDIS_CLUSTER_URL (`./lab cluster up`)."""
    if REAL_REDIS_CLUSTER is None:
        _missing("no Redis Cluster configured (INVENTORY_LAB_REDIS_CLUSTER_URL; ./lab cluster up)")
    return REAL_REDIS_CLUSTER


@pytest.fixture
def cluster_lab(cluster_url: str, db_url: str) -> Iterator[Lab]:
    """A lab on the Redis Cluster and each database backend."""
    yield from _open(cluster_url, db_url)


@pytest.fixture(params=["fake", "own-redis"])
def server_lab(request, tmp_path) -> Iterator[Lab]:
    """A lab whose Redis server is this test's alone (fakeredis, or a redis-server started on a
    port of its own), for what must never touch a shared server: SCRIPT FLUSH, kill -9."""
    if request.param == "fake":
        yield from _open(f"fake://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'lab.sqlite'}")
        return
    if not redis_server.available():
        _missing("redis-server is not installed")
    with redis_server.RedisServer() as server:
        lab = open_lab(server.url, f"sqlite:///{tmp_path / 'lab.sqlite'}", pool_size=8)
        lab.server = server  # type: ignore[attr-defined]
        try:
            yield lab
        finally:
            lab.close()


@pytest.fixture
def default_lab(tmp_path) -> Iterator[Lab]:
    """The embedded default only: fakeredis and a SQLite file."""
    yield from _open(f"fake://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'lab.sqlite'}")


PAIRS = ["fake+sqlite", "real+postgresql", "real+mysql"]


@pytest.fixture(params=PAIRS)
def paired_lab(request, tmp_path, scratch_databases) -> Iterator[Lab]:
    """Both backends of one kind: fakeredis + SQLite, or the real Redis + each real database."""
    if request.param == "fake+sqlite":
        yield from _open(f"fake://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'lab.sqlite'}")
        return
    dialect = request.param.split("+")[1]
    urls = [u for u in REAL_DBS if sql_dialect(u) == dialect]
    if REAL_REDIS is None or not urls:
        _missing(f"no real Redis and {dialect} configured")
    yield from _open(REAL_REDIS, scratch_databases.url_for(urls[0]))


@pytest.fixture(params=PAIRS)
def paired_urls(request, tmp_path, scratch_databases) -> tuple[str, str]:
    """(Redis URL, database URL) of one kind, for what connects from other processes:
    `fake` (the bench serves it over TCP) + a SQLite file, or the real Redis + each real DB."""
    if request.param == "fake+sqlite":
        return "fake", f"sqlite:///{tmp_path / 'lab.sqlite'}"
    dialect = request.param.split("+")[1]
    urls = [u for u in REAL_DBS if sql_dialect(u) == dialect]
    if REAL_REDIS is None or not urls:
        _missing(f"no real Redis and {dialect} configured")
    return REAL_REDIS, scratch_databases.url_for(urls[0])


@pytest.fixture
def bench_namespace() -> str:
    return f"t{RUN_ID}-{uuid.uuid4().hex[:8]}"
