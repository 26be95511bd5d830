"""Where one order's time goes: functions are placed in layers, and the layers add up."""

import pytest

from inventory_lab.order_profile import OTHER, layer_of, profile_orders


@pytest.mark.parametrize(
    ("filename", "function", "layer"),
    [
        ("~", "<method 'recv_into' of '_socket.socket' objects>", "waiting on the server"),
        ("/site-packages/psycopg/connection.py", "wait", "waiting on the server"),
        ("~", "<method 'commit' of 'sqlite3.Connection' objects>", "SQLite's engine"),
        ("/site-packages/psycopg/_cursor_base.py", "_execute_gen", "database driver"),
        ("/site-packages/sqlalchemy/engine/base.py", "execute", "SQLAlchemy"),
        ("/site-packages/redis/client.py", "execute_command", "redis-py"),
        ("/site-packages/fakeredis/_basefakesocket.py", "_run_command", "fakeredis"),
        ("/site-packages/fakeredis/commands_mixins/scripting_mixin.py", "eval", "fakeredis"),
        ("/work/inventory_lab/designs/db_only.py", "deduct", "the lab's own code"),
        ("/usr/lib/python3.11/threading.py", "acquire", OTHER),
    ],
)
def test_functions_are_placed_in_their_layer(filename, function, layer):
    assert layer_of(filename, function).startswith(layer)


@pytest.mark.parametrize("design", ["db_only", "two_gate_lua"])
def test_the_layers_add_up_to_the_whole_order(redis_lab, design):
    frame = profile_orders(redis_lab, design, orders=50)
    assert frame["share"].sum() == pytest.approx(1.0)
    assert (frame["seconds"] >= 0).all() and frame["seconds"].is_monotonic_decreasing
    assert "the lab's own code" in set(frame["layer"])
    assert ("redis-py (and hiredis)" in set(frame["layer"])) == (design == "two_gate_lua")
    per_order = frame["us_per_order"].sum()
    assert per_order == pytest.approx(frame["seconds"].sum() / 50 * 1e6)
