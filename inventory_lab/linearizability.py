"""Is a run's history linearizable for the stock object? If not, where does it break?

The checker reads the operations of a history (history.py) and searches for a linearization:
one order of the operations that respects real time (an operation that ended before another began
comes first) and in which every definite answer is the answer of the sequential specification at
that point. It is Wing & Gong's search with Lowe's memo, as Knossos and Porcupine run it: from a
configuration (the set of operations linearized so far), any operation no other pending one
precedes in real time may go next; a configuration already explored is not explored again.

The sequential specification, per SKU (linearizability is local, Herlihy & Wing: each SKU is
checked on its own, from its initial stock). State: units left and the order lines done.
`deduct(order_id, qty)` answers `duplicate` if its line is done (nothing changes), else
`accepted` if units >= qty (units -= qty, line done), else `sold_out` (nothing changes).
- `accepted`, `sold_out`, `duplicate` (Jepsen's `ok`) took effect at one instant inside their
  interval, with that answer;
- `error`, `rejected`, `throttled` (`fail`) did not happen and are left out;
- `unknown` (`info`) may take effect at any instant after its start, with whatever answer, or
  never. Taking effect with an answer that changes nothing is the same as never: the search only
  ever applies an unknown operation as `accepted`.
`read()` answers the units left and changes nothing: a read that answered linearizes at one
instant inside its interval and must see exactly the units left there (one that failed or was
never heard says nothing and is left out). The model never takes the stock below zero (a deduct
of more than is left answers `sold_out`), so a read of a negative stock is always invalid: it is
how a final read (history.from_records's `final_stock`) shows an oversell the answers hide.
Neither reads nor answers that change nothing touch the state, so the state is a function of
the set of operations linearized, and that set alone is the memo's key.

Real time. `check_operations` reads seconds: A precedes B when A ended strictly before B began;
two operations that touch at one instant are taken as overlapping (Porcupine's convention: it can
only miss a violation at an exact tie, never invent one). `check_history` orders by the events'
indices instead, Jepsen's exact order: a completion listed before an invocation precedes it.

The smallest window. A prefix of the history up to the completion at time t keeps the operations
invoked by t; those that completed by t keep their answer, those still running are unknown.
Prefixes are closed (if a history is linearizable, so is each of its prefixes), so there is an
earliest completion after which no linearization exists: the prefix before it fits and the prefix
with it does not. That completion's operation, the culprit, is what broke the history; the window
is the culprit plus every operation of that prefix overlapping it in real time, the operations
whose order against it is free. Every other operation of the prefix ended before the culprit
began. The explanation replays the furthest order the search found (Knossos's final paths: the
one placing the most definite answers, then the longest; an unknown operation applied explains
nothing by itself) and says, at the stock it reached, why no remaining answer fits. A binary
search over the completions finds the prefix: log2(n) searches on top of the first.

The search checks the clock every few hundred configurations; past `time_limit_s` (one budget
for the whole check) the verdict is `unknown`, or, when the history is already known not to fit,
`invalid` with the smallest window found by then.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from inventory_lab.errors import InvalidInput
from inventory_lab.history import DEDUCT, FAIL, INFO, OK, READ, Event, Operation, operations
from inventory_lab.orders import Outcome

VALID, INVALID, UNKNOWN = "valid", "invalid", "unknown"
_CLOCK_EVERY = 256  # configurations between two readings of the clock
_BRUTE_FORCE_LIMIT = 9  # operations per SKU: 9! orders of every subset is already slow
_PATH_SHOWN = 6  # steps of the furthest order an explanation prints


@dataclass(frozen=True)
class Verdict:
    """The checker's answer for a whole history.

    `linearization` (valid): per SKU, one order that fits, reads included, with the unknown
    operations that took effect (as `accepted`) in their place and the others dropped.
    `culprit` and `window` (invalid): the operation whose completion broke the history, and it
    plus the operations overlapping it, by start. `explored`: configurations visited, over
    every search run."""

    result: str  # valid | invalid | unknown
    sku: str | None = None  # the SKU found invalid (or unknown); None when valid
    linearization: dict[str, tuple[Operation, ...]] = field(default_factory=dict)
    culprit: Operation | None = None
    window: tuple[Operation, ...] = ()
    explanation: str = ""
    explored: int = 0

    @property
    def valid(self) -> bool:
        return self.result == VALID


@dataclass(frozen=True, slots=True)
class _Op:
    """An operation as one search sees it: its ordering keys and whether its answer binds."""

    op: Operation
    start: float  # seconds, or event indices (check_history)
    end: float  # math.inf when the answer is unknown, or not heard yet in a prefix
    definite: bool
    running: bool = False  # completed after the prefix this search reads ends
    final: bool = False  # a read that began after every other operation of its SKU began


@dataclass(frozen=True)
class _Step:
    item: _Op
    before: int  # units before it took effect
    after: int


@dataclass(frozen=True)
class _Search:
    result: str
    path: tuple[_Step, ...]  # valid: a linearization; invalid: the furthest order found
    stuck: tuple[str, ...]  # invalid: why no remaining answer fits where the path ends
    explored: int


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def passed(self) -> bool:
        return time.monotonic() > self.at


def check_operations(
    ops: Iterable[Operation], initial: Mapping[str, int], *, time_limit_s: float = 5.0
) -> Verdict:
    """Check paired operations against `initial` stock per SKU; real time read from seconds."""
    return _check([_item(op, op.start_s, op.end_s) for op in ops], initial, time_limit_s)


def check_history(
    events: Iterable[Event], initial: Mapping[str, int], *, time_limit_s: float = 5.0
) -> Verdict:
    """Check a history of events (pairs them with `history.operations`); real time is the
    events' order, so a completion listed before an invocation precedes it even at one instant."""
    events = list(events)
    shown = operations(events)
    # The same pairing on events timed by their index gives each operation exact ordering keys.
    keyed = operations(replace(event, time_s=float(event.index)) for event in events)
    keys = {op.index: (op.start_s, op.end_s) for op in keyed}
    items = [_item(op, *keys[op.index]) for op in shown]
    return _check(items, initial, time_limit_s)


