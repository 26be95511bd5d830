import os

import pytest

from inventory_lab import BackendError, open_lab
from inventory_lab.backends import (
    configured_db_urls,
    configured_redis_url,
    mask_url,
    redis_client,
    sql_dialect,
)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        (
            "postgresql+psycopg://bob:s3cret@db:5432/test",
            "postgresql+psycopg://bob:***@db:5432/test",
        ),
        ("mysql+pymysql://root:pw@127.0.0.1/test", "mysql+pymysql://root:***@127.0.0.1/test"),
        ("postgresql+psycopg://bob@db/test", "postgresql+psycopg://bob@db/test"),
        ("postgresql+psycopg://u:Pw0#S/E?C@R@db:1/x", "postgresql+psycopg://u:***@db:1/x"),
        ("redis://127.0.0.1:1/0\n", "redis://127.0.0.1:1/0\\n"),
        ("fake", "fake"),
        ("sqlite:///tmp/x.sqlite", "sqlite:///tmp/x.sqlite"),
    ],
)
def test_passwords_are_masked(url, masked):
    assert mask_url(url) == masked


def test_an_unparseable_url_is_not_echoed():
    assert "s3cret" not in mask_url("redis://u:s3cret@host:notaport/0")


@pytest.mark.parametrize(
    ("url", "dialect"),
    [
        ("sqlite:///x.sqlite", "sqlite"),
        ("postgresql+psycopg://u@h/db", "postgresql"),
        ("mysql+pymysql://u@h/db", "mysql"),
    ],
)
def test_supported_sql_urls(url, dialect):
    assert sql_dialect(url) == dialect


@pytest.mark.parametrize("url", ["oracle://u@h/db", "postgresql://u@h/db", "not a url", ""])
def test_unsupported_sql_urls_are_refused(url):
    with pytest.raises(BackendError):
        sql_dialect(url)


@pytest.mark.parametrize("url", ["http://localhost:6379", "localhost:6379", "memcached://x"])
def test_bad_redis_urls_are_refused(url):
    with pytest.raises(BackendError, match="Redis URL"):
        redis_client(url)


def test_unreachable_servers_give_a_masked_error(tmp_path):
    with pytest.raises(BackendError, match="does not answer") as caught:
        open_lab("redis://:hunter2@127.0.0.1:1/0", f"sqlite:///{tmp_path / 'x.sqlite'}")
    assert "hunter2" not in str(caught.value) and "***" in str(caught.value)
    with pytest.raises(BackendError, match="does not answer") as caught:
        open_lab("fake", "postgresql+psycopg://bob:hunter2@127.0.0.1:1/test")
    assert "hunter2" not in str(caught.value)


def test_fake_clients_of_one_name_share_a_server_and_other_names_do_not():
    first, second = redis_client("fake://shared-a"), redis_client("fake://shared-a")
    other = redis_client("fake://shared-b")
    first.set("k", "v")
    assert second.get("k") == "v"
    assert other.get("k") is None


def test_fake_redis_runs_lua():
    client = redis_client("fake://lua")
    assert client.eval("return redis.call('INCRBY', KEYS[1], ARGV[1])", 1, "n", 3) == 3


def test_bad_namespace_is_refused(tmp_path):
    with pytest.raises(BackendError, match="namespace"):
        open_lab("fake", f"sqlite:///{tmp_path / 'x.sqlite'}", namespace="a*b")


def test_the_lab_clears_only_its_own_namespace(redis_lab):
    redis_lab.redis.set(f"{redis_lab.namespace}:x", 1)
    redis_lab.redis.set(f"other-{redis_lab.namespace}:x", 1)
    try:
        assert redis_lab.clear_redis() == 1
        assert redis_lab.redis.get(f"other-{redis_lab.namespace}:x") == "1"
    finally:
        redis_lab.redis.delete(f"other-{redis_lab.namespace}:x")


def test_the_default_database_is_a_file_of_this_process_removed_on_close():
    lab = open_lab()
    path = lab.scratch_file
    assert path is not None and str(os.getpid()) in path.name and path.exists()
    lab.close()
    assert not path.exists()


def test_real_servers_are_named_by_environment_variables(monkeypatch):
    monkeypatch.setenv("INVENTORY_LAB_REDIS_URL", " redis://h:1/0 ")
    monkeypatch.setenv("INVENTORY_LAB_DB_URLS", "sqlite:///a.sqlite, mysql+pymysql://u@h/db,")
    assert configured_redis_url() == "redis://h:1/0"
    assert configured_db_urls() == ["sqlite:///a.sqlite", "mysql+pymysql://u@h/db"]
    monkeypatch.delenv("INVENTORY_LAB_REDIS_URL")
    monkeypatch.delenv("INVENTORY_LAB_DB_URLS")
    assert configured_redis_url() is None and configured_db_urls() == []


def test_the_served_fakeredis_answers_without_nagle_s_delay():
    """Each accepted connection has TCP_NODELAY, as redis-server's have: a reply written in
    pieces must not wait for the client's delayed ACK."""
    import socket

    from inventory_lab.backends import _no_delay_server, free_port

    port = free_port()
    server = _no_delay_server()(("127.0.0.1", port), server_type="redis")
    try:
        with socket.create_connection(("127.0.0.1", port)):
            conn, _address = server.get_request()
            with conn:
                assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        server.server_close()


def test_hooked_connections_patch_every_connection_and_leave_nothing_behind():
    from inventory_lab.backends import hooked_connections, redis_client

    client = redis_client("fake://hooked")
    sent: list[bytes] = []

    def hook(conn):
        send = conn.send_packed_command

        def counting(command, *args, **kwargs):
            sent.append(command)
            return send(command, *args, **kwargs)

        conn.send_packed_command = counting

    with hooked_connections(client, hook):
        client.set("k", "1")
        with hooked_connections(client, lambda conn: sent.append(b"inner")):
            client.get("k")  # the pool's connection is the outer hook's: left to it
        pipe = client.pipeline(transaction=False)
        pipe.get("k")
        pipe.get("k")
        pipe.execute()  # one request, one send
    assert len(sent) == 3 and b"inner" not in sent
    client.get("k")  # outside the block: not counted, and the pool is its own again
    assert len(sent) == 3
    assert "get_connection" not in vars(client.connection_pool)
    client.close()
