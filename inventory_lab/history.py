"""Histories: what every client invoked and heard, and what the nemesis did, as events in time.

Jepsen's vocabulary. Each attempt is two events of one process (a client): an `invoke` when it
is sent and a completion when the client hears back:
- `ok`: a definite answer, whether the design accepted the order, refused it as sold out or
  answered "duplicate" (already done); the answer is in the value's `outcome`;
- `fail`: the order did not happen and says nothing about the stock (a design error that undid
  itself, bad input, a throttled request);
- `info`: the client never learned what happened (`unknown`): the attempt may take effect at any
  moment after its invocation, even after the run ends.
A read of the stock (`f` "read") is an invocation `{"sku": ...}` and an `ok` with `{"sku": ...,
"value": units}`; it changes nothing. `from_records(..., final_stock=...)` appends one read per
SKU after everything else: the final state read back, as Jepsen's final reads, by a process of
its own once every client has finished. Answers alone cannot show some oversells (an unknown
deduct that landed and an accepted one, from one unit: drop the unknown and the answers fit);
the stock read back at the end does.
The nemesis's faults are events of the process "nemesis" (an `info` for each start, end or
strike). A process whose attempt ended `info` never invokes again: as in Jepsen, the client goes
on as a new process (its number plus the number of clients, once per `info`).

`from_records` builds a history from the records of any run (a workload, a review run, the
schedule explorer); `operations` pairs each invocation with its completion, the form the
linearizability checker reads. A history leaves the lab as JSON lines (`write_jsonl`, read back
exactly by `read_jsonl`) or as Jepsen/Maelstrom-style EDN (`to_edn`, `write_edn`): one map per
line, time in integer nanoseconds, keywords for type, f and outcome, so that the tools written
for Jepsen's histories can read the lab's. `export` picks the format by the file's suffix.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from inventory_lab.errors import InvalidInput
from inventory_lab.orders import Outcome

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"
NEMESIS = "nemesis"
DEDUCT, READ = "deduct", "read"

# What each outcome means for the history: a definite answer, nothing happened, or unknown.
COMPLETION = {
    Outcome.ACCEPTED: OK,
    Outcome.SOLD_OUT: OK,
    Outcome.DUPLICATE: OK,
    Outcome.ERROR: FAIL,
    Outcome.REJECTED: FAIL,
    Outcome.THROTTLED: FAIL,
    Outcome.UNKNOWN: INFO,
}


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a history: `index` orders it, `time_s` is the run's clock (or, for the
    explorer, the step number)."""

    index: int
    time_s: float
    process: int | str  # a client's number, or "nemesis"
    type: str  # invoke | ok | fail | info
    f: str  # "deduct", "read", or the nemesis's fault name
    value: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Operation:
    """An invocation paired with its completion: one attempt to deduct `qty` of `sku`, or (`f`
    "read") one read of `sku`'s stock that saw `value` units.

    `end_s` is infinite for an attempt whose outcome is unknown: it may take effect any time
    after `start_s`. A read has no order line (`order_id` "", `qty` 0); its outcome is
    `accepted` when it answered, `error` when it failed."""

    process: int
    order_id: str
    sku: str
    qty: int
    outcome: Outcome
    start_s: float
    end_s: float
    index: int = 0  # the invocation's place in the history
    f: str = DEDUCT
    value: int | None = None  # the units a read saw

    @property
    def type(self) -> str:
        return COMPLETION[self.outcome]

    @property
    def name(self) -> str:
        """How an explanation names it: the order id, or the process's read."""
        return self.order_id if self.f == DEDUCT else f"process {self.process}'s read"


RECORD_COLUMNS = ("order_id", "sku", "qty", "client", "start_s", "end_s", "outcome")
NEMESIS_COLUMNS = ("t_s", "event", "fault")


