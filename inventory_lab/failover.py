"""A Redis Cluster failover that loses acknowledged writes, as asynchronous replication allows.

A cluster master answers a write before its replica has it: replication is asynchronous. When the
master dies, the replica that takes its place has what had reached it, and the writes that had
not are gone — although every client that sent one heard "OK". For gate 1 those are decrements
and anti-repeat codes: after the failover Redis holds *more* stock than was sold, and without a
guard at gate 2 the extra units are sold twice (an oversell), whatever the epoch fence says (the
promoted copy still carries its epoch: nothing tells it apart from a copy that is right).

On one machine the replica keeps up within microseconds, so the lab makes the lag last instead
of hoping for it (`cut`): the replica is frozen (SIGSTOP) and its link dropped by the master
(`CLIENT KILL TYPE replica`), and the master goes on acknowledging writes the replica will never
get. `fail` then kills the master (-9), thaws the replica and waits until the cluster has
promoted it and serves every slot again; `rejoin`, once the sale is over, restarts the old
master, which rejoins as the new master's replica. What the master acknowledged in between is
counted from the master itself just before it dies: the keys it had gained and the net units its
stock hashes had lost since the cut.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import redis
from redis.cluster import RedisCluster

from inventory_lab import keys
from inventory_lab.errors import BackendError
from inventory_lab.lab import Lab
from inventory_lab.redis_cluster import ClusterStatus, LocalCluster, NodeInfo

LOST = re.compile(r"lost (\d+) keys and (-?\d+) units")


@dataclass(frozen=True)
class Cut:
    """A master cut off from its frozen replica, and what it held at that moment."""

    master: NodeInfo
    replica: NodeInfo
    replica_pid: int
    served: tuple[str, ...]  # the stock hashes the master serves
    keys_at_cut: int
    units_at_cut: dict[str, int]  # stock hash -> inStock on the master


class Failover:
    """Lose one master's acknowledged writes: `cut`, let clients write, then `fail`.

    `stock_keys`: the stock hashes whose units are counted. The master that fails is the one,
    among those serving them, that holds the most keys of `namespace` (every key, without one)
    when the cut comes: the hot SKU's, whose anti-repeat codes pile up beside its stock.
    """

    def __init__(
        self, cluster: LocalCluster, stock_keys: Sequence[str], namespace: str | None = None
    ) -> None:
        if not stock_keys:
            raise ValueError("name at least one stock hash (the master serving it fails)")
        self.cluster = cluster
        self.stock_keys = list(stock_keys)
        self.namespace = namespace
        self._cut: Cut | None = None
        self._down: int | None = None  # the port of the master `fail` killed, until `rejoin`
        self._status: ClusterStatus | None = None  # the settled cluster `prepare` found

    def cut(self) -> str:
        """Freeze the replica of the busiest master serving a stock hash and drop its link:
        from now on that master acknowledges writes its replica never receives."""
        if self._cut is not None:
            raise RuntimeError("already cut: fail() first")
        status = self._status or self.prepare()
        serving = {
            status.master_for_key(key).port: status.master_for_key(key) for key in self.stock_keys
        }
        master = max(serving.values(), key=lambda node: self._key_count(node.port))
        replicas = status.replicas_of(master)
        if len(replicas) != 1:
            raise BackendError(f"master {master.port} has {len(replicas)} replicas, not 1")
        replica = replicas[0]
        served = tuple(k for k in self.stock_keys if status.master_for_key(k).port == master.port)
        pid = self.cluster.pid(replica.port)
        if pid is None:
            raise BackendError(f"no replica process runs on port {replica.port}")
        os.kill(pid, signal.SIGSTOP)
        admin = self._admin(master.port)
        try:
            admin.execute_command("CLIENT", "KILL", "TYPE", "replica")
            keys_now, units = self._read(admin, served)
        except BaseException:
            os.kill(pid, signal.SIGCONT)
            raise
        finally:
            admin.close()
        self._cut = Cut(master, replica, pid, served, keys_now, units)
        return f"replica :{replica.port} frozen, cut off from master :{master.port}"

    def fail(self, timeout_s: float = 30.0) -> str:
        """Kill the cut master, thaw its replica, and wait for the promotion and a cluster that
        serves every slot (the old master stays down until `rejoin`: restarted empty while the
        sale runs, it could answer for its old slots for a moment). Returns what was lost."""
        cut = self._cut
        if cut is None:
            raise RuntimeError("nothing cut: cut() first")
        self._cut = None
        self._status = None  # the roles change now: the next cut looks again
        self._down = cut.master.port
        admin = self._admin(cut.master.port)
        try:
            keys_now, units = self._read(admin, cut.served)
        finally:
            admin.close()
        lost_keys = keys_now - cut.keys_at_cut
        lost_units = sum(cut.units_at_cut.get(key, 0) - left for key, left in units.items())
        self.cluster.kill(cut.master.port)
        os.kill(cut.replica_pid, signal.SIGCONT)
        self._wait_promoted(cut, time.monotonic() + timeout_s)
        return (
            f"master :{cut.master.port} killed after it acknowledged writes its replica never "
            f"got: lost {lost_keys} keys and {lost_units} units of decrements; replica "
            f":{cut.replica.port} promoted"
        )

    def prepare(self, timeout_s: float = 30.0) -> ClusterStatus:
        """Wait until the cluster is settled and keep its status for `cut` (call it before the
        sale starts: settling can take seconds after an earlier failover, and a cut must land
        while the sale runs)."""
        self._status = self._settled(time.monotonic() + timeout_s)
        return self._status

    def rejoin(self, timeout_s: float = 30.0) -> None:
        """Restart the master `fail` killed (it rejoins as the new master's replica) and wait
        until the cluster is healthy again; nothing to do when no node is down."""
        if self._down is None:
            return
        port, self._down = self._down, None
        self.cluster.start(port)
        self._wait_healthy(time.monotonic() + timeout_s)

    @property
    def is_cut(self) -> bool:
        return self._cut is not None

    @staticmethod
    def _read(admin: redis.Redis, served: Sequence[str]) -> tuple[int, dict[str, int]]:
        """The master's key count and its stock hashes' units, read on the master itself."""
        units = {}
        for key in served:
            value = admin.hget(key, keys.STOCK_FIELD)
            if value is not None:
                units[key] = int(value)
        return int(admin.dbsize()), units

    def _wait_promoted(self, cut: Cut, deadline: float) -> None:
        while True:
            status = self.cluster.status()
            promoted = [m for m in status.masters if m.port == cut.replica.port]
            serving = status.slots_served == 16384
            live_ok = all(state == "ok" for state in status.states.values())
            if promoted and serving and live_ok and status.running:
                return
            if time.monotonic() > deadline:
                raise BackendError(
                    f"replica :{cut.replica.port} was not promoted: " + "; ".join(status.problems)
                )
            time.sleep(0.05)

    def _wait_healthy(self, deadline: float) -> None:
        self._settled(deadline)

    def _settled(self, deadline: float) -> ClusterStatus:
        """The cluster's status once it is healthy *and* every node's own ROLE agrees with it:
        right after a failover one node's view of the others can lag behind (gossip), and a cut
        made on that view would freeze the wrong node."""
        while True:
            status = self.cluster.status()
            if status.healthy and self._roles_agree(status):
                return status
            if time.monotonic() > deadline:
                raise BackendError("the cluster did not settle: " + "; ".join(status.problems))
            time.sleep(0.05)

    def _roles_agree(self, status: ClusterStatus) -> bool:
        for master in status.masters:
            for node, expected in (
                (master, None),
                *((r, master.port) for r in status.replicas_of(master)),
            ):
                admin = self._admin(node.port)
                try:
                    role = admin.execute_command("ROLE")
                except redis.RedisError:
                    return False
                finally:
                    admin.close()
                if expected is None and role[0] != "master":
                    return False
                if expected is not None and (role[0] != "slave" or int(role[2]) != expected):
                    return False
        return True

    def _key_count(self, port: int) -> int:
        admin = self._admin(port)
        try:
            if self.namespace is None:
                return int(admin.dbsize())
            pattern = keys.namespace_pattern(self.namespace)
            return sum(1 for _ in admin.scan_iter(match=pattern, count=1000))
        finally:
            admin.close()

    def _admin(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=5)


def stock_hashes(lab: Lab) -> list[str]:
    """The lab's stock hashes (and buckets) in Redis, sorted (the hot SKU's first, in the
    workload's naming), read on every master of a cluster."""
    pattern = keys.namespace_pattern(lab.namespace)
    if isinstance(lab.redis, RedisCluster):
        found = lab.redis.scan_iter(match=pattern, count=1000, target_nodes=RedisCluster.PRIMARIES)
    else:
        found = lab.redis.scan_iter(match=pattern, count=1000)
    return sorted(key for key in found if key.endswith(":stock"))


def lost_writes(history: pd.DataFrame) -> dict[str, int]:
    """Keys and units of decrements lost in a run's failovers, from its nemesis history."""
    found = history["detail"].astype(str).str.extract(LOST).dropna().astype(int)
    return {"keys": int(found[0].sum()), "units": int(found[1].sum()), "failovers": len(found)}