def brute_force(ops: Iterable[Operation], initial: Mapping[str, int]) -> bool:
    """Linearizable? By trying every real-time-respecting order of the definite operations and
    every subset of the unknown ones; independent of the search, for tests on small histories."""
    ops = [op for op in ops if _says_something(op)]
    _validate(ops, initial)
    groups: dict[str, list[Operation]] = defaultdict(list)
    for op in ops:
        groups[op.sku].append(op)
    for sku, group in groups.items():
        if len(group) > _BRUTE_FORCE_LIMIT:
            raise InvalidInput(f"brute force takes at most {_BRUTE_FORCE_LIMIT} operations a SKU")
        definite = [op for op in group if op.type != INFO]
        unknown = [op for op in group if op.type == INFO]
        subsets = (
            chosen
            for size in range(len(unknown) + 1)
            for chosen in itertools.combinations(unknown, size)
        )
        if not any(
            _in_real_time(order) and _replays(order, initial[sku])
            for chosen in subsets
            for order in itertools.permutations(definite + list(chosen))
        ):
            return False
    return True


def describe(verdict: Verdict) -> str:
    """A few lines for a notebook to print."""
    if verdict.result == VALID:
        count = sum(len(order) for order in verdict.linearization.values())
        return (
            f"linearizable: {len(verdict.linearization)} SKU(s), an order of {count} operations "
            f"fits every answer ({verdict.explored} configurations explored)"
        )
    if verdict.result == UNKNOWN:
        return f"unknown: {verdict.explanation} ({verdict.explored} configurations explored)"
    return (
        f"not linearizable: SKU {verdict.sku}, window of {len(verdict.window)} operations "
        f"({verdict.explored} configurations explored)\n{verdict.explanation}"
    )


def _item(op: Operation, start: float, end: float) -> _Op:
    definite = op.type != INFO
    return _Op(op, start, end if definite else math.inf, definite)


