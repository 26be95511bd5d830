"""A checkout: one order of several lines, accepted whole or not at all.

The article deducts one SKU per call. A real cart holds several SKUs, and "safe" then means more
than "no oversell": an order is accepted with every line deducted, or refused with none — a
partial deduction (two of three lines taken, the third sold out) is a new violation, and the
checker reports it (`checker.check`'s `partial`).

Each line is an `Order` of the checkout's id, so each keeps the article's anti-repeat code
(order id + SKU), its ledger row and its task. `locking_order` is the order in which a design
touches the lines: sorted by SKU, so that two carts holding the same SKUs lock their rows in the
same order and cannot deadlock (Saleor locks its stock rows ordered by primary key for the same
reason). `as_given` is the order the buyer put them in the cart: what a naive implementation
locks in, and what deadlocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from inventory_lab.errors import InvalidOrder
from inventory_lab.orders import Order

MAX_LINES = 50


@dataclass(frozen=True, slots=True)
class Checkout:
    """An order of several lines (distinct SKUs), all-or-nothing."""

    order_id: str
    lines: tuple[Order, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.lines, tuple) or not self.lines:
            raise InvalidOrder("a checkout needs at least one line, as a tuple of Orders")
        if len(self.lines) > MAX_LINES:
            raise InvalidOrder(f"a checkout holds at most {MAX_LINES} lines, got {len(self.lines)}")
        for line in self.lines:
            if not isinstance(line, Order):
                raise InvalidOrder(f"a checkout's lines are Orders, got {type(line).__name__}")
            if line.order_id != self.order_id:
                raise InvalidOrder(
                    f"line {line.sku!r} belongs to order {line.order_id!r}, not {self.order_id!r}"
                )
        skus = [line.sku for line in self.lines]
        if len(set(skus)) != len(skus):
            raise InvalidOrder(f"a checkout names each SKU once; {self.order_id!r} repeats one")

    @classmethod
    def of(
        cls, order_id: str, quantities: Mapping[str, int] | Iterable[tuple[str, int]]
    ) -> Checkout:
        """`Checkout.of("o-1", {"sku-a": 2, "sku-b": 1})`: lines in the order given."""
        pairs = quantities.items() if isinstance(quantities, Mapping) else quantities
        return cls(order_id, tuple(Order(order_id, sku, qty) for sku, qty in pairs))

    @property
    def skus(self) -> tuple[str, ...]:
        return tuple(line.sku for line in self.lines)

    def locking_order(self, *, ordered: bool = True) -> tuple[Order, ...]:
        """The lines in the order a design takes their locks: by SKU (`ordered`), or as given."""
        return tuple(sorted(self.lines, key=lambda line: line.sku)) if ordered else self.lines


def check_checkout(checkout: object) -> Checkout:
    """Refuse anything that is not a `Checkout` as bad input."""
    if not isinstance(checkout, Checkout):
        raise InvalidOrder(f"expected a Checkout, got {type(checkout).__name__}")
    return checkout
