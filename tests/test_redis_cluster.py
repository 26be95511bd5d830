"""The local Redis Cluster: up (idempotent), down, status, bad input, and every Redis design on it.

The cluster tests run on the cluster named by INVENTORY_LAB_REDIS_CLUSTER_URL (`./lab cluster up`);
the start/stop tests start a cluster of their own on other free ports.
"""

import json
import socket
import uuid

import pytest
from conftest import REAL_REDIS, _missing, wait_until
from redis.cluster import RedisCluster

from inventory_lab import BackendError, Workload, keys, open_lab
from inventory_lab.backends import free_port, redis_client
from inventory_lab.cli import main
from inventory_lab.designs import design_class, design_names
from inventory_lab.errors import InvalidInput
from inventory_lab.experiment import run_experiment
from inventory_lab.redis_cluster import LocalCluster, available, slot_of
from inventory_lab.restock import announce_stock_rose

REDIS_DESIGNS = [name for name in design_names() if design_class(name).uses_redis]
# small, and sold out before the end: refusals, retries and give-backs all happen
SALE = Workload(orders=160, skus=4, stock=12, retries=0.2, max_qty=2, seed=7)


def _cluster_of(url: str) -> LocalCluster:
    return LocalCluster(int(url.split("://", 1)[1].rsplit(":", 1)[1].split("/")[0]))


def _free_base() -> int:
    """A first port of six free ones (and their cluster bus ports), away from 7000-7005."""
    for base in range(7100, 8000, 10):
        ports = [p + d for p in range(base, base + 6) for d in (0, 10000)]
        if all(_free(port) for port in ports):
            return base
    pytest.skip("no six free ports in 7100-8000")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def own_cluster():
    """A LocalCluster on free ports of its own (not started); torn down at the end."""
    if not available():
        _missing("redis-server and redis-cli are not installed")
    cluster = LocalCluster(_free_base(), directory=None)
    yield cluster
    cluster.down()


# --- status, up, down ---------------------------------------------------------------------------


def test_status_shows_three_masters_each_with_one_replica_over_every_slot(cluster_url):
    status = _cluster_of(cluster_url).status()
    assert status.healthy, status.problems
    assert status.state == "ok"
    assert len(status.masters) == 3
    assert all(len(status.replicas_of(master)) == 1 for master in status.masters)
    assert status.slots_served == 16384
    # the master it names for a key is the one the cluster client sends the key to
    client = redis_client(cluster_url)
    try:
        for sku in ("sku-0001", "sku-0002", "sku-0003", "sku-0004"):
            key = keys.stock_key("ilab", sku)
            assert status.master_for_key(key).port == client.get_node_from_key(key).port
    finally:
        client.close()


def test_up_leaves_a_healthy_cluster_alone(cluster_url):
    cluster = _cluster_of(cluster_url)
    before = {node.port: node.node_id for node in cluster.status().nodes}
    after = cluster.up()
    assert after.healthy
    assert {node.port: node.node_id for node in after.nodes} == before  # not rebuilt


