"""The Design protocol, a base class with the shared bookkeeping, and the registry."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import ClassVar, Protocol, TypeVar, runtime_checkable

from inventory_lab import schema
from inventory_lab.checkout import Checkout, check_checkout
from inventory_lab.errors import InvalidInput, LabError
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Result, check_known_sku, check_order


@runtime_checkable
class Design(Protocol):
    name: ClassVar[str]
    summary: ClassVar[str]
    uses_redis: ClassVar[bool]

    def setup(self, initial: Mapping[str, int]) -> None: ...
    def check(self, order: Order) -> None: ...
    def deduct(self, order: Order) -> Result: ...
    def drain(self) -> None: ...
    def stock(self, sku: str) -> int: ...
    def pending(self) -> dict[str, int]: ...
    def close(self) -> None: ...


@runtime_checkable
class MultiLineDesign(Design, Protocol):
    """A design that also takes a whole checkout, all-or-nothing (`takes_lines`)."""

    def place(self, checkout: Checkout) -> Result: ...


class BaseDesign:
    """What every design shares: the lab, the catalog of known SKUs, the DB's view of stock."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    uses_redis: ClassVar[bool] = False
    takes_lines: ClassVar[bool] = False  # `place(checkout)`: several lines, all-or-nothing

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self._catalog: frozenset[str] | None = None

    def setup(self, initial: Mapping[str, int]) -> None:
        """Start from `initial` stock: fresh tables (and, for Redis designs, fresh keys).

        Everything is validated before anything is dropped: bad input changes no state.
        """
        initial = validate_initial(initial)
        schema.reset(self.lab.engine, initial)
        self._catalog = frozenset(initial)

    @property
    def catalog(self) -> frozenset[str]:
        if self._catalog is None:
            self._catalog = schema.catalog(self.lab.engine)
        return self._catalog

    def check(self, order: Order) -> None:
        """Refuse anything but an Order, or an order for a SKU the stock table does not know
        (InvalidOrder)."""
        check_order(order)
        check_known_sku(order.sku, self.catalog)

    def check_lines(self, checkout: Checkout) -> Checkout:
        """`check` for every line of a checkout: bad input anywhere refuses the whole of it."""
        check_checkout(checkout)
        for line in checkout.lines:
            self.check(line)
        return checkout

    def deduct(self, order: Order) -> Result:
        raise NotImplementedError

    def place(self, checkout: Checkout) -> Result:
        """Deduct every line of `checkout` or none (designs with `takes_lines`)."""
        raise LabError(
            f"{self.name} takes one line per order; multi-line checkouts need one of "
            + ", ".join(sorted(name for name, cls in REGISTRY.items() if cls.takes_lines))
        )

    def drain(self) -> None:
        """Nothing to wait for: a synchronous design has persisted everything it accepted."""

    def stock(self, sku: str) -> int:
        with self.lab.engine.connect() as conn:
            return schema.read_stock(conn)[sku]

    def pending(self) -> dict[str, int]:
        """Units accepted but not yet persisted, per SKU: none for a synchronous design."""
        return {}

    def close(self) -> None:
        """Stop whatever the design runs in the background (nothing, by default)."""


def validate_initial(initial: object) -> dict[str, int]:
    """Initial stock as {sku: units}: valid SKU spellings, integers in the stock column's range."""
    if not isinstance(initial, Mapping):
        raise InvalidInput(f"initial stock must be a mapping of SKU to units, got {initial!r:.60}")
    checked = {}
    for sku, num in initial.items():
        Order("setup", sku, 1)  # validates the SKU's spelling (InvalidOrder)
        if (
            isinstance(num, bool)
            or not isinstance(num, numbers.Integral)
            or not 0 <= num <= schema.MAX_STOCK
        ):
            raise InvalidInput(
                f"initial stock of {sku!r} must be an integer in [0, {schema.MAX_STOCK}], "
                f"got {num!r:.40}"
            )
        checked[sku] = int(num)
    return checked


def implements_design(cls: type) -> bool:
    """A complete design: a name, a summary, and a `deduct` of its own (not BaseDesign's)."""
    return (
        isinstance(cls, type)
        and issubclass(cls, BaseDesign)
        and bool(cls.name)
        and bool(cls.summary)
        and cls.deduct is not BaseDesign.deduct
    )


REGISTRY: dict[str, type[BaseDesign]] = {}

D = TypeVar("D", bound=type[BaseDesign])


def register(cls: D) -> D:
    if not implements_design(cls):
        raise ValueError(f"{cls.__name__} needs a name, a summary and a deduct of its own")
    if cls.name in REGISTRY:
        raise ValueError(f"design name {cls.name!r} is taken")
    REGISTRY[cls.name] = cls
    return cls
