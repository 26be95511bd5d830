"""The flash sale with a restock: what the local flag saves, what a missed message costs."""

import pytest

from inventory_lab.flag_sale import FLAG_MODES, compare_flags, flag_sale


def test_the_flag_saves_redis_calls_and_only_a_missed_message_refuses_restocked_units(paired_lab):
    sale = dict(processes=3, clients=6, stock=20, orders=400, restocked=10, flag_ttl_s=60.0)
    frame = compare_flags(paired_lab, **sale).set_index("flags")
    assert list(frame.index) == list(FLAG_MODES)
    assert frame["checker_ok"].all()
    none, pubsub, deaf = (frame.loc[mode] for mode in FLAG_MODES)
    # without flags every order asks Redis; with them the sold-out ones do not
    assert none["answered_locally"] == 0 and none["redis_round_trips"] >= sale["orders"]
    for flagged in (pubsub, deaf):
        assert flagged["answered_locally"] > 0
        assert flagged["redis_round_trips"] < none["redis_round_trips"]
        assert flagged["redis_round_trips"] + flagged["answered_locally"] >= sale["orders"]
    # the message reaches every process: the restocked units sell, as without flags
    assert none["accepted"] == pubsub["accepted"] == sale["stock"] + sale["restocked"]
    assert none["unsold"] == pubsub["unsold"] == 0
    # deaf to it, flags refuse units Redis holds until their TTL (longer than the sale here)
    assert deaf["false_sold_outs"] > 0
    assert deaf["accepted"] + deaf["unsold"] == sale["stock"] + sale["restocked"]


@pytest.mark.parametrize(
    "kwargs",
    [{"flags": "sometimes"}, {"processes": 0}, {"processes": 4, "clients": 2}, {"orders": 1}],
)
def test_bad_parameters_are_refused(default_lab, kwargs):
    with pytest.raises(ValueError):
        flag_sale(default_lab, **kwargs)
