"""A deterministic scheduler: concurrent orders run one step at a time, in an order we choose.

Each task (an order's `deduct`, or a fault such as a re-warm) runs in a thread of its own, but
only one runs at a time. A task stops at every *step boundary*, the moments at which another
client could get in between on a real server:
- before each round trip to Redis (one command, one pipeline, one MULTI/EXEC, one script):
  a hook on the client's connections, as `faults` uses, sees the command about to be sent;
- before each SQL transaction (SQLAlchemy's `begin` event): a transaction runs as one step.
Nothing in the designs changes: the hooks sit on the lab's clients, and a normal run has none.
Between boundaries a task runs only its own Python code, so the run is a pure function of the
choices made at the boundaries, which is what lets the explorer (explorer.py) replay, enumerate
and shrink schedules.

A step's *footprint* is what it reads and writes: Redis keys, parsed from the command (the keys
of EVALSHA are its KEYS), or the whole database for a transaction. Two steps with footprints
that do not conflict commute: either order gives the same state, which the explorer's
partial-order reduction uses. (A transaction is taken to touch every row, which keeps that
reduction sound without parsing SQL.)
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

import redis
from sqlalchemy import event

from inventory_lab import scripts
from inventory_lab.backends import hooked_connections
from inventory_lab.lab import Lab
from inventory_lab.scripts import lua_source

DATABASE = "db"  # a transaction's footprint: the whole database
EVERYTHING = "*"  # a command whose keys we cannot name conflicts with every other step

_READS = {"GET", "HGET", "HMGET", "HGETALL", "EXISTS", "HEXISTS", "PTTL", "TTL", "WATCH"}
_NO_KEYS = {"MULTI", "EXEC", "DISCARD", "UNWATCH", "PING", "CLIENT", "ECHO", "SELECT", "HELLO"}
_ALL_KEYS_ARE_ARGS = {"DEL", "EXISTS", "WATCH", "UNLINK"}
_HANDSHAKE = {"HELLO", "CLIENT", "AUTH", "SELECT"}
_SCRIPTS = {"EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO"}
_WHOLE_SERVER = {"SCRIPT", "FLUSHALL", "FLUSHDB", "SCAN", "KEYS"}


_CATALOG_READS = ("PRAGMA", "SELECT sqlite_", "SELECT SELECT", "SELECT information_schema")


class Abandoned(BaseException):
    """Raised in a paused task to unwind it (the explorer stops an execution it need not
    finish). A BaseException, so that a design's `except Exception` does not take it for a
    backend error and start compensating."""


class TaskBlocked(RuntimeError):
    """A task neither reached a step boundary nor finished in time: it waits on something the
    scheduler does not control (a lock held by a paused task)."""


@dataclass(frozen=True, slots=True)
class Footprint:
    reads: frozenset[str] = frozenset()
    writes: frozenset[str] = frozenset()

    def conflicts(self, other: Footprint) -> bool:
        """Whether the two steps may not commute: one writes what the other reads or writes."""
        mine, theirs = self.reads | self.writes, other.reads | other.writes
        if EVERYTHING in mine | theirs:
            return bool(mine and theirs)
        return bool(self.writes & theirs or other.writes & mine)


@dataclass(slots=True)
class Step:
    """One step as it ran: the task, what it sent, what came back."""

    number: int
    task: str
    kind: str  # "redis", "sql" or "fault"
    sent: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "; ".join(self.sent)


@dataclass(eq=False)
class Task:
    """A callable run as one client of the schedule; `result` is what it returned, `error` what
    it raised."""

    name: str
    body: Callable[[], Any]
    result: Any = None
    error: BaseException | None = None
    first_step: int | None = None
    last_step: int | None = None
    # scheduler state
    status: str = "new"  # new | paused | running | done
    next_kind: str = ""
    next_label: str = ""
    next_footprint: Footprint = field(default_factory=Footprint)
    granted: bool = False
    abandon: bool = False
    free: bool = False  # abandoned: runs on without stopping, to unwind
    open_transactions: set[int] = field(default_factory=set)  # ids of connections in one

    @property
    def in_transaction(self) -> bool:
        return bool(self.open_transactions)


class Scheduler:
    """Runs tasks on `lab`'s clients one step at a time (use as a context manager: it installs
    the hooks for the block)."""

    def __init__(self, lab: Lab, *, step_timeout_s: float = 10.0) -> None:
        self.lab = lab
        self.step_timeout_s = step_timeout_s
        self._local = threading.local()
        self._cond = threading.Condition()
        self._lose_reply = False
        self.steps: list[Step] = []

    # --- hooks --------------------------------------------------------------------------------

    def __enter__(self) -> Scheduler:
        self._hooks = ExitStack()
        self._hooks.enter_context(hooked_connections(self.lab.redis, self._wrap))
        event.listen(self.lab.engine, "begin", self._on_begin)
        event.listen(self.lab.engine, "commit", self._on_commit)
        event.listen(self.lab.engine, "rollback", self._on_rollback)
        event.listen(self.lab.engine, "before_cursor_execute", self._on_statement)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.lab.engine, "before_cursor_execute", self._on_statement)
        event.remove(self.lab.engine, "rollback", self._on_rollback)
        event.remove(self.lab.engine, "commit", self._on_commit)
        event.remove(self.lab.engine, "begin", self._on_begin)
        self._hooks.close()

    def _wrap(self, conn: Any) -> None:
        send, read = conn.send_packed_command, conn.read_response
        conn_state = threading.local()

        def sending(command: Any, *args: Any, **kwargs: Any) -> Any:
            commands = parse_packed(command)
            # A new connection's handshake belongs to the step that needed the connection.
            conn_state.handshake = all(words[0].upper() in _HANDSHAKE for words in commands)
            if not conn_state.handshake:
                self.boundary("redis", describe_commands(commands), footprint_of(commands))
            return send(command, *args, **kwargs)

        def reading(*args: Any, **kwargs: Any) -> Any:
            if getattr(conn_state, "handshake", False):
                return read(*args, **kwargs)
            if self._reply_doomed():
                conn.disconnect()  # the command ran (it was sent); its reply is lost
                raise redis.ConnectionError("connection lost before the reply (scheduled fault)")
            reply = read(*args, **kwargs)
            self._note_reply(reply)
            return reply

        conn.send_packed_command, conn.read_response = sending, reading

    def lose_next_reply(self) -> None:
        """Arm a fault: the next reply a task reads from Redis is lost (a dropped connection)."""
        self._lose_reply = True

    def _reply_doomed(self) -> bool:
        task = self._task()
        if not self._lose_reply or task is None or task.free:
            return False
        self._lose_reply = False
        if self.steps:
            self.steps[-1].replies.append("(reply lost)")
        return True

    def _on_begin(self, conn: Any) -> None:
        # A transaction opened inside another (reflection on a second connection, say) is part
        # of the same step: pausing there would hold the first one's locks across a switch.
        self.boundary("sql", "BEGIN", Footprint(writes=frozenset({DATABASE})))
        task = self._task()
        if task is not None:
            task.open_transactions.add(id(conn))

    def _on_commit(self, conn: Any) -> None:
        self._end_transaction(conn, "COMMIT")

    def _on_rollback(self, conn: Any) -> None:
        self._end_transaction(conn, "ROLLBACK")

    def _end_transaction(self, conn: Any, how: str) -> None:
        task = self._task()
        if task is not None and id(conn) in task.open_transactions:
            task.open_transactions.discard(id(conn))
            self._note(how)

    def _on_statement(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        summary = summarize_sql(statement)
        if summary and not summary.startswith(_CATALOG_READS):  # reflection is not the story
            self._note(summary)

    def _task(self) -> Task | None:
        return getattr(self._local, "task", None)

    def _note(self, text: str) -> None:
        task = self._task()
        if task is not None and self.steps and self.steps[-1].task == task.name and not task.free:
            self.steps[-1].sent.append(text)

    def _note_reply(self, reply: Any) -> None:
        task = self._task()
        if task is not None and self.steps and self.steps[-1].task == task.name and not task.free:
            self.steps[-1].replies.append(_short(reply))

    # --- the boundary -------------------------------------------------------------------------

    def boundary(self, kind: str, label: str, footprint: Footprint) -> None:
        """Called in a task's thread before a step: wait until the scheduler grants it. Outside
        a task (setup, checks) and inside a transaction it returns at once."""
        task = self._task()
        if task is None or task.free:
            return
        if task.in_transaction and kind != "fault":
            return
        with self._cond:
            task.next_kind, task.next_label, task.next_footprint = kind, label, footprint
            task.status = "paused"
            self._cond.notify_all()
            while not (task.granted or task.abandon):
                self._cond.wait()
            if task.abandon:
                task.free = True
                task.status = "running"
                raise Abandoned(task.name)
            task.granted = False
            task.status = "running"

    # --- running ------------------------------------------------------------------------------

    @contextmanager
    def running(self, tasks: Sequence[Task]) -> Iterator[Runner]:
        """Start `tasks` (each runs up to its first boundary, one after another, in order);
        the block chooses steps with `Runner.step`; on leaving, every task still paused is
        abandoned and every thread joined."""
        self.steps = []
        runner = Runner(self, list(tasks))
        try:
            for task in tasks:
                runner.start(task)
            yield runner
        finally:
            runner.abandon_all()


class Runner:
    """The controller's side of one execution: which tasks can step, and stepping one."""

    def __init__(self, scheduler: Scheduler, tasks: list[Task]) -> None:
        self.scheduler = scheduler
        self.tasks = tasks
        self.threads: dict[str, threading.Thread] = {}

    def start(self, task: Task) -> None:
        scheduler = self.scheduler

        def body() -> None:
            scheduler._local.task = task
            try:
                task.result = task.body()
            except Abandoned:
                pass
            except BaseException as exc:  # what the task raised is its result, for the caller
                task.error = exc
            finally:
                with scheduler._cond:
                    task.status = "done"
                    task.last_step = len(scheduler.steps)
                    scheduler._cond.notify_all()

        thread = threading.Thread(target=body, name=f"schedule-{task.name}", daemon=True)
        self.threads[task.name] = thread
        task.status = "running"
        thread.start()
        self._wait_settled(task)

    def enabled(self) -> list[Task]:
        """The tasks paused at a boundary, in the order they were given."""
        return [task for task in self.tasks if task.status == "paused"]

    def step(self, task: Task) -> Step:
        """Let `task` take its next step and run on to its next boundary (or its end)."""
        scheduler = self.scheduler
        if task.status != "paused":
            raise ValueError(f"task {task.name} is not waiting at a step")
        step = Step(len(scheduler.steps) + 1, task.name, task.next_kind, [task.next_label])
        scheduler.steps.append(step)
        if task.first_step is None:
            task.first_step = step.number
        with scheduler._cond:
            task.granted = True
            task.status = "running"
            scheduler._cond.notify_all()
        self._wait_settled(task)
        return step

    def crash(self, task: Task) -> None:
        """The task's app dies at its boundary: it unwinds without taking the step."""
        if task.status != "paused":
            raise ValueError(f"task {task.name} is not waiting at a step")
        with self.scheduler._cond:
            task.abandon = True
            self.scheduler._cond.notify_all()
        # It is still "paused" until its thread wakes: wait for the unwinding to end.
        self.threads[task.name].join(self.scheduler.step_timeout_s)
        if task.status != "done":
            raise TaskBlocked(f"task {task.name} did not unwind after its crash")

    def _wait_settled(self, task: Task) -> None:
        cond = self.scheduler._cond
        with cond:
            settled = cond.wait_for(
                lambda: task.status in ("paused", "done"), timeout=self.scheduler.step_timeout_s
            )
        if not settled:
            raise TaskBlocked(f"task {task.name} neither reached a step nor finished")

    def abandon_all(self) -> None:
        """Unwind every task still paused, one at a time, and join every thread."""
        cond = self.scheduler._cond
        for task in self.tasks:
            thread = self.threads.get(task.name)
            if thread is None:
                continue
            with cond:
                if task.status == "paused":
                    task.abandon = True
                    cond.notify_all()
            thread.join(self.scheduler.step_timeout_s)