def _says_something(op: Operation) -> bool:
    """A failed deduct did not happen; a read says something only if it answered."""
    return op.type == OK if op.f == READ else op.type != FAIL


def _with_final_reads(group: list[_Op]) -> list[_Op]:
    """Mark the reads that began after every other operation of the group began (how the
    explanation names them: "the final read")."""
    starts = sorted(item.start for item in group)
    latest_other = starts[-2] if len(starts) > 1 else -math.inf
    return [
        replace(item, final=True)
        if item.op.f == READ and item.start > latest_other and item.start == starts[-1]
        else item
        for item in group
    ]


def _validate(ops: Sequence[Operation], initial: Mapping[str, int]) -> None:
    for sku, units in initial.items():
        if isinstance(units, bool) or not isinstance(units, int) or units < 0:
            raise InvalidInput(f"initial stock of {sku!r} must be an integer >= 0, got {units!r}")
    for op in ops:
        if op.sku not in initial:
            raise InvalidInput(f"operation of {op.name!r} on SKU {op.sku!r}: no initial stock")
        if op.f == READ:
            if isinstance(op.value, bool) or not isinstance(op.value, int):
                raise InvalidInput(f"{op.name} answered, but its value {op.value!r} is no integer")
        elif op.f != DEDUCT:
            raise InvalidInput(f"operation {op.f!r} of {op.name!r}: the stock has deduct and read")
        elif op.qty <= 0:
            raise InvalidInput(f"operation of {op.order_id!r}: quantity {op.qty} is not positive")
        if not op.end_s >= op.start_s:
            raise InvalidInput(f"operation of {op.name!r} ends before it starts")


def _check(items: list[_Op], initial: Mapping[str, int], time_limit_s: float) -> Verdict:
    if not time_limit_s > 0:
        raise InvalidInput(f"time_limit_s must be > 0, got {time_limit_s!r}")
    items = [item for item in items if _says_something(item.op)]
    _validate([item.op for item in items], initial)
    deadline = _Deadline(time_limit_s)
    groups: dict[str, list[_Op]] = {sku: [] for sku in sorted({item.op.sku for item in items})}
    for item in items:
        groups[item.op.sku].append(item)
    groups = {sku: _with_final_reads(group) for sku, group in groups.items()}
    explored = 0
    orders: dict[str, tuple[Operation, ...]] = {}
    unknown_sku: str | None = None
    for sku, group in groups.items():
        found = _search(group, initial[sku], deadline)
        explored += found.explored
        if found.result == VALID:
            orders[sku] = tuple(step.item.op for step in found.path)
        elif found.result == UNKNOWN:
            unknown_sku = unknown_sku or sku
        else:
            return _invalid(sku, group, initial[sku], found, explored, deadline)
    if unknown_sku is not None:
        return Verdict(
            UNKNOWN,
            sku=unknown_sku,
            explanation=f"the search on SKU {unknown_sku} ran past its {time_limit_s} s budget",
            explored=explored,
        )
    return Verdict(VALID, linearization=orders, explored=explored)


