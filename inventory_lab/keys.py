"""Every Redis key the lab uses, built here and nowhere else.

Keys carry a namespace (so tests and experiments never touch each other's data) and put the SKU
in a hash tag, `{sku}`, so that all keys one script touches for a SKU live in one cluster slot.
The stock hash has one field, `inStock`, as in the article's `hset iphone inStock 1`.
"""

from __future__ import annotations

STOCK_FIELD = "inStock"


def stock_key(namespace: str, sku: str) -> str:
    return f"{namespace}:{{{sku}}}:stock"


def anti_repeat_key(namespace: str, order_id: str, sku: str) -> str:
    return f"{namespace}:{{{sku}}}:ar:{order_id}"


def namespace_pattern(namespace: str) -> str:
    """A SCAN pattern matching every key of the namespace (namespaces hold no glob characters)."""
    return f"{namespace}:*"
