"""Histories: events from records (process renaming, ordering at one instant, the nemesis's),
operations paired from them, and the two exports (JSON lines read back exactly, Jepsen-style EDN
read back by a small EDN reader written here)."""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from inventory_lab.errors import InvalidInput
from inventory_lab.experiment import run_experiment
from inventory_lab.history import (
    DEDUCT,
    FAIL,
    INFO,
    INVOKE,
    NEMESIS,
    OK,
    READ,
    RECORD_COLUMNS,
    Event,
    export,
    export_format,
    from_records,
    operations,
    read_jsonl,
    to_edn,
    to_jsonl,
    write_edn,
    write_jsonl,
)
from inventory_lab.nemesis import NemesisEvent
from inventory_lab.orders import Outcome
from inventory_lab.review import BASE_WORKLOAD, run_seeds
from inventory_lab.workload import Workload


def records(*rows: tuple) -> pd.DataFrame:
    """(order_id, client, start_s, end_s, outcome[, detail]) rows as a run's records."""
    frame = [
        {
            "order_id": row[0],
            "sku": "sku-0001",
            "qty": 1,
            "client": row[1],
            "start_s": row[2],
            "end_s": row[3],
            "outcome": row[4],
            "detail": row[5] if len(row) > 5 else "",
        }
        for row in rows
    ]
    return pd.DataFrame(frame, columns=[*RECORD_COLUMNS, "detail"])


def lines(events: list[Event]) -> list[tuple]:
    return [(e.time_s, e.process, e.type, e.value.get("order_id")) for e in events]


def assert_well_formed(events: list[Event]) -> None:
    """Jepsen's rule for a history: a process never invokes while its last invocation is
    open, never completes what it did not invoke, and never invokes again after an `info`."""
    open_ops: set[int | str] = set()
    retired: set[int | str] = set()
    for event in events:
        if event.process == NEMESIS:
            continue
        assert event.process not in retired, f"{event} after its process ended info"
        if event.type == INVOKE:
            assert event.process not in open_ops, f"{event}: process invoked twice"
            open_ops.add(event.process)
        else:
            assert event.process in open_ops, f"{event}: completes nothing"
            open_ops.remove(event.process)
            if event.type == INFO:
                retired.add(event.process)
    assert [e.index for e in events] == list(range(len(events)))
    assert [e.time_s for e in events] == sorted(e.time_s for e in events)


# --- from_records -----------------------------------------------------------------------------


def test_a_client_goes_on_as_a_new_process_after_each_unknown_outcome():
    frame = records(
        ("o-1", 0, 0.0, 1.0, "unknown"),
        ("o-1", 0, 1.5, 2.0, "duplicate"),
        ("o-2", 0, 2.5, 3.0, "unknown"),
        ("o-3", 0, 3.5, 4.0, "accepted"),
        ("o-4", 1, 0.2, 0.8, "sold_out"),
        ("o-5", 1, 1.2, 1.4, "error"),
    )
    events = from_records(frame)
    processes = [(e.value["order_id"], e.type, e.process) for e in events if e.process != 1]
    # two clients: client 0 is 0, then 0 + 2, then 0 + 2 + 2; client 1 is never renamed
    assert processes == [
        ("o-1", INVOKE, 0),
        ("o-1", INFO, 0),
        ("o-1", INVOKE, 2),
        ("o-1", OK, 2),
        ("o-2", INVOKE, 2),
        ("o-2", INFO, 2),
        ("o-3", INVOKE, 4),
        ("o-3", OK, 4),
    ]
    assert {e.value["order_id"] for e in events if e.process == 1} == {"o-4", "o-5"}
    assert_well_formed(events)


