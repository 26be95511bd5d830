"""How the lab grows: time and peak memory of `inventory-lab run` as orders or SKUs grow.

A harness that holds every record in memory can fall over before the servers do. `run_growth`
runs the CLI's `run` in a child process per size — what a reader would type — and takes the
child's peak resident memory from the kernel: the child reports its own `VmHWM` (the high-water
mark of its memory, not a sample) as it exits. Not `wait4`'s `ru_maxrss`: on Linux that also
counts the memory of the process that started the child, carried over when the child `exec`s.
"""

from __future__ import annotations

import json
import subprocess
import sys
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


PEAK_MARK = "inventory-lab-peak-rss-kb="
# What a measured child runs first: on exit it writes its own high-water mark to stderr.
_REPORT_PEAK = (
    "import atexit, sys\n"
    "def _peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    f"            sys.stderr.write('\\n{PEAK_MARK}' + line.split()[1] + '\\n')\n"
    "atexit.register(_peak)\n"
)


def python_child(code: str, *args: str) -> list[str]:
    """A command running `code` in a fresh interpreter that reports its peak memory on exit."""
    return [sys.executable, "-c", _REPORT_PEAK + code, *args]


def run_child(command: Sequence[str], *, timeout_s: float = 3600.0) -> ChildRun:
    """Run `command`; its wall time and, if it reports one (`python_child`), its peak RSS."""
    start = time.monotonic()
    done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout_s)
    wall = time.monotonic() - start
    peaks = [
        int(line.removeprefix(PEAK_MARK))
        for line in done.stderr.splitlines()
        if line.startswith(PEAK_MARK)
    ]
    stderr = "\n".join(line for line in done.stderr.splitlines() if not line.startswith(PEAK_MARK))
    peak_mb = peaks[-1] / 1024.0 if peaks else float("nan")
    return ChildRun(wall, peak_mb, done.returncode, done.stdout, stderr)


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
    """`inventory-lab run` for one size, printing one JSON report (and its peak memory)."""
    args = ["run", "--design", design, "--orders", str(orders), "--skus", str(skus)]
    args += ["--stock", str(stock), "--skew", "0", "--concurrency", str(concurrency)]
    args += ["--redis", redis_url, "--json"]
    if db_url:
        args += ["--db", db_url]
    code = "import sys\nfrom inventory_lab.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return python_child(code, *args)


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
