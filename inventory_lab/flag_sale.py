"""A flash sale with a restock, through several app processes: what the local sold-out flag
saves and what it costs.

The sale: one hot SKU, far more buyers than units. The first half of the orders sells it out;
then the shop restocks a few units and the second half arrives. It runs through `processes`
instances of a design — one instance per app process, so one set of flags each — fed by
`clients` threads, each client bound to one process, round-robin.

Three ways to run it, on the same orders:
- `none`: `two_gate_lua`, the article's gate 1 for every order;
- `pubsub`: `two_gate_local_flag`; the restock's message clears every process's flag;
- `ttl only`: the same flags deaf to the message (a process that missed it): only their TTL
  clears them.

Measured: the Redis round trips the orders cost (metered on the client; the audit's reads left
out), orders answered by a flag, and false sold-outs — orders a flag refused while Redis held
the unit (`audit=True`). The checker reads every run, with the restocked units counted in
the initial stock.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from inventory_lab.checker import check_lab
from inventory_lab.designs import design_class
from inventory_lab.designs.base import BaseDesign
from inventory_lab.lab import Lab
from inventory_lab.orders import Order, Result
from inventory_lab.redis_meter import metered
from inventory_lab.restock import restock
from inventory_lab.workload import Attempt, run_workload

FLAG_MODES = ("none", "pubsub", "ttl only")
SKU = "hot-1"


@dataclass(frozen=True)
class FlagSaleRun:
    flags: str  # one of FLAG_MODES
    processes: int
    orders: int
    stock: int  # before the restock
    restocked: int
    accepted: int
    redis_round_trips: int  # for the orders (the audit's reads are not counted)
    answered_locally: int  # orders refused by a flag: no Redis call
    false_sold_outs: int  # refused by a flag while Redis held the unit
    unsold: int  # units left in the database at the end
    checker_ok: bool  # no oversell, no double deduction, nothing lost, Redis = DB

    def row(self) -> dict[str, Any]:
        return asdict(self)


class AppProcesses:
    """Several instances of one design, each standing for an app process; each client thread
    sticks to one of them, taken round-robin on its first order."""

    def __init__(self, instances: list[BaseDesign]) -> None:
        self.instances = instances
        self.name = instances[0].name
        self._mine = threading.local()
        self._next = 0
        self._lock = threading.Lock()

    def _instance(self) -> BaseDesign:
        instance = getattr(self._mine, "instance", None)
        if instance is None:
            with self._lock:
                instance = self.instances[self._next % len(self.instances)]
                self._next += 1
            self._mine.instance = instance
        return instance

    def deduct(self, order: Order) -> Result:
        return self._instance().deduct(order)

    def total(self, counter: str) -> int:
        return sum(int(getattr(instance, counter, 0)) for instance in self.instances)

    def close(self) -> None:
        for instance in self.instances:
            instance.close()


def flag_sale(
    lab: Lab,
    flags: str = "pubsub",
    *,
    processes: int = 4,
    clients: int = 8,
    stock: int = 50,
    orders: int = 1000,
    restocked: int = 20,
    flag_ttl_s: float = 5.0,
) -> FlagSaleRun:
    """Run the sale once with `flags` (see the module docstring) and check it."""
    if flags not in FLAG_MODES:
        raise ValueError(f"flags must be one of {', '.join(FLAG_MODES)}, got {flags!r}")
    if processes < 1 or clients < processes:
        raise ValueError("need processes >= 1 and at least one client per process")
    if orders < 2 or stock < 0 or restocked < 1:
        raise ValueError("need orders >= 2, stock >= 0 and restocked >= 1")
    if flags == "none":
        made = [design_class("two_gate_lua")(lab) for _ in range(processes)]
    else:
        options = {"flag_ttl_s": flag_ttl_s, "listen": flags == "pubsub", "audit": True}
        made = [design_class("two_gate_local_flag")(lab, **options) for _ in range(processes)]
    app = AppProcesses(made)
    try:
        made[0].setup({SKU: stock})
        attempts = [Attempt(Order(f"fs-{n}", SKU, 1), 0) for n in range(orders)]
        half = orders // 2
        with metered(lab.redis) as meter:
            first = run_workload(app, attempts[:half], concurrency=clients)  # type: ignore[arg-type]
            after_first = meter.count
            restock(lab, SKU, restocked)
            restock_trips = meter.count - after_first
            second = run_workload(app, attempts[half:], concurrency=clients)  # type: ignore[arg-type]
        for instance in made:
            instance.drain()
        records = pd.concat([first, second], ignore_index=True)
        report = check_lab(lab, {SKU: stock + restocked}, records, redis_view=True)
        local = app.total("answered_locally")
        audits = local  # one read per local refusal
        return FlagSaleRun(
            flags=flags,
            processes=processes,
            orders=orders,
            stock=stock,
            restocked=restocked,
            accepted=int((records["outcome"] == "accepted").sum()),
            redis_round_trips=meter.count - restock_trips - audits,
            answered_locally=local,
            false_sold_outs=app.total("false_sold_outs"),
            unsold=int(report.final_stock[SKU]),
            checker_ok=bool(report.ok and report.converged),
        )
    finally:
        app.close()


def compare_flags(lab: Lab, **sale: Any) -> pd.DataFrame:
    """The same sale under each of FLAG_MODES, one row each."""
    return pd.DataFrame([flag_sale(lab, flags, **sale).row() for flags in FLAG_MODES])