def test_completions_come_before_invocations_at_the_same_instant():
    frame = records(
        ("o-2", 0, 1.0, 2.0, "accepted"),  # client 0 starts its next order as the first ends
        ("o-1", 0, 0.0, 1.0, "accepted"),
        ("o-3", 1, 1.0, 1.5, "sold_out"),  # another client starts at that instant too
        ("o-4", 2, 0.5, 1.0, "error"),
    )
    events = from_records(frame)
    at_one = [(e.type, e.value["order_id"]) for e in events if e.time_s == 1.0]
    assert [kind for kind, _ in at_one] == [OK, FAIL, INVOKE, INVOKE]
    assert {order for _, order in at_one[:2]} == {"o-1", "o-4"}
    assert_well_formed(events)


def test_an_attempt_that_ends_the_instant_it_starts_completes_after_its_invocation():
    # the explorer's clock counts steps: an attempt may take none
    frame = records(
        ("o-1", 0, 3.0, 3.0, "accepted"),
        ("o-2", 0, 3.0, 3.0, "duplicate"),
        ("o-3", 1, 2.0, 3.0, "accepted"),
    )
    events = from_records(frame)
    assert [(e.type, e.value["order_id"]) for e in events] == [
        (INVOKE, "o-3"),
        (OK, "o-3"),
        (INVOKE, "o-1"),
        (OK, "o-1"),
        (INVOKE, "o-2"),
        (OK, "o-2"),
    ]
    assert [op.order_id for op in operations(events)] == ["o-3", "o-1", "o-2"]


def test_nemesis_events_read_alike_from_objects_dicts_and_a_frame():
    nemesis = [
        NemesisEvent(0.5, "start", "db_outage", 'said "no"'),
        NemesisEvent(1.25, "end", "db_outage"),
    ]
    frame = records(("o-1", 0, 0.0, 1.0, "error"), ("o-2", 0, 1.0, 2.0, "accepted"))
    as_objects = from_records(frame, nemesis)
    as_frame = from_records(frame, pd.DataFrame([vars(e) for e in nemesis]))
    as_dicts = from_records(frame, [vars(e) for e in nemesis])
    assert as_objects == as_frame == as_dicts
    faults = [e for e in as_objects if e.process == NEMESIS]
    assert [(e.time_s, e.type, e.f, e.value["event"]) for e in faults] == [
        (0.5, INFO, "db_outage", "start"),
        (1.25, INFO, "db_outage", "end"),
    ]
    assert faults[0].value["detail"] == 'said "no"' and faults[1].value["detail"] == ""
    assert [e.process for e in as_objects] == [0, NEMESIS, 0, 0, NEMESIS, 0]


def test_a_missing_detail_is_empty_not_nan():
    frame = records(("o-1", 0, 0.0, 1.0, "accepted", None))
    frame.loc[0, "detail"] = float("nan")
    assert from_records(frame)[1].value["detail"] == ""


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.drop(columns=["client"]), "lack the columns"),
        (lambda f: f.assign(outcome="maybe"), "unknown outcome"),
        (lambda f: f.assign(end_s=-1.0), "an attempt from"),
        (lambda f: f.assign(start_s=float("nan")), "an attempt from"),
    ],
)
def test_bad_records_are_refused(change, message):
    with pytest.raises(InvalidInput, match=message):
        from_records(change(records(("o-1", 0, 0.0, 1.0, "accepted"))))


def test_a_nemesis_event_without_its_time_is_refused():
    with pytest.raises(InvalidInput, match="lacks"):
        from_records(records(), [{"event": "start", "fault": "db_outage"}])


# --- operations -------------------------------------------------------------------------------


def test_operations_pair_each_invocation_with_its_completion():
    frame = records(
        ("o-1", 0, 0.0, 1.0, "accepted"),
        ("o-2", 1, 0.5, 0.9, "unknown"),
        ("o-3", 1, 1.0, 2.0, "throttled"),
    )
    ops = operations(from_records(frame, [NemesisEvent(0.7, "strike", "rewarm")]))
    assert [(op.order_id, op.process, op.outcome, op.type) for op in ops] == [
        ("o-1", 0, Outcome.ACCEPTED, OK),
        ("o-2", 1, Outcome.UNKNOWN, INFO),
        ("o-3", 3, Outcome.THROTTLED, FAIL),
    ]
    assert (ops[0].start_s, ops[0].end_s) == (0.0, 1.0)
    assert ops[1].end_s == math.inf  # unknown: it may take effect at any time after 0.5
    assert (ops[2].start_s, ops[2].end_s) == (1.0, 2.0)


