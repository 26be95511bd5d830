"""The statement meter counts what a design sends to the database, by kind and table, on every
database; it stops counting when its block ends."""

import sqlalchemy as sa

from inventory_lab import Order, Outcome, design_class, schema
from inventory_lab.backends import db_now
from inventory_lab.db_meter import OTHER, describe_statement, metered_db


def test_db_only_sends_one_stock_update_per_decision_and_none_for_a_duplicate(lab):
    design = design_class("db_only")(lab)
    design.setup({"sku-1": 1})
    with metered_db(lab.engine) as accepted:
        assert design.deduct(Order("o-1", "sku-1", 1)).outcome is Outcome.ACCEPTED
    assert dict(accepted.counts) == {
        ("insert", "anti_repeat"): 1,
        ("update", "stock"): 1,
        ("insert", "orders"): 1,
    }
    with metered_db(lab.engine) as refused:
        assert design.deduct(Order("o-2", "sku-1", 1)).outcome is Outcome.SOLD_OUT
    assert refused.count("update", "stock") == 1 and refused.total == 2  # rolled back, but sent
    with metered_db(lab.engine) as duplicate:
        assert design.deduct(Order("o-1", "sku-1", 1)).outcome is Outcome.DUPLICATE
    assert dict(duplicate.counts) == {("insert", "anti_repeat"): 1}


def test_the_meter_stops_counting_when_its_block_ends(lab):
    design_class("db_only")(lab).setup({"sku-1": 1})  # creates the tables
    with metered_db(lab.engine) as meter, lab.engine.connect() as conn:
        conn.execute(sa.select(schema.stock.c.num))
    with lab.engine.connect() as conn:
        conn.execute(sa.select(schema.stock.c.num))
    assert dict(meter.counts) == {("select", "stock"): 1}


def test_textual_sql_is_counted_as_other():
    assert describe_statement(sa.text("SELECT 1")) == (OTHER, OTHER)
    assert describe_statement("SELECT 1") == (OTHER, OTHER)
    assert describe_statement(schema.DEDUCT_STOCK) == ("update", "stock")


def test_a_statement_on_the_database_clock_is_counted():
    """Regression: a SELECT of `db_now()` raised UnsupportedCompilationError in the meter (it
    had no rendering but the databases'), which failed the reservation design's orders."""
    assert describe_statement(sa.select(db_now())) == ("select", OTHER)
    assert "db_now()" in str(sa.select(db_now()))
