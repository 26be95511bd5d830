"""The databases a task engine's shards move to when they leave the lab's: named, created, checked.

The article persists each task "to the appropriate sharded database". `task_engine_sharded_db`
keeps shard n in database n % D: database 0 is the lab's own (stock, anti-repeat rows, ledger and
every D-th task table), databases 1 … D-1 hold task tables only. Without URLs of its own it uses
one database *beside* the lab's: on SQLite a second file next to the lab's file
(`lab.sqlite` -> `lab-shards.sqlite`), on PostgreSQL and MariaDB a database named
`<lab's database>_shards` on the same server, created if it does not exist yet (the lab's user
needs the right to create databases). `shard_urls` names others, for instance a database on a
second server.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DBAPIError

from inventory_lab.backends import first_line, mask_url, sql_dialect, sql_engine
from inventory_lab.errors import BackendError, InvalidInput

SHARDS_SUFFIX = "_shards"  # `<lab's database>_shards`: the default second database on a server


def beside(url: str | URL, suffix: str = SHARDS_SUFFIX) -> str:
    """The URL of the database next to `url`'s: a sibling file on SQLite (`lab.sqlite` ->
    `lab-shards.sqlite`), a database named `<name><suffix>` on the same server otherwise."""
    parsed = make_url(url) if isinstance(url, str) else url
    sql_dialect(parsed.render_as_string(hide_password=False))  # BackendError if unsupported
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite":
        if not database or database == ":memory:":
            raise BackendError("in-memory SQLite has no file to put a second database beside")
        path = Path(database)
        sibling = path.with_name(f"{path.stem}{suffix.replace('_', '-')}{path.suffix}")
        return parsed.set(database=str(sibling)).render_as_string(hide_password=False)
    if not database:
        raise BackendError(f"{mask_url(str(parsed))}: no database named to put one beside")
    named = parsed.set(database=f"{database}{suffix}")
    return named.render_as_string(hide_password=False)


def ensure_database(url: str) -> None:
    """Create the database `url` names on its server if it does not exist (SQLite: nothing to
    do, the file is created on first connection). BackendError, with the URL masked, if the
    server refuses."""
    parsed = make_url(url)
    if sql_dialect(url) == "sqlite":
        return
    name = parsed.database
    if not name:
        raise BackendError(f"{mask_url(url)}: no database named")
    # Connect to the server's maintenance database: the one named does not exist yet.
    server = parsed.set(database="postgres" if parsed.get_backend_name() == "postgresql" else "")
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if _exists(conn, name):
                return
            quoted = conn.dialect.identifier_preparer.quote(name)  # an identifier cannot be bound
            try:
                conn.execute(sa.text(f"CREATE DATABASE {quoted}"))
            except DBAPIError:
                if not _exists(conn, name):  # not another process creating it at this moment
                    raise
    except DBAPIError as exc:
        raise BackendError(
            f"cannot create the database of {mask_url(url)}: {first_line(exc.orig)}"
        ) from exc
    finally:
        engine.dispose()


def _exists(conn: sa.Connection, name: str) -> bool:
    if conn.dialect.name == "postgresql":
        query = sa.text("SELECT 1 FROM pg_database WHERE datname = :name")
    else:
        query = sa.text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :name")
    return conn.execute(query, {"name": name}).first() is not None


def shard_engines(
    lab_engine: Engine, shard_urls: Sequence[str] | None, *, pool_size: int = 16
) -> list[Engine]:
    """Engines for the databases of shards 1 … D-1 (the lab's engine is database 0).

    `shard_urls=None`: the one database beside the lab's (created if missing). Refused before
    anything is created or connected (InvalidInput): not a list of strings, a URL repeated, or
    the lab's own database named again (its shards would be counted twice).
    """
    own = lab_engine.url.render_as_string(hide_password=False)
    if shard_urls is None:
        urls = [beside(lab_engine.url)]
    elif isinstance(shard_urls, str) or not all(isinstance(u, str) for u in shard_urls):
        raise InvalidInput(f"shard_urls must be a list of database URLs, got {shard_urls!r:.80}")
    else:
        urls = list(shard_urls)
    if not urls:
        raise InvalidInput("shard_urls names no database: give at least one")
    for url in urls:
        sql_dialect(url)  # BackendError for a URL that is not a supported database
    canonical = [_canonical(u) for u in urls]
    if _canonical(own) in canonical:
        raise InvalidInput(f"shard_urls names the lab's own database ({mask_url(own)})")
    if len(set(canonical)) < len(canonical):
        raise InvalidInput(f"shard_urls names a database twice: {[mask_url(u) for u in urls]}")
    engines: list[Engine] = []
    try:
        for url in urls:
            ensure_database(url)
            engines.append(sql_engine(url, pool_size=pool_size))
    except BackendError:
        for engine in engines:
            engine.dispose()
        raise
    return engines


def _canonical(url: str) -> str:
    """One spelling per database: SQLite paths resolved, server URLs without the password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return f"sqlite:{Path(parsed.database).resolve()}"
    return parsed.set(password=None, query={}).render_as_string(hide_password=True)
