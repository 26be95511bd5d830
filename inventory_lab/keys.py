"""Every Redis key the lab uses, built here and nowhere else.

Keys carry a namespace (so tests and experiments never touch each other's data) and put the SKU
in a hash tag, `{sku}`, so that all keys one script touches for a SKU live in one cluster slot;
a throttle key's tag is `{throttle:<limited key>}`, its own slot.
The stock hash has the field `inStock`, as in the article's `hset iphone inStock 1`, and the lab's
`epoch`: the generation of the copy (see redis_stock.warm_up). A stock hash without an epoch was
not written by a warm-up: Redis lost its data (a restart without persistence) or was never warmed.
"""

from __future__ import annotations

STOCK_FIELD = "inStock"
EPOCH_FIELD = "epoch"
BUCKETS_FIELD = "buckets"  # on a SKU's stock hash when its stock lives in buckets


def stock_key(namespace: str, sku: str) -> str:
    return f"{namespace}:{{{sku}}}:stock"


def anti_repeat_key(namespace: str, order_id: str, sku: str) -> str:
    return f"{namespace}:{{{sku}}}:ar:{order_id}"


def stock_bucket_key(namespace: str, sku: str, bucket: int) -> str:
    """Bucket `bucket` of a SKU's stock (`two_gate_buckets`): a hash like the stock hash, under a
    hash tag of its own, `{sku/bucket}` ('/' is in no SKU), so that the buckets fall in
    different slots and, on a cluster, on different masters. The SKU's stock hash then holds
    `inStock` 0, the epoch, and `buckets`: how many there are."""
    return f"{namespace}:{{{sku}/{bucket}}}:stock"


def bucket_anti_repeat_key(namespace: str, order_id: str, sku: str, bucket: int) -> str:
    """An order's anti-repeat code beside the bucket it was tried on (one slot per script)."""
    return f"{namespace}:{{{sku}/{bucket}}}:ar:{order_id}"


def idempotency_key(namespace: str, order_id: str, sku: str) -> str:
    """The stored-outcome record of one idempotency key, order id + SKU (`stored_outcome`): a
    hash beside the anti-repeat code, in the SKU's slot."""
    return f"{namespace}:{{{sku}}}:idem:{order_id}"


def namespace_pattern(namespace: str) -> str:
    """A SCAN pattern matching every key of the namespace (namespaces hold no glob characters)."""
    return f"{namespace}:*"


def throttle_key(namespace: str, limited: str) -> str:
    """The sorted set of admissions of one limited key (`throttle.RedisSlidingWindow`)."""
    return f"{namespace}:{{throttle:{limited}}}"


def namespace_beside(namespace: str, part: str) -> str:
    """A namespace of its own next to `namespace`: `<namespace>-<part>`. Its keys do not match
    `namespace_pattern(namespace)`, so clearing the lab's keys leaves them alone."""
    return f"{namespace}-{part}"


def restock_channel(namespace: str) -> str:
    """The pub/sub channel on which a restock (or a give-back) names a SKU whose stock rose, so
    that every app process clears its local sold-out flag for it (`sold_out_flag`)."""
    return f"{namespace}:restocked"


def untagged_gate_one_keys(namespace: str, order_id: str, sku: str) -> tuple[str, str]:
    """Gate 1's keys (anti-repeat code, stock hash) spelled WITHOUT the hash tag: each is hashed
    whole, so on a Redis Cluster they land in two slots and one script cannot touch both
    (CROSSSLOT). Never used for stock; `cluster_layout` shows the failure with them."""
    return f"{namespace}:{sku}:ar:{order_id}", f"{namespace}:{sku}:stock"
