"""Stateful property tests: orders, resends, faults and re-warms interleaved against each design,
the invariants checked after every step (hypothesis's RuleBasedStateMachine).

Each machine drives one design on the embedded default from one thread, so that hypothesis can
replay and shrink a failing sequence. The task engine's workers do not run by themselves: the
`work` rule applies tasks, so that "accepted, not yet applied" is a state the machine visits.
After every step: nothing oversold, deducted twice, lost or unexplained, and Redis never promises
more than the database has left (Redis may show less — an unknown outcome not yet resolved, a
crash between the gates — which reconciliation repairs; the teardown checks that it does).
"""

from __future__ import annotations

import itertools
import os
import tempfile
import threading
import uuid
from typing import ClassVar

import pandas as pd
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from inventory_lab import Order, Outcome, check_lab, keys, open_lab
from inventory_lab.designs import design_class, redis_design_names
from inventory_lab.designs.task_engine import TaskEngineDesign
from inventory_lab.designs.two_gate import TwoGate
from inventory_lab.faults import (
    DbOutage,
    SimulatedCrash,
    crash_between_gates,
    hold_between_gates,
    lost_commit_ack,
)
from inventory_lab.reconcile import reconcile
from inventory_lab.redis_stock import read_redis_stock, redis_target
from inventory_lab.resolve import OutcomeUnknown
from inventory_lab.workload import RECORD_COLUMNS

