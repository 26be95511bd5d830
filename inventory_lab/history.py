"""Histories: what every client invoked and heard, and what the nemesis did, as events in time.

Jepsen's vocabulary. Each attempt is two events of one process (a client): an `invoke` when it
is sent and a completion when the client hears back:
- `ok`: a definite answer, whether the design accepted the order, refused it as sold out or
  answered "duplicate" (already done); the answer is in the value's `outcome`;
- `fail`: the order did not happen and says nothing about the stock (a design error that undid
  itself, bad input, a throttled request);
- `info`: the client never learned what happened (`unknown`): the attempt may take effect at any
  moment after its invocation, even after the run ends.
The nemesis's faults are events of the process "nemesis" (an `info` for each start, end or
strike). A process whose attempt ended `info` never invokes again: as in Jepsen, the client goes
on as a new process (its number plus the number of clients, once per `info`).

`from_records` builds a history from the records of any run (a workload, a review run, the
schedule explorer); `operations` pairs each invocation with its completion, the form the
linearizability checker reads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from inventory_lab.orders import Outcome

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"
NEMESIS = "nemesis"
DEDUCT = "deduct"

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
    f: str  # "deduct", or the nemesis's fault name
    value: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Operation:
    """An invocation paired with its completion: one attempt to deduct `qty` of `sku`.

    `end_s` is infinite for an attempt whose outcome is unknown: it may take effect any time
    after `start_s`."""

    process: int
    order_id: str
    sku: str
    qty: int
    outcome: Outcome
    start_s: float
    end_s: float
    index: int = 0  # the invocation's place in the history

    @property
    def type(self) -> str:
        return COMPLETION[self.outcome]


def from_records(
    records: pd.DataFrame, nemesis: pd.DataFrame | Iterable[Any] | None = None
) -> list[Event]:
    """The history of a run from its records (one row per attempt: order_id, sku, qty, client,
    start_s, end_s, outcome, detail) and the nemesis's events (t_s, event, fault, detail)."""
    raw: list[tuple[float, int, int | str, str, str, dict[str, Any]]] = []
    clients = int(records["client"].max()) + 1 if len(records) else 1
    renamed: dict[int, int] = {}  # client -> its current process number
    for row in records.sort_values(["start_s", "client"], kind="stable").itertuples(index=False):
        client = int(row.client)
        process = renamed.get(client, client)
        value = {"order_id": row.order_id, "sku": row.sku, "qty": int(row.qty)}
        outcome = Outcome(row.outcome)
        kind = COMPLETION[outcome]
        raw.append((float(row.start_s), 0, process, INVOKE, DEDUCT, value))
        done = {**value, "outcome": outcome.value, "detail": str(row.detail)}
        raw.append((float(row.end_s), 1, process, kind, DEDUCT, done))
        if kind == INFO:
            renamed[client] = process + clients
    for item in _nemesis_rows(nemesis):
        raw.append((item["t_s"], 1, NEMESIS, INFO, item["fault"], item))
    # Completions before invocations at the same instant: a client's next attempt starts after
    # its last one ended.
    raw.sort(key=lambda e: (e[0], e[1] == 0))
    return [Event(i, t, p, kind, f, v) for i, (t, _, p, kind, f, v) in enumerate(raw)]


def _nemesis_rows(nemesis: pd.DataFrame | Iterable[Any] | None) -> list[dict[str, Any]]:
    if nemesis is None:
        return []
    if isinstance(nemesis, pd.DataFrame):
        rows = nemesis.to_dict("records")
    else:
        rows = [
            item if isinstance(item, dict) else {k: getattr(item, k) for k in item.__slots__}
            for item in nemesis
        ]
    return [
        {
            "t_s": float(row["t_s"]),
            "event": str(row["event"]),
            "fault": str(row["fault"]),
            "detail": str(row.get("detail", "")),
        }
        for row in rows
    ]


def operations(events: Iterable[Event]) -> list[Operation]:
    """Each client invocation paired with its completion (an invocation left without one is
    unknown, as if it had ended `info`). The nemesis's events are left out."""
    open_ops: dict[int | str, Event] = {}
    paired: list[Operation] = []
    for event in events:
        if event.process == NEMESIS or event.f != DEDUCT:
            continue
        if event.type == INVOKE:
            if event.process in open_ops:
                raise ValueError(f"process {event.process} invoked twice without a completion")
            open_ops[event.process] = event
            continue
        start = open_ops.pop(event.process, None)
        if start is None:
            raise ValueError(f"process {event.process} completed an operation it never invoked")
        paired.append(_operation(start, Outcome(event.value["outcome"]), event.time_s))
    for start in open_ops.values():
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
