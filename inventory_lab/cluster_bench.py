"""Gate 1 on a Redis Cluster served by one, two and three masters: decisions per second.

Stock buckets (`two_gate_buckets`) put one hot SKU's stock in B hashes, each under a hash tag of
its own (`{sku/b}`), so that on a cluster the buckets can fall on different masters; in one Redis
they split nothing (one command thread serves every key). This module measures what a cluster
gives back: for k = 1, 2, 3 masters of the lab's local cluster (`redis_cluster.LocalCluster`,
whose URL names its first port), one bucket of a hot SKU is chosen on each of the first k masters
(`buckets_on_masters`, placed with `ClusterStatus.master_for_key`) and gate 1 (scripts/gate1.lua,
one unit per call, a fresh anti-repeat code each time, stock that never runs out) is driven on
those k buckets, the load spread evenly, by two tools in turn:

- `redis-benchmark`: the C client, the raw ceiling. One redis-benchmark process per master,
  each against that master's own port (no cluster mode: every key it names lies in that
  master's slots), all run at once with the same number of calls; each is sized by a short
  probe to last about `seconds`. Decisions/s = all calls / the wall time of the slowest.
- `redis-py cluster`: the lab's own client (`backends.redis_client`, a `LabRedisCluster`) in a
  bare loop: `processes` spawned processes × `clients` threads, each thread calling EVALSHA on
  the k buckets in turn for `seconds`. The client count is the same for every k: the point is
  what the same client machinery gets out of more masters.

Around each cell the CPU of the machine, of every master and replica (by pid) and of the
clients is read (`saturation.CpuMeter`), and the resource that saturated is named. On a 2-core
machine serving six redis-server processes and the load, expect the machine to be the wall long
before a third master helps; the table says so instead of assuming it. The anti-repeat codes
expire after the article's 10 s (`two_gate.DEFAULT_TTL_MS`), as gate 1's do, so their expiry
is part of the later cells' work; the bucket hashes are deleted at the end.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import redis

from inventory_lab import keys, schema
from inventory_lab.backends import first_line, redis_client
from inventory_lab.ceilings import _redis_benchmark
from inventory_lab.designs.two_gate import DEFAULT_TTL_MS
from inventory_lab.errors import BackendError, InvalidInput
from inventory_lab.redis_cluster import HOST, ClusterStatus, LocalCluster
from inventory_lab.saturation import BUSY, CpuMeter, CpuWindow
from inventory_lab.scripts import lua_source

BENCHMARK, PYTHON = "redis-benchmark", "redis-py cluster"
TOOLS = (BENCHMARK, PYTHON)
HOT_SKU = "sku-cluster-hot"
NAMESPACE = "ilab-cluster-bench"
MAX_BUCKET_SEARCH = 10_000  # bucket numbers tried to find one on a master (a few suffice)
_START_DELAY_S = 0.1  # workers start together a little after the go signal
_WORKER_TIMEOUT_S = 120.0
COLUMNS = [
    "masters",
    "tool",
    "ports",
    "buckets",
    "connections",
    "seconds",
    "decisions",
    "decisions_per_s",
    "over_one_master",
    "admitted",
    "errors",
    "cpu_machine",
    "cpu_clients",
    "cpu_busiest_master",
    "cpu_masters",
    "cpu_replicas",
    "cpu_others",
    "cpu_by_master",
    "load_1min_before",
    "saturated",
    "note",
]


def cluster_status(cluster_url: str) -> ClusterStatus:
    """The status of the lab's local cluster whose first port `cluster_url` names; refused
    (BackendError) when no healthy cluster of the lab's runs there."""
    if not cluster_url.startswith("redis+cluster://"):
        raise InvalidInput(f"a cluster URL starts with redis+cluster://, got {cluster_url[:40]!r}")
    port = urlsplit(cluster_url).port
    if port is None:
        raise InvalidInput("the cluster URL must name the cluster's first port")
    status = LocalCluster(port).status()
    if not status.healthy:
        raise BackendError(
            "the cluster bench needs the lab's local cluster, up and healthy "
            f"(./lab cluster up): {status.describe()}"
        )
    return status