def test_an_invocation_left_open_is_unknown_and_a_malformed_history_is_refused():
    start = Event(0, 0.0, 0, INVOKE, "deduct", {"order_id": "o-1", "sku": "s", "qty": 2})
    (op,) = operations([start])
    assert op.outcome == Outcome.UNKNOWN and op.end_s == math.inf and op.qty == 2
    with pytest.raises(ValueError, match="invoked twice"):
        operations([start, replace(start, index=1)])
    done = Event(0, 1.0, 0, OK, "deduct", {"order_id": "o-1", "outcome": "accepted"})
    with pytest.raises(ValueError, match="never invoked"):
        operations([done])


# --- reads ------------------------------------------------------------------------------------


def read(index: int, time_s: float, process: int, type_: str, **value) -> Event:
    return Event(index, time_s, process, type_, READ, {"sku": "s", **value})


def test_final_stock_appends_one_read_per_sku_after_everything_by_a_process_of_its_own():
    frame = records(
        ("o-1", 0, 0.0, 1.0, "unknown"),  # client 0 goes on as process 2
        ("o-2", 0, 1.0, 2.0, "accepted"),
        ("o-3", 1, 0.5, 1.5, "sold_out"),
    )
    frame.loc[2, "sku"] = "sku-0002"
    nemesis = [NemesisEvent(3.0, "end", "rewarm")]  # the last event: reads come after it
    plain = from_records(frame, nemesis)
    events = from_records(frame, nemesis, final_stock={"sku-0002": 0, "sku-0001": -1})
    assert events[: len(plain)] == plain
    reads = events[len(plain) :]
    assert [(e.index, e.process, e.type, e.f, e.value) for e in reads] == [
        (7, 3, INVOKE, READ, {"sku": "sku-0001"}),
        (8, 3, OK, READ, {"sku": "sku-0001", "value": -1}),
        (9, 3, INVOKE, READ, {"sku": "sku-0002"}),
        (10, 3, OK, READ, {"sku": "sku-0002", "value": 0}),
    ]
    assert all(e.time_s > 3.0 for e in reads)
    assert_well_formed(events)
    ops = operations(events)
    assert [(op.f, op.sku, op.value, op.order_id, op.qty) for op in ops[-2:]] == [
        (READ, "sku-0001", -1, "", 0),
        (READ, "sku-0002", 0, "", 0),
    ]
    assert all(op.type == OK for op in ops[-2:])
    assert from_records(frame, nemesis, final_stock={}) == plain


def test_final_reads_of_an_empty_run_and_numpy_units():
    empty = records()
    events = from_records(empty, final_stock={"sku-1": np.int64(4)})
    assert [(e.process, e.type, e.value) for e in events] == [
        (0, INVOKE, {"sku": "sku-1"}),
        (0, OK, {"sku": "sku-1", "value": 4}),
    ]
    assert type(events[1].value["value"]) is int  # JSON and EDN write it as a number


@pytest.mark.parametrize("units", [True, 1.5, "3", None])
def test_a_final_stock_that_is_no_whole_number_is_refused(units):
    with pytest.raises(InvalidInput, match="final stock of 'sku-1'"):
        from_records(records(("o-1", 0, 0.0, 1.0, "accepted")), final_stock={"sku-1": units})


