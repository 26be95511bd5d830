"""The servers' own benchmark tools, run in the same session as the lab's load: the ceilings
no Python client reaches.

- `pgbench_tps`: `db_only`'s transaction (anti-repeat INSERT, conditional UPDATE of one row,
  ledger INSERT) as a pgbench custom script, prepared statements, N clients, for a few seconds.
- `redis_benchmark_rps`: the gate-1 script by EVALSHA from redis-benchmark's C clients, a fresh
  random anti-repeat key per call, optionally pipelined (-P);
- `redis_benchmark_batch_rps`: the merged gate-1 script (`two_gate_merged`'s), N orders per call:
  what merging buys on the server, in decisions per second.

Both need their tool (Debian: `postgresql-contrib` ships pgbench with the server,
`redis-tools` ships redis-benchmark); where it is missing the ceiling is None with the reason.
Passwords go to the tools through their environment variables (PGPASSWORD, REDISCLI_AUTH),
never on a command line another user could read.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from inventory_lab import keys
from inventory_lab.backends import first_line
from inventory_lab.designs.two_gate import DEFAULT_TTL_MS

# $1.. are bound by pgbench (-M prepared): :sku and :client_id are never pasted into the text.
PGBENCH_SCRIPT = """\\set code random(1, 9000000000000000)
BEGIN;
INSERT INTO anti_repeat (code) VALUES ('pgb-' || :client_id || '-' || :code);
UPDATE stock SET num = num - 1 WHERE sku = :sku AND num - 1 >= 0;
INSERT INTO orders (order_id, sku, qty, design) VALUES ('pgb-' || :code, :sku, 1, 'pgbench');
COMMIT;
"""


@dataclass(frozen=True)
class Ceiling:
    tool: str
    clients: int
    rate: float | None  # per second; None when the tool could not run
    note: str = ""


def pgbench_tps(db_url: str, sku: str, *, clients: int, seconds: int = 5) -> Ceiling:
    """pgbench running db_only's transaction on one row (`sku`) with `clients` connections.

    The row must hold enough stock for the run (a refused UPDATE still commits the rest).
    """
    url = make_url(db_url)
    if not url.drivername.startswith("postgresql"):
        return Ceiling("pgbench", clients, None, "PostgreSQL only")
    tool = shutil.which("pgbench")
    if tool is None:
        return Ceiling("pgbench", clients, None, "pgbench not installed (postgresql-contrib)")
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "db_only.sql"
        script.write_text(PGBENCH_SCRIPT)
        command = [
            tool,
            "-n",  # no vacuum of pgbench's own tables: there are none
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            str(min(clients, os.cpu_count() or 1)),
            "-T",
            str(seconds),
            "-D",
            f"sku={sku}",
            "-f",
            str(script),
            "-h",
            url.host or "127.0.0.1",
            "-p",
            str(url.port or 5432),
            "-U",
            url.username or "postgres",
            url.database or "postgres",
        ]
        env = dict(os.environ)
        if url.password:
            env["PGPASSWORD"] = url.password
        return _run(command, env, "pgbench", clients, r"tps = ([0-9.]+) \(without initial")


def redis_benchmark_rps(
    redis_url: str,
    namespace: str,
    sku: str,
    *,
    clients: int,
    requests: int = 100_000,
    pipeline: int = 1,
) -> Ceiling:
    """redis-benchmark calling the gate-1 script on `sku`'s stock hash: one order per call,
    `pipeline` calls in flight per connection (-P). The rate is calls (= decisions) per second."""
    code_key = keys.anti_repeat_key(namespace, "rb-__rand_int__", sku)
    args = ["2", code_key, keys.stock_key(namespace, sku), "1", str(DEFAULT_TTL_MS)]
    tool = "redis-benchmark" if pipeline == 1 else f"redis-benchmark -P {pipeline}"
    return _redis_benchmark(
        redis_url, "gate1", args, tool, clients=clients, requests=requests, pipeline=pipeline
    )


def redis_benchmark_batch_rps(
    redis_url: str,
    namespace: str,
    sku: str,
    *,
    clients: int,
    batch: int,
    requests: int = 20_000,
) -> Ceiling:
    """redis-benchmark calling the merged gate-1 script (`gate1_batch.lua`) with `batch` orders
    per call, each with an anti-repeat key of its own. The rate is *decisions* per second (calls
    per second × `batch`), to set beside `redis_benchmark_rps`'s."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    codes = [keys.anti_repeat_key(namespace, f"rb-{i}-__rand_int__", sku) for i in range(batch)]
    args = [
        str(1 + batch),
        keys.stock_key(namespace, sku),
        *codes,
        str(DEFAULT_TTL_MS),
        *(["1"] * batch),
    ]
    calls = _redis_benchmark(
        redis_url,
        "gate1_batch",
        args,
        f"redis-benchmark batch {batch}",
        clients=clients,
        requests=requests,
    )
    if calls.rate is None:
        return calls
    return Ceiling(calls.tool, clients, calls.rate * batch, f"{calls.rate:,.0f} calls/s")


def _redis_benchmark(
    redis_url: str,
    script: str,
    args: list[str],
    tool_label: str,
    *,
    clients: int,
    requests: int,
    pipeline: int = 1,
) -> Ceiling:
    """redis-benchmark running EVALSHA of the lab's `script` (loaded first) with `args`.

    __rand_int__ is redis-benchmark's: each occurrence in a key becomes a fresh random number
    per call (-r: from 10^9 values), so every call's anti-repeat keys are new."""
    if not redis_url.startswith("redis://"):
        return Ceiling(tool_label, clients, None, "needs a redis:// server")
    tool = shutil.which("redis-benchmark")
    if tool is None:
        return Ceiling(tool_label, clients, None, "redis-benchmark not installed")
    if isinstance(pipeline, bool) or not isinstance(pipeline, int) or pipeline < 1:
        raise ValueError(f"pipeline must be a positive integer, got {pipeline!r}")
    import redis as redis_py

    from inventory_lab.scripts import lua_source

    client = redis_py.Redis.from_url(redis_url)
    try:
        sha = client.script_load(lua_source(script))
        db = client.connection_pool.connection_kwargs.get("db", 0)
    finally:
        client.close()
    url = make_url(redis_url.replace("redis://", "redis+x://", 1))
    command = [
        tool,
        "-h",
        url.host or "127.0.0.1",
        "-p",
        str(url.port or 6379),
        "--dbnum",
        str(db),
        "-c",
        str(clients),
        "-n",
        str(requests),
        "-r",
        "1000000000",
        "-P",
        str(pipeline),
        "--csv",
        "EVALSHA",
        sha,
        *args,
    ]
    env = dict(os.environ)
    if url.password:
        env["REDISCLI_AUTH"] = url.password
    return _run(command, env, tool_label, clients, r'^"EVALSHA[^"]*","([0-9.]+)"')


def _run(command: list[str], env: dict[str, str], tool: str, clients: int, pattern: str) -> Ceiling:
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Ceiling(tool, clients, None, first_line(exc))
    match = re.search(pattern, done.stdout, re.M)
    if done.returncode != 0 or match is None:
        why = (done.stderr or done.stdout).strip().splitlines()
        return Ceiling(tool, clients, None, why[-1] if why else f"exit {done.returncode}")
    return Ceiling(tool, clients, float(match.group(1)))
