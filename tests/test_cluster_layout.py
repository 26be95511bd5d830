"""Keys on a Redis Cluster: gate 1 without hash tags fails with CROSSSLOT; the tagged keys work."""

import pytest
from redis.exceptions import ClusterCrossSlotError

from inventory_lab import keys
from inventory_lab.cluster_layout import (
    compare_layouts,
    gate_one_with_keys,
    tagged_keys,
    untagged_keys,
)
from inventory_lab.errors import InvalidInput, InvalidOrder
from inventory_lab.redis_cluster import slot_of


def test_a_hash_tag_puts_one_skus_keys_in_one_slot():
    code, stock = tagged_keys("ilab", "o-1", "sku-0001")
    assert (code, stock) == (keys.anti_repeat_key("ilab", "o-1", "sku-0001"),
                             keys.stock_key("ilab", "sku-0001"))  # fmt: skip
    assert slot_of(code) == slot_of(stock) == slot_of("sku-0001")
    assert len({slot_of(key) for key in untagged_keys("ilab", "o-1", "sku-0001")}) == 2


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_gate_one_without_hash_tags_fails_with_crossslot_and_the_labs_keys_work(cluster_lab):
    trials = compare_layouts(cluster_lab, "sku-0001", stock=5)
    tagged, untagged = trials["tagged"], trials["untagged"]

    assert len(set(tagged.slots)) == 1
    assert tagged.error is None and tagged.reply == (4, "1")  # one unit taken, epoch 1
    assert cluster_lab.redis.exists(tagged.keys[0]) == 1  # the anti-repeat code was set

    assert len(set(untagged.slots)) == 2
    assert untagged.crossslot and untagged.reply is None
    assert untagged.error == "CROSSSLOT Keys in request don't hash to the same slot"
    # refused before a line of the script ran: no code, the stock untouched
    assert cluster_lab.redis.exists(untagged.keys[0]) == 0
    assert cluster_lab.redis.hget(untagged.keys[1], keys.STOCK_FIELD) == "5"

    with pytest.raises(ClusterCrossSlotError):  # the server's error, raised to the caller
        gate_one_with_keys(cluster_lab, *untagged.keys)
    assert gate_one_with_keys(cluster_lab, *tagged.keys)[0] == -1  # its code: a duplicate


def test_the_layout_needs_a_cluster_and_valid_names(default_lab):
    with pytest.raises(InvalidInput, match="needs a Redis Cluster"):
        compare_layouts(default_lab)
    with pytest.raises(InvalidOrder):
        compare_layouts(default_lab, "no spaces allowed")
