"""The lab's handle on its backends: one Redis client, one SQL engine, one key namespace.

`open_lab()` with no arguments is the embedded default (fakeredis + a SQLite file); pass URLs for
real servers (a Redis Cluster too: `redis+cluster://host:port`). The masked URLs are what reports
and stored results show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.cluster import RedisCluster
from sqlalchemy.engine import Engine

from inventory_lab import keys
from inventory_lab.backends import (
    FAKE_REDIS,
    default_db_url,
    mask_url,
    redis_client,
    sql_dialect,
    sql_engine,
)
from inventory_lab.errors import BackendError

_NAMESPACE = re.compile(r"[A-Za-z0-9_\-]{1,40}")


@dataclass
class Lab:
    redis: redis.Redis | RedisCluster
    engine: Engine
    redis_url: str  # masked
    db_url: str  # masked
    dialect: str  # 'sqlite', 'postgresql' or 'mysql'
    namespace: str = "ilab"
    scratch_file: Path | None = None  # the default SQLite file, removed on close

    def clear_redis(self) -> int:
        """Delete every key of this lab's namespace; returns how many went. (On a cluster,
        SCAN runs on every master and each DEL goes to the keys' slots.)"""
        pattern = keys.namespace_pattern(self.namespace)
        if isinstance(self.redis, RedisCluster):
            masters = RedisCluster.PRIMARIES
            found = self.redis.scan_iter(match=pattern, count=1000, target_nodes=masters)
        else:
            found = self.redis.scan_iter(match=pattern, count=1000)
        doomed = list(found)
        for start in range(0, len(doomed), 500):
            self.redis.delete(*doomed[start : start + 500])
        return len(doomed)

    def close(self) -> None:
        self.engine.dispose()
        self.redis.close()
        if self.scratch_file is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.scratch_file}{suffix}").unlink(missing_ok=True)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def open_lab(
    redis_url: str = FAKE_REDIS,
    db_url: str | None = None,
    *,
    namespace: str = "ilab",
    pool_size: int = 16,
    max_overflow: int | None = None,
) -> Lab:
    """Connect to both backends (raises BackendError, with masked URLs, if either fails)."""
    if not _NAMESPACE.fullmatch(namespace):
        raise BackendError(f"namespace {namespace!r}: 1-40 letters, digits, '_' or '-'")
    scratch = None
    if db_url is None:
        db_url = default_db_url()
        scratch = Path(db_url.removeprefix("sqlite:///"))
    dialect = sql_dialect(db_url)
    # Redis first: connecting to it leaves nothing behind, where a SQLite engine creates its file.
    client = redis_client(redis_url, client_name=f"ilab-{namespace}")
    try:
        engine = sql_engine(db_url, pool_size=pool_size, max_overflow=max_overflow)
    except BackendError:
        client.close()
        raise
    return Lab(
        redis=client,
        engine=engine,
        redis_url=mask_url(redis_url),
        db_url=mask_url(db_url),
        dialect=dialect,
        namespace=namespace,
        scratch_file=scratch,
    )