def check_masters(masters: Sequence[int], available: int) -> tuple[int, ...]:
    """`masters` as a tuple of distinct counts in [1, available]; anything else refused."""
    if isinstance(masters, (str, bytes)) or not isinstance(masters, Sequence) or not masters:
        raise InvalidInput(f"masters must be a non-empty sequence of counts, got {masters!r:.40}")
    for k in masters:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= available:
            raise InvalidInput(
                f"each count of masters must be an integer in [1, {available}] "
                f"(the cluster has {available} masters), got {k!r:.40}"
            )
    if len(set(masters)) != len(masters):
        raise InvalidInput(f"counts of masters must not repeat, got {list(masters)}")
    return tuple(masters)


def buckets_on_masters(status: ClusterStatus, sku: str, k: int) -> dict[int, int]:
    """{master port: bucket number}: for each of the first k masters (in slot order), the
    lowest bucket of `sku` whose stock hash lies in that master's slots."""
    check_masters([k], len(status.masters))
    chosen: dict[int, int] = {}
    wanted = {master.port for master in status.masters[:k]}
    for bucket in range(MAX_BUCKET_SEARCH):
        port = status.master_for_key(keys.stock_bucket_key(NAMESPACE, sku, bucket)).port
        if port in wanted and port not in chosen:
            chosen[port] = bucket
            if len(chosen) == k:
                return dict(sorted(chosen.items()))
    raise BackendError(f"no bucket of {sku!r} below {MAX_BUCKET_SEARCH} lies on some master")