def test_operations_keep_answered_reads_and_drop_the_unheard_ones():
    events = [
        read(0, 0.0, 0, INVOKE),
        read(1, 1.0, 0, OK, value=3),
        read(2, 1.0, 1, INVOKE),
        read(3, 2.0, 1, FAIL),
        read(4, 2.0, 2, INVOKE),
        read(5, 3.0, 2, INFO),  # never heard: says nothing
        read(6, 4.0, 3, INVOKE),  # never answered: dropped too, not made unknown
    ]
    ops = operations(events)
    assert [(op.process, op.outcome, op.type, op.value) for op in ops] == [
        (0, Outcome.ACCEPTED, OK, 3),
        (1, Outcome.ERROR, FAIL, None),
    ]
    assert (ops[0].start_s, ops[0].end_s, ops[0].name) == (0.0, 1.0, "process 0's read")


def test_a_read_completed_as_a_deduct_or_without_its_value_is_refused():
    deduct_done = Event(1, 1.0, 0, OK, "deduct", {"order_id": "o-1", "outcome": "accepted"})
    with pytest.raises(ValueError, match="invoked read but completed deduct"):
        operations([read(0, 0.0, 0, INVOKE), deduct_done])
    for seen in ({}, {"value": "3"}, {"value": True}):
        with pytest.raises(ValueError, match="no whole value"):
            operations([read(0, 0.0, 0, INVOKE), read(1, 1.0, 0, OK, **seen)])


def test_reads_round_trip_as_json_lines_and_write_as_edn():
    events = from_records(records(("o-1", 0, 0.0, 7.0, "accepted")), final_stock={"sku-1": -1})
    assert read_jsonl(io.StringIO(to_jsonl(events))) == events
    *_, invoke, done = to_edn(events).splitlines()
    assert invoke == (
        '{:index 2, :time 7001000000, :type :invoke, :process 1, :f :read, :value {:sku "sku-1"}}'
    )
    assert done == (
        "{:index 3, :time 7001000000, :type :ok, :process 1, :f :read, "
        ':value {:sku "sku-1", :value -1}}'
    )
    assert read_edn(to_edn(events))[-1]["value"] == {"sku": "sku-1", "value": -1}


# --- a real workload --------------------------------------------------------------------------


@pytest.fixture
def resent_run(default_lab):
    """A run whose clients resend and lose replies: many `info`s, many renamed processes."""
    workload = Workload(orders=120, skus=2, stock=30, retries=0.3, lost_replies=0.3, seed=11)
    return run_experiment(default_lab, "two_gate_lua", workload, concurrency=6)


def test_a_real_history_never_has_a_process_invoke_twice_without_a_completion(resent_run):
    events = resent_run.events()
    unknown = int((resent_run.records["outcome"] == "unknown").sum())
    assert unknown > 0  # the renaming is exercised
    assert_well_formed(events)
    deducts = [e for e in events if e.f == DEDUCT]
    reads = [e for e in events if e.f == READ]
    assert len(deducts) == 2 * len(resent_run.records)
    # then the final stock read back, one read per SKU, after everything else
    assert len(reads) == 2 * 2 and events[-len(reads) :] == reads
    final = resent_run.check.final_stock
    assert {e.value["sku"]: e.value["value"] for e in reads if e.type == OK} == final
    # one new process per unknown outcome, beyond the clients themselves and the reader
    assert len({e.process for e in deducts}) <= 6 + unknown
    ops = [op for op in operations(events) if op.f == DEDUCT]
    assert len(ops) == len(resent_run.records)
    assert sorted(op.outcome.value for op in ops) == sorted(resent_run.records["outcome"])


def test_a_review_run_carries_the_nemesis_events_on_the_clients_clock(default_lab):
    (run,) = run_seeds(
        default_lab, ["db_only"], "db_outage", base=replace(BASE_WORKLOAD, orders=60)
    )
    events = run.events()
    faults = [e for e in events if e.process == NEMESIS]
    assert len(faults) == len(run.history) > 0
    assert {(e.type, e.f) for e in faults} == {(INFO, "db_outage")}
    assert [e.value["event"] for e in faults] == list(run.history.sort_values("t_s")["event"])
    assert_well_formed(events)
    assert len([op for op in operations(events) if op.f == DEDUCT]) == len(run.records)
    reads = [e for e in events if e.f == READ and e.type == OK]
    assert {e.value["sku"]: e.value["value"] for e in reads} == run.before.final_stock
    # the outage shows in what the clients heard while it lasted
    assert any(e.type in (FAIL, INFO) for e in events if e.process != NEMESIS)


