import pytest

from inventory_lab import InvalidOrder, Order
from inventory_lab.orders import MAX_ID_LENGTH, MAX_QTY, anti_repeat_code, check_known_sku


def test_a_valid_order_carries_the_articles_anti_repeat_code():
    order = Order("a100", "iphone", 1)
    assert order.anti_repeat_code == "a100:iphone" == anti_repeat_code("a100", "iphone")


@pytest.mark.parametrize(
    ("qty", "message"),
    [
        (0, "positive"),
        (-1, "positive"),
        (1.5, "integer"),
        ("1", "integer"),
        (True, "integer"),
        (None, "integer"),
        (MAX_QTY + 1, "limit"),
    ],
)
def test_bad_quantities_are_refused_with_a_clear_message(qty, message):
    with pytest.raises(InvalidOrder, match=message):
        Order("o-1", "sku-1", qty)


@pytest.mark.parametrize(
    "order_id",
    [
        "",
        "x" * (MAX_ID_LENGTH + 1),
        "o:1",
        "o*",
        "o?1",
        "o 1",
        "o'; DROP TABLE stock; --",
        "订单",
        7,
    ],
)
def test_malformed_order_ids_are_refused(order_id):
    with pytest.raises(InvalidOrder, match="order id"):
        Order(order_id, "sku-1", 1)


@pytest.mark.parametrize("sku", ["", "sku{1}", "sku[1]", "sku\n", "ü", None])
def test_malformed_skus_are_refused(sku):
    with pytest.raises(InvalidOrder, match="SKU"):
        Order("o-1", sku, 1)


def test_an_id_of_the_maximum_length_is_accepted():
    assert Order("x" * MAX_ID_LENGTH, "s" * MAX_ID_LENGTH, MAX_QTY).qty == MAX_QTY


def test_unknown_sku_is_refused_against_the_catalog():
    check_known_sku("sku-1", frozenset({"sku-1"}))
    with pytest.raises(InvalidOrder, match="unknown SKU 'sku-2'"):
        check_known_sku("sku-2", frozenset({"sku-1"}))