def from_records(
    records: pd.DataFrame,
    nemesis: pd.DataFrame | Iterable[Any] | None = None,
    *,
    final_stock: Mapping[str, int] | None = None,
) -> list[Event]:
    """The history of a run from its records (one row per attempt: order_id, sku, qty, client,
    start_s, end_s, outcome, detail) and the nemesis's events (a frame with columns t_s, event,
    fault, detail, or `NemesisEvent`s, or dicts with those keys).

    `final_stock` (units per SKU, as the database holds them at the end) adds the final state
    read back, as Jepsen's final reads: after every other event, a process of its own (one
    above the highest process in the history) reads each SKU in turn, in SKU order, each read
    an invocation and its `ok` a millisecond (on the explorer's clock, a thousandth of a step)
    after the last event.

    Bad records (a missing column, an unknown outcome, an attempt that ends before it starts)
    and a final stock that is no whole number raise `InvalidInput`."""
    finals = _final_stock(final_stock)
    missing = [name for name in RECORD_COLUMNS if name not in records.columns]
    if missing:
        raise InvalidInput(f"records lack the columns {missing}")
    # (time, rank, tie, process, type, f, value): at one instant completions (rank 0) come before
    # invocations (rank 1), so a client's next attempt follows the one it ended; `tie` keeps an
    # attempt that ends the instant it starts after its own invocation.
    raw: list[tuple[float, int, int, int | str, str, str, dict[str, Any]]] = []
    clients = int(records["client"].max()) + 1 if len(records) else 1
    renamed: dict[int, int] = {}  # client -> its current process number
    # A client's attempts in the order it made them: by start, and by end for two that start at
    # the same instant (the first of them ended there).
    ordered = records.sort_values(["start_s", "end_s", "client"], kind="stable")
    for seq, row in enumerate(ordered.itertuples(index=False)):
        client = int(row.client)
        process = renamed.get(client, client)
        value = {"order_id": str(row.order_id), "sku": str(row.sku), "qty": int(row.qty)}
        try:
            outcome = Outcome(row.outcome)
        except ValueError:
            raise InvalidInput(f"order {row.order_id}: unknown outcome {row.outcome!r}") from None
        start, end = float(row.start_s), float(row.end_s)
        if not (math.isfinite(start) and math.isfinite(end) and start <= end):
            raise InvalidInput(f"order {row.order_id}: an attempt from {start} to {end}")
        kind = COMPLETION[outcome]
        raw.append((start, 1, 2 * seq, process, INVOKE, DEDUCT, value))
        done = {**value, "outcome": outcome.value, "detail": _text(getattr(row, "detail", ""))}
        rank = 0 if end > start else 1
        raw.append((end, rank, 2 * seq + 1, process, kind, DEDUCT, done))
        if kind == INFO:
            renamed[client] = process + clients
    for seq, item in enumerate(_nemesis_rows(nemesis)):
        raw.append((item["t_s"], 0, -1 - seq, NEMESIS, INFO, item["fault"], item))
    raw.sort(key=lambda e: (e[0], e[1], e[2]))
    events = [Event(i, t, p, kind, f, v) for i, (t, _, _, p, kind, f, v) in enumerate(raw)]
    if finals:
        events.extend(_final_reads(events, finals))
    return events


def _final_stock(final_stock: Mapping[str, int] | None) -> dict[str, int]:
    """The final stock checked before anything is built; numpy's integers (a frame's cells)
    are taken as Python's."""
    if final_stock is None:
        return {}
    finals = {}
    for sku, units in final_stock.items():
        if isinstance(units, bool) or not isinstance(units, numbers.Integral):
            raise InvalidInput(f"final stock of {sku!r} must be an integer, got {units!r}")
        finals[str(sku)] = int(units)
    return finals


def _final_reads(events: list[Event], finals: dict[str, int]) -> list[Event]:
    clients = [event.process for event in events if event.process != NEMESIS]
    process = max((int(p) for p in clients), default=-1) + 1
    at = (events[-1].time_s if events else 0.0) + 0.001
    reads = []
    for sku in sorted(finals):
        index = len(events) + len(reads)
        reads.append(Event(index, at, process, INVOKE, READ, {"sku": sku}))
        reads.append(Event(index + 1, at, process, OK, READ, {"sku": sku, "value": finals[sku]}))
    return reads


def _text(detail: Any) -> str:
    """A detail as text; a missing one (None, NaN in a frame) is empty, not "nan"."""
    if detail is None or (isinstance(detail, float) and math.isnan(detail)):
        return ""
    return str(detail)


def _nemesis_rows(nemesis: pd.DataFrame | Iterable[Any] | None) -> list[dict[str, Any]]:
    if nemesis is None:
        return []
    if isinstance(nemesis, pd.DataFrame):
        rows: list[Any] = nemesis.to_dict("records")
    else:
        rows = list(nemesis)
    found = []
    for row in rows:
        get = _reader(row)
        missing = [name for name in NEMESIS_COLUMNS if get(name) is None]
        if missing:
            raise InvalidInput(f"a nemesis event lacks {missing}: {row!r}")
        t_s = float(get("t_s"))
        if not math.isfinite(t_s):
            raise InvalidInput(f"a nemesis event at {t_s}: {row!r}")
        found.append(
            {
                "t_s": t_s,
                "event": str(get("event")),
                "fault": str(get("fault")),
                "detail": _text(get("detail", "")),
            }
        )
    return found


def _reader(row: Any) -> Any:
    """`get(name, default)` over a dict, or over the attributes of an event object (a
    `NemesisEvent` is a plain frozen dataclass: no `__slots__` to list its fields by)."""
    if isinstance(row, dict):
        return row.get
    return lambda name, default=None: getattr(row, name, default)


