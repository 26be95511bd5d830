"""The lab's one exception family.

Every error the lab raises on purpose is a `LabError`. Bad input is an `InvalidInput`: to a design's
`deduct` (a quantity that is not a positive integer, an unknown SKU, a malformed order id, anything
that is not an `Order`) an `InvalidOrder`; bad initial stock to `setup` an `InvalidInput` too. A bad
or unreachable backend URL is a `BackendError`. Callers (the workload runner, the CLI) catch these
and turn them into a `rejected` outcome or a one-line message; anything else is a bug.
"""

from __future__ import annotations


class LabError(Exception):
    """Base class of every error the lab raises on purpose."""


class InvalidInput(LabError, ValueError):
    """Input the lab refuses before touching any state."""


class InvalidOrder(InvalidInput):
    """An order the lab refuses before touching any state."""


class BackendError(LabError):
    """A backend URL that cannot be parsed, or a server that does not answer."""
