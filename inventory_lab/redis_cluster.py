"""A local Redis Cluster of the lab's own: three masters, each with a replica, on ports of its own.

Every Redis design can run on a real cluster (`redis+cluster://127.0.0.1:7000`, see
`backends.redis_client`): keys then live in 16384 hash slots spread over the masters, a Lua
script or a MULTI may only touch keys of one slot (the lab's `{sku}` hash tag puts a SKU's keys
in one), and a master can fail over to its replica. `LocalCluster` starts six `redis-server
--cluster-enabled yes` processes on consecutive ports (default 7000-7005), without persistence
(`--save "" --appendonly no`) and with a short `cluster-node-timeout` so that a failover takes
a second or two, joins them with `redis-cli --cluster create … --cluster-replicas 1`, and waits
until every node says `cluster_state:ok`, every slot is served and every replica is in sync.
`up` leaves a healthy cluster alone and rebuilds a broken one; `down` shuts the nodes down and
removes their files. `status` tells which node is master of which slots and which is its
replica; `ClusterStatus.master_for_key` finds the master serving a key. Needs the
`redis-server` and `redis-cli` executables (Debian's redis-server and redis-tools packages).
The nodes are daemons: they outlive the process that started them (`./lab cluster up`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.retry import Retry

from inventory_lab.errors import BackendError, InvalidInput

DEFAULT_BASE_PORT = 7000
NODES = 6  # three masters, each with one replica
MASTERS = 3
DEFAULT_NODE_TIMEOUT_MS = 1500  # how long a master may be silent before its replica takes over
HOST = "127.0.0.1"


def available() -> bool:
    """Whether both executables the cluster needs are installed."""
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


def default_directory(base_port: int = DEFAULT_BASE_PORT) -> Path:
    """Where the nodes of the cluster on `base_port`… keep their files (the temp directory)."""
    return Path(tempfile.gettempdir()) / f"inventory-lab-cluster-{base_port}"


def slot_of(key: str) -> int:
    """The hash slot of `key` (only the part in the first `{…}` counts, if there is one)."""
    return key_slot(key.encode())


@dataclass(frozen=True)
class NodeInfo:
    """One node as the cluster sees it (CLUSTER NODES)."""

    port: int
    node_id: str
    role: str  # "master" or "replica"
    master_id: str | None  # a replica's master
    slots: tuple[tuple[int, int], ...]  # a master's slot ranges, inclusive
    failing: bool  # flagged fail or fail? by the cluster

    def serves(self, slot: int) -> bool:
        return any(low <= slot <= high for low, high in self.slots)


@dataclass(frozen=True)
class ClusterStatus:
    """What the nodes on the cluster's ports say, read at one moment."""

    ports: tuple[int, ...]
    running: tuple[int, ...]  # the ports where a node of this cluster answers
    states: dict[int, str] = field(default_factory=dict)  # port -> cluster_state
    nodes: tuple[NodeInfo, ...] = ()
    in_sync: tuple[int, ...] = ()  # replicas whose link to their master is up

    @property
    def state(self) -> str:
        """'ok' when every running node says ok; 'down' when none runs; else 'fail'."""
        if not self.running:
            return "down"
        return "ok" if set(self.states.values()) == {"ok"} else "fail"

    @property
    def masters(self) -> tuple[NodeInfo, ...]:
        """The masters that serve slots, in slot order."""
        serving = [node for node in self.nodes if node.role == "master" and node.slots]
        return tuple(sorted(serving, key=lambda node: node.slots[0]))

    def replicas_of(self, master: NodeInfo) -> tuple[NodeInfo, ...]:
        return tuple(
            node
            for node in self.nodes
            if node.role == "replica" and node.master_id == master.node_id
        )

    @property
    def slots_served(self) -> int:
        return sum(high - low + 1 for node in self.masters for low, high in node.slots)

    def master_for_slot(self, slot: int) -> NodeInfo:
        for node in self.masters:
            if node.serves(slot):
                return node
        raise BackendError(f"no master of the cluster on port {self.ports[0]} serves slot {slot}")

    def master_for_key(self, key: str) -> NodeInfo:
        """The master serving `key`'s slot."""
        return self.master_for_slot(slot_of(key))

    @property
    def problems(self) -> list[str]:
        """Why the cluster is not healthy (empty when it is)."""
        found = []
        missing = sorted(set(self.ports) - set(self.running))
        if missing:
            found.append(f"no node answers on port(s) {', '.join(map(str, missing))}")
        not_ok = sorted(port for port, state in self.states.items() if state != "ok")
        if not_ok:
            found.append(f"cluster_state is not ok on port(s) {', '.join(map(str, not_ok))}")
        if self.running and self.slots_served != REDIS_CLUSTER_HASH_SLOTS:
            found.append(f"{self.slots_served} of {REDIS_CLUSTER_HASH_SLOTS} slots served")
        if self.running and len(self.masters) != MASTERS:
            found.append(f"{len(self.masters)} masters serve slots, not {MASTERS}")
        strangers = {node.port for node in self.nodes} - set(self.ports)
        if strangers:
            found.append(f"nodes outside the cluster's ports: {sorted(strangers)}")
        failing = sorted(node.port for node in self.nodes if node.failing)
        if failing:
            found.append(f"node(s) flagged failing: {failing}")
        for master in self.masters:
            replicas = self.replicas_of(master)
            if len(replicas) != 1:
                found.append(f"master {master.port} has {len(replicas)} replicas, not 1")
            elif replicas[0].port not in self.in_sync:
                found.append(f"replica {replicas[0].port} is not in sync with {master.port}")
        return found

    @property
    def healthy(self) -> bool:
        return bool(self.running) and not self.problems

    def describe(self) -> str:
        """A few lines for a person: each master, its slots and its replica."""
        head = f"cluster on ports {self.ports[0]}-{self.ports[-1]}: {self.state}"
        if not self.running:
            return f"{head} (no node runs)"
        lines = [head]
        for master in self.masters:
            slots = ", ".join(f"{low}-{high}" for low, high in master.slots)
            replicas = ", ".join(str(r.port) for r in self.replicas_of(master)) or "none"
            lines.append(f"  master {master.port}  slots {slots}  replica {replicas}")
        lines.extend(f"  problem: {problem}" for problem in self.problems)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {
            "ports": list(self.ports),
            "state": self.state,
            "healthy": self.healthy,
            "masters": [
                {
                    "port": m.port,
                    "slots": [list(r) for r in m.slots],
                    "replicas": [r.port for r in self.replicas_of(m)],
                }
                for m in self.masters
            ],
            "problems": self.problems,
        }


