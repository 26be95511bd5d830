"""The workload: N orders over K SKUs with a hot-SKU skew and client retries, run by C clients.

`Workload` is a value (fixed seed: the same attempts every time). `run_workload` sends its attempts
through C client threads against one design and returns one row per attempt — order, attempt
number, client, start/end, outcome — as a pandas DataFrame. The checker reads that frame together
with the backends' final state.

Skew is Zipf-like: SKU of rank r is chosen with weight 1 / r**skew (0 = uniform; `skus=1` is one
hot SKU). A retry is the same order sent again, a few places later in the stream, so that some
retries race their original and some arrive after it. A lost reply (`lost_replies`) is the
nastier retry: the server ran the command, the client saw a timeout (recorded as `unknown`: its
fate is unknown to the client) and sent the same order again at once.

With `lines > 1` each order is a checkout (checkout.py) of that many distinct SKUs, drawn with the
same skew, sent whole to the design's `place`; it is recorded one row per line, every line with
the checkout's answer, so that the checker can tell a checkout taken in part (`partial`).

What a client records is what it heard: an answer, `rejected` for bad input, and `unknown` for
any error the design let escape (an error after a write was sent may or may not have taken
effect; the checker resolves it from the final state). Designs that resolve such errors
themselves answer `accepted` or `error` instead.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from tqdm import tqdm

from inventory_lab.checkout import Checkout
from inventory_lab.designs.base import Design
from inventory_lab.errors import InvalidOrder
from inventory_lab.orders import Order, Outcome, Result
from inventory_lab.resolve import describe

log = logging.getLogger(__name__)

RECORD_COLUMNS = [
    "order_id",
    "sku",
    "qty",
    "attempt",
    "client",
    "start_s",
    "end_s",
    "latency_ms",
    "outcome",
    "detail",
]


@dataclass(frozen=True, slots=True)
class Attempt:
    order: Order | Checkout
    attempt: int  # 0 = first send, 1.. = client retries of the same order
    reply_lost: bool = False  # the server answers, the client never hears it, and resends


@dataclass(frozen=True)
class Workload:
    orders: int = 1000
    skus: int = 10
    stock: int = 100  # initial units per SKU
    skew: float = 1.1  # Zipf exponent over SKU rank; 0 = uniform
    retries: float = 0.0  # probability that the client sends an order a second time
    lost_replies: float = 0.0  # probability that the reply to a first send is lost
    max_qty: int = 1  # quantities are drawn from 1..max_qty
    seed: int = 42
    lines: int = 1  # SKUs per order: > 1 makes every order a checkout, all-or-nothing

    def __post_init__(self) -> None:
        checks = [
            (self.orders >= 1, "orders must be >= 1"),
            (self.skus >= 1, "skus must be >= 1"),
            (self.stock >= 0, "stock must be >= 0"),
            (0 <= self.skew <= 10, "skew must be a number in [0, 10]"),
            (0.0 <= self.retries <= 1.0, "retries must be a probability in [0, 1]"),
            (0.0 <= self.lost_replies <= 1.0, "lost_replies must be a probability in [0, 1]"),
            (self.max_qty >= 1, "max_qty must be >= 1"),
            (1 <= self.lines <= self.skus, "lines must be in [1, skus]: distinct SKUs per order"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def sku_names(self) -> list[str]:
        return [f"sku-{i:04d}" for i in range(1, self.skus + 1)]

    def initial_stock(self) -> dict[str, int]:
        return {sku: self.stock for sku in self.sku_names()}

    def attempts(self) -> list[Attempt]:
        rng = random.Random(self.seed)
        skus = self.sku_names()
        weights = [1.0 / (rank**self.skew) for rank in range(1, len(skus) + 1)]
        chosen = rng.choices(skus, weights=weights, k=self.orders)
        placed: list[tuple[float, Attempt]] = []
        for i, sku in enumerate(chosen):
            order: Order | Checkout = Order(
                f"o-{self.seed}-{i:07d}", sku, rng.randint(1, self.max_qty)
            )
            if self.lines > 1:
                order = self._checkout(rng, order, skus, weights)
            lost = self.lost_replies > 0 and rng.random() < self.lost_replies
            placed.append((float(i), Attempt(order, 0, reply_lost=lost)))
            if rng.random() < self.retries:
                placed.append((i + rng.uniform(0.0, 8.0), Attempt(order, 1)))
        placed.sort(key=lambda pair: pair[0])
        return [attempt for _, attempt in placed]

    def _checkout(
        self, rng: random.Random, first: Order, skus: list[str], weights: list[float]
    ) -> Checkout:
        """`first` and lines - 1 more distinct SKUs, drawn with the same skew (an order with
        one line keeps the draws of a single-line workload: same seed, same orders)."""
        chosen = {first.sku: first.qty}
        while len(chosen) < self.lines:
            sku = rng.choices(skus, weights=weights)[0]
            if sku not in chosen:
                chosen[sku] = rng.randint(1, self.max_qty)
        return Checkout.of(first.order_id, chosen)


def run_workload(
    design: Design,
    attempts: list[Attempt],
    *,
    concurrency: int = 8,
    progress: bool = False,
    t0: float | None = None,
    on_attempt: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Send every attempt through `concurrency` client threads; one record per attempt.

    Times are seconds since the clients started, or since `t0` (a `time.perf_counter()`
    reading, e.g. the nemesis's) when given, so that other histories line up with the records.
    `on_attempt(i)` is called as a client takes attempt i (the nemesis paces itself by it).
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    counter = itertools.count()  # next() on itertools.count is atomic under the GIL
    records: list[list[list[object]]] = [[] for _ in range(concurrency)]
    bar = tqdm(total=len(attempts), disable=not progress, desc=design.name, unit="order")
    go = threading.Event()  # every client starts at once, so none gets a head start
    zero = 0.0

    def client(index: int) -> None:
        mine = records[index]
        go.wait()
        while (i := next(counter)) < len(attempts):
            if on_attempt is not None:
                on_attempt(i)
            attempt = attempts[i]
            order = attempt.order
            sends = [attempt.attempt]
            if attempt.reply_lost:
                sends.append(attempt.attempt + 1)
            lines = order.lines if isinstance(order, Checkout) else (order,)
            for n, number in enumerate(sends):
                start = time.perf_counter()
                result = deduct_as_client(design, order)
                end = time.perf_counter()
                if n < len(sends) - 1:  # the server's answer never reached the client
                    result = Result(Outcome.UNKNOWN, f"reply lost (server said {result.outcome})")
                for line in lines:
                    mine.append(
                        [
                            line.order_id,
                            line.sku,
                            line.qty,
                            number,
                            index,
                            start - zero,
                            end - zero,
                            (end - start) * 1000.0,
                            result.outcome.value,
                            result.detail,
                        ]
                    )
            bar.update(1)

    threads = [
        threading.Thread(target=client, args=(i,), name=f"client-{i}") for i in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    zero = time.perf_counter() if t0 is None else t0
    go.set()
    for thread in threads:
        thread.join()
    bar.close()
    rows = [row for per_client in records for row in per_client]
    frame = pd.DataFrame(rows, columns=RECORD_COLUMNS)
    return frame.sort_values("start_s", ignore_index=True)


def deduct_as_client(design: Design, order: Order | Checkout) -> Result:
    """A client's view: bad input is `rejected`; an error that escapes leaves the outcome
    unknown. A checkout goes whole to the design's `place`."""
    try:
        if isinstance(order, Checkout):
            return design.place(order)  # type: ignore[attr-defined]
        return design.deduct(order)
    except InvalidOrder as exc:
        return Result(Outcome.REJECTED, str(exc))
    except Exception as exc:  # recorded as unknown; the checker resolves it from the final state
        log.debug("%s: the client hears unknown", order.order_id, exc_info=True)
        return Result(Outcome.UNKNOWN, describe(exc))
