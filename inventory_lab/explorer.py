"""The schedule explorer: every interleaving of a few orders, run for real, checked, shrunk.

Instead of waiting for the thread scheduler to produce a race, the explorer chooses the
interleaving (schedule.py runs the tasks one step at a time) and walks through them all:
a depth-first search over the choices, replaying each schedule from a fresh state on the
embedded backends (fakeredis + SQLite), with the real design code, and the invariant checker
judging every run. What makes it fast:

- *Sleep sets* (Godefroid's partial-order reduction): two steps whose footprints do not
  conflict (keys of different orders, a Redis command and a SQL transaction) commute, so of the
  schedules that differ only in their order one is run and the others are pruned.
- A failure found is *shrunk*: orders and faults are dropped while the failure stays, then the
  fewest context switches that still produce it are searched for, bound 0, 1, 2... (iterative
  context bounding, as in Microsoft's CHESS), so that what is printed is the smallest schedule.
- Beyond what an exhaustive search covers in its budget, `random_walks` samples schedules with
  a seed.

Faults are tasks too, scheduled like the orders: `rewarm` (Redis re-loaded from the database),
`lost_ack` (arms the loss of the next COMMIT's acknowledgement: where it sits in the schedule
decides which order's commit loses it), `lost_reply` (the same for the next Redis reply: the
command ran, its client hears a dropped connection), `expiry` (the orders' anti-repeat codes
expire), and `crash` (at any step, an order's app dies: its client hears nothing). Each finding
is one of the checker's: an oversell, a double deduction, a lost order, units unaccounted for,
or a false sold-out (units refused that were there).
"""

from __future__ import annotations

import itertools
import os
import random
import sqlite3
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from inventory_lab import history, keys
from inventory_lab.backends import DEFAULT_SQLITE_DIR
from inventory_lab.checker import CheckReport, check_lab
from inventory_lab.designs import BaseDesign, design_class
from inventory_lab.faults import LostCommitAck, lost_commit_ack
from inventory_lab.lab import Lab, open_lab
from inventory_lab.orders import Order, Outcome, Result
from inventory_lab.schedule import DATABASE, EVERYTHING, Footprint, Scheduler, Step, Task
from inventory_lab.scripts import lua_source
from inventory_lab.tasks.workers import PENDING
from inventory_lab.workload import RECORD_COLUMNS, deduct_as_client

SKU = "sku-1"
FAULTS = ("rewarm", "lost_ack", "lost_reply", "expiry", "crash")
SAFETY = ("oversold", "double_deducted", "lost", "unaccounted")
FINDINGS = (*SAFETY, "false_sold_out", "false_duplicates")
DEFAULT_FIND = (*SAFETY, "false_sold_out")
_LUA = ("gate1", "give_back", "warm", "sliding_window")


