"""Restocking: database first, then Redis's copy of the same epoch, then the news; bad input
changes nothing."""

import pytest
import sqlalchemy as sa

from inventory_lab import schema
from inventory_lab.designs import design_class
from inventory_lab.errors import InvalidInput
from inventory_lab.redis_stock import read_redis_stock
from inventory_lab.restock import restock


def _state(lab):
    with lab.engine.connect() as conn:
        db = schema.read_stock(conn)
    return db, read_redis_stock(lab, sorted(db))


def test_a_restock_lands_in_the_database_and_in_redis_and_is_announced(paired_lab):
    design = design_class("two_gate_lua")(paired_lab)
    design.setup({"sku-1": 2, "sku-2": 5})
    listener = paired_lab.redis.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(f"{paired_lab.namespace}:restocked")
    try:
        done = restock(paired_lab, "sku-1", 3)
        assert (done.database_after, done.redis_after, done.told) == (5, 5, 1)
        assert _state(paired_lab) == ({"sku-1": 5, "sku-2": 5}, {"sku-1": 5, "sku-2": 5})
        message = None
        for _ in range(100):
            message = listener.get_message(timeout=0.05)
            if message is not None:
                break
        assert message is not None and message["data"] == "sku-1"
    finally:
        listener.close()


def test_redis_of_another_epoch_is_left_short_never_long(paired_lab):
    """A re-warm committed its epoch and has not written its copy: the restock's units are not
    added to the old copy (it would count them twice once the new copy lands)."""
    design = design_class("two_gate_lua")(paired_lab)
    design.setup({"sku-1": 2})
    with paired_lab.engine.begin() as conn:
        conn.execute(sa.update(schema.redis_epoch).values(epoch=schema.redis_epoch.c.epoch + 1))
    done = restock(paired_lab, "sku-1", 3, announce=False)
    assert (done.database_after, done.redis_after, done.told) == (5, None, 0)
    assert _state(paired_lab) == ({"sku-1": 5}, {"sku-1": 2})


@pytest.mark.parametrize(
    "sku, qty",
    [
        ("sku-9", 1),  # unknown SKU
        ("sku-1", 0),
        ("sku-1", -2),
        ("sku-1", 1.5),
        ("sku-1", True),
        ("sku-1", "3"),
        ("sku 1", 1),  # malformed
        ("sku-1", schema.MAX_STOCK),  # past the stock column's range
    ],
)
def test_bad_input_is_refused_and_changes_nothing(default_lab, sku, qty):
    design = design_class("two_gate_lua")(default_lab)
    design.setup({"sku-1": 2})
    before = _state(default_lab)
    with pytest.raises(InvalidInput):
        restock(default_lab, sku, qty)
    assert _state(default_lab) == before
