"""Count the statements a client sends to the database: what a design costs the hot row.

`redis_meter` counts a design's Redis round trips; this is its database side. Inside
`metered_db(engine)` every statement executed on the engine — by any thread, a task engine's
executors included — is counted by its kind and the table it writes or reads (`("update",
"stock")`, `("insert", "anti_repeat")`, …), from the SQLAlchemy statement itself, not by parsing
SQL text. A statement is counted when it is sent, whether or not it then fails (a duplicate's
INSERT that hits the unique key is one). Notebook 03 uses it to show that a two-gate design still
updates the stock row once per accepted order, as `db_only` does, and that gate 1 spares the
database every refusal.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.sql import ClauseElement

OTHER = "other"  # textual SQL, DDL: a statement whose table the meter does not read


class StatementMeter:
    """Statements seen, by (kind, table): kind is insert, update, delete, select or other."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def count(self, kind: str, table: str | None = None) -> int:
        """Statements of `kind` (on `table`, when given)."""
        return sum(n for (k, t), n in self.counts.items() if k == kind and table in (None, t))

    def _seen(self, statement: Any) -> None:
        key = describe_statement(statement)
        with self._lock:
            self.counts[key] += 1


def describe_statement(statement: Any) -> tuple[str, str]:
    """(kind, table) of a SQLAlchemy statement: ("update", "stock") for `schema.DEDUCT_STOCK`."""
    if not isinstance(statement, ClauseElement):
        return OTHER, OTHER
    kind = statement.__visit_name__
    if kind in ("insert", "update", "delete"):
        return kind, getattr(statement.table, "name", OTHER)
    if kind == "select":
        froms = statement.get_final_froms()  # type: ignore[attr-defined]
        names = sorted(getattr(f, "name", OTHER) for f in froms)
        return kind, ",".join(names) or OTHER
    return OTHER, OTHER


@contextmanager
def metered_db(engine: Engine) -> Iterator[StatementMeter]:
    """Count the statements executed on `engine` inside the block."""
    meter = StatementMeter()

    def seen(_conn: Any, statement: Any, *_args: Any) -> None:
        meter._seen(statement)

    event.listen(engine, "before_execute", seen)
    try:
        yield meter
    finally:
        event.remove(engine, "before_execute", seen)