def _search(
    items: Sequence[_Op], units: int, deadline: _Deadline, done: frozenset[str] = frozenset()
) -> _Search:
    ops = sorted(items, key=lambda item: (item.start, item.op.index))
    by_end = sorted(range(len(ops)), key=lambda i: ops[i].end)
    lines: dict[str, int] = {}
    # A read has no order line: no bit, so it never reads or marks one as done.
    line_bit = [
        0 if item.op.f == READ else 1 << lines.setdefault(item.op.order_id, len(lines))
        for item in ops
    ]
    done_bits = sum(1 << bit for line, bit in lines.items() if line in done)
    must = sum(1 << i for i, item in enumerate(ops) if item.definite)
    if not must:
        return _Search(VALID, (), (), 1)

    def candidates(mask: int) -> list[int]:
        # Whatever ended first among the pending bounds what may go next.
        bound = next((ops[i].end for i in by_end if not mask >> i & 1), math.inf)
        ready = []
        for i, item in enumerate(ops):
            if item.start > bound:
                break
            if not mask >> i & 1:
                ready.append(i)
        return ready

    def step(i: int, units: int, done: int) -> tuple[int, int] | None:
        item = ops[i]
        if item.op.f == READ:
            return (units, done) if item.op.value == units else None
        answer = _answer(units, bool(done & line_bit[i]), item.op.qty)
        if item.definite and answer != item.op.outcome:
            return None
        if not item.definite and answer != Outcome.ACCEPTED:
            return None  # an unknown operation that changes nothing is one never applied
        if answer == Outcome.ACCEPTED:
            return units - item.op.qty, done | line_bit[i]
        return units, done

    seen = {0}
    # mask, units, done, ready, next
    frames: list[list] = [[0, units, done_bits, candidates(0), 0]]
    path: list[_Step] = []
    furthest: tuple[list[_Step], int, int, int] = ([], 0, units, done_bits)
    reach = (0, 0)  # definite answers placed and steps of the furthest order
    while frames:
        frame = frames[-1]
        mask, left, done, ready, k = frame
        if k == len(ready):
            frames.pop()
            if path:
                path.pop()
            continue
        frame[4] = k + 1
        i = ready[k]
        after = step(i, left, done)
        if after is None:
            continue
        new_mask = mask | 1 << i
        if new_mask in seen:
            continue
        seen.add(new_mask)
        path.append(_Step(ops[i], left, after[0]))
        if new_mask & must == must:
            return _Search(VALID, tuple(path), (), len(seen))
        if (placed := ((new_mask & must).bit_count(), len(path))) > reach:
            reach, furthest = placed, (list(path), new_mask, *after)
        if len(seen) % _CLOCK_EVERY == 0 and deadline.passed():
            return _Search(UNKNOWN, (), (), len(seen))
        frames.append([new_mask, *after, candidates(new_mask), 0])
    steps, mask, left, done = furthest
    stuck = tuple(
        _why_not(ops[i], left, bool(done & line_bit[i]))
        for i in candidates(mask)
        if ops[i].definite
    )
    return _Search(INVALID, tuple(steps), stuck, len(seen))


def _answer(units: int, line_done: bool, qty: int) -> Outcome:
    if line_done:
        return Outcome.DUPLICATE
    return Outcome.ACCEPTED if units >= qty else Outcome.SOLD_OUT


def _why_not(item: _Op, units: int, line_done: bool) -> str:
    op = item.op
    if op.f == READ:
        said = f"{_name(item)} saw {op.value}"
        if op.value is not None and op.value < 0:
            return f"{said}, but no order leaves fewer than 0"
        return f"{said}, but {units} left"
    said = f"{op.order_id} answered {op.outcome.value} for {op.qty}"
    if line_done:
        return f"{said}, but its line was already done (the answer would be duplicate)"
    if op.outcome == Outcome.DUPLICATE:
        return f"{said}, but its line was not done"
    if op.outcome == Outcome.ACCEPTED:
        return f"{said}, but only {units} left"
    return f"{said}, but {units} left"


def _invalid(
    sku: str, group: list[_Op], units: int, whole: _Search, explored: int, deadline: _Deadline
) -> Verdict:
    """Binary search over the completions for the earliest one after which nothing fits."""
    ends = sorted({item.end for item in group if item.definite})
    low, high, failed = -1, len(ends) - 1, whole
    smallest = True
    while high - low > 1:
        mid = (low + high) // 2
        found = _search(_prefix(group, ends[mid]), units, deadline)
        explored += found.explored
        if found.result == VALID:
            low = mid
        elif found.result == INVALID:
            high, failed = mid, found
        else:
            smallest = False
            break
    prefix = _prefix(group, ends[high])
    culprits = [item for item in prefix if item.definite and item.end == ends[high]]
    opened = min(item.start for item in culprits)
    window = sorted((item for item in prefix if item.end >= opened), key=_by_start)
    explanation = _explain(sku, units, culprits, window, failed, smallest, deadline)
    return Verdict(
        INVALID,
        sku=sku,
        culprit=culprits[0].op,
        window=tuple(item.op for item in window),
        explanation=explanation,
        explored=explored,
    )


