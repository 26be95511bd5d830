"""Stock buckets (sharded counters): one SKU's stock split over B rows or B Redis keys.

Beyond the article. One hot SKU is one row (or one Redis key): every order for it queues on the
same lock (or the same server thread). A sharded counter splits the value into B buckets; an
order goes to its *home* bucket, chosen from its order id so that a retry goes where the first
attempt went, and falls over to the next buckets in turn when its home cannot take its quantity.
What it costs: an order of q units is refused when no single bucket holds q even though the
buckets together do — at most B × (q − 1) units stranded that way, none for one-unit orders (a
bucket only goes down during a sale, so a one-unit order that found every bucket empty was
right). `designs/db_buckets.py` puts the buckets in the database, `designs/two_gate_buckets.py`
in Redis (each bucket its own hash tag, so that on a cluster the buckets spread over the
masters).
"""

from __future__ import annotations

import zlib

DEFAULT_BUCKETS = 8
MAX_BUCKETS = 1024


def check_bucket_count(buckets: object) -> int:
    """`buckets` if it is an integer in [1, MAX_BUCKETS]; ValueError otherwise."""
    if isinstance(buckets, bool) or not isinstance(buckets, int):
        raise ValueError(f"buckets must be an integer, got {buckets!r}")
    if not 1 <= buckets <= MAX_BUCKETS:
        raise ValueError(f"buckets must be in [1, {MAX_BUCKETS}], got {buckets}")
    return buckets


def split(units: int, buckets: int) -> list[int]:
    """`units` over `buckets` as evenly as they go (the first buckets take the remainder)."""
    share, extra = divmod(units, buckets)
    return [share + (1 if b < extra else 0) for b in range(buckets)]


def home_bucket(order_id: str, buckets: int) -> int:
    """The bucket an order tries first: crc32 of its id, so a retry lands where it did."""
    return zlib.crc32(order_id.encode()) % buckets


def visiting_order(order_id: str, buckets: int) -> list[int]:
    """The buckets an order tries, in turn: its home, then the next ones round the ring."""
    home = home_bucket(order_id, buckets)
    return [(home + step) % buckets for step in range(buckets)]
