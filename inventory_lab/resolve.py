"""Unknown outcomes: an error after a write was sent, resolved from the source of truth.

A transaction that fails *before* its COMMIT was sent rolled back; one whose COMMIT was sent and
whose reply never came (the connection dropped, the server restarted with `-m immediate`, a
network cut) may have committed. The client cannot tell the two apart from the error — it is
Jepsen's "info", not "fail". A design that treats it as a failure and gives the stock back (or
frees the anti-repeat code) sells the unit twice when the commit did land.

So before it undoes anything, a design asks the database whether the write is there, on a fresh
connection. A plain SELECT is not enough: under MVCC it does not wait for a transaction still in
flight on the server, and would answer "not there" for a commit a moment away. The probe instead
*inserts* the row's unique key (the anti-repeat code, or the task's code) in a transaction it then
rolls back. A unique insert waits for any in-flight transaction holding that key (PostgreSQL and
InnoDB wait on the row lock, SQLite on its one writer), so its answer is final: a duplicate-key
error means the write committed; success means it did not, and cannot any more — the client that
sent it is gone — and the rollback leaves no trace, so a resend can still go through.
"""

from __future__ import annotations

import logging

from sqlalchemy import Insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from inventory_lab.backends import first_line, in_transaction
from inventory_lab.errors import LabError

log = logging.getLogger(__name__)


def describe(exc: BaseException) -> str:
    """'Type: first line', short: what a client record or a message says of an error."""
    return f"{type(exc).__name__}: {first_line(exc)}"[:200]


class OutcomeUnknown(LabError):
    """An error after a write was sent, and the source of truth could not be read either:
    nothing was undone (Redis keeps its decrement until reconciliation repairs it)."""


class _ProbeDone(Exception):
    """Raised inside the probe's transaction so that it rolls back."""


def persisted(engine: Engine, probe: Insert) -> bool:
    """Did the write whose unique key `probe` inserts commit? Raises OutcomeUnknown when the
    database cannot answer either."""

    def work(conn) -> None:  # type: ignore[no-untyped-def]
        conn.execute(probe)
        raise _ProbeDone  # inserted: the key was not there; roll the probe back

    try:
        in_transaction(engine, work)
    except IntegrityError:
        return True
    except _ProbeDone:
        return False
    except Exception as exc:  # the database is away: the outcome stays unknown for now
        log.debug("the probe could not reach the database", exc_info=True)
        raise OutcomeUnknown(f"{describe(exc)}; could not resolve the outcome either") from exc
    raise AssertionError("unreachable")