@dataclass(frozen=True)
class Spec:
    """What to explore: `orders` orders of `qty` units each (cycled) for one SKU with `stock`
    units; the first `resends` orders are also sent again by another client; `faults` are
    scheduled with them."""

    design: str
    orders: int = 2
    stock: int = 1
    qty: tuple[int, ...] = (1,)
    resends: int = 0
    faults: tuple[str, ...] = ()
    as_written: bool = False
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        design_class(self.design)  # LabError for an unknown name
        if not 1 <= self.orders <= 8:
            raise ValueError("orders must be in 1..8: the schedules grow factorially")
        if not 0 <= self.stock <= 1000:
            raise ValueError("stock must be in 0..1000")
        if not self.qty or any(isinstance(q, bool) or not isinstance(q, int) for q in self.qty):
            raise ValueError("qty must be one or more integers")
        if any(q <= 0 for q in self.qty):
            raise ValueError("every qty must be positive")
        if not 0 <= self.resends <= self.orders:
            raise ValueError("resends must be in 0..orders")
        unknown = set(self.faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; choose from {', '.join(FAULTS)}")
        if set(self.faults) - {"crash"} and not design_class(self.design).uses_redis:
            raise ValueError(f"{self.design} keeps no Redis copy: only `crash` applies to it")

    def order_list(self) -> list[Order]:
        return [Order(f"o-{i + 1}", SKU, self.qty[i % len(self.qty)]) for i in range(self.orders)]

    def describe(self) -> str:
        written = " (as written)" if self.as_written else ""
        faults = f", faults {'+'.join(self.faults)}" if self.faults else ""
        resends = f", {self.resends} resent" if self.resends else ""
        qty = "/".join(str(q) for q in self.qty)
        return f"{self.design}{written}: {self.orders} orders of {qty}, stock {self.stock}" + (
            resends + faults
        )


class NotReplayable(RuntimeError):
    """A schedule replayed did not take the same course: the explorer's premise broke."""


@dataclass(frozen=True, slots=True)
class Move:
    """One choice: `task` takes its next step, or (kind "crash") its app dies there."""

    task: str
    kind: str = "step"

    def __str__(self) -> str:
        return self.task if self.kind == "step" else f"crash {self.task}"


@dataclass
class Execution:
    """One schedule run to its end (or stopped early, `pruned`, when the search had run every
    schedule it stands for)."""

    moves: list[Move]
    steps: list[Step]
    records: pd.DataFrame
    report: CheckReport | None
    findings: dict[str, int]
    pruned: bool = False
    tasks: dict[str, str] = field(default_factory=dict)  # task -> what its client heard
    nemesis: pd.DataFrame = field(default_factory=pd.DataFrame)  # the faults' steps, as events

    def events(self, *, final_reads: bool = True) -> list[history.Event]:
        """The schedule's history: the clients' attempts and the faults, on the step clock,
        and (`final_reads`) the stock the database holds at the end, read back after it all:
        without it, an oversell whose first client heard nothing fits the answers."""
        final = self.report.final_stock if final_reads and self.report is not None else None
        return history.from_records(self.records, self.nemesis, final_stock=final)

    @property
    def failed(self) -> bool:
        return bool(self.findings)

    @property
    def switches(self) -> int:
        return count_switches(self.moves)


@dataclass
class Search:
    """What a search did: schedules run and pruned, its first failure, the time it took."""

    spec: Spec
    schedules: int = 0
    pruned: int = 0
    complete: bool = False  # every schedule (up to the reduction) was run
    elapsed_s: float = 0.0
    first_failure_s: float | None = None
    failure: Execution | None = None
    failures: int = 0

    def count(self, execution: Execution, started: float) -> None:
        """Add one schedule run (or pruned) to the tally; keep the first failure, and when it
        came (`started`: the search's `time.perf_counter()` at its start)."""
        if execution.pruned:
            self.pruned += 1
        else:
            self.schedules += 1
        if execution.failed:
            self.failures += 1
            if self.failure is None:
                self.failure = execution
                self.first_failure_s = time.perf_counter() - started

    @property
    def per_second(self) -> float:
        return (self.schedules + self.pruned) / self.elapsed_s if self.elapsed_s else 0.0


@dataclass
class _Node:
    """A decision point of the depth-first search."""

    enabled: list[tuple[Move, Footprint]]
    sleep: dict[Move, Footprint]
    chosen: Move
    last: str | None
    preemptions: int
    done: list[Move] = field(default_factory=list)

    def footprint(self, move: Move) -> Footprint:
        return dict(self.enabled)[move]


Chooser = Callable[[list[tuple[Move, Footprint]], str | None], Move | None]


class Explorer:
    """Runs schedules of one `Spec` on `lab` (the embedded default: each run starts afresh)."""

    def __init__(self, lab: Lab, spec: Spec, *, find: Sequence[str] = DEFAULT_FIND) -> None:
        unknown = set(find) - set(FINDINGS)
        if unknown:
            raise ValueError(f"unknown findings {sorted(unknown)}; choose from {FINDINGS}")
        self.lab = lab
        self.spec = spec
        self.find = tuple(find)
        self._start: _Snapshot | None = None
        self._ack: LostCommitAck | None = None  # this run's, when `lost_ack` is scheduled

    # --- one schedule -------------------------------------------------------------------------

    def run(self, choose: Chooser) -> Execution:
        """Run one schedule, `choose` picking each move (None: stop here, pruned)."""
        spec = self.spec
        initial = {SKU: spec.stock}
        if self._start is None or self._start.database is None:
            # an instance of its own: `setup` leaves the task engine stopped, runs need it not
            starter = self._design()
            self.lab.clear_redis()  # a design without Redis leaves an earlier one's keys there
            starter.setup(initial)
            starter.close()
            for name in _LUA:  # loaded now, so that no schedule depends on who loads them first
                self.lab.redis.script_load(lua_source(name))
            self._start = _Snapshot.take(self.lab)
        else:  # the state `setup` made, copied back: the same start, a tenth of the time
            self._start.restore(self.lab)
        design = self._design()
        design.catalog  # read here, not in the first order's first step  # noqa: B018
        moves: list[Move] = []
        crashed: dict[str, int] = {}  # task -> the steps run before its app died
        self._ack = None
        with ExitStack() as stack:
            scheduler = stack.enter_context(Scheduler(self.lab))
            tasks, orders = self._tasks(design, scheduler, stack)
            by_name = {task.name: task for task in tasks}
            pruned = False
            with scheduler.running(tasks) as runner:
                last: str | None = None
                while paused := runner.enabled():
                    enabled = [(Move(t.name), t.next_footprint) for t in paused]
                    if "crash" in spec.faults and len(crashed) < 1:
                        enabled += [
                            (Move(t.name, "crash"), Footprint()) for t in paused if t.name in orders
                        ]
                    move = choose(enabled, last)
                    if move is None:
                        pruned = True
                        break
                    moves.append(move)
                    task = by_name[move.task]
                    if move.kind == "crash":
                        runner.crash(task)
                        crashed[task.name] = len(scheduler.steps)
                    else:
                        struck = self._ack.struck if self._ack is not None else 0
                        step = runner.step(task)
                        if self._ack is not None and self._ack.struck > struck:
                            step.replies.append("(COMMIT's reply lost)")
                    last = move.task
            steps = list(scheduler.steps)
        if pruned:
            design.close()
            return Execution(moves, steps, pd.DataFrame(columns=RECORD_COLUMNS), None, {}, True)
        records = _records(tasks, orders, crashed)
        try:
            _drain(design)
            report = check_lab(
                self.lab,
                initial,
                records,
                redis_view=design.uses_redis,
                task_tables=_task_tables(design),
            )
        finally:
            design.close()
        findings = {name: int(getattr(report, name)) for name in self.find if getattr(report, name)}
        heard = dict(zip(records["task"], records["outcome"], strict=True))
        nemesis = _nemesis(steps, crashed)
        return Execution(
            moves, steps, records.drop(columns="task"), report, findings, False, heard, nemesis
        )

    def replay(self, moves: Sequence[Move]) -> Execution:
        """Run the schedule `moves` (then the first enabled task, in order, to the end)."""
        queue = list(moves)

        def choose(enabled: list[tuple[Move, Footprint]], _last: str | None) -> Move | None:
            names = [move for move, _ in enabled]
            while queue:
                move = queue.pop(0)
                if move in names:
                    return move
            return names[0]

        return self.run(choose)

    def _design(self) -> BaseDesign:
        spec = self.spec
        cls = design_class(spec.design)
        options = dict(spec.options)
        if spec.as_written:
            options["as_written"] = True
        if spec.design == "task_engine":  # one executor, stepped by the schedule
            options.setdefault("start_workers", False)
            options.setdefault("shards", 1)
            options.setdefault("workers", 1)
            # a failed task is retried, a task locked by a claim whose reply was lost is unlocked,
            # by `_drain` at once: no schedule waits for a clock
            options.setdefault("backoff_s", 0.0)
            options.setdefault("lease_s", 0.001)
        return cls(self.lab, **options)

    def _tasks(
        self, design: BaseDesign, scheduler: Scheduler, stack: ExitStack
    ) -> tuple[list[Task], dict[str, Order]]:
        spec = self.spec
        orders: dict[str, Order] = {}
        for order in spec.order_list():
            orders[order.order_id] = order
        for order in spec.order_list()[: spec.resends]:
            orders[f"{order.order_id}'"] = order  # the same order, sent again by another client
        tasks = [Task(name, _deducting(design, order)) for name, order in orders.items()]
        for fault in spec.faults:
            if fault == "rewarm":
                tasks.append(Task("rewarm", design.rewarm))  # type: ignore[attr-defined]
            elif fault == "lost_ack":
                ack = stack.enter_context(lost_commit_ack(self.lab.engine, times=1))
                ack.active.clear()
                self._ack = ack
                tasks.append(Task("lost_ack", _arming(scheduler, "lost_ack", ack.active.set)))
            elif fault == "lost_reply":
                lose = _arming(scheduler, "lost_reply", scheduler.lose_next_reply)
                tasks.append(Task("lost_reply", lose))
            elif fault == "expiry":
                codes = [
                    keys.anti_repeat_key(self.lab.namespace, o.order_id, o.sku)
                    for o in spec.order_list()
                ]
                tasks.append(Task("expiry", _expiring(scheduler, self.lab, codes)))
        if spec.design == "task_engine":
            engine = design.task_engine  # type: ignore[attr-defined]
            tasks.append(Task("executor", lambda: engine.work_once()))
        return tasks, orders

    # --- searching ----------------------------------------------------------------------------

    def search(
        self,
        *,
        max_schedules: int = 100_000,
        time_limit_s: float = 60.0,
        preemption_bound: int | None = None,
        stop_at_first: bool = True,
        progress: Callable[[Search], None] | None = None,
    ) -> Search:
        """Depth-first over every schedule, with sleep sets; `preemption_bound`: at most that
        many context switches away from a task that could have gone on."""
        found = Search(self.spec)
        stack: list[_Node] = []
        started = time.perf_counter()
        while True:
            execution = self.run(_DfsChooser(stack, preemption_bound))
            found.count(execution, started)
            if execution.failed and stop_at_first:
                break
            if progress is not None:
                progress(found)
            if not _backtrack(stack, preemption_bound):
                found.complete = True
                break
            if found.schedules + found.pruned >= max_schedules:
                break
            if time.perf_counter() - started > time_limit_s:
                break
        found.elapsed_s = time.perf_counter() - started
        return found

    def random_walks(self, runs: int, *, seed: int = 0) -> Search:
        """`runs` schedules, each move chosen at random (seeded)."""
        rng = random.Random(seed)
        found = Search(self.spec)
        started = time.perf_counter()
        for _ in range(runs):
            found.count(self.run(lambda enabled, _last: rng.choice(enabled)[0]), started)
        found.elapsed_s = time.perf_counter() - started
        return found

    def shrink(self, failure: Execution, *, max_bound: int = 4) -> tuple[Spec, Execution]:
        """The smallest failing schedule: fewest orders and faults, then fewest context
        switches, with one of `failure`'s findings."""
        wanted = set(failure.findings)
        spec, best = self.spec, failure
        shrinking = True
        while shrinking:
            shrinking = False
            for smaller in _smaller_specs(spec):
                found = _bounded_failure(self.lab, smaller, self.find, wanted, max_bound)
                if found is not None:
                    spec, best, shrinking = smaller, found, True
                    break
        found = _bounded_failure(self.lab, spec, self.find, wanted, max_bound)
        return spec, found if found is not None else best


@dataclass(frozen=True)
class _Snapshot:
    """The state every schedule starts from: the SQLite database (its pages, through SQLite's
    backup API) and the namespace's Redis hashes. Off the embedded default, `restore` is
    `setup` again."""

    database: sqlite3.Connection | None
    hashes: dict[str, dict[str, str]]

    @classmethod
    def take(cls, lab: Lab) -> _Snapshot:
        database = None
        if lab.dialect == "sqlite":
            database = sqlite3.connect(":memory:", check_same_thread=False)
            raw = lab.engine.raw_connection()
            try:
                raw.driver_connection.backup(database)
            finally:
                raw.close()
        hashes = {}
        for key in lab.redis.scan_iter(match=keys.namespace_pattern(lab.namespace)):
            if lab.redis.type(key) != "hash":
                raise ValueError(f"cannot snapshot {key}: not a hash")
            hashes[key] = lab.redis.hgetall(key)
        return cls(database, hashes)

    def restore(self, lab: Lab) -> None:
        if self.database is None:
            raise ValueError("no database snapshot: only the embedded SQLite has one")
        raw = lab.engine.raw_connection()
        try:
            self.database.backup(raw.driver_connection)
        finally:
            raw.close()
        lab.clear_redis()
        pipe = lab.redis.pipeline(transaction=False)
        for key, fields in self.hashes.items():
            pipe.hset(key, mapping=fields)
        pipe.execute()


class _DfsChooser:
    """Follows the search stack's choices, then extends it with new decision points."""

    def __init__(self, stack: list[_Node], bound: int | None) -> None:
        self.stack = stack
        self.bound = bound
        self.depth = 0

    def __call__(self, enabled: list[tuple[Move, Footprint]], last: str | None) -> Move | None:
        stack, depth = self.stack, self.depth
        self.depth += 1
        if depth < len(stack):
            node = stack[depth]
            if [m for m, _ in enabled] != [m for m, _ in node.enabled]:
                raise NotReplayable(
                    f"at decision {depth} the tasks able to step were not the same as the "
                    "first time: the run depends on something the schedule does not fix"
                )
            return node.chosen
        if stack:
            parent = stack[-1]
            chosen_fp = parent.footprint(parent.chosen)
            carried = {**parent.sleep, **{m: parent.footprint(m) for m in parent.done}}
            sleep = {
                m: fp
                for m, fp in carried.items()
                if m.task != parent.chosen.task and not fp.conflicts(chosen_fp)
            }
            preemptions = parent.preemptions + _is_preemption(parent, parent.chosen)
        else:
            sleep, preemptions = {}, 0
        node = _Node(enabled, sleep, Move(""), last, preemptions)
        options = _options(node, self.bound)
        if not options:
            return None
        node.chosen = options[0]
        stack.append(node)
        return node.chosen


def _options(node: _Node, bound: int | None) -> list[Move]:
    moves = [m for m, _ in node.enabled if m not in node.sleep and m not in node.done]
    if bound is not None:
        moves = [m for m in moves if node.preemptions + _is_preemption(node, m) <= bound]
    # Going on with the task that ran last first: schedules with few switches come first.
    return sorted(moves, key=lambda m: (m.task != node.last, m.kind != "step"))


def _is_preemption(node: _Node, move: Move) -> int:
    """A switch away from the task that ran last while it could have gone on."""
    if node.last is None or move.task == node.last:
        return 0
    return int(any(m.task == node.last and m.kind == "step" for m, _ in node.enabled))


def _backtrack(stack: list[_Node], bound: int | None) -> bool:
    """Move the deepest decision with an untried choice to that choice; False when none is
    left (the search is complete)."""
    while stack:
        node = stack[-1]
        node.done.append(node.chosen)
        options = _options(node, bound)
        if options:
            node.chosen = options[0]
            return True
        stack.pop()
    return False


def count_switches(moves: Sequence[Move]) -> int:
    """Context switches in a schedule: moves whose task differs from the one before."""
    return sum(1 for a, b in itertools.pairwise(moves) if a.task != b.task)


def _bounded_failure(
    lab: Lab, spec: Spec, find: Sequence[str], wanted: set[str], max_bound: int
) -> Execution | None:
    """The failure with `wanted` findings reached with the fewest context switches, if any
    within `max_bound`."""
    explorer = Explorer(lab, spec, find=find)
    for bound in range(max_bound + 1):
        stack: list[_Node] = []
        while True:
            execution = explorer.run(_DfsChooser(stack, bound))
            if execution.failed and wanted & set(execution.findings):
                return execution
            if not _backtrack(stack, bound):
                break
    return None


def _smaller_specs(spec: Spec) -> Iterator[Spec]:
    """One order, one resend or one fault fewer."""
    for fault in spec.faults:
        yield replace(spec, faults=tuple(f for f in spec.faults if f != fault))
    if spec.resends:
        yield replace(spec, resends=spec.resends - 1)
    if spec.orders > 1:
        yield replace(spec, orders=spec.orders - 1, resends=min(spec.resends, spec.orders - 1))


def _drain(design: BaseDesign) -> None:
    """Wait for what the design still owes, without background threads: the task engine's
    executor and exception worker are run here, pass after pass, until no task is pending."""
    engine = getattr(design, "task_engine", None)
    if engine is None:
        design.drain()
        return
    design.settle_unknowns()  # type: ignore[attr-defined]
    for _ in range(50):
        engine.maintain_once()
        engine.work_once()
        if not any(engine.store.counts()[status] for status in PENDING):
            return
    raise TimeoutError("tasks still pending after 50 passes of the executor")


def _deducting(design: BaseDesign, order: Order) -> Callable[[], Result]:
    return lambda: deduct_as_client(design, order)


_ARMED = {
    "lost_ack": ("the next COMMIT loses its reply", Footprint(writes=frozenset({DATABASE}))),
    "lost_reply": ("the next Redis reply is lost", Footprint(writes=frozenset({EVERYTHING}))),
}


def _arming(scheduler: Scheduler, fault: str, arm: Callable[[], None]) -> Callable[[], None]:
    """A fault task of one step: it arms `fault` where the schedule puts it (the footprint
    makes it conflict with the steps it can strike)."""
    label, footprint = _ARMED[fault]

    def body() -> None:
        scheduler.boundary("fault", label, footprint)
        arm()

    return body


def _expiring(scheduler: Scheduler, lab: Lab, codes: list[str]) -> Callable[[], None]:
    def body() -> None:
        scheduler.boundary("fault", "anti-repeat codes expire", Footprint(writes=frozenset(codes)))
        lab.redis.delete(*codes)

    return body


def _task_tables(design: BaseDesign) -> list[Any]:
    """The design's task tables (none but the task engine's): known, so not reflected."""
    store = getattr(design, "store", None)
    return [] if store is None else list(store.tables)


def _nemesis(steps: Sequence[Step], crashed: dict[str, int]) -> pd.DataFrame:
    """The faults' steps and the crashes as the nemesis's events (t_s: the step number)."""
    rows = [
        {"t_s": float(step.number), "event": "strike", "fault": step.task, "detail": step.label}
        for step in steps
        if participant(step.task) == "nemesis"
    ]
    rows += [
        {"t_s": n + 0.5, "event": "strike", "fault": "crash", "detail": f"{task}'s app dies"}
        for task, n in crashed.items()
    ]
    return pd.DataFrame(rows, columns=["t_s", "event", "fault", "detail"]).sort_values("t_s")


def _records(tasks: list[Task], orders: dict[str, Order], crashed: Collection[str]) -> pd.DataFrame:
    """One record per order task, on the schedule's clock: invoked just before its first step,
    completed after its last."""
    rows = []
    for client, task in enumerate(t for t in tasks if t.name in orders):
        order = orders[task.name]
        if task.name in crashed:
            result = Result(Outcome.UNKNOWN, "the app crashed")
        elif isinstance(task.result, Result):
            result = task.result
        else:
            result = Result(Outcome.UNKNOWN, repr(task.error))
        start = float((task.first_step or 1) - 1)
        end = float(task.last_step or start)
        rows.append(
            [
                order.order_id,
                order.sku,
                order.qty,
                int(task.name.endswith("'")),
                client,
                start,
                end,
                0.0,
                result.outcome.value,
                result.detail,
                task.name,
            ]
        )
    return pd.DataFrame(rows, columns=[*RECORD_COLUMNS, "task"])


@contextmanager
def embedded_lab() -> Iterator[Lab]:
    """A lab of its own on the embedded default: its own fakeredis server and SQLite file, so
    that it shares nothing with another lab of the same process."""
    name = uuid.uuid4().hex[:8]
    path = DEFAULT_SQLITE_DIR / f"explore-{os.getpid()}-{name}.sqlite"
    lab = open_lab(f"fake://explore-{name}", f"sqlite:///{path}", pool_size=4, max_overflow=12)
    lab.scratch_file = path  # removed on close, with its journal files
    try:
        yield lab
    finally:
        lab.close()


@dataclass
class Exploration:
    """A search and, when it failed, the failure shrunk: what `inventory-lab explore` prints."""

    search: Search
    shrunk_spec: Spec | None = None
    shrunk: Execution | None = None

    def summary(self) -> dict[str, Any]:
        search = self.search
        data: dict[str, Any] = {
            "spec": search.spec.describe(),
            "schedules": search.schedules,
            "pruned": search.pruned,
            "complete": search.complete,
            "elapsed_s": round(search.elapsed_s, 3),
            "schedules_per_s": round(search.per_second, 1),
            "first_failure_s": None
            if search.first_failure_s is None
            else round(search.first_failure_s, 3),
            "failures": search.failures,
        }
        if self.shrunk is not None and self.shrunk_spec is not None:
            data["findings"] = dict(self.shrunk.findings)
            data["shrunk_spec"] = self.shrunk_spec.describe()
            data["schedule"] = [str(move) for move in self.shrunk.moves]
            data["heard"] = dict(self.shrunk.tasks)
        return data


def explore(
    spec: Spec,
    *,
    find: Sequence[str] = DEFAULT_FIND,
    max_schedules: int = 20_000,
    time_limit_s: float = 60.0,
    preemption_bound: int | None = None,
    random_runs: int = 0,
    seed: int = 0,
    shrink: bool = True,
    progress: Callable[[Search], None] | None = None,
) -> Exploration:
    """Search `spec`'s schedules on a lab of its own (exhaustively, or `random_runs` random
    walks), and shrink the first failure."""
    with embedded_lab() as lab:
        explorer = Explorer(lab, spec, find=find)
        if random_runs:
            found = explorer.random_walks(random_runs, seed=seed)
        else:
            found = explorer.search(
                max_schedules=max_schedules,
                time_limit_s=time_limit_s,
                preemption_bound=preemption_bound,
                progress=progress,
            )
        result = Exploration(found)
        if found.failure is not None:
            if shrink:
                result.shrunk_spec, result.shrunk = explorer.shrink(found.failure)
            else:
                result.shrunk_spec, result.shrunk = spec, found.failure
    return result


def participant(task: str) -> str:
    """Who a task is on a diagram: an order's client, or the nemesis for a fault."""
    return task if task.startswith("o-") or task == "executor" else "nemesis"


def diagram_steps(execution: Execution) -> list[tuple[str, str, str]]:
    """The schedule as (sender, receiver, message) for `plots.sequence_diagram`: one arrow per
    step to Redis or the database, with what came back; a fault's step is a note."""
    rows = []
    for step in execution.steps:
        who = participant(step.task)
        if step.kind == "fault":
            rows.append((who, who, f"{step.task}: {step.label}"))
            continue
        target = "Redis" if step.kind == "redis" else "database"
        message = _wrapped(step.label)
        if step.replies:
            message += f"\n=> {', '.join(step.replies)}"
        rows.append((who, target, message))
    return rows


def format_schedule(execution: Execution) -> str:
    """The schedule as numbered lines, and what each client heard."""
    lines = []
    for step in execution.steps:
        reply = f"  => {', '.join(step.replies)}" if step.replies else ""
        lines.append(f"{step.number:3d}. {step.task:<9} {step.label}{reply}")
    crashed = [str(move) for move in execution.moves if move.kind == "crash"]
    if crashed:
        lines.append(f"     ({', '.join(crashed)})")
    heard = ", ".join(f"{task} heard {outcome}" for task, outcome in execution.tasks.items())
    lines.append(f"     {heard}")
    if execution.findings:
        found = ", ".join(f"{name} {value}" for name, value in execution.findings.items())
        lines.append(f"     the checker: {found}")
    return "\n".join(lines)


def _wrapped(label: str, width: int = 48) -> str:
    parts = label.split("; ")
    lines, line = [], ""
    for part in parts:
        if line and len(line) + len(part) + 2 > width:
            lines.append(line + ";")
            line = part
        else:
            line = f"{line}; {part}" if line else part
    lines.append(line)
    return "\n".join(lines)


def steps_of(design: str, *, qty: int = 1, stock: int = 1, as_written: bool = False) -> list[Step]:
    """A design's deduction as its steps: one order alone, run step by step (item 1 of the
    explorer: what each design does at the boundaries where another client can get in)."""
    spec = Spec(design, orders=1, stock=stock, qty=(qty,), as_written=as_written)
    with embedded_lab() as lab:
        return Explorer(lab, spec).replay([]).steps


def steps_table(designs: Sequence[str], **options: Any) -> pd.DataFrame:
    """`steps_of` for several designs, one row per step: design, step, the task that took it
    (the order, or the task engine's executor), kind, what was sent."""
    rows = [
        {
            "design": name,
            "step": step.number,
            "task": step.task,
            "kind": step.kind,
            "sent": step.label,
        }
        for name in designs
        for step in steps_of(name, **options)
    ]
    return pd.DataFrame(rows, columns=["design", "step", "task", "kind", "sent"])
