"""The local sold-out flag: set, cleared by a restock message, bounded by its TTL."""

import pytest
from conftest import wait_until

from inventory_lab.restock import announce_stock_rose
from inventory_lab.sold_out_flag import SoldOutFlags


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_flag_holds_until_its_ttl(redis_lab):
    clock = Clock()
    flags = SoldOutFlags(redis_lab.redis, redis_lab.namespace, ttl_s=2.0, listen=False, clock=clock)
    assert not flags.is_set("a")
    assert flags.set("a")
    clock.now += 1.9
    assert flags.is_set("a") and flags.flagged() == {"a"}
    clock.now += 0.2
    assert not flags.is_set("a") and flags.expired == 1 and flags.flagged() == set()


def test_a_restock_message_clears_the_flag_in_every_process(redis_lab):
    ones = [SoldOutFlags(redis_lab.redis, redis_lab.namespace, ttl_s=60) for _ in range(3)]
    try:
        for flags in ones:
            flags.set("a")
            flags.set("b")
        assert announce_stock_rose(redis_lab, "a") == 3
        assert wait_until(lambda: all(not f.is_set("a") for f in ones))
        assert all(f.is_set("b") and f.cleared == 1 for f in ones)
    finally:
        for flags in ones:
            flags.close()
    assert not any(flags.listening for flags in ones)


def test_a_process_that_misses_the_message_keeps_its_flag(redis_lab):
    deaf = SoldOutFlags(redis_lab.redis, redis_lab.namespace, ttl_s=60, listen=False)
    deaf.set("a")
    assert announce_stock_rose(redis_lab, "a") == 0
    assert deaf.is_set("a")


def test_a_zero_heard_before_a_restock_message_raises_no_flag(redis_lab):
    flags = SoldOutFlags(redis_lab.redis, redis_lab.namespace, ttl_s=60)
    try:
        ticket = flags.ticket("a")  # the order asks Redis ...
        announce_stock_rose(redis_lab, "a")  # ... the shop restocks meanwhile ...
        assert wait_until(lambda: flags.heard == 1)
        assert not flags.set("a", ticket)  # ... and Redis's "zero" is old news
        assert not flags.is_set("a") and flags.stale == 1
        assert flags.set("a", flags.ticket("a"))
    finally:
        flags.close()


@pytest.mark.parametrize("ttl_s", [0, -1, float("nan"), True, "1"])
def test_a_bad_ttl_is_refused(redis_lab, ttl_s):
    with pytest.raises(ValueError):
        SoldOutFlags(redis_lab.redis, redis_lab.namespace, ttl_s=ttl_s, listen=False)
