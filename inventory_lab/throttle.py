"""Hot-item throttling: limiters behind one interface, and a wrapper that throttles hot SKUs.

The article protects Redis from a flash sale with a per-JVM limiter ("10 ms -> at most 2
requests", Guava). The lab has three limiters with one method, `try_acquire(key) -> bool`:

- `WindowLimiter`: the article's per-process fixed window (W ms admits at most K). A fixed window
  admits up to 2K within W across a window boundary, and every process has its own.
- `TokenBucket`: a smooth token bucket like Guava's `RateLimiter` (rate per second, burst).
- `RedisSlidingWindow`: one limit for the whole cluster, a Lua script over a sorted set per key
  on Redis's clock: at most K admissions in any W ms, whichever process asks.

The lab implements its own because they are the subject being taught (and the window limiter
is the article's, which no library offers as such); tests cross-check them against the `limits`
library. `Throttled` puts a limiter in front of any design for hot SKUs only — configured, or
detected from the request rate by `HotSkuDetector` — and answers `throttled`, an outcome of its
own, so reports tell it from sold out.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import redis

from inventory_lab import keys
from inventory_lab.designs.base import Design
from inventory_lab.orders import Order, Outcome, Result
from inventory_lab.scripts import lua_source

Clock = Callable[[], float]  # seconds, monotonic


class ManualClock:
    """A clock moved by hand (`clock.now = 0.0095`), for limiters and detectors to read instead
    of time.monotonic: requests placed at exact instants, without sleeping or flakiness."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Limiter(Protocol):
    def try_acquire(self, key: str = "") -> bool: ...


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class WindowLimiter:
    """The article's limiter: fixed windows of `window_ms`, at most `limit` admissions in each."""

    def __init__(self, window_ms: float = 10, limit: int = 2, *, clock: Clock = time.monotonic):
        _positive("window_ms", window_ms)
        _positive_int("limit", limit)
        self.window_s = window_ms / 1000.0
        self.limit = limit
        self.clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int]] = {}  # key -> (window index, admitted)

    def try_acquire(self, key: str = "") -> bool:
        with self._lock:
            index = int(self.clock() // self.window_s)
            current, admitted = self._windows.get(key, (index, 0))
            if current != index:
                admitted = 0
            if admitted >= self.limit:
                self._windows[key] = (index, admitted)
                return False
            self._windows[key] = (index, admitted + 1)
            return True


class TokenBucket:
    """A smooth token bucket (Guava's RateLimiter, non-blocking): `rate` tokens per second
    refill a bucket of `burst` tokens; each admission takes one."""

    def __init__(self, rate: float, burst: int = 1, *, clock: Clock = time.monotonic):
        _positive("rate", rate)
        _positive_int("burst", burst)
        self.rate = float(rate)
        self.burst = burst
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)

    def try_acquire(self, key: str = "") -> bool:
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1.0, now)
            return True


class RedisSlidingWindow:
    """A cluster-wide limit: at most `limit` admissions in any `window_ms`, across processes."""

    def __init__(self, client: redis.Redis, namespace: str, window_ms: int = 10, limit: int = 2):
        _positive_int("window_ms", window_ms)
        _positive_int("limit", limit)
        self.client = client
        self.namespace = namespace
        self.window_ms = window_ms
        self.limit = limit
        self.script = client.register_script(lua_source("sliding_window"))
        # Load it now, so the first call is already an EVALSHA hit (fakeredis's TCP server
        # closes the connection on the NOSCRIPT reply that redis-py would otherwise recover from).
        client.script_load(self.script.script)
        self._ids = itertools.count()
        self._me = uuid.uuid4().hex[:8]

    def key_for(self, key: str) -> str:
        return keys.throttle_key(self.namespace, key)

    def try_acquire(self, key: str = "") -> bool:
        return self.admitted_at_us(key) is not None

    def admitted_at_us(self, key: str = "") -> int | None:
        """Try to acquire: the admission's time on Redis's clock in microseconds (the score the
        script stored), or None when throttled. The limit holds exactly on that clock."""
        member = f"{self._me}-{next(self._ids)}"
        admitted = self.script(keys=[self.key_for(key)], args=[self.window_ms, self.limit, member])
        return int(admitted) if admitted else None


class HotSkuDetector:
    """A SKU is hot while it gets more than `threshold` requests within `window_s`."""

    def __init__(self, threshold: int, window_s: float = 1.0, *, clock: Clock = time.monotonic):
        _positive_int("threshold", threshold)
        _positive("window_s", window_s)
        self.threshold = threshold
        self.window_s = window_s
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = defaultdict(deque)

    def observe(self, sku: str) -> bool:
        """Count one request for `sku`; True if the SKU is hot now."""
        with self._lock:
            now = self.clock()
            seen = self._seen[sku]
            seen.append(now)
            while seen and seen[0] <= now - self.window_s:
                seen.popleft()
            return len(seen) > self.threshold


class Throttled:
    """Any design with a limiter in front of its hot SKUs; the rest pass straight through."""

    def __init__(
        self,
        design: Design,
        limiter: Limiter,
        *,
        hot_skus: Iterable[str] = (),
        detector: HotSkuDetector | None = None,
    ) -> None:
        self.design = design
        self.limiter = limiter
        self.hot_skus = frozenset(hot_skus)
        self.detector = detector
        if not self.hot_skus and detector is None:
            raise ValueError("name the hot SKUs or give a detector, or nothing is throttled")
        self.name = f"{design.name}+throttle"
        self.uses_redis = design.uses_redis

    def is_hot(self, sku: str) -> bool:
        detected = self.detector is not None and self.detector.observe(sku)
        return sku in self.hot_skus or detected

    def check(self, order: Order) -> None:
        self.design.check(order)

    def deduct(self, order: Order) -> Result:
        if self.is_hot(order.sku) and not self.limiter.try_acquire(order.sku):
            self.design.check(order)  # bad input is rejected, never throttled
            return Result(Outcome.THROTTLED, "hot SKU over its limit")
        return self.design.deduct(order)  # the design checks the order itself

    def setup(self, initial: Mapping[str, int]) -> None:
        self.design.setup(initial)

    def drain(self) -> None:
        self.design.drain()

    def stock(self, sku: str) -> int:
        return self.design.stock(sku)

    def pending(self) -> dict[str, int]:
        return self.design.pending()

    def close(self) -> None:
        self.design.close()
