"""Where one order's time goes: a profile of `deduct`, summed by layer.

A design's rate is capped by the slowest of the server, the network and the client's own Python.
`profile_orders` runs N orders through a design in this process under cProfile and adds up the
time spent *inside* each function (its own time, not its callees') by the package it belongs to:
the lab's own code, SQLAlchemy, redis-py, the database driver, the standard library's sockets
(where a client waits for the server), and the rest. The shares say what a faster client could
buy: if most of an order is spent waiting on a socket, no client code change helps.
"""

from __future__ import annotations

import cProfile
import pstats

import pandas as pd

from inventory_lab.designs import design_class
from inventory_lab.lab import Lab
from inventory_lab.orders import Order

# (layer, path fragments that place a function in it), tried in order
LAYERS = (
    ("fakeredis and its Lua", ("fakeredis", "lupa")),  # first: its paths hold "redis/", "socket"
    (
        "waiting on the server (socket reads/writes)",
        ("socket", "selectors", "ssl", "psycopg/waiting", "psycopg/connection.py:wait"),
    ),
    ("SQLite's engine (in this process)", ("sqlite3.Connection", "sqlite3.Cursor")),
    ("database driver", ("psycopg", "pymysql", "sqlite3")),
    ("SQLAlchemy", ("sqlalchemy",)),
    ("redis-py (and hiredis)", ("redis/", "hiredis")),
    ("the lab's own code", ("inventory_lab",)),
)
OTHER = "the rest (interpreter, standard library)"


def layer_of(filename: str, function: str) -> str:
    text = f"{filename}:{function}"
    for layer, fragments in LAYERS:
        if any(fragment in text for fragment in fragments):
            return layer
    return OTHER


def profile_orders(lab: Lab, design: str, orders: int = 500) -> pd.DataFrame:
    """Run `orders` orders of one hot SKU through `design` under cProfile; seconds per layer.

    Returns one row per layer: `seconds` (own time summed), `share` of the total, and
    `us_per_order`. The design is set up fresh (its tables and keys reset) and closed after.
    """
    instance = design_class(design)(lab)
    instance.setup({"sku-0001": orders + 1})  # never sells out: every order takes the whole path
    batch = [Order(f"prof-{i}", "sku-0001", 1) for i in range(orders)]
    instance.deduct(Order("prof-warm", "sku-0001", 1))  # loads scripts, fills the pools
    profiler = cProfile.Profile()
    try:
        profiler.enable()
        for order in batch:
            instance.deduct(order)
        profiler.disable()
    finally:
        instance.close()
    stats = pstats.Stats(profiler)
    by_layer: dict[str, float] = {}
    for (filename, _line, function), row in stats.stats.items():  # type: ignore[attr-defined]
        own_time = row[2]
        layer = layer_of(filename, function)
        by_layer[layer] = by_layer.get(layer, 0.0) + own_time
    total = sum(by_layer.values()) or 1.0
    frame = pd.DataFrame(
        [
            {
                "layer": layer,
                "seconds": seconds,
                "share": seconds / total,
                "us_per_order": seconds / orders * 1e6,
            }
            for layer, seconds in by_layer.items()
        ]
    )
    return frame.sort_values("seconds", ascending=False, ignore_index=True)