def operations(events: Iterable[Event]) -> list[Operation]:
    """Each client invocation paired with its completion (a deduct left without one is
    unknown, as if it had ended `info`). The nemesis's events are left out.

    A read that ended `info` or never answered is dropped: a read changes nothing, so one whose
    answer nobody heard says nothing about the stock. A failed read stays, as `error`."""
    open_ops: dict[int | str, Event] = {}
    paired: list[Operation] = []
    for event in events:
        if event.process == NEMESIS or event.f not in (DEDUCT, READ):
            continue
        if event.type == INVOKE:
            if event.process in open_ops:
                raise ValueError(f"process {event.process} invoked twice without a completion")
            open_ops[event.process] = event
            continue
        start = open_ops.pop(event.process, None)
        if start is None:
            raise ValueError(f"process {event.process} completed an operation it never invoked")
        if start.f != event.f:
            raise ValueError(f"process {event.process} invoked {start.f} but completed {event.f}")
        if start.f == READ:
            if event.type != INFO:
                paired.append(_read_operation(start, event))
            continue
        paired.append(_operation(start, Outcome(event.value["outcome"]), event.time_s))
    for start in open_ops.values():
        if start.f == DEDUCT:
            paired.append(_operation(start, Outcome.UNKNOWN, math.inf))
    return sorted(paired, key=lambda op: op.index)


def _operation(start: Event, outcome: Outcome, end_s: float) -> Operation:
    value = start.value
    return Operation(
        process=int(start.process),
        order_id=str(value["order_id"]),
        sku=str(value["sku"]),
        qty=int(value["qty"]),
        outcome=outcome,
        start_s=start.time_s,
        end_s=math.inf if outcome == Outcome.UNKNOWN else end_s,
        index=start.index,
    )


def _read_operation(start: Event, end: Event) -> Operation:
    answered = end.type == OK
    seen = end.value.get("value")
    if answered and (isinstance(seen, bool) or not isinstance(seen, numbers.Integral)):
        raise ValueError(f"process {end.process}'s read answered {end.value!r}: no whole value")
    return Operation(
        process=int(start.process),
        order_id="",
        sku=str(start.value["sku"]),
        qty=0,
        outcome=Outcome.ACCEPTED if answered else Outcome.ERROR,
        start_s=start.time_s,
        end_s=end.time_s,
        index=start.index,
        f=READ,
        value=int(seen) if answered else None,
    )


# --- export: JSON lines and Jepsen-style EDN --------------------------------------------------

JSONL, EDN = ".jsonl", ".edn"
TYPES = (INVOKE, OK, FAIL, INFO)
EVENT_FIELDS = ("index", "time_s", "process", "type", "f", "value")
# Value entries written as EDN keywords rather than strings: they name one of a few things.
KEYWORD_VALUES = frozenset({"outcome", "event", "fault"})
_KEYWORD = re.compile(r"[A-Za-z][A-Za-z0-9*+!?<>=.\-]*")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}

Target = str | os.PathLike[str] | TextIO


def export_format(path: str | os.PathLike[str]) -> str:
    """The format `export` writes to `path`, by its suffix: ".jsonl" or ".edn"."""
    suffix = Path(path).suffix.lower()
    if suffix not in (JSONL, EDN):
        raise InvalidInput(
            f"cannot tell the history format of {os.fspath(path)!r}: "
            f"its name must end in {JSONL} (JSON lines) or {EDN} (Jepsen-style EDN)"
        )
    return suffix


def export(events: Iterable[Event], path: str | os.PathLike[str]) -> Path:
    """Write the history to `path` as JSON lines or EDN, chosen by its suffix (see
    `export_format`); an unknown suffix is refused before anything is written."""
    writer = write_jsonl if export_format(path) == JSONL else write_edn
    writer(events, path)
    return Path(path)


def to_jsonl(events: Iterable[Event]) -> str:
    """One JSON object per event and line: index, time_s, process, type, f, value."""
    lines = []
    for event in events:
        item = {name: getattr(event, name) for name in EVENT_FIELDS}
        try:
            lines.append(json.dumps(item, allow_nan=False, default=_json_number))
        except (TypeError, ValueError) as exc:  # NaN, infinity, an object JSON cannot hold
            raise InvalidInput(f"event {event.index} cannot be written as JSON: {exc}") from None
    return "".join(line + "\n" for line in lines)


def write_jsonl(events: Iterable[Event], target: Target) -> None:
    """Write `to_jsonl(events)` to a path or an open text file (nothing written on bad input)."""
    _write(to_jsonl(events), target)


