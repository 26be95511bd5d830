"""Orders, outcomes and results: the values every design takes and returns.

An order line is (order id, SKU, quantity). The article's anti-repeat code is "order id + SKU":
`anti_repeat_code` builds it in one place. Validation happens here, before any design touches a
backend, so that bad input changes no state.
"""

from __future__ import annotations

import enum
import numbers
import re
from dataclasses import dataclass

from inventory_lab.errors import InvalidOrder

MAX_ID_LENGTH = 64
MAX_QTY = 1_000_000
# Letters, digits, '_', '-', '.': no ':' (the code separator), no Redis glob or SQL meta characters.
_ID_PATTERN = re.compile(r"[A-Za-z0-9_.\-]+")


class Outcome(enum.StrEnum):
    """What happened to one attempt to deduct stock."""

    ACCEPTED = "accepted"  # stock deducted (or, for async designs, durably recorded)
    SOLD_OUT = "sold_out"  # not enough stock; nothing changed
    DUPLICATE = "duplicate"  # the anti-repeat code was already there: "already done"
    REJECTED = "rejected"  # bad input; nothing changed
    THROTTLED = "throttled"  # a hot SKU over its rate limit; nothing changed
    ERROR = "error"  # the backend failed before anything was written, or the design resolved
    # that nothing was persisted and undid what it had done: the order did not happen
    UNKNOWN = "unknown"  # an error after a write was sent (Jepsen's "info"): it may or may not
    # have happened; the checker resolves it from the final state
    IN_PROGRESS = "in_progress"  # a stored-outcome idempotency key: the first request with this
    # key is still running (HTTP 409); nothing changed, ask again later
    MISMATCH = "mismatch"  # the idempotency key was used before with another payload (HTTP 422);
    # nothing changed


@dataclass(frozen=True, slots=True)
class Order:
    """One order line: deduct `qty` units of `sku` for `order_id`."""

    order_id: str
    sku: str
    qty: int

    def __post_init__(self) -> None:
        _check_identifier("order id", self.order_id)
        _check_identifier("SKU", self.sku)
        qty = self.qty
        # Any integer type (numpy's too) is taken as int; bool and numpy.bool_ are not integers.
        if isinstance(qty, bool) or not isinstance(qty, numbers.Integral):
            raise InvalidOrder(f"quantity must be an integer, got {type(qty).__name__} {qty!r}")
        qty = int(qty)
        object.__setattr__(self, "qty", qty)  # frozen: set once, here
        if qty <= 0:
            raise InvalidOrder(f"quantity must be positive, got {qty}")
        if qty > MAX_QTY:
            raise InvalidOrder(f"quantity {qty} is above the lab's limit of {MAX_QTY}")

    @property
    def anti_repeat_code(self) -> str:
        return anti_repeat_code(self.order_id, self.sku)


def anti_repeat_code(order_id: str, sku: str) -> str:
    """The article's anti-repeat code, 'order id + SKU', with a separator neither can contain."""
    return f"{order_id}:{sku}"


def _check_identifier(what: str, value: object) -> None:
    if not isinstance(value, str):
        raise InvalidOrder(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidOrder(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidOrder(f"{what} is {len(value)} characters long; at most {MAX_ID_LENGTH}")
    if not _ID_PATTERN.fullmatch(value):
        raise InvalidOrder(f"{what} {value!r} may hold only letters, digits, '_', '-' and '.'")


def check_order(order: object) -> None:
    """Refuse anything that is not an `Order` (None, a code string, a tuple) as bad input."""
    if not isinstance(order, Order):
        raise InvalidOrder(f"expected an Order, got {type(order).__name__}")


def check_known_sku(sku: str, catalog: frozenset[str]) -> None:
    if sku not in catalog:
        raise InvalidOrder(f"unknown SKU {sku!r}")


@dataclass(frozen=True, slots=True)
class Result:
    """A design's answer to one order."""

    outcome: Outcome
    detail: str = ""
