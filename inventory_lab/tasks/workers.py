"""The workers: executors that claim and apply tasks, the exception worker, the unlock worker.

`TaskEngine` runs them as threads. Executors claim NEW tasks (one at a time with the article's
conditional update, just before applying it; or in batches with SKIP LOCKED, renewing each lease
before applying), apply each through the `apply` callable (gate 2: anti-repeat row + stock
update, idempotent, so applying twice is harmless) and complete it with a compare-and-set. The
exception worker returns FAILED tasks to NEW after an exponential backoff and buries them as DEAD
after `max_attempts`. The unlock worker returns tasks LOCKED longer than the lease to NEW.
`start()` first recovers what an earlier process of the same node left locked; `stop()` hands
back claimed tasks it has not started and waits until every worker has really stopped. Every
worker counts what it did in `counters`.

Two faults are built in, because only the engine knows where they bite: `kill_after_claim(n)`
makes the next n executors die holding a claimed task, and `pause_after_claim_s` makes executors
stall between their last lease check and the apply (a GC pause, a swapped-out process), long
enough for the lease to run out: the task is then applied twice, and only idempotence saves it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields

from inventory_lab.orders import Order
from inventory_lab.tasks.store import PENDING, Task, TaskStore

log = logging.getLogger(__name__)

ApplyFn = Callable[[Order], bool]  # True: applied now; False: it had been applied before
_NODE = re.compile(r"[A-Za-z0-9_\-]{1,32}")


@dataclass
class EngineCounters:
    claimed: int = 0
    applied: int = 0
    already_applied: int = 0
    completed: int = 0
    complete_failed: int = 0
    fail_unrecorded: int = 0
    failed: int = 0
    lease_lost: int = 0
    unlocked: int = 0
    recovered: int = 0
    retried: int = 0
    dead: int = 0
    killed: int = 0
    respawned: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


class TaskRefused(Exception):
    """`apply` says the task can never succeed (the database guard refused it): DEAD at once."""


class _Killed(Exception):
    """An executor dies here, holding its claimed task (a crashed worker)."""


class TaskEngine:
    def __init__(
        self,
        store: TaskStore,
        apply: ApplyFn,
        *,
        workers: int = 4,
        claim: str = "single",
        batch: int = 16,
        lease_s: float = 5.0,
        max_attempts: int = 5,
        backoff_s: float = 0.05,
        max_backoff_s: float = 1.0,
        poll_s: float = 0.005,
        node: str = "node-1",
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        if claim not in ("single", "skip_locked"):
            raise ValueError("claim must be 'single' or 'skip_locked'")
        if lease_s <= 0 or max_attempts < 1 or backoff_s < 0 or batch < 1:
            raise ValueError("lease_s > 0, max_attempts >= 1, backoff_s >= 0, batch >= 1")
        if claim == "skip_locked" and any(e.dialect.name == "sqlite" for e in store.engines):
            raise ValueError(
                "claim='skip_locked' needs PostgreSQL or MariaDB: SQLite has no SKIP LOCKED"
            )
        if not _NODE.fullmatch(node):
            raise ValueError(f"node {node!r}: 1-32 letters, digits, '_' or '-'")
        self.store = store
        self.apply = apply
        self.workers = workers
        self.claim_mode = claim
        self.batch = batch
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.poll_s = poll_s
        self.node = node
        self.boot = uuid.uuid4().hex[:8]
        self.counters = EngineCounters()
        self.pause_after_claim_s = 0.0  # set by the nemesis: stall after claiming, then apply
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._executors: dict[int, threading.Thread] = {}
        self._generation: dict[int, int] = {}  # how often each executor was respawned
        self._kills = 0
        self._kill_lock = threading.Lock()
        # (shard, id) of each task an executor died holding, so that a report can follow them
        self.killed_holding: list[tuple[int, int]] = []

    # --- life cycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def start(self) -> TaskEngine:
        if self.running:
            raise RuntimeError("engine still running: stop() it first")
        self._threads = []
        self.recover()
        self._stop.clear()
        for i in range(self.workers):
            self._executors[i] = self._spawn(self._executor, f"{self.node}-executor-{i}", i)
        self._spawn(self._maintenance, f"{self.node}-maintenance")
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop every worker and wait for it; TimeoutError if one is still running (it keeps
        `running` true, and `start()` refuses, until it has really stopped)."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        if self._threads:
            names = ", ".join(t.name for t in self._threads)
            raise TimeoutError(f"still running after {timeout_s} s: {names}")
        # Stopped, no longer stopping: `work_once` driven by hand (tests, the explorer, a design
        # set up with start_workers=False, whose `setup` stops the engine) claims work again.
        self._stop.clear()

    def recover(self) -> int:
        """Start-up recovery: unlock what earlier boots of this node left LOCKED, at once."""
        n = self.store.unlock_expired(0.0, node=self.node, boot=self.boot)
        self.counters.add("recovered", n)
        return n

    def wait_drained(self, timeout_s: float = 60.0) -> bool:
        """Block until no task is NEW, LOCKED or FAILED (True), or the timeout passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                counts = self.store.counts()
            except Exception:  # the database is away for now: keep waiting
                log.debug("wait_drained: cannot count the tasks yet", exc_info=True)
                time.sleep(0.05)
                continue
            if not any(counts[s] for s in PENDING):
                return True
            time.sleep(0.02)
        return False

    def kill_after_claim(self, n: int = 1) -> None:
        """The next `n` executors that claim a task die holding it (fault injection); 0 calls
        off the kills still pending. `killed_holding` names the tasks they died holding."""
        with self._kill_lock:
            self._kills = self._kills + n if n else 0

    # --- one unit of work (also what tests drive directly) ------------------------------------

    def owner(self, worker: int | str) -> str:
        generation = self._generation.get(worker, 0) if isinstance(worker, int) else 0
        return f"{self.node}:{self.boot}:w{worker}" + (f".{generation}" if generation else "")

    def shards_of(self, index: int) -> list[int]:
        """The shards executor `index` serves first: its own when there are at least as many
        shards as executors (no claim races), otherwise one shared with other executors. An
        idle executor then helps with the other shards, so a dead executor's shard still drains."""
        shards = self.store.shards
        if self.workers <= shards:
            return [s for s in range(shards) if s % self.workers == index]
        return [index % shards]

    def work_once(self, worker: int | str = 0, *, shards: list[int] | None = None) -> int:
        """Claim and process the NEW tasks of the given shards (default: all) once.

        Returns how many tasks were claimed."""
        owner = self.owner(worker)
        done = 0
        for shard in range(self.store.shards) if shards is None else shards:
            for task in self._claimed(shard, owner):
                self.counters.add("claimed")
                self._maybe_die(task)
                if self._stop.is_set():  # stopping: hand the rest back unapplied
                    self.store.release(task, owner)
                    continue
                self._process(task, owner)
                done += 1
        return done

    def _claimed(self, shard: int, owner: str) -> Iterator[Task]:
        """Claimed tasks, one at a time. The article's single claim takes a task just before it
        is processed (claim what you can finish); a SKIP LOCKED batch is claimed up front, so
        each task's lease is renewed before it is applied."""
        if self.claim_mode == "skip_locked":
            for task in self.store.claim_batch(shard, owner, self.batch):
                if self.store.renew(task, owner):
                    yield task
                else:  # the lease ran out while earlier tasks of the batch were applied
                    self.counters.add("lease_lost")
            return
        for task_id in self.store.new_ids(shard, self.batch):
            if self._stop.is_set():
                return
            task = self.store.claim(shard, task_id, owner)
            if task is not None:  # another worker may have won it
                yield task

    def _process(self, task: Task, owner: str) -> None:
        if self.pause_after_claim_s:  # the nemesis: a worker stalls (GC, swap) holding its task
            time.sleep(self.pause_after_claim_s)
        self._apply_and_finish(task, owner)

    def _apply_and_finish(self, task: Task, owner: str) -> None:
        """Apply one claimed task and record how it ended: DONE, FAILED or DEAD."""
        try:
            fresh = self.apply(task.order)
        except TaskRefused as exc:  # it can never succeed: no retries
            error = f"{type(exc).__name__}: {exc}"
            recorded = self.store.fail(task, owner, error, dead=True)
            self.counters.add("dead" if recorded else "lease_lost")
            return
        except Exception as exc:  # any other failure is a retryable task failure
            log.debug("task %s failed to apply", task.id, exc_info=True)
            try:
                recorded = self.store.fail(task, owner, f"{type(exc).__name__}: {exc}")
            except Exception:  # the DB cannot even record it: the lease will bring it back
                log.debug("task %s: its failure not recorded", task.id, exc_info=True)
                self.counters.add("fail_unrecorded")
                return
            self.counters.add("failed" if recorded else "lease_lost")
            return
        self.counters.add("applied" if fresh else "already_applied")
        try:
            completed = self.store.complete(task, owner)
        except Exception:  # the DB went away after applying: the lease will bring it back
            log.debug("task %s applied, not completed", task.id, exc_info=True)
            self.counters.add("complete_failed")
            return
        self.counters.add("completed" if completed else "lease_lost")

    def _maybe_die(self, task: Task) -> None:
        with self._kill_lock:
            if self._kills <= 0:
                return
            self._kills -= 1
            self.killed_holding.append((task.shard, task.id))
        self.counters.add("killed")
        raise _Killed

    def maintain_once(self) -> None:
        """One pass of the exception worker and the unlock worker."""
        retried, dead = self.store.retry_failed(
            max_attempts=self.max_attempts,
            backoff_s=self.backoff_s,
            max_backoff_s=self.max_backoff_s,
        )
        self.counters.add("retried", retried)
        self.counters.add("dead", dead)
        self.counters.add("unlocked", self.store.unlock_expired(self.lease_s))

    # --- threads ------------------------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()
        return thread

    def _respawn_dead_executors(self) -> None:
        """The supervisor's part (systemd, Kubernetes): an executor that died is started again,
        under a new owner name; the task it held waits for its lease to run out."""
        for index, thread in list(self._executors.items()):
            if not thread.is_alive() and not self._stop.is_set():
                self._generation[index] = self._generation.get(index, 0) + 1
                name = f"{self.node}-executor-{index}.{self._generation[index]}"
                self._executors[index] = self._spawn(self._executor, name, index)
                self.counters.add("respawned")

    def _executor(self, index: int) -> None:
        while not self._stop.is_set():
            try:
                own = self.shards_of(index)
                claimed = self.work_once(index, shards=own)
                if claimed == 0:  # help with shards whose executors are busy or dead
                    others = [s for s in range(self.store.shards) if s not in own]
                    claimed = self.work_once(index, shards=others)
            except _Killed:
                return  # the worker died holding its task; the unlock worker will free it
            except Exception:  # the DB is away: wait, then claim again
                log.debug("executor %s: claiming failed, waiting", index, exc_info=True)
                self._stop.wait(self.poll_s * 20)
                continue
            if claimed == 0:
                self._stop.wait(self.poll_s)

    def _maintenance(self) -> None:
        period = max(min(self.lease_s, self.backoff_s or self.lease_s) / 2, self.poll_s)
        while not self._stop.wait(period):
            self._respawn_dead_executors()
            try:
                self.maintain_once()
            except Exception:  # the DB is away: the next period tries again
                log.debug("maintenance pass failed", exc_info=True)
