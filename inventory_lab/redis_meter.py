"""Count the round trips a Redis client makes: what a gate-1 variant costs on the wire.

A round trip is one request the client sends and waits for: a single command, or a whole
pipeline / MULTI..EXEC block sent at once. `RoundTripMeter` wraps the client's connection pool so
that every connection it hands out counts its `send_packed_command` calls (redis-py sends one
packed request per round trip, fakeredis's connections included).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from inventory_lab.backends import hooked_connections


class RoundTripMeter:
    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def _wrap(self, send: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.count += 1
            return send(*args, **kwargs)

        counted.__wrapped__ = send  # type: ignore[attr-defined]
        return counted


@contextmanager
def metered(client: redis.Redis) -> Iterator[RoundTripMeter]:
    """Count the round trips `client` makes inside the block."""
    meter = RoundTripMeter()

    def count(conn: Any) -> None:
        conn.send_packed_command = meter._wrap(conn.send_packed_command)

    with hooked_connections(client, count):
        yield meter