# --- JSON lines -------------------------------------------------------------------------------


def test_json_lines_round_trip_exactly(resent_run, tmp_path):
    nemesis = [NemesisEvent(0.001, "start", "db_outage", 'a "quoted"\\ line\nand more')]
    events = from_records(resent_run.records, nemesis)
    path = tmp_path / "run.jsonl"
    write_jsonl(events, path)
    assert read_jsonl(path) == events
    first = json.loads(path.read_text().splitlines()[0])
    assert list(first) == ["index", "time_s", "process", "type", "f", "value"]
    buffer = io.StringIO()
    write_jsonl(events, buffer)
    assert read_jsonl(io.StringIO(buffer.getvalue())) == events


def test_a_line_that_is_no_event_is_refused_with_its_number():
    good = to_jsonl([Event(0, 0.0, 0, INVOKE, "deduct", {"order_id": "o-1"})])
    with pytest.raises(InvalidInput, match="line 2 is not JSON"):
        read_jsonl(io.StringIO(good + "{oops\n"))
    bad = good.replace('"invoke"', '"maybe"')
    with pytest.raises(InvalidInput, match="line 1: type is one of"):
        read_jsonl(io.StringIO(bad))
    with pytest.raises(InvalidInput, match="exactly the keys"):
        read_jsonl(io.StringIO('{"index": 0}\n'))


def test_an_event_json_cannot_hold_is_refused_and_nothing_is_written(tmp_path):
    event = Event(0, 0.0, 0, INVOKE, "deduct", {"weight": float("nan")})
    path = tmp_path / "run.jsonl"
    with pytest.raises(InvalidInput, match="event 0"):
        write_jsonl([event], path)
    assert not path.exists()


# --- EDN --------------------------------------------------------------------------------------


def small_history() -> list[Event]:
    frame = records(
        ("o-1", 1, 0.000082422, 0.0015, "accepted"),
        ("o-2", 0, 0.0001, 0.002, "unknown", 'timeout: "COMMIT" lost\nat C:\\db'),
    )
    frame.loc[0, "sku"] = "sku-0002"
    return from_records(frame, [NemesisEvent(0.001, "start", "lost_commit_ack", "on")])


GOLDEN = """\
{:index 0, :time 82422, :type :invoke, :process 1, :f :deduct, :value {:order-id "o-1", \
:sku "sku-0002", :qty 1}}
{:index 1, :time 100000, :type :invoke, :process 0, :f :deduct, :value {:order-id "o-2", \
:sku "sku-0001", :qty 1}}
{:index 2, :time 1000000, :type :info, :process :nemesis, :f :lost-commit-ack, :value \
{:t-s 0.001, :event :start, :fault :lost-commit-ack, :detail "on"}}
{:index 3, :time 1500000, :type :ok, :process 1, :f :deduct, :value {:order-id "o-1", \
:sku "sku-0002", :qty 1, :outcome :accepted, :detail ""}}
{:index 4, :time 2000000, :type :info, :process 0, :f :deduct, :value {:order-id "o-2", \
:sku "sku-0001", :qty 1, :outcome :unknown, :detail "timeout: \\"COMMIT\\" lost\\nat C:\\\\db"}}
"""


def test_edn_matches_the_jepsen_form_line_for_line(tmp_path):
    assert to_edn(small_history()) == GOLDEN
    path = tmp_path / "run.edn"
    write_edn(small_history(), path)
    assert path.read_text(encoding="utf-8") == GOLDEN


class Keyword(str):
    """An EDN keyword as the reader below returns it (a string that says it was one)."""


