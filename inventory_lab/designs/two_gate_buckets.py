"""`two_gate_buckets`: `two_gate_lua` with each SKU's Redis stock split over B bucket hashes.

Beyond the article. One hot SKU is one Redis key, and one key lives on one server thread (on a
cluster, on one master): the hottest item cannot use more than one core of Redis however many
masters there are. Here the SKU's stock copy is split over B hashes, each under a hash tag of
its own (`keys.stock_bucket_key`: `{sku/b}`), so that on a cluster the buckets fall on different
masters. An order goes to its home bucket (`stock_buckets.home_bucket`, from its order id) and
runs gate 1's script there, with its anti-repeat code beside that bucket (one slot per call):

    gate1.lua  KEYS = {sku/home}:ar:<order>, {sku/home}:stock     -- taken: one round trip
    sold out there: gate1.lua on {sku/home+1}, {sku/home+2}, ...   -- a round trip per bucket

Duplicates: a retry visits the buckets in the same order and meets its code on the bucket that
took it (the script answers "duplicate" before looking at the stock); a bucket refilled in
between (a give-back, a re-warm) can let a retry through on an earlier bucket, and then gate 2's
anti-repeat row refuses it and its units are given back, as for any duplicate gate 1 missed.

What it costs: the fall-over is not atomic across buckets. An order of q units is refused when no
single bucket holds q (at most B × (q − 1) units stranded; none for one-unit orders), and while an
order walks the ring a give-back can land behind it. The checker counts both as false sold-outs.
A give-back goes to the order's home bucket (units move between buckets; the total is right;
the give-back is fenced by the epoch every bucket of one warm-up carries). Gate 2 is
`two_gate`'s: the database keeps one stock row per SKU. No checkouts here (`place`): a cart's
lines would need one script per bucket.
"""

from __future__ import annotations

from typing import ClassVar

from inventory_lab import keys
from inventory_lab.designs.base import BaseDesign, register
from inventory_lab.designs.two_gate import NOT_WARM, Admitted
from inventory_lab.designs.two_gate_lua import DUPLICATE, NOT_WARMED, SOLD_OUT, TwoGateLua
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Outcome, Result
from inventory_lab.redis_stock import give_back, warm_up
from inventory_lab.stock_buckets import (
    DEFAULT_BUCKETS,
    check_bucket_count,
    home_bucket,
    visiting_order,
)


@register
class TwoGateBuckets(TwoGateLua):
    name = "two_gate_buckets"
    summary = "two_gate_lua over B Redis buckets per SKU: an order takes its bucket, else the next"
    takes_lines: ClassVar[bool] = False

    def __init__(self, lab: Lab, *, buckets: int = DEFAULT_BUCKETS, **options: object) -> None:
        self.buckets = check_bucket_count(buckets)
        super().__init__(lab, **options)  # type: ignore[arg-type]
        self.fallovers = 0  # orders not taken by their home bucket

    def copy_stock(self, *, fenced: bool) -> dict[str, int]:
        return warm_up(self.lab, fenced=fenced, buckets=self.buckets)

    def bucket_keys(self, order: Order, bucket: int) -> list[str]:
        ns = self.lab.namespace
        return [
            keys.bucket_anti_repeat_key(ns, order.order_id, order.sku, bucket),
            keys.stock_bucket_key(ns, order.sku, bucket),
        ]

    def keys_for(self, order: Order) -> tuple[str, str]:
        """The home bucket's keys: where the order goes first (and re-warm checks for warmth)."""
        code_key, stock_key = self.bucket_keys(order, home_bucket(order.order_id, self.buckets))
        return code_key, stock_key

    def code_keys(self, order: Order) -> list[str]:
        return [self.bucket_keys(order, b)[0] for b in range(self.buckets)]

    def gate_one(self, order: Order) -> Admitted | Result:
        for step, bucket in enumerate(visiting_order(order.order_id, self.buckets)):
            left, epoch = self.script(
                keys=self.bucket_keys(order, bucket), args=(order.qty, self.ttl_ms)
            )
            left = int(left)
            if left == DUPLICATE:
                detail = f"gate 1: anti-repeat code exists (bucket {bucket})"
                return Result(Outcome.DUPLICATE, detail)
            if left == NOT_WARMED:
                return NOT_WARM
            if left != SOLD_OUT:
                if step:
                    with self._counter_lock:
                        self.fallovers += 1
                return Admitted(str(epoch) if self.fenced else None, left)
        return Result(Outcome.SOLD_OUT, f"gate 1: no bucket of {self.buckets} holds {order.qty}")

    place = BaseDesign.place  # one line per order (the module docstring says why)

    def compensate(self, order: Order, epoch: str | None = None) -> None:
        """Give back to the order's home bucket (fenced: only to the copy of that epoch)."""
        bucket = home_bucket(order.order_id, self.buckets)
        give_back(self.lab, order.sku, order.qty, epoch if self.fenced else None, bucket=bucket)
        with self._counter_lock:
            self.given_back += 1