def masters_table(
    cluster_url: str,
    *,
    masters: Sequence[int] = (1, 2, 3),
    tools: Sequence[str] = TOOLS,
    seconds: float = 10.0,
    clients: int = 8,
    processes: int = 2,
    benchmark_clients: int = 32,
    probe_requests: int = 10_000,
    sku: str = HOT_SKU,
    namespace: str = NAMESPACE,
) -> pd.DataFrame:
    """One row per (k masters, tool): gate-1 decisions/s with the load on k masters' buckets,
    the ratio to one master of the same tool, the CPU (in cores) of the machine, the clients,
    the masters and replicas and everything else, and what saturated.

    `clients` threads in each of `processes` load processes for the Python client;
    `benchmark_clients` connections in each redis-benchmark process (one per master).
    """
    status = cluster_status(cluster_url)
    counts = check_masters(masters, len(status.masters))
    unknown = [tool for tool in tools if tool not in TOOLS]
    if unknown or not tools:
        raise InvalidInput(f"tools must be among {', '.join(TOOLS)}, got {list(tools)}")
    for name, value in (
        ("clients", clients),
        ("processes", processes),
        ("benchmark_clients", benchmark_clients),
        ("probe_requests", probe_requests),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInput(f"{name} must be a positive integer, got {value!r:.40}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 600:
        raise InvalidInput(f"seconds must be in (0, 600], got {seconds!r}")
    run_ns = keys.namespace_beside(namespace, uuid.uuid4().hex[:8])
    placement = buckets_on_masters(status, sku, max(counts))
    meter_pids = _node_pids(status)
    client = redis_client(cluster_url)
    try:
        client.script_load(lua_source("gate1"))  # on every master
        for bucket in placement.values():
            client.hset(
                keys.stock_bucket_key(run_ns, sku, bucket),
                mapping={keys.STOCK_FIELD: schema.MAX_STOCK, keys.EPOCH_FIELD: "cluster-bench"},
            )
        rows = []
        for k in counts:
            used = dict(list(placement.items())[:k])
            cell = _Cell(cluster_url, run_ns, sku, k, used, seconds)
            for tool in tools:
                load = os.getloadavg()[0]
                if tool == BENCHMARK:
                    row = _benchmark_cell(cell, benchmark_clients, probe_requests, meter_pids)
                else:
                    row = _python_cell(cell, clients, processes, meter_pids)
                row["load_1min_before"] = round(load, 2)
                rows.append(row)
    finally:
        for bucket in placement.values():
            client.delete(keys.stock_bucket_key(run_ns, sku, bucket))
        client.close()
    return _with_ratios(pd.DataFrame(rows))


@dataclass(frozen=True)
class _Cell:
    """One k: the cluster, the run's namespace, and the buckets in use, {master port: bucket}."""

    cluster_url: str
    namespace: str
    sku: str
    k: int
    buckets: dict[int, int]
    seconds: float

    def stock_key(self, bucket: int) -> str:
        return keys.stock_bucket_key(self.namespace, self.sku, bucket)

    def base_row(self, tool: str) -> dict[str, Any]:
        return {
            "masters": self.k,
            "tool": tool,
            "ports": ",".join(map(str, self.buckets)),
            "buckets": ",".join(map(str, self.buckets.values())),
        }


def _stock_left(client: Any, cell: _Cell) -> int:
    return sum(
        int(client.hget(cell.stock_key(bucket), keys.STOCK_FIELD))
        for bucket in cell.buckets.values()
    )


def _node_pids(status: ClusterStatus) -> dict[str, int]:
    """{'master 7000': pid, 'replica 7004': pid, …} for the nodes whose pid can be read."""
    cluster = LocalCluster(status.ports[0])
    pids = {}
    for master in status.masters:
        for label, node in [("master", master)] + [
            ("replica", r) for r in status.replicas_of(master)
        ]:
            pid = cluster.pid(node.port)
            if pid is not None:
                pids[f"{label} {node.port}"] = pid
    return pids


# --- redis-benchmark -------------------------------------------------------------------------


def _benchmark_cell(
    cell: _Cell, clients: int, probe_requests: int, pids: dict[str, int]
) -> dict[str, Any]:
    """Probe, then one redis-benchmark per master at once, sized to last about `seconds`."""
    probe = _benchmarks_at_once(cell, clients, probe_requests, "probe")
    rates = [rate for rate, _ in probe["rates"] if rate]
    if len(rates) < cell.k:
        return _failed_row(cell, BENCHMARK, clients * cell.k, probe["notes"])
    requests = max(probe_requests, int(min(rates) * cell.seconds))
    reader = redis_client(cell.cluster_url)
    try:
        stock_before = _stock_left(reader, cell)
    finally:
        reader.close()
    meter = CpuMeter(None, None, extra=pids)
    children0 = _children_cpu_s()
    meter.start()
    run = _benchmarks_at_once(cell, clients, requests, "run")
    meter.stop()
    window = meter.window([_children_cpu_s() - children0])
    if any(rate is None for rate, _ in run["rates"]):
        return _failed_row(cell, BENCHMARK, clients * cell.k, run["notes"])
    reader = redis_client(cell.cluster_url)
    try:  # a repeated random code (1 in 10^9 per pair of calls) is a refused decision
        admitted = stock_before - _stock_left(reader, cell)
    finally:
        reader.close()
    decisions = requests * cell.k
    own = ", ".join(
        f"{port} {rate:,.0f}/s" for port, (rate, _) in zip(cell.buckets, run["rates"], strict=True)
    )
    return {
        **cell.base_row(BENCHMARK),
        "connections": clients * cell.k,
        "seconds": round(run["wall_s"], 2),
        "decisions": decisions,
        "decisions_per_s": round(decisions / run["wall_s"], 1),
        "admitted": admitted,
        "errors": 0,
        **_cpu_columns(window, cell),
        "saturated": _saturation(window, cell, BENCHMARK),
        "note": f"each process's own rate: {own}",
    }


def _benchmarks_at_once(cell: _Cell, clients: int, requests: int, tag: str) -> dict[str, Any]:
    """One redis-benchmark process per master of the cell, all started together."""
    results: list[tuple[float | None, str]] = [(None, "")] * cell.k
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * cell.k

    def one(index: int, port: int, bucket: int) -> None:
        # __rand_int__: a fresh random number per call, so every call's code is new
        code = keys.bucket_anti_repeat_key(
            cell.namespace, f"rb-{tag}-k{cell.k}-__rand_int__", cell.sku, bucket
        )
        args = ["2", code, cell.stock_key(bucket), "1", str(DEFAULT_TTL_MS)]
        started = time.monotonic()
        ceiling = _redis_benchmark(
            f"redis://{HOST}:{port}",
            "gate1",
            args,
            BENCHMARK,
            clients=clients,
            requests=requests,
        )
        spans[index] = (started, time.monotonic())
        results[index] = (ceiling.rate, ceiling.note)

    threads = [
        threading.Thread(target=one, args=(i, port, bucket))
        for i, (port, bucket) in enumerate(cell.buckets.items())
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    notes = "; ".join(
        f"{port}: {note}" for port, (_, note) in zip(cell.buckets, results, strict=True) if note
    )
    return {"rates": results, "wall_s": wall, "notes": notes}


def _children_cpu_s() -> float:
    """CPU seconds of this process's finished children (the redis-benchmark processes)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


# --- the lab's Python client ---------------------------------------------------------------


@dataclass(frozen=True)
class _PythonJob:
    cell: _Cell
    clients: int


def _python_cell(cell: _Cell, clients: int, processes: int, pids: dict[str, int]) -> dict[str, Any]:
    """`processes` spawned processes × `clients` threads calling gate 1 for `seconds`."""
    ctx = mp.get_context("spawn")  # no fork of a parent holding sockets and threads
    ready = ctx.Barrier(processes + 1, timeout=_WORKER_TIMEOUT_S)
    go = ctx.Event()
    start_at = ctx.Value("d", 0.0)
    results = ctx.Queue()
    job = _PythonJob(cell, clients)
    workers = [
        ctx.Process(
            target=_python_worker,
            args=(job, index, ready, go, start_at, results),
            name=f"cluster-load-{index}",
            daemon=True,
        )
        for index in range(processes)
    ]
    for worker in workers:
        worker.start()
    meter = CpuMeter(None, None, extra=pids)
    try:
        try:
            ready.wait()
        except threading.BrokenBarrierError:
            raise BackendError(f"a load process failed to connect: {_error_of(results)}") from None
        start = time.monotonic() + _START_DELAY_S
        start_at.value = start
        go.set()
        time.sleep(max(0.0, start - time.monotonic()))
        meter.start()
        time.sleep(max(0.0, start + cell.seconds - time.monotonic()))
        meter.stop()
        parts = []
        for _ in workers:
            kind, payload = results.get(timeout=_WORKER_TIMEOUT_S)
            if kind == "error":
                raise BackendError(f"a load process failed: {payload}")
            parts.append(payload)
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.terminate()
    elapsed = max(part["last_end"] for part in parts) - start
    decisions = sum(part["calls"] for part in parts)
    errors = sum(part["errors"] for part in parts)
    window = meter.window([part["cpu_s"] for part in parts])
    first_error = next((part["first_error"] for part in parts if part["first_error"]), "")
    return {
        **cell.base_row(PYTHON),
        "connections": clients * processes,
        "seconds": round(elapsed, 2),
        "decisions": decisions,
        "decisions_per_s": round(decisions / elapsed, 1) if elapsed > 0 else 0.0,
        "admitted": sum(part["admitted"] for part in parts),
        "errors": errors,
        **_cpu_columns(window, cell),
        "saturated": _saturation(window, cell, PYTHON),
        "note": f"{processes} processes × {clients} threads"
        + (f"; first error: {first_error}" if first_error else ""),
    }


def _error_of(results: Any) -> str:
    try:
        kind, payload = results.get(timeout=2)
    except Exception:  # queue.Empty, or the queue broke with the process
        return "no error reported (did it crash?)"
    return str(payload) if kind == "error" else "no error reported"


def _python_worker(
    job: _PythonJob, index: int, ready: Any, go: Any, start_at: Any, results: Any
) -> None:
    """One load process: connect, warm every thread on every bucket, then loop until the end."""
    cell = job.cell
    targets = [(bucket, cell.stock_key(bucket)) for bucket in cell.buckets.values()]
    try:
        client = redis_client(cell.cluster_url)
        script = client.register_script(lua_source("gate1"))
    except BaseException as exc:
        results.put(("error", f"{type(exc).__name__}: {first_line(exc)}"))
        ready.abort()
        return
    warmed = threading.Barrier(job.clients + 1)
    started = threading.Event()
    window: list[float] = []  # [start, deadline], set before `started`
    lock = threading.Lock()
    # calls answered, of which admitted, errors, first error, last end
    tallies: list[tuple[int, int, int, str, float]] = []
    warm_errors: list[str] = []

    def call(order_id: str, bucket: int, stock_key: str) -> bool:
        """Gate 1 once; whether it admitted the order (stock left >= 0)."""
        code = keys.bucket_anti_repeat_key(cell.namespace, order_id, cell.sku, bucket)
        left, _epoch = script(keys=[code, stock_key], args=[1, DEFAULT_TTL_MS])
        return int(left) >= 0

    def loop(number: int) -> None:
        prefix = f"py-k{cell.k}-p{index}-t{number}"
        try:
            for bucket, stock_key in targets:  # a connection to every master, before the start
                call(f"{prefix}-warm{bucket}", bucket, stock_key)
        except redis.RedisError as exc:
            warm_errors.append(first_line(exc))
        finally:
            warmed.wait()
        started.wait()
        start, deadline = window
        time.sleep(max(0.0, start - time.monotonic()))
        position = (index * job.clients + number) % len(targets)  # spread evenly
        calls = admitted = errors = 0
        first_error = ""
        while time.monotonic() < deadline:
            bucket, stock_key = targets[position]
            position = (position + 1) % len(targets)
            try:
                admitted += call(f"{prefix}-{calls + errors}", bucket, stock_key)
                calls += 1
            except redis.RedisError as exc:
                errors += 1
                first_error = first_error or first_line(exc)
        with lock:
            tallies.append((calls, admitted, errors, first_error, time.monotonic()))

    threads = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(job.clients)]
    try:
        for thread in threads:
            thread.start()
        warmed.wait()
        if warm_errors:
            raise BackendError(f"gate 1 failed before the start: {warm_errors[0]}")
        ready.wait()
        if not go.wait(timeout=_WORKER_TIMEOUT_S):
            raise RuntimeError("the parent never gave the start")
        start = start_at.value
        window.extend([start, start + cell.seconds])
        started.set()
        time.sleep(max(0.0, start - time.monotonic()))
        cpu0 = time.process_time()
        for thread in threads:
            thread.join()
        cpu = time.process_time() - cpu0
        results.put(
            (
                "ok",
                {
                    "calls": sum(t[0] for t in tallies),
                    "admitted": sum(t[1] for t in tallies),
                    "errors": sum(t[2] for t in tallies),
                    "first_error": next((t[3] for t in tallies if t[3]), ""),
                    "last_end": max((t[4] for t in tallies), default=start),
                    "cpu_s": cpu,
                },
            )
        )
    except BaseException as exc:
        results.put(("error", f"{type(exc).__name__}: {first_line(exc)}"))
        ready.abort()
    finally:
        client.close()


# --- CPU and the verdict -------------------------------------------------------------------


def _cpu_columns(window: CpuWindow, cell: _Cell) -> dict[str, Any]:
    masters = {name: v for name, v in window.servers.items() if name.startswith("master ")}
    replicas = sum(v for name, v in window.servers.items() if name.startswith("replica "))
    clients = sum(window.clients)
    return {
        "cpu_machine": round(window.machine, 2),
        "cpu_clients": round(clients, 2),
        "cpu_busiest_master": round(max(masters.values(), default=0.0), 2),
        "cpu_masters": round(sum(masters.values()), 2),
        "cpu_replicas": round(replicas, 2),
        "cpu_others": round(max(0.0, window.machine - clients - sum(window.servers.values())), 2),
        "cpu_by_master": ", ".join(
            f"{name.removeprefix('master ')} {used:.2f}" for name, used in sorted(masters.items())
        ),
    }


def _saturation(window: CpuWindow, cell: _Cell, tool: str) -> str:
    """What ran out, in words, with the figures behind it (BUSY: the lab's threshold)."""
    columns = _cpu_columns(window, cell)
    found = []
    if window.machine >= BUSY * window.cores:
        found.append(
            f"machine CPU ({window.machine:.2f} of {window.cores} cores: clients "
            f"{columns['cpu_clients']:.2f}, masters {columns['cpu_masters']:.2f}, replicas "
            f"{columns['cpu_replicas']:.2f}, others {columns['cpu_others']:.2f})"
        )
    for name, used in sorted(window.servers.items()):
        if name.startswith("master ") and used >= BUSY:
            found.append(f"redis-server {name} ({used:.2f} cores: its one command thread)")
    if tool == PYTHON:
        busiest = max(window.clients, default=0.0)
        if busiest >= BUSY:
            found.append(
                f"Python client processes ({busiest:.2f} cores in the busiest of "
                f"{len(window.clients)}: its interpreter lock)"
            )
    else:
        each = sum(window.clients) / cell.k
        if each >= BUSY:
            found.append(f"redis-benchmark processes ({each:.2f} cores each: one event loop)")
    return "; ".join(found) or "no CPU saturated: the time went to waiting (round trips)"


def _failed_row(cell: _Cell, tool: str, connections: int, why: str) -> dict[str, Any]:
    return {
        **cell.base_row(tool),
        "connections": connections,
        "decisions_per_s": None,
        "errors": None,
        "note": why or "the tool did not run",
    }


def _with_ratios(frame: pd.DataFrame) -> pd.DataFrame:
    """`over_one_master`: each row's rate over the same tool's rate on one master (None when one
    master was not measured or the tool failed there)."""
    one = {
        row.tool: row.decisions_per_s
        for row in frame.itertuples()
        if row.masters == 1 and row.decisions_per_s
    }
    frame["over_one_master"] = [
        round(rate / one[tool], 3) if tool in one and rate else None
        for tool, rate in zip(frame["tool"], frame["decisions_per_s"], strict=True)
    ]
    return frame.reindex(columns=COLUMNS)