_TOKEN = re.compile(
    r'[\s,]*(?:(?P<open>[{\[])|(?P<close>[}\]])|"(?P<string>(?:[^"\\]|\\.)*)"'
    r"|(?P<atom>[^\s,{}\[\]\"]+))",
    re.DOTALL,
)
_UNESCAPE = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}


def read_edn(text: str) -> list:
    """A tiny EDN reader, enough for a history: maps, vectors, strings, keywords, numbers, nil,
    booleans, ##Inf. Written here so that the escaping is checked by a reader, not by eye."""
    tokens = [m for m in _TOKEN.finditer(text) if m.lastgroup]
    position = 0

    def unescape(body: str) -> str:
        out, i = [], 0
        while i < len(body):
            if body[i] != "\\":
                out.append(body[i])
                i += 1
            elif body[i + 1] == "u":
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
            else:
                out.append(_UNESCAPE[body[i + 1]])
                i += 2
        return "".join(out)

    def form():
        nonlocal position
        token = tokens[position]
        position += 1
        if token.lastgroup == "string":
            return unescape(token.group("string"))
        if token.lastgroup == "open":
            items = []
            while tokens[position].lastgroup != "close":
                items.append(form())
            position += 1
            if token.group("open") == "[":
                return items
            return dict(zip(items[::2], items[1::2], strict=True))
        atom = token.group("atom")
        named = {"nil": None, "true": True, "false": False, "##Inf": math.inf}
        if atom in named:
            return named[atom]
        if atom.startswith(":"):
            return Keyword(atom[1:])
        return float(atom) if any(c in atom for c in ".eE") else int(atom)

    forms = []
    while position < len(tokens):
        forms.append(form())
    return forms


def test_edn_strings_and_keywords_read_back_as_written():
    nasty = 'quote " backslash \\ newline \n tab \t return \r bell \x07 unicode é 库存 \u2028'
    frame = records(("o-1", 0, 0.0, 1.0, "sold_out", nasty))
    text = to_edn(from_records(frame, [NemesisEvent(0.5, "strike", "redis_data_loss", nasty)]))
    assert text.count("\n") == 3  # one map per line: no raw newline escapes a string
    invoke, strike, done = read_edn(text)
    value = {"order-id": "o-1", "sku": "sku-0001", "qty": 1}
    assert invoke == {
        "index": 0,
        "time": 0,
        "type": "invoke",
        "process": 0,
        "f": "deduct",
        "value": value,
    }
    assert isinstance(invoke["type"], Keyword) and not isinstance(invoke["value"]["sku"], Keyword)
    assert done["value"]["detail"] == strike["value"]["detail"] == nasty
    assert done["value"]["outcome"] == "sold-out" and isinstance(done["value"]["outcome"], Keyword)
    assert (strike["process"], strike["f"], strike["time"]) == ("nemesis", "redis-data-loss", 5e8)


def test_a_name_edn_cannot_hold_as_a_keyword_is_refused():
    event = Event(0, 0.0, 0, INVOKE, "deduct now", {})
    with pytest.raises(InvalidInput, match="EDN keyword"):
        to_edn([event])
    with pytest.raises(InvalidInput, match="finite time"):
        to_edn([Event(0, math.inf, 0, INVOKE, "deduct", {})])


# --- export -----------------------------------------------------------------------------------


def test_export_chooses_the_format_by_suffix(tmp_path):
    events = small_history()
    assert export(events, tmp_path / "h.edn").read_text(encoding="utf-8") == GOLDEN
    assert read_jsonl(export(events, tmp_path / "h.jsonl")) == events
    assert export_format("runs/H.EDN") == ".edn"


@pytest.mark.parametrize("name", ["h.json", "h.txt", "history"])
def test_export_refuses_an_unknown_suffix_and_writes_nothing(tmp_path, name):
    with pytest.raises(InvalidInput, match=r"\.jsonl .*\.edn"):
        export(small_history(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []
