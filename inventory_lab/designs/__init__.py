"""The designs, one module each, behind one protocol and a registry keyed by name.

A design is a small class: `setup(initial)` loads stock, `deduct(order)` answers one order line,
`drain()` waits for any asynchronous work, `stock(sku)` tells what the design believes is left,
`pending()` what it accepted but has not persisted yet, and `close()` stops its background work.
Adding a design is adding a module here whose class is decorated with `@register`.
"""

from __future__ import annotations

import importlib
import pkgutil

from inventory_lab.designs.base import REGISTRY, BaseDesign, Design, register
from inventory_lab.errors import LabError

__all__ = [
    "BEYOND_THE_ARTICLE",
    "REGISTRY",
    "TEACHING_ORDER",
    "BaseDesign",
    "Design",
    "design_class",
    "design_names",
    "multi_line_design_names",
    "redis_design_names",
    "register",
]

# From the strawman to the recommended design: the order tables and charts list them in.
TEACHING_ORDER = (
    "naive",
    "db_only",
    "two_gate",
    "two_gate_pipeline",
    "two_gate_multi",
    "two_gate_watch",
    "two_gate_lua",
    "task_engine",
)

# Beyond the article (notebook 11): techniques the systems that sell the hottest items add on top
# of the article's recommended gate 1, each measured against it.
BEYOND_THE_ARTICLE = (
    "two_gate_local_flag",
    "two_gate_merged",
    "task_engine_merged",
    "db_buckets",
    "two_gate_buckets",
    "task_engine_sharded_db",
    "task_engine_merged_sharded_db",
)

_loaded = False


def _load_all() -> None:
    global _loaded
    if not _loaded:
        for module in pkgutil.iter_modules(__path__):
            if module.name != "base":
                importlib.import_module(f"{__name__}.{module.name}")
        _loaded = True


def design_names() -> list[str]:
    _load_all()
    return sorted(REGISTRY)


def redis_design_names() -> list[str]:
    """The designs that keep stock in Redis, in teaching order."""
    return [name for name in TEACHING_ORDER if design_class(name).uses_redis]


def multi_line_design_names() -> list[str]:
    """The designs that take a whole checkout (`place`), in teaching order."""
    return [name for name in TEACHING_ORDER if design_class(name).takes_lines]


def design_class(name: str) -> type[BaseDesign]:
    _load_all()
    try:
        return REGISTRY[name]
    except KeyError:
        raise LabError(
            f"unknown design {name!r}; choose one of: {', '.join(design_names())}"
        ) from None