class LocalCluster:
    """Six redis-server nodes on `base_port` … `base_port + 5`, files under `directory`."""

    def __init__(
        self,
        base_port: int = DEFAULT_BASE_PORT,
        *,
        directory: Path | str | None = None,
        node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS,
    ) -> None:
        if isinstance(base_port, bool) or not isinstance(base_port, int):
            raise InvalidInput(f"base port must be an integer, got {base_port!r:.40}")
        # a cluster node also listens on its port + 10000 (the cluster bus)
        if not 1024 <= base_port <= 65535 - 10000 - NODES + 1:
            raise InvalidInput(
                f"base port must be in [1024, {65535 - 10000 - NODES + 1}] (each node also "
                f"listens on its port + 10000), got {base_port}"
            )
        if isinstance(node_timeout_ms, bool) or not isinstance(node_timeout_ms, int):
            raise InvalidInput(f"node timeout must be an integer, got {node_timeout_ms!r:.40}")
        if not 100 <= node_timeout_ms <= 60_000:
            raise InvalidInput(f"node timeout must be in [100, 60000] ms, got {node_timeout_ms}")
        self.ports = tuple(range(base_port, base_port + NODES))
        self.directory = Path(directory) if directory else default_directory(base_port)
        self.node_timeout_ms = node_timeout_ms

    @property
    def url(self) -> str:
        """The URL `backends.redis_client` turns into a cluster client."""
        return f"redis+cluster://{HOST}:{self.ports[0]}"

    def node_dir(self, port: int) -> Path:
        return self.directory / str(port)

    # --- status -------------------------------------------------------------------------------

    def status(self) -> ClusterStatus:
        """Ask every node of this cluster (a node on one of its ports whose data directory is
        this cluster's: another server on the port is not asked anything more)."""
        running, states, in_sync = [], {}, []
        nodes: tuple[NodeInfo, ...] = ()
        for port in self.ports:
            client = self._client(port)
            try:
                if not self._is_ours(client, port):
                    continue
                info = client.execute_command("CLUSTER INFO")  # parsed by redis-py: a dict
                running.append(port)
                states[port] = str(info.get("cluster_state", "unknown"))
                replication = client.info("replication")
                if replication.get("master_link_status") == "up":
                    in_sync.append(port)
                if not nodes:
                    nodes = _parse_nodes(client.execute_command("CLUSTER NODES"))
            except redis.RedisError:
                continue
            finally:
                client.close()
        return ClusterStatus(self.ports, tuple(running), states, nodes, tuple(in_sync))

    def _is_ours(self, client: redis.Redis, port: int) -> bool:
        try:
            directory = client.config_get("dir").get("dir", "")
        except redis.RedisError:
            return False
        return Path(directory).resolve() == self.node_dir(port).resolve()

    def _client(self, port: int) -> redis.Redis:
        client = redis.Redis(
            host=HOST,
            port=port,
            decode_responses=True,
            socket_timeout=1.0,  # a process on the port that is not a Redis may never answer
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),  # a refused connection is an answer: nothing runs there
        )
        client.set_response_callback("CLUSTER NODES", lambda text, **_: text)  # the text itself
        return client

    # --- up and down --------------------------------------------------------------------------

    def up(self, timeout_s: float = 60.0) -> ClusterStatus:
        """Start the cluster, or leave it alone when it is up and healthy; returns its status.

        A port taken by another process is refused (BackendError) before anything is touched.
        A leftover of this cluster that is not healthy (a node gone, a failover half done) is
        torn down and built again from empty nodes.
        """
        for executable in ("redis-server", "redis-cli"):
            if shutil.which(executable) is None:
                raise BackendError(
                    f"{executable} is not installed (apt-get install redis-server redis-tools)"
                )
        current = self.status()
        taken = [
            port
            for port in self.ports
            if port not in current.running and (_port_taken(port) or _port_taken(port + 10000))
        ]
        if taken:
            raise BackendError(
                f"port(s) {', '.join(map(str, taken))} (or their cluster bus port + 10000) are "
                f"taken by another process: stop it, or choose other ports"
            )
        if current.healthy:
            return current
        self.down()
        self.directory.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout_s
        try:
            for port in self.ports:
                self._start_node(port)
            for port in self.ports:
                self._wait_answering(port, deadline)
            self._create()
            return self._wait_healthy(deadline)
        except BaseException:
            self.down()
            raise

    def down(self) -> list[int]:
        """Shut down every node of this cluster and remove their files; returns the ports whose
        node was running. Another process on one of the ports is left alone."""
        stopped = []
        for port in self.ports:
            client = self._client(port)
            try:
                if self._is_ours(client, port):
                    stopped.append(port)
                    with suppress(redis.RedisError):  # the connection drops as the server exits
                        client.shutdown(nosave=True)
            finally:
                client.close()
        for port in self.ports:
            self._kill_leftover(port)
        deadline = time.monotonic() + 10.0
        for port in stopped:
            while _answers(port) and time.monotonic() < deadline:
                time.sleep(0.02)
        for port in self.ports:  # only the nodes' own directories: `directory` may be shared
            shutil.rmtree(self.node_dir(port), ignore_errors=True)
        with suppress(OSError):  # removed when nothing else is left in it
            self.directory.rmdir()
        return stopped

    def _start_node(self, port: int) -> None:
        node_dir = self.node_dir(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        command = [
            "redis-server",
            "--port", str(port),
            "--bind", HOST,
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--save", "",
            "--appendonly", "no",
            # a replica's first sync starts at once (default: 5 s later, waiting for others)
            "--repl-diskless-sync-delay", "0",
            "--dir", str(node_dir),
            "--logfile", str(node_dir / "redis.log"),
            "--pidfile", str(node_dir / "redis.pid"),
            "--daemonize", "yes",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise BackendError(
                f"redis-server on port {port} did not start: "
                f"{(done.stderr or done.stdout).strip()[-300:]}"
            )

    def _wait_answering(self, port: int, deadline: float) -> None:
        while not _answers(port):
            if time.monotonic() > deadline:
                log = self.node_dir(port) / "redis.log"
                tail = log.read_text(errors="replace")[-300:] if log.exists() else "no log"
                raise BackendError(f"redis-server on port {port} does not answer: {tail}")
            time.sleep(0.02)

    def _create(self) -> None:
        command = [
            "redis-cli",
            "--cluster", "create",
            *(f"{HOST}:{port}" for port in self.ports),
            "--cluster-replicas", "1",
            "--cluster-yes",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if done.returncode != 0 or "[OK] All 16384 slots covered" not in done.stdout:
            output = (done.stdout + done.stderr).strip().splitlines()
            raise BackendError("redis-cli --cluster create failed: " + " | ".join(output[-3:]))

    def _wait_healthy(self, deadline: float) -> ClusterStatus:
        while True:
            status = self.status()
            if status.healthy:
                return status
            if time.monotonic() > deadline:
                raise BackendError(
                    "the cluster did not become healthy: " + "; ".join(status.problems)
                )
            time.sleep(0.05)

    def _kill_leftover(self, port: int) -> None:
        """A node that does not answer any more (paused, hung) but whose pid file is ours."""
        pid = self.pid(port)
        if pid is not None:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # --- one node, for faults -----------------------------------------------------------------

    def pid(self, port: int) -> int | None:
        """The process id of this cluster's node on `port`, if it runs (from its pid file,
        checked against the process's own command line)."""
        pid_file = self.node_dir(port) / "redis.pid"
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError):
            return None
        return pid if "redis-server" in cmdline and f":{port}" in cmdline else None

    def kill(self, port: int) -> None:
        """kill -9 the node on `port`: its keys are gone (nothing is persisted); when it was
        a master, its replica takes over after about `node_timeout_ms`."""
        self._own_port(port)
        pid = self.pid(port)
        if pid is None:
            raise BackendError(f"no node of this cluster runs on port {port}")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10.0
        while self.pid(port) is not None and time.monotonic() < deadline:
            time.sleep(0.01)

    def start(self, port: int, timeout_s: float = 20.0) -> None:
        """Start the node on `port` again (after `kill`): it reads its nodes.conf and rejoins
        the cluster, as a replica if another node took over its slots meanwhile."""
        self._own_port(port)
        self._start_node(port)
        self._wait_answering(port, time.monotonic() + timeout_s)

    def _own_port(self, port: int) -> None:
        if port not in self.ports:
            raise InvalidInput(f"port {port} is not one of this cluster's {list(self.ports)}")

    def __enter__(self) -> LocalCluster:
        self.up()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.down()


def free_base_port(start: int = 7100, step: int = 10) -> int:
    """The first base port from `start` (in steps of `step`) whose six ports and their bus ports
    are free: where a cluster of one's own can start (the review's failover cells)."""
    for base in range(start, 65535 - 10000 - NODES, step):
        ports = range(base, base + NODES)
        if not any(_port_taken(port) or _port_taken(port + 10000) for port in ports):
            return base
    raise BackendError(f"no six free ports from {start} upwards")


def _answers(port: int) -> bool:
    client = redis.Redis(
        host=HOST,
        port=port,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _port_taken(port: int) -> bool:
    """Whether something listens on the loopback `port` (a socket left in TIME_WAIT does not
    count: redis-server binds with SO_REUSEADDR too)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return True
    return False


def _parse_nodes(text: str) -> tuple[NodeInfo, ...]:
    """CLUSTER NODES: `<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slots>…`"""
    nodes = []
    for line in text.strip().splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        node_id, address, flags, master = parts[0], parts[1], parts[2].split(","), parts[3]
        port = int(address.split("@")[0].rsplit(":", 1)[1] or 0)
        slots = []
        for entry in parts[8:]:
            if entry.startswith("["):  # a slot being migrated: not served here yet
                continue
            low, _, high = entry.partition("-")
            slots.append((int(low), int(high or low)))
        nodes.append(
            NodeInfo(
                port=port,
                node_id=node_id,
                role="master" if "master" in flags else "replica",
                master_id=None if master == "-" else master,
                slots=tuple(sorted(slots)),
                failing="fail" in flags or "fail?" in flags,
            )
        )
    return tuple(sorted(nodes, key=lambda node: node.port))