def _prefix(group: list[_Op], t: float) -> list[_Op]:
    """The operations invoked by t; those not completed by t become unknown, except reads,
    which change nothing: a read not heard by t says nothing and is left out."""
    return [
        item
        if item.end <= t
        else replace(item, end=math.inf, definite=False, running=item.definite)
        for item in group
        if item.start <= t and (item.end <= t or item.op.f != READ)
    ]


def _by_start(item: _Op) -> tuple[float, int]:
    return item.start, item.op.index


def _explain(
    sku: str,
    units: int,
    culprits: list[_Op],
    window: list[_Op],
    failed: _Search,
    smallest: bool,
    deadline: _Deadline,
) -> str:
    inside = {item.op.index for item in window}
    path = list(failed.path)
    first = next((n for n, s in enumerate(path) if s.item.op.index in inside), len(path))
    stock = path[first].before if first < len(path) else (path[-1].after if path else units)
    listed = ", ".join(_label(item) for item in window)
    lines = [
        f"SKU {sku}: once {_heard(culprits[0])} is heard, no order "
        "of the history so far gives every answer; every earlier prefix has one"
        + ("" if smallest else " (time ran out: an earlier completion may already break it)"),
        f"window: stock {stock}: {listed}; " + _window_claim(window, stock, path[:first], deadline),
    ]
    shown = path[max(0, len(path) - _PATH_SHOWN) :]
    steps = " -> ".join(f"{_said(s.item)} ({s.before}->{s.after})" for s in shown)
    earlier = len(path) - len(shown)
    lines.append(
        "furthest order found: "
        + (f"{earlier} earlier operations, then " if earlier else "")
        + (steps or "nothing could go first")
    )
    left = path[-1].after if path else units
    lines.append(
        f"stuck at stock {left}: " + ("; ".join(failed.stuck) or "no answer left to place")
    )
    return "\n".join(lines)


def _window_claim(window: list[_Op], stock: int, before: list[_Step], deadline: _Deadline) -> str:
    """Whether the window fails on its own, from where the furthest order left the stock."""
    done = frozenset(step.item.op.order_id for step in before if step.after < step.before)
    alone = _search(window, stock, deadline, done).result
    if alone == INVALID:
        return "no order of these gives every answer"
    if alone == VALID:
        return "these alone would fit; the operations that ended before them interleave with them"
    return "(time ran out before these were tried alone)"


def _name(item: _Op) -> str:
    return "the final read" if item.final else item.op.name


def _heard(item: _Op) -> str:
    op = item.op
    if op.f == READ:
        return f"{_name(item)} (saw {op.value})"
    return f"{op.order_id}'s answer ({op.outcome.value})"


def _said(item: _Op) -> str:
    op = item.op
    if op.f == READ:
        return f"{_name(item)} saw {op.value}"
    return f"{op.order_id} {op.outcome.value if item.definite else 'unknown, took effect'}"


def _label(item: _Op) -> str:
    op = item.op
    if op.f == READ:
        return f"{_name(item)} saw {op.value}"
    if item.running:
        answer = "still running"
    elif not item.definite:
        answer = "unknown"
    else:
        answer = op.outcome.value
    return f"{op.order_id} {answer} {op.qty}"


def _in_real_time(order: Sequence[Operation]) -> bool:
    return all(
        not later.end_s < earlier.start_s
        for n, earlier in enumerate(order)
        for later in order[n + 1 :]
    )


def _replays(order: Sequence[Operation], units: int) -> bool:
    done: set[str] = set()
    for op in order:
        if op.f == READ:
            if op.value != units:
                return False
            continue
        answer = _answer(units, op.order_id in done, op.qty)
        if op.type != INFO and answer != op.outcome:
            return False
        if answer == Outcome.ACCEPTED:
            units -= op.qty
            done.add(op.order_id)
    return True
