"""A database that stalls for a moment, for real: the lesson on coordinated omission.

A stall (a migration holding a lock, a checkpoint, a GC pause) is when a closed-loop benchmark
lies: its clients wait with the server, send nothing meanwhile, and the stall costs each of them
one slow answer. Real users keep arriving. `TableStall` makes the stall happen on the server, not
in the client: a session of its own takes the `stock` table's strongest lock for `hold_s`
seconds, `after_s` seconds after `start()`, so that every deduction queues behind it — on SQLite
`BEGIN EXCLUSIVE`, on PostgreSQL `LOCK TABLE … ACCESS EXCLUSIVE`, on MariaDB `LOCK TABLES …
WRITE`. It works across processes, since the lock lives in the database. `start` fits
`loadgen.run_load(on_ready=…)`: the stall is timed from the load's start.
"""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine

_LOCK = {
    "postgresql": ("BEGIN", "LOCK TABLE stock IN ACCESS EXCLUSIVE MODE"),
    "mysql": ("LOCK TABLES stock WRITE",),
    "sqlite": ("BEGIN EXCLUSIVE",),
}
_UNLOCK = {"postgresql": ("COMMIT",), "mysql": ("UNLOCK TABLES",), "sqlite": ("COMMIT",)}


class TableStall:
    """Hold the stock table's exclusive lock for `hold_s`, starting `after_s` after `start()`."""

    def __init__(self, engine: Engine, *, after_s: float, hold_s: float) -> None:
        if after_s < 0 or hold_s <= 0:
            raise ValueError("after_s must be >= 0 and hold_s > 0")
        self.engine = engine
        self.after_s = after_s
        self.hold_s = hold_s
        self.dialect = engine.dialect.name if engine.dialect.name != "mariadb" else "mysql"
        self.held_from: float | None = None  # time.monotonic() when the lock was granted
        self.held_until: float | None = None  # … and when it was let go
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._stall, name="table-stall", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
        if self.error is not None:
            raise self.error

    def _stall(self) -> None:
        try:
            time.sleep(self.after_s)
            # AUTOCOMMIT: the driver opens no transaction of its own; the statements below do
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                for statement in _LOCK[self.dialect]:
                    conn.execute(sa.text(statement))
                self.held_from = time.monotonic()
                time.sleep(self.hold_s)
                self.held_until = time.monotonic()
                for statement in _UNLOCK[self.dialect]:
                    conn.execute(sa.text(statement))
        except BaseException as exc:  # reported by join(), in the caller's thread
            self.error = exc