def read_jsonl(source: Target) -> list[Event]:
    """The events `write_jsonl` wrote, equal to them; a line that is no event raises
    `InvalidInput` naming the line."""
    text = _read(source)
    events = []
    # lines end at \n only (str.splitlines would also split at \u2028 inside a string)
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"line {number} is not JSON: {exc}") from None
        events.append(_event_from(item, number))
    return events


def _event_from(item: Any, number: int) -> Event:
    if not isinstance(item, dict) or set(item) != set(EVENT_FIELDS):
        raise InvalidInput(f"line {number}: an event has exactly the keys {list(EVENT_FIELDS)}")
    index, time_s, process = item["index"], item["time_s"], item["process"]
    checks = [
        (_is_int(index), "index is an integer"),
        (isinstance(time_s, int | float) and not isinstance(time_s, bool), "time_s is a number"),
        (_is_int(process) or process == NEMESIS, f"process is an integer or {NEMESIS!r}"),
        (item["type"] in TYPES, f"type is one of {', '.join(TYPES)}"),
        (isinstance(item["f"], str), "f is a string"),
        (isinstance(item["value"], dict), "value is an object"),
    ]
    for ok, rule in checks:
        if not ok:
            raise InvalidInput(f"line {number}: {rule}, in {item!r}")
    return Event(index, float(time_s), process, item["type"], item["f"], item["value"])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_number(value: Any) -> Any:
    """numpy's integers and floats, which a value taken from a frame may hold, as Python's."""
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"{type(value).__name__} {value!r} is not a JSON value")


def to_edn(events: Iterable[Event]) -> str:
    """The history as Jepsen/Maelstrom-style EDN, one map per line, e.g.

    {:index 0, :time 82422, :type :invoke, :process 1, :f :deduct, :value {:order-id "o-1",
    :sku "sku-0001", :qty 1}}
    {:index 9, :time 7001000000, :type :ok, :process 2, :f :read, :value {:sku "sku-1", :value -1}}

    `:time` in integer nanoseconds; type, f, the process `:nemesis`, the value's keys and its
    outcome, event and fault are keywords, with `_` written `-` as Clojure spells them; strings
    escaped as EDN reads them."""
    lines = []
    for event in events:
        if event.type not in TYPES:
            raise InvalidInput(f"event {event.index}: type {event.type!r} is not one of {TYPES}")
        if event.process == NEMESIS:
            process = ":" + NEMESIS
        elif _is_int(event.process):
            process = str(event.process)
        else:
            raise InvalidInput(f"event {event.index}: process {event.process!r}")
        fields = [
            (":index", str(int(event.index))),
            (":time", str(_nanoseconds(event))),
            (":type", _keyword(event.type)),
            (":process", process),
            (":f", _keyword(event.f)),
            (":value", _edn(event.value, event.index)),
        ]
        lines.append("{" + ", ".join(f"{key} {text}" for key, text in fields) + "}")
    return "".join(line + "\n" for line in lines)


def write_edn(events: Iterable[Event], target: Target) -> None:
    """Write `to_edn(events)` to a path or an open text file (nothing written on bad input)."""
    _write(to_edn(events), target)


def _nanoseconds(event: Event) -> int:
    if not math.isfinite(event.time_s):
        raise InvalidInput(f"event {event.index} has no finite time: {event.time_s}")
    return round(event.time_s * 1_000_000_000)


def _keyword(name: str) -> str:
    text = str(name).replace("_", "-")
    if not _KEYWORD.fullmatch(text):
        raise InvalidInput(f"{name!r} cannot be written as an EDN keyword")
    return ":" + text


def _edn(value: Any, index: int, key: str = "") -> str:
    if isinstance(value, dict):
        entries = (f"{_keyword(k)} {_edn(v, index, str(k))}" for k, v in value.items())
        return "{" + ", ".join(entries) + "}"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_edn(v, index) for v in value) + "]"
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _keyword(value) if key in KEYWORD_VALUES else _edn_string(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isnan(number):
            return "##NaN"
        if math.isinf(number):
            return "##Inf" if number > 0 else "##-Inf"
        return repr(number)
    raise InvalidInput(f"event {index}: {type(value).__name__} {value!r} has no EDN form")


def _edn_string(text: str) -> str:
    # other control characters as \uXXXX, which Clojure's EDN reader takes in strings
    escaped = (
        _ESCAPES.get(char) or (f"\\u{ord(char):04x}" if ord(char) < 0x20 else char) for char in text
    )
    return '"' + "".join(escaped) + '"'


def _write(text: str, target: Target) -> None:
    if isinstance(target, str | os.PathLike):
        Path(target).write_text(text, encoding="utf-8")
    else:
        target.write(text)


def _read(source: Target) -> str:
    if isinstance(source, str | os.PathLike):
        return Path(source).read_text(encoding="utf-8")
    return source.read()
