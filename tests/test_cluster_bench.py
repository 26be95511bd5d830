"""Gate 1 on one, two and three masters: the buckets chosen for k masters lie on exactly k, every
cell runs and reports a rate with its CPU and verdict, and bad input is refused before any load.
Short runs; no rate or ratio is ever asserted."""

import uuid

import pytest

from inventory_lab import keys
from inventory_lab.backends import redis_client
from inventory_lab.cluster_bench import (
    BENCHMARK,
    COLUMNS,
    HOT_SKU,
    PYTHON,
    buckets_on_masters,
    check_masters,
    cluster_status,
    masters_table,
)
from inventory_lab.errors import BackendError, InvalidInput


@pytest.mark.parametrize("k", [1, 2, 3])
def test_the_buckets_chosen_for_k_masters_lie_on_exactly_k_masters(cluster_url, k):
    status = cluster_status(cluster_url)
    chosen = buckets_on_masters(status, HOT_SKU, k)
    assert list(chosen) == [master.port for master in status.masters[:k]]
    homes = [
        status.master_for_key(keys.stock_bucket_key("any-namespace", HOT_SKU, bucket)).port
        for bucket in chosen.values()
    ]
    assert homes == list(chosen) and len(set(homes)) == k


def test_masters_table_measures_both_tools_on_each_count_of_masters(cluster_url):
    namespace = f"t-cluster-bench-{uuid.uuid4().hex[:8]}"
    frame = masters_table(
        cluster_url,
        masters=(1, 2),
        seconds=0.5,
        clients=2,
        processes=1,
        benchmark_clients=4,
        probe_requests=500,
        namespace=namespace,
    )
    assert list(frame.columns) == COLUMNS
    assert list(zip(frame["masters"], frame["tool"], strict=True)) == [
        (1, BENCHMARK),
        (1, PYTHON),
        (2, BENCHMARK),
        (2, PYTHON),
    ]
    assert (frame["decisions_per_s"] > 0).all() and (frame["errors"] == 0).all()
    assert (frame["admitted"] > 0).all() and (frame["admitted"] <= frame["decisions"]).all()
    assert [len(ports.split(",")) for ports in frame["ports"]] == [1, 1, 2, 2]
    assert frame["saturated"].str.len().gt(0).all()
    # every master's CPU is read, the used ones and the idle ones alike
    assert frame["cpu_by_master"].map(lambda text: len(text.split(", "))).eq(3).all()
    # the bucket hashes are gone; only anti-repeat codes are left, and they expire
    client = redis_client(cluster_url)
    try:
        assert not list(client.scan_iter(match=f"{namespace}-*:stock", target_nodes="primaries"))
    finally:
        client.close()


@pytest.mark.parametrize(
    ("masters", "message"),
    [
        ((0,), r"in \[1, 3\]"),
        ((4,), r"in \[1, 3\]"),
        ((1, True), r"in \[1, 3\]"),
        (("1",), r"in \[1, 3\]"),
        ((1, 1), "must not repeat"),
        ((), "non-empty"),
        (2, "non-empty"),
    ],
)
def test_bad_counts_of_masters_are_refused(masters, message):
    with pytest.raises(InvalidInput, match=message):
        check_masters(masters, 3)


def test_the_table_refuses_bad_input_before_any_load(cluster_url):
    with pytest.raises(InvalidInput, match=r"in \[1, 3\].*got 4"):
        masters_table(cluster_url, masters=(1, 4))
    with pytest.raises(InvalidInput, match=r"in \[1, 3\].*got 0"):
        masters_table(cluster_url, masters=(0,))
    with pytest.raises(InvalidInput, match="tools must be among"):
        masters_table(cluster_url, tools=("memtier",))
    with pytest.raises(InvalidInput, match="clients must be a positive integer"):
        masters_table(cluster_url, clients=0)
    with pytest.raises(InvalidInput, match="seconds"):
        masters_table(cluster_url, seconds=0)


def test_a_url_that_is_not_the_labs_cluster_is_refused():
    with pytest.raises(InvalidInput, match="redis\\+cluster://"):
        masters_table("redis://127.0.0.1:6379/14")
    # a port where no node of the lab's cluster runs (another server there is only asked
    # where its files live)
    with pytest.raises(BackendError, match="local cluster"):
        cluster_status("redis+cluster://127.0.0.1:6379")