DEEP = os.environ.get("INVENTORY_LAB_DEEP", "") not in ("", "0")
STATEFUL = settings(
    max_examples=200 if DEEP else 8,
    stateful_step_count=40 if DEEP else 15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
INITIAL = {"sku-1": 4, "sku-2": 2}
DESIGNS = ["db_only", *redis_design_names()]


class OrdersUnderFaults(RuleBasedStateMachine):
    design_name: ClassVar[str] = "db_only"
    options: ClassVar[dict[str, object]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.workdir = tempfile.mkdtemp(prefix="ilab-stateful-")
        self.lab = open_lab(
            f"fake://{uuid.uuid4().hex}",
            f"sqlite:///{self.workdir}/lab.sqlite",
            namespace=f"st{uuid.uuid4().hex[:8]}",
            pool_size=4,
        )
        cls = design_class(self.design_name)
        options = dict(self.options)
        if issubclass(cls, TaskEngineDesign):
            options.update(start_workers=False, lease_s=0.05, backoff_s=0.0, max_attempts=50)
        self.design = cls(self.lab, **options)
        self.design.setup(INITIAL)
        self.ids = itertools.count()
        self.sent: list[Order] = []
        self.told: list[list[object]] = []

    # --- what clients do ----------------------------------------------------------------------

    def _send(self, order: Order) -> Outcome:
        try:
            outcome = self.design.deduct(order).outcome
        except (OutcomeUnknown, SimulatedCrash, ConnectionError, OSError, RuntimeError):
            outcome = Outcome.UNKNOWN
        except Exception:
            outcome = Outcome.UNKNOWN  # any error after the order was sent: its fate is unknown
        self.sent.append(order)
        self.told.append([order.order_id, order.sku, order.qty, 0, 0, 0.0, 0.0, 0.0, outcome, ""])
        return outcome

    def _new(self, sku: str, qty: int) -> Order:
        return Order(f"o-{next(self.ids)}", sku, qty)

    @rule(sku=st.sampled_from(sorted(INITIAL)), qty=st.integers(1, 2))
    def order(self, sku: str, qty: int) -> None:
        self._send(self._new(sku, qty))

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def resend(self, data: st.DataObject) -> None:
        self._send(data.draw(st.sampled_from(self.sent)))

    @rule(sku=st.sampled_from(sorted(INITIAL)))
    def order_whose_commit_acknowledgement_is_lost(self, sku: str) -> None:
        with lost_commit_ack(self.lab.engine):
            self._send(self._new(sku, 1))

    @rule(sku=st.sampled_from(sorted(INITIAL)))
    def order_during_a_database_outage(self, sku: str) -> None:
        with DbOutage(self.lab.engine) as outage:
            outage.active.set()
            self._send(self._new(sku, 1))

    # --- what happens to Redis ----------------------------------------------------------------

    @precondition(lambda self: isinstance(self.design, TwoGate))
    @rule(sku=st.sampled_from(sorted(INITIAL)))
    def app_dies_between_the_gates(self, sku: str) -> None:
        with crash_between_gates(self.design, times=1):
            self._send(self._new(sku, 1))

    @precondition(lambda self: isinstance(self.design, TwoGate))
    @rule()
    def redis_loses_its_data(self) -> None:
        self.lab.clear_redis()

    @precondition(lambda self: isinstance(self.design, TwoGate))
    @rule()
    def rewarm(self) -> None:
        self.design.rewarm()

    @precondition(lambda self: isinstance(self.design, TwoGate) and self.sent)
    @rule(data=st.data())
    def anti_repeat_code_expires(self, data: st.DataObject) -> None:
        order = data.draw(st.sampled_from(self.sent))
        self.lab.redis.delete(keys.anti_repeat_key(self.lab.namespace, order.order_id, order.sku))

    @precondition(lambda self: isinstance(self.design, TwoGate))
    @rule(sku=st.sampled_from(sorted(INITIAL)))
    def rewarm_while_an_order_sits_between_the_gates(self, sku: str) -> None:
        parked, release = threading.Event(), threading.Event()
        outcome: list[Outcome] = []

        def hold(_order: Order) -> None:
            parked.set()
            release.wait(30)

        with hold_between_gates(self.design, hold):
            buyer = threading.Thread(target=lambda: outcome.append(self._send(self._new(sku, 1))))
            buyer.start()
            while buyer.is_alive() and not parked.wait(0.01):
                pass  # refused at gate 1 (sold out, duplicate): it never parks
            if parked.is_set():
                self.design.rewarm()
            release.set()
            buyer.join(30)

    # --- the task engine's workers ------------------------------------------------------------

    @precondition(lambda self: isinstance(self.design, TaskEngineDesign))
    @rule()
    def work(self) -> None:
        self.design.task_engine.work_once()
        self.design.task_engine.maintain_once()

    # --- after every step ---------------------------------------------------------------------

    def _records(self) -> pd.DataFrame:
        return pd.DataFrame(self.told, columns=RECORD_COLUMNS).assign(
            outcome=lambda f: f["outcome"].map(lambda o: o.value)
        )

    @invariant()
    def nothing_oversold_twice_deducted_lost_or_unexplained(self) -> None:
        report = check_lab(self.lab, INITIAL, self._records(), redis_view=False)
        found = (report.oversold, report.double_deducted, report.lost, report.unaccounted)
        assert found == (0, 0, 0, 0), report.summary()

    @invariant()
    def redis_never_promises_more_than_the_database_has(self) -> None:
        if not isinstance(self.design, TwoGate):
            return
        with self.lab.engine.connect() as conn:
            target = redis_target(conn)
        shown = read_redis_stock(self.lab, sorted(target))
        over = {sku: shown[sku] - target[sku] for sku in target if (shown[sku] or 0) > target[sku]}
        assert not over, f"Redis shows more than the DB minus pending tasks: {over}"

    def teardown(self) -> None:
        try:
            self.design.drain()
            if isinstance(self.design, TwoGate):
                reconcile(self.lab, repair=True)
            report = check_lab(
                self.lab, INITIAL, self._records(), redis_view=self.design.uses_redis
            )
            assert report.ok, report.summary()
        finally:
            self.design.close()
            self.lab.close()


@pytest.mark.parametrize("name", DESIGNS)
def test_interleaved_orders_faults_and_rewarms_keep_every_invariant(name):
    machine = type(f"{name}_machine", (OrdersUnderFaults,), {"design_name": name})
    run_state_machine_as_test(machine, settings=STATEFUL)


def test_the_guard_holds_under_the_same_interleavings():
    machine = type(
        "guarded_machine",
        (OrdersUnderFaults,),
        {"design_name": "task_engine", "options": {"db_guard": True}},
    )
    run_state_machine_as_test(machine, settings=STATEFUL)
