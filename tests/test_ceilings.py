"""The servers' own tools as ceilings: a rate where the tool runs, a reason where it cannot."""

import shutil

import pytest
from conftest import _missing

from inventory_lab import schema
from inventory_lab.backends import configured_db_urls, configured_redis_url, sql_dialect
from inventory_lab.bench import bench_session
from inventory_lab.ceilings import (
    PGBENCH_SCRIPT,
    pgbench_tps,
    redis_benchmark_batch_rps,
    redis_benchmark_rps,
)
from inventory_lab.senders import Target, prepare


def test_pgbench_is_for_postgresql_only():
    ceiling = pgbench_tps("mysql+pymysql://root@127.0.0.1/test", "sku-0001", clients=2)
    assert ceiling.rate is None and ceiling.note == "PostgreSQL only"


def test_a_missing_tool_is_a_reason_not_a_crash(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    pg = pgbench_tps("postgresql+psycopg://postgres@127.0.0.1/test", "sku-0001", clients=1)
    assert pg.rate is None and "not installed" in pg.note
    rb = redis_benchmark_rps("redis://127.0.0.1:6379/0", "ns", "sku-0001", clients=1)
    assert rb.rate is None and "not installed" in rb.note


def test_the_pgbench_script_binds_its_variables():
    # -M prepared turns :sku and :client_id into bound parameters: no value is pasted into SQL
    assert ":sku" in PGBENCH_SCRIPT and "'pgb-' || :client_id" in PGBENCH_SCRIPT


def _real(dialect: str) -> str:
    urls = [u for u in configured_db_urls() if sql_dialect(u) == dialect]
    if not urls or shutil.which("pgbench") is None:
        _missing(f"no {dialect} configured, or no pgbench")
    return urls[0]


def test_pgbench_measures_db_only_s_transaction(scratch_databases):
    url = scratch_databases.url_for(_real("postgresql"))
    with bench_session("fake", url) as session:
        prepare(Target("raw_sql"), session.lab, {"sku-0001": 1_000_000})
        ceiling = pgbench_tps(url, "sku-0001", clients=2, seconds=1)
        with session.lab.engine.connect() as conn:
            left = schema.read_stock(conn)["sku-0001"]
    assert ceiling.rate is not None and ceiling.rate > 0, ceiling.note
    assert left < 1_000_000  # the transactions really ran against the lab's row


def test_redis_benchmark_runs_gate_one(bench_namespace):
    url = configured_redis_url()
    if url is None or shutil.which("redis-benchmark") is None:
        _missing("no Redis configured, or no redis-benchmark")
    with bench_session(url, None, namespace=bench_namespace) as session:
        prepare(Target("raw_evalsha"), session.lab, {"sku-0001": 100})
        ceiling = redis_benchmark_rps(url, bench_namespace, "sku-0001", clients=2, requests=500)
        left = int(session.lab.redis.hget(f"{bench_namespace}:{{sku-0001}}:stock", "inStock"))
    assert ceiling.rate is not None and ceiling.rate > 0, ceiling.note
    assert left == 0  # 500 calls took the 100 units: the script really ran on the lab's hash


@pytest.mark.parametrize("how", ["pipelined", "batch"])
def test_redis_benchmark_runs_gate_one_pipelined_and_merged(bench_namespace, how):
    url = configured_redis_url()
    if url is None or shutil.which("redis-benchmark") is None:
        _missing("no Redis configured, or no redis-benchmark")
    with bench_session(url, None, namespace=bench_namespace) as session:
        prepare(Target("raw_evalsha"), session.lab, {"sku-0001": 1_000})
        if how == "pipelined":
            ceiling = redis_benchmark_rps(
                url, bench_namespace, "sku-0001", clients=2, requests=400, pipeline=8
            )
        else:  # 50 calls of 8 orders each
            ceiling = redis_benchmark_batch_rps(
                url, bench_namespace, "sku-0001", clients=2, batch=8, requests=50
            )
        left = int(session.lab.redis.hget(f"{bench_namespace}:{{sku-0001}}:stock", "inStock"))
        codes = sum(1 for _ in session.lab.redis.scan_iter(match=f"{bench_namespace}:*:ar:*"))
    assert ceiling.rate is not None and ceiling.rate > 0, ceiling.note
    # 400 decisions took 400 units (less any random key drawn twice, a duplicate): they ran
    assert 1_000 - left == codes and 390 <= codes <= 400


def test_a_bad_pipeline_or_batch_is_refused():
    with pytest.raises(ValueError):
        redis_benchmark_batch_rps("redis://127.0.0.1:6379/0", "ns", "sku-0001", clients=1, batch=0)
