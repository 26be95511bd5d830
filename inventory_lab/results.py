"""Runs kept for analysis: one row per experiment in a DuckDB file, read back as pandas.

The default file is data/runs.duckdb in the working tree (ignored by git); reference results that
notebooks read are committed separately under data/ with the command that made them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from inventory_lab.experiment import RunReport

DEFAULT_PATH = Path("data") / "runs.duckdb"

_COLUMNS: dict[str, str] = {
    "started_at": "VARCHAR",
    "design": "VARCHAR",
    "redis": "VARCHAR",
    "db": "VARCHAR",
    "machine": "VARCHAR",
    "orders": "INTEGER",
    "skus": "INTEGER",
    "stock": "INTEGER",
    "skew": "DOUBLE",
    "retries": "DOUBLE",
    "seed": "INTEGER",
    "concurrency": "INTEGER",
    "attempts": "INTEGER",
    "accepted": "INTEGER",
    "sold_out": "INTEGER",
    "duplicates": "INTEGER",
    "rejected": "INTEGER",
    "throttled": "INTEGER",
    "errors": "INTEGER",
    "unknown": "INTEGER",
    "oversold": "INTEGER",
    "double_deducted": "INTEGER",
    "lost": "INTEGER",
    "unaccounted": "INTEGER",
    "converged": "BOOLEAN",
    "elapsed_s": "DOUBLE",
    "throughput": "DOUBLE",
    "p50_ms": "DOUBLE",
    "p99_ms": "DOUBLE",
    "report": "JSON",
}


def _row(report: RunReport) -> list[Any]:
    data = report.to_dict()
    flat = {**data, **data["workload"]}
    flat["p50_ms"] = data["latency_ms"]["p50"]
    flat["p99_ms"] = data["latency_ms"]["p99"]
    flat["report"] = json.dumps(data)
    return [flat[name] for name in _COLUMNS]


def save_run(report: RunReport, path: str | Path = DEFAULT_PATH) -> Path:
    """Append one run to the DuckDB file (created with its table on first use)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ", ".join(f"{name} {kind}" for name, kind in _COLUMNS.items())
    names = ", ".join(_COLUMNS)
    placeholders = ", ".join("?" for _ in _COLUMNS)
    # Column names and types are the constants above, never input.
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE TABLE IF NOT EXISTS runs ({columns})")
        for name, kind in _COLUMNS.items():  # a file made by an older lab gains new columns
            con.execute(f"ALTER TABLE runs ADD COLUMN IF NOT EXISTS {name} {kind}")
        con.execute(f"INSERT INTO runs ({names}) VALUES ({placeholders})", _row(report))
    return path


def load_runs(path: str | Path = DEFAULT_PATH, sql: str = "SELECT * FROM runs") -> pd.DataFrame:
    """The stored runs as a DataFrame; `sql` may be any query over the `runs` table."""
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).df()


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as dicts for a JSON file, a missing value as None (JSON has no NaN)."""
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