def test_cli_shows_and_keeps_the_cluster(cluster_url, capsys):
    port = str(_cluster_of(cluster_url).ports[0])
    assert main(["cluster", "status", "--port", port]) == 0
    assert capsys.readouterr().out.count("master ") == 3
    assert main(["cluster", "up", "--port", port, "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["was_up"] and body["healthy"] and body["url"].startswith("redis+cluster://")
    assert [len(master["replicas"]) for master in body["masters"]] == [1, 1, 1]


def test_up_builds_rebuilds_a_broken_leftover_and_down_removes_everything(own_cluster, capsys):
    status = own_cluster.up()
    assert status.healthy, status.problems
    first = {node.port: node.node_id for node in status.nodes}
    replica = own_cluster.status().replicas_of(status.masters[0])[0].port
    own_cluster.kill(replica)  # a replica: no failover, the cluster stays ok but incomplete
    broken = own_cluster.status()
    assert not broken.healthy
    assert any(str(replica) in problem for problem in broken.problems)
    rebuilt = own_cluster.up()
    assert rebuilt.healthy, rebuilt.problems
    assert not set(first.values()) & {node.node_id for node in rebuilt.nodes}  # new nodes
    assert sorted(own_cluster.down()) == list(own_cluster.ports)
    assert not own_cluster.directory.exists()
    assert own_cluster.status().state == "down"
    assert all(_free(port) for port in own_cluster.ports)
    assert main(["cluster", "status", "--port", str(own_cluster.ports[0])]) == 1
    assert "no node runs" in capsys.readouterr().out


def test_a_taken_port_is_refused_and_changes_nothing(own_cluster, capsys):
    taken = own_cluster.ports[2]
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past a TIME_WAIT
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        with pytest.raises(BackendError, match=f"port\\(s\\) {taken} .*taken by another process"):
            own_cluster.up()
        assert not own_cluster.directory.exists()
        assert own_cluster.status().running == ()
        assert main(["cluster", "up", "--port", str(own_cluster.ports[0])]) == 2
        assert f"{taken}" in capsys.readouterr().err
    assert all(_free(port) for port in own_cluster.ports)


def test_bad_cluster_parameters_are_refused():
    with pytest.raises(InvalidInput, match="base port"):
        LocalCluster(80)
    with pytest.raises(InvalidInput, match="base port"):
        LocalCluster(60000)
    with pytest.raises(InvalidInput, match="node timeout"):
        LocalCluster(7000, node_timeout_ms=0)
    with pytest.raises(InvalidInput, match="not one of this cluster's"):
        LocalCluster(7000).kill(6379)  # never a server outside the cluster's ports
    with pytest.raises(SystemExit) as exited:
        main(["cluster", "sideways"])
    assert exited.value.code == 2


# --- connecting -------------------------------------------------------------------------------


def test_bad_cluster_urls_are_refused_without_showing_the_password(tmp_path):
    with pytest.raises(BackendError, match="database 0 only"):
        redis_client("redis+cluster://127.0.0.1:7000/3")
    with pytest.raises(BackendError, match="database 0 only"):
        redis_client("redis+cluster://127.0.0.1:7000?db=2")
    with pytest.raises(BackendError, match="must be 'fake' or start with") as bad_scheme:
        redis_client("rediscluster://:s3cret@127.0.0.1:7000")
    with pytest.raises(BackendError, match="does not answer") as nobody:
        redis_client(f"redis+cluster://:s3cret@127.0.0.1:{free_port()}")
    for refused in (bad_scheme, nobody):
        assert "s3cret" not in str(refused.value) and "***" in str(refused.value)
    with pytest.raises(BackendError):  # and open_lab creates no SQLite file for it
        open_lab(f"redis+cluster://127.0.0.1:{free_port()}", f"sqlite:///{tmp_path / 'x.db'}")
    assert not (tmp_path / "x.db").exists()


def test_a_plain_redis_is_not_a_cluster():
    if REAL_REDIS is None:
        _missing("no real Redis configured")
    address = REAL_REDIS.split("://", 1)[1].rsplit("@", 1)[-1].split("/")[0]
    with pytest.raises(BackendError, match="Cluster mode is not enabled"):
        redis_client(f"redis+cluster://{address}")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_clear_redis_empties_the_namespace_on_every_master(cluster_lab, cluster_url):
    skus = [f"sku-{i:04d}" for i in range(30)]
    for sku in skus:
        cluster_lab.redis.hset(keys.stock_key(cluster_lab.namespace, sku), "inStock", 1)
    status = _cluster_of(cluster_url).status()
    masters = {status.master_for_key(keys.stock_key(cluster_lab.namespace, s)).port for s in skus}
    assert len(masters) == 3  # the namespace's keys are spread over every master
    other = keys.stock_key(f"x{uuid.uuid4().hex[:8]}", "sku-0001")
    cluster_lab.redis.set(other, "1")
    try:
        assert cluster_lab.clear_redis() == len(skus)
        pattern = keys.namespace_pattern(cluster_lab.namespace)
        found = cluster_lab.redis.scan_iter(match=pattern, target_nodes=RedisCluster.PRIMARIES)
        assert list(found) == []
        assert cluster_lab.redis.get(other) == "1"  # another namespace is left alone
    finally:
        cluster_lab.redis.delete(other)


# --- the designs on the cluster -----------------------------------------------------------------


def _sale(lab, design: str, workload: Workload = SALE, **options):
    experiment = run_experiment(lab, design, workload, concurrency=8, options=options)
    return experiment, experiment.report, experiment.check


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("design", REDIS_DESIGNS)
def test_every_redis_design_keeps_its_invariants_on_the_cluster(cluster_lab, cluster_url, design):
    status = _cluster_of(cluster_url).status()
    homes = {status.master_for_key(keys.stock_key(cluster_lab.namespace, s)).port
             for s in SALE.sku_names()}  # fmt: skip
    assert len(homes) >= 2  # the sale really spans masters
    _, report, check = _sale(cluster_lab, design)
    assert check.ok, check.summary()
    assert (check.oversold, check.double_deducted, check.lost) == (0, 0, 0)
    assert check.converged is True  # Redis's stock equals the database's
    assert report.errors == 0 and report.unknown == 0
    assert report.accepted > 0 and report.sold_out > 0  # the stock ran out


@pytest.mark.parametrize("design", ["two_gate_lua", "task_engine"])
def test_the_recommended_designs_on_the_cluster_with_each_database(cluster_lab, design):
    _, report, check = _sale(cluster_lab, design)
    assert check.ok, check.summary()
    assert report.accepted > 0 and report.errors == 0 and report.unknown == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_checkout_in_one_script_fails_with_crossslot_and_the_per_line_gate_sells(cluster_lab):
    checkouts = Workload(orders=60, skus=4, stock=10, lines=2, retries=0.2, seed=3)
    first = checkouts.attempts()[0].order
    slots = {slot_of(keys.stock_key(cluster_lab.namespace, line.sku)) for line in first.lines}
    assert len(slots) == 2

    experiment, one_script, check = _sale(cluster_lab, "two_gate_lua", checkouts)
    assert one_script.accepted == 0 and one_script.errors == one_script.attempts
    details = set(experiment.records["detail"])
    assert all("Keys in request don't hash to the same slot" in d for d in details), details
    assert check.ok  # refused whole: nothing deducted, nothing lost
    codes = cluster_lab.redis.scan_iter(
        match=f"{cluster_lab.namespace}:*:ar:*", target_nodes=RedisCluster.PRIMARIES
    )
    assert list(codes) == []  # every anti-repeat code was freed for a retry

    _, per_line, check = _sale(cluster_lab, "two_gate_lua", checkouts, per_line_gate=True)
    assert check.ok, check.summary()
    assert check.partial == 0  # every checkout all-or-nothing
    assert per_line.accepted > 0 and per_line.sold_out > 0 and per_line.errors == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_restock_message_reaches_the_local_flags_across_the_cluster(cluster_lab):
    design = design_class("two_gate_local_flag")(cluster_lab)
    try:
        design.setup({"sku-0001": 1})
        design.flags.set("sku-0001")
        announce_stock_rose(cluster_lab, "sku-0001")  # PUBLISH on whichever node
        assert wait_until(lambda: not design.flags.is_set("sku-0001"))
        assert design.flags.cleared >= 1
    finally:
        design.close()