# --- reading what is sent ---------------------------------------------------------------------


def parse_packed(command: Any) -> list[list[str]]:
    """The commands in a packed RESP request (a pipeline packs several): each as its words."""
    if isinstance(command, list | tuple):
        data = b"".join(bytes(part) for part in command)
    else:
        data = bytes(command)
    commands: list[list[str]] = []
    pos = 0
    while pos < len(data):
        if data[pos : pos + 1] != b"*":
            raise ValueError(f"not a RESP array at byte {pos}")
        end = data.index(b"\r\n", pos)
        count = int(data[pos + 1 : end])
        pos = end + 2
        words = []
        for _ in range(count):
            end = data.index(b"\r\n", pos)
            length = int(data[pos + 1 : end])
            start = end + 2
            words.append(data[start : start + length].decode("utf-8", "replace"))
            pos = start + length + 2
        commands.append(words)
    return commands


def footprint_of(commands: Sequence[Sequence[str]]) -> Footprint:
    """The keys a request reads and writes (a command we cannot read: every key)."""
    reads: set[str] = set()
    writes: set[str] = set()
    for words in commands:
        name = words[0].upper()
        if name in _NO_KEYS:
            continue
        if name in _SCRIPTS:
            writes.update(words[3 : 3 + int(words[2])])
        elif name in _WHOLE_SERVER or len(words) < 2:
            writes.add(EVERYTHING)
        else:
            named = words[1:] if name in _ALL_KEYS_ARE_ARGS else words[1:2]
            (reads if name in _READS else writes).update(named)
    return Footprint(frozenset(reads - writes), frozenset(writes))


