"""Request merging at gate 1: orders for one SKU that arrive close together share one Redis call.

`MergingWindow` sits between the client threads and a *batch decider* (a callable that decides a
list of orders in one go, e.g. one EVALSHA of scripts/gate1_batch.lua). Per SKU, the first order
to arrive when no batch is open leads one: it waits until `window_ms` have passed since it
arrived, or until `max_batch` orders have joined, closes the batch, calls the decider once and
hands every order its own answer. An order that arrives after the batch closed opens the next
one. No background thread: the leader does the work, so there is nothing to stop.

What the window costs is latency: every order waits for its batch to be sent. `stats()` tells
how long (p50/p99, in µs) and how many orders a batch merged on average — the two numbers to weigh
against the round trips saved. `window_ms=0, max_batch=1` sends every order alone, as if there
were no window. This is not part of the article; it is how flash-sale systems cut the round
trips to their hottest key (`designs/two_gate_merged.py` puts it in front of gate 1).
"""

from __future__ import annotations

import math
import numbers
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

from inventory_lab.errors import InvalidInput
from inventory_lab.orders import Order

DEFAULT_WINDOW_MS = 1.0
DEFAULT_MAX_BATCH = 64
MAX_WAIT_US = 60_000_000  # waits longer than a minute are recorded as a minute

# Decides a batch of orders for one SKU, in the order given: (epoch, one verdict per order).
BatchDecider = Callable[[Sequence[Order]], tuple[str, Sequence[int]]]


@dataclass(frozen=True, slots=True)
class WindowStats:
    """What the window did so far: how much it merged and the latency it added."""

    orders: int  # orders sent through the window
    batches: int  # calls to the batch decider
    mean_batch: float  # orders per call (0.0 before any)
    p50_wait_us: float  # the time an order waited for its batch to be sent, in µs
    p99_wait_us: float


class _Batch:
    """The orders of one SKU that will be decided by one call, and, once sent, its answer."""

    def __init__(self, sku: str, lock: threading.Lock) -> None:
        self.sku = sku
        self.orders: list[Order] = []
        self.arrived: list[float] = []  # perf_counter() at each order's arrival
        self.closed = False  # no order joins any more
        self.full = threading.Condition(lock)  # the leader waits on it for the window to end
        self.done = threading.Event()  # the answer (or the error) is there
        self.epoch = ""
        self.verdicts: list[int] = []
        self.error: BaseException | None = None


class MergingWindow:
    """Merge concurrent orders per SKU into batches for `decide_batch` (see the module doc)."""

    def __init__(
        self,
        decide_batch: BatchDecider,
        *,
        window_ms: float = DEFAULT_WINDOW_MS,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        if (
            isinstance(window_ms, bool)
            or not isinstance(window_ms, numbers.Real)
            or not math.isfinite(window_ms)
            or window_ms < 0
        ):
            raise InvalidInput(f"window_ms must be a finite number >= 0, got {window_ms!r:.40}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, numbers.Integral):
            raise InvalidInput(f"max_batch must be a positive integer, got {max_batch!r:.40}")
        if max_batch < 1:
            raise InvalidInput(f"max_batch must be a positive integer, got {max_batch!r:.40}")
        self.decide_batch = decide_batch
        self.window_ms = float(window_ms)
        self.max_batch = int(max_batch)
        self._lock = threading.Lock()
        self._open: dict[str, _Batch] = {}  # per SKU, the batch still taking orders
        self._stats_lock = threading.Lock()
        self._waits_us = HdrHistogram(1, MAX_WAIT_US, 3)
        self._orders = 0
        self._batches = 0

    def decide(self, order: Order) -> tuple[str, int]:
        """(epoch, verdict) of `order`, decided in a batch with the orders of its SKU that
        arrived in the same window. An error of the batch's call is raised to every order of
        the batch: none of them knows what Redis did."""
        arrived = time.perf_counter()
        with self._lock:
            batch = self._open.get(order.sku)
            leader = batch is None
            if batch is None:
                batch = self._open[order.sku] = _Batch(order.sku, self._lock)
            index = len(batch.orders)
            batch.orders.append(order)
            batch.arrived.append(arrived)
            if len(batch.orders) >= self.max_batch:
                self._close(batch)  # wakes the leader, who sends it
        if leader:
            self._lead(batch, deadline=arrived + self.window_ms / 1000.0)
        else:
            batch.done.wait()
        if batch.error is not None:
            # The same exception object, raised in every thread of the batch: each caller
            # handles it as it would its own call's (e.g. a redis.RedisError in gate 1).
            raise batch.error
        return batch.epoch, batch.verdicts[index]

    def stats(self) -> WindowStats:
        """The window's numbers so far (see WindowStats)."""
        with self._stats_lock:
            orders, batches = self._orders, self._batches
            p50 = float(self._waits_us.get_value_at_percentile(50.0)) if orders else 0.0
            p99 = float(self._waits_us.get_value_at_percentile(99.0)) if orders else 0.0
        return WindowStats(orders, batches, orders / batches if batches else 0.0, p50, p99)

    def _lead(self, batch: _Batch, *, deadline: float) -> None:
        """Hold the batch open until the window ends or it is full, then send it; whatever
        happens, every order of the batch gets an answer or the error (no follower is left
        waiting on a batch nobody sends)."""
        try:
            with self._lock:
                while not batch.closed:
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        self._close(batch)
                        break
                    batch.full.wait(remaining)
            self._record(batch, sent=time.perf_counter())
            epoch, verdicts = self.decide_batch(tuple(batch.orders))
            if len(verdicts) != len(batch.orders):
                raise RuntimeError(
                    f"the batch decider answered {len(verdicts)} verdicts "
                    f"for {len(batch.orders)} orders"
                )
            batch.epoch, batch.verdicts = epoch, list(verdicts)
        except BaseException as exc:  # delivered to, and raised by, every order of the batch
            batch.error = exc
            with self._lock:
                self._close(batch)  # interrupted while open: late orders must open a new one
        finally:
            batch.done.set()

    def _close(self, batch: _Batch) -> None:
        """Take `batch` out of the open ones (under the lock) and wake its leader."""
        if not batch.closed:
            batch.closed = True
            if self._open.get(batch.sku) is batch:
                del self._open[batch.sku]
            batch.full.notify_all()

    def _record(self, batch: _Batch, *, sent: float) -> None:
        with self._stats_lock:
            self._batches += 1
            self._orders += len(batch.orders)
            for arrived in batch.arrived:
                wait_us = round((sent - arrived) * 1_000_000)
                self._waits_us.record_value(min(max(wait_us, 0), MAX_WAIT_US))
