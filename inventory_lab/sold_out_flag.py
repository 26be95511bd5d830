"""The local sold-out flag: one app process's memory that a SKU is sold out.

Beyond the article. In a flash sale most orders arrive after the hot SKU is gone, and each of
them still costs gate 1 a Redis call to hear "sold out". The well-known flash-sale projects keep
a flag in the app process instead: once a process has seen the SKU's stock at zero, it answers
"sold out" itself, and Redis only hears from orders that can still succeed.

A flag can only refuse, never accept, so it cannot oversell. What it can do is refuse when stock
came back: a *false sold-out*. Stock comes back by a restock, a give-back (an order gate 2
refused) or a re-warm; each one PUBLISHes the SKU on the restock channel and every process
subscribed clears its flag (`restock.announce_stock_rose`). A process that misses the message
(its subscription dropped, a publish lost with a failing connection — Redis pub/sub is
at-most-once) would refuse forever; the flag's TTL bounds that: after `ttl_s` the next order asks
Redis again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from inventory_lab import keys

DEFAULT_TTL_S = 1.0


class SoldOutFlags:
    """The SKUs this process believes sold out, each until a restock message or its TTL.

    `listen=False` subscribes to nothing: only the TTL clears a flag (a process that misses every
    message). `clock` is the monotonic clock the TTL runs on (a test may drive its own).
    """

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        listen: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not ttl_s > 0:
            raise ValueError(f"ttl_s must be a positive number of seconds, got {ttl_s!r}")
        self.ttl_s = float(ttl_s)
        self._clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()
        self.raised = 0  # flags set
        self.cleared = 0  # flags cleared by a message
        self.expired = 0  # flags that ran out their TTL
        self.heard = 0  # restock messages received (for a flag or not)
        self.broken = 0  # times the subscription's connection failed (messages may be lost)
        self.stale = 0  # flags not set: a restock message came in while Redis was asked
        self._news: dict[str, int] = {}  # restock messages heard, per SKU
        self._pubsub: Any = None
        self._thread: Any = None
        if listen:
            self._pubsub = client.pubsub(ignore_subscribe_messages=True)
            # SUBSCRIBE is sent before this returns: a message published after it reaches us.
            self._pubsub.subscribe(**{keys.restock_channel(namespace): self._on_message})
            self._thread = self._pubsub.run_in_thread(
                sleep_time=0.01, daemon=True, exception_handler=self._on_broken
            )

    def is_set(self, sku: str) -> bool:
        """Whether `sku` is flagged sold out now (a flag past its TTL is dropped here)."""
        with self._lock:
            until = self._until.get(sku)
            if until is None:
                return False
            if self._clock() < until:
                return True
            del self._until[sku]
            self.expired += 1
            return False

    def ticket(self, sku: str) -> int:
        """Take before asking Redis; hand to `set`: how many restock messages named `sku`."""
        with self._lock:
            return self._news.get(sku, 0)

    def set(self, sku: str, ticket: int | None = None) -> bool:
        """Flag `sku` sold out for `ttl_s`; whether it was set. With the `ticket` taken before
        Redis said "zero": not when a restock message for `sku` came in since (the zero is old
        news, and flagging it would refuse the restocked units until the TTL)."""
        with self._lock:
            if ticket is not None and self._news.get(sku, 0) != ticket:
                self.stale += 1
                return False
            if sku not in self._until:
                self.raised += 1
            self._until[sku] = self._clock() + self.ttl_s
            return True

    def clear(self, sku: str) -> bool:
        """Drop the flag of `sku`; whether there was one."""
        with self._lock:
            return self._until.pop(sku, None) is not None

    def flagged(self) -> frozenset[str]:
        with self._lock:
            now = self._clock()
            return frozenset(sku for sku, until in self._until.items() if now < until)

    def _on_message(self, message: dict[str, Any]) -> None:
        sku = message["data"]
        sku = sku.decode() if isinstance(sku, bytes) else str(sku)
        with self._lock:
            self.heard += 1
            self._news[sku] = self._news.get(sku, 0) + 1
            if self._until.pop(sku, None) is not None:
                self.cleared += 1

    def _on_broken(self, exc: BaseException, pubsub: Any, thread: Any) -> None:
        """The subscription's connection failed (Redis restarted, killed, paused): messages
        published meanwhile are lost, the TTL covers them; the next read reconnects and
        subscribes again."""
        with self._lock:
            self.broken += 1
        time.sleep(0.05)

    @property
    def listening(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._pubsub is not None:
            self._pubsub.close()
            self._pubsub = None