def describe_commands(commands: Sequence[Sequence[str]]) -> str:
    """A short line for a request: the command names and their keys, a script by its SHA's
    first characters."""
    parts = []
    for words in commands:
        name = words[0].upper()
        if name in ("MULTI", "EXEC"):
            parts.append(name)
        elif name == "SCRIPT" and len(words) > 2:  # EXISTS <sha>… or LOAD <source>
            sub = words[1].upper()
            named = [_script_names().get(w, w[:7]) for w in words[2:]] if sub == "EXISTS" else []
            parts.append(" ".join([name, sub, *named]))
        elif name in _SCRIPTS:
            count = int(words[2])
            script = _script_names().get(words[1], words[1][:7])
            parts.append(f"{name} {script} {' '.join(_key(k) for k in words[3 : 3 + count])}")
        else:
            parts.append(" ".join([name, *(_key(w) for w in words[1:3])]))
    return " | ".join(parts)


@cache
def _script_names() -> dict[str, str]:
    """The lab's Lua scripts by SHA1, so that a step reads `EVALSHA gate1`, not a hash."""
    names = [p.name[:-4] for p in files(scripts).iterdir() if p.name.endswith(".lua")]
    return {hashlib.sha1(lua_source(n).encode()).hexdigest(): n for n in names}


def _key(word: str) -> str:
    """A key without the lab's namespace prefix (read `ilab:{sku-1}:stock` as `{sku-1}:stock`)."""
    return word.split(":", 1)[1] if word.count(":") >= 2 else word


def summarize_sql(statement: str) -> str:
    """'UPDATE stock', 'INSERT anti_repeat', 'SELECT stock': the verb and the first table."""
    words = statement.replace("(", " ").replace(",", " ").split()
    if not words:
        return ""
    verb = words[0].upper()
    marker = {"INSERT": "INTO", "UPDATE": None, "SELECT": "FROM", "DELETE": "FROM"}.get(verb, "")
    if marker is None and len(words) > 1:
        return f"{verb} {words[1].strip(chr(34))}"
    upper = [w.upper() for w in words]
    if marker and marker in upper:
        index = upper.index(marker)
        if index + 1 < len(words):
            return f"{verb} {words[index + 1].strip(chr(34))}"
    return verb


def _short(reply: Any, limit: int = 40) -> str:
    text = repr(reply)
    return text if len(text) <= limit else text[: limit - 1] + "…"
