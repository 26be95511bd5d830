"""How the lab grows: time and peak memory of `inventory-lab run` as orders or SKUs grow.

A harness that holds every record in memory can fall over before the servers do. `run_growth`
runs the CLI's `run` in a child process per size — exactly what a reader would type — and reads
the child's peak resident memory from the kernel (`wait4`'s rusage: the high-water mark of the
whole process, not a sample), next to its wall time and the checker's verdict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from tqdm import tqdm

from inventory_lab.backends import FAKE_REDIS
from inventory_lab.errors import LabError

GROWTH_KINDS = ("orders", "skus")


@dataclass(frozen=True)
class ChildRun:
    wall_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_child(command: Sequence[str], *, timeout_s: float = 3600.0) -> ChildRun:
    """Run `command`; its wall time and peak RSS (from the kernel, when the child is reaped)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.monotonic()
        child = subprocess.Popen(list(command), stdout=out, stderr=err, text=True)
        deadline = start + timeout_s
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                child.kill()
                pid, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.05)
        wall = time.monotonic() - start
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return ChildRun(wall, usage.ru_maxrss / 1024.0, child.returncode, out.read(), err.read())


def run_command(
    *,
    design: str,
    orders: int,
    skus: int,
    stock: int,
    concurrency: int,
    redis_url: str,
    db_url: str | None,
) -> list[str]:
    """`inventory-lab run` for one size, printing one JSON report."""
    command = [sys.executable, "-m", "inventory_lab", "run", "--design", design]
    command += ["--orders", str(orders), "--skus", str(skus), "--stock", str(stock)]
    command += ["--skew", "0", "--concurrency", str(concurrency), "--redis", redis_url, "--json"]
    if db_url:
        command += ["--db", db_url]
    return command


def run_growth(
    kind: str,
    sizes: Sequence[int],
    *,
    design: str = "two_gate_lua",
    orders: int = 20_000,
    concurrency: int = 16,
    redis_url: str = FAKE_REDIS,
    db_url: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """One `run` per size: `orders` grows (1 SKU, stock 1% of the orders: a flash sale), or
    `skus` grows (`orders` orders spread uniformly, stock that never runs out)."""
    if kind not in GROWTH_KINDS:
        raise LabError(f"growth must be one of {', '.join(GROWTH_KINDS)}")
    rows = []
    for size in tqdm(sizes, desc=f"growth of {kind}", disable=not progress):
        if kind == "orders":
            n, skus, stock = size, 1, max(1, size // 100)
        else:
            n, skus, stock = orders, size, orders
        command = run_command(
            design=design,
            orders=n,
            skus=skus,
            stock=stock,
            concurrency=concurrency,
            redis_url=redis_url,
            db_url=db_url,
        )
        child = run_child(command)
        if child.returncode != 0:
            last = child.stderr.strip().splitlines()[-1:] or [f"exit {child.returncode}"]
            raise LabError(f"inventory-lab run failed at {kind}={size}: {last[0]}")
        report = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append(
            {
                "growth": kind,
                "size": size,
                "orders": n,
                "skus": skus,
                "wall_s": round(child.wall_s, 2),
                "peak_rss_mb": round(child.peak_rss_mb, 1),
                "throughput": report["throughput"],
                "oversold": report["oversold"],
                "lost": report["lost"],
            }
        )
    return pd.DataFrame(rows)
