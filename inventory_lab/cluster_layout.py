"""Why every key of the lab carries its SKU in a hash tag: gate 1's script on a Redis Cluster.

A cluster puts each key in one of 16384 slots (CRC16 of the key, or of the part between the first
`{` and `}` when there is one) and each slot on one master. A Lua script runs on one master and
may only touch keys of one slot: named in `KEYS` across slots, the server refuses the call with
`CROSSSLOT Keys in request don't hash to the same slot` before running a line of it. The lab's
keys (`keys.py`) put the SKU in a hash tag, `ilab:{sku-1}:stock` and `ilab:{sku-1}:ar:<order>`, so
that one SKU's keys share a slot and gate 1 (scripts/gate1.lua) runs; the same keys spelled
without the braces land in different slots and gate 1 cannot run at all. `compare_layouts` runs
gate 1 both ways on the lab's cluster and returns what the server answered to each; the call
is sent to the master of the first key's slot, so that the server, not the client library,
judges the keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.cluster import RedisCluster
from redis.exceptions import ClusterCrossSlotError, ResponseError

from inventory_lab import keys
from inventory_lab.errors import InvalidInput
from inventory_lab.lab import Lab
from inventory_lab.orders import Order
from inventory_lab.redis_cluster import slot_of
from inventory_lab.scripts import lua_source

LAYOUTS = ("tagged", "untagged")
TTL_MS = 10_000


def tagged_keys(namespace: str, order_id: str, sku: str) -> tuple[str, str]:
    """Gate 1's keys as the lab builds them: (anti-repeat code, stock hash), one slot."""
    return keys.anti_repeat_key(namespace, order_id, sku), keys.stock_key(namespace, sku)


def untagged_keys(namespace: str, order_id: str, sku: str) -> tuple[str, str]:
    """The same keys without the hash tag: each hashed whole, so (almost always) two slots."""
    return keys.untagged_gate_one_keys(namespace, order_id, sku)


@dataclass(frozen=True)
class LayoutTrial:
    """Gate 1 called once with one layout's keys, and what the server answered."""

    layout: str
    keys: tuple[str, ...]
    slots: tuple[int, ...]
    reply: tuple[int, str] | None  # (stock left, epoch) when the script ran
    error: str | None  # the server's error when it refused the call

    @property
    def crossslot(self) -> bool:
        return self.error is not None and self.error.startswith("CROSSSLOT")


def gate_one_with_keys(lab: Lab, code_key: str, stock_key: str, qty: int = 1) -> tuple[int, str]:
    """Run scripts/gate1.lua once with these two keys on the lab's cluster; the script's reply,
    or the server's error (ClusterCrossSlotError when the keys lie in two slots)."""
    client = _cluster(lab)
    node = client.get_node_from_key(code_key)  # the first key's master: the server judges
    left, epoch = client.execute_command(
        "EVAL", lua_source("gate1"), 2, code_key, stock_key, qty, TTL_MS, target_nodes=node
    )
    return int(left), str(epoch)


def compare_layouts(
    lab: Lab, sku: str = "sku-layout", *, stock: int = 5, order_id: str = "layout-1"
) -> dict[str, LayoutTrial]:
    """Warm one SKU's stock hash in each layout, then call gate 1 for one unit with each
    layout's keys; returns the trial per layout. The keys are in the lab's namespace
    (`Lab.clear_redis` removes them)."""
    Order(order_id, sku, 1)  # the SKU's and the order id's spelling (InvalidOrder)
    client = _cluster(lab)
    trials = {}
    for layout in LAYOUTS:
        code_key, stock_key = tagged_keys(lab.namespace, order_id, sku)
        if layout == "untagged":
            code_key, stock_key = _two_slots(lab.namespace, order_id, sku)
        client.delete(code_key)
        client.hset(stock_key, mapping={keys.STOCK_FIELD: stock, keys.EPOCH_FIELD: 1})
        reply, error = None, None
        try:
            reply = gate_one_with_keys(lab, code_key, stock_key)
        except ClusterCrossSlotError as exc:  # redis-py drops the error code from the message
            error = f"CROSSSLOT {exc}"
        except ResponseError as exc:
            error = str(exc)
        trials[layout] = LayoutTrial(
            layout,
            (code_key, stock_key),
            (slot_of(code_key), slot_of(stock_key)),
            reply,
            error,
        )
    return trials


def _two_slots(namespace: str, order_id: str, sku: str) -> tuple[str, str]:
    """`untagged_keys`, for `order_id` or, in the rare case (1 in 16384) that its two keys
    share a slot by chance, the first `order_id-N` whose keys do not."""
    candidate, n = order_id, 1
    while len({slot_of(key) for key in untagged_keys(namespace, candidate, sku)}) == 1:
        n += 1
        candidate = f"{order_id}-{n}"
    return untagged_keys(namespace, candidate, sku)


def _cluster(lab: Lab) -> RedisCluster:
    if not isinstance(lab.redis, RedisCluster):
        raise InvalidInput(
            f"the key layout needs a Redis Cluster (redis+cluster://…), not {lab.redis_url}"
        )
    return lab.redis
