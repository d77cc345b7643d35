"""Quick checks of the real-Redis fixtures (tests/redis_servers.py, "Redis servers" in
conftest.py): each kind of server is reachable with its own auth/TLS settings and only
with them, and the cluster, sentinel and restart helpers do what the backend tests rely on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests import redis_servers as rs


def _bare_client(port: int, **kwargs: Any) -> redis.Redis:
    """A client without the server's credentials, failing fast (no retries)."""
    no_retry = Retry(NoBackoff(), 0)
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, retry=no_retry, **kwargs)


def _roundtrip(client: redis.Redis) -> None:
    with client:
        assert client.dbsize() == 0  # the function-scoped fixtures start empty
        assert client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"


# --------------------------------------------------------------------------- single servers


def test_plain_server_from_url(redis_plain: rs.RedisProcess) -> None:
    assert redis_plain.host == "127.0.0.1"
    assert redis_plain.url == f"redis://127.0.0.1:{redis_plain.port}/0"
    _roundtrip(redis.Redis.from_url(redis_plain.url))


def test_password_server_needs_the_quoted_password(redis_password: rs.RedisProcess) -> None:
    assert redis_password.password == "p@ss:w/rd!"
    url = urlsplit(redis_password.url)
    assert (url.hostname, url.port, url.username) == ("127.0.0.1", redis_password.port, "")
    assert url.password == "p%40ss%3Aw%2Frd%21"
    assert unquote(url.password) == redis_password.password
    _roundtrip(redis.Redis.from_url(redis_password.url))
    with pytest.raises(redis.AuthenticationError):
        _bare_client(redis_password.port).ping()


def test_acl_server_lets_in_only_the_acl_user(redis_acl: rs.RedisProcess) -> None:
    assert (redis_acl.username, redis_acl.password) == ("alice", "wonderland")
    assert redis_acl.url == f"redis://alice:wonderland@127.0.0.1:{redis_acl.port}/0"
    _roundtrip(redis_acl.client())
    with pytest.raises(redis.AuthenticationError):
        _bare_client(redis_acl.port, password="wonderland").ping()


def test_tls_server_verifies_with_its_ca_only(redis_tls: rs.RedisProcess) -> None:
    assert redis_tls.url == f"rediss://127.0.0.1:{redis_tls.port}/0"
    _roundtrip(redis.Redis.from_url(redis_tls.url, ssl_ca_certs=str(redis_tls.ca_cert)))
    other = str(redis_tls.other_ca_cert)
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis.Redis.from_url(redis_tls.url, ssl_ca_certs=other, retry=Retry(NoBackoff(), 0)).ping()
    with pytest.raises(redis.ConnectionError):
        _bare_client(redis_tls.port).ping()


def test_restartable_server_comes_back_on_the_same_port(
    redis_restartable: rs.RedisProcess,
) -> None:
    port = redis_restartable.port
    with redis_restartable.client(retry=None) as client:
        client.set("before", "1")
        redis_restartable.stop()
        assert not redis_restartable.is_running
        with pytest.raises(redis.ConnectionError):
            client.get("before")
        redis_restartable.start()
        assert redis_restartable.port == port
        assert client.get("before") is None  # no persistence: a restart starts empty
        assert client.set("after", "2")


# --------------------------------------------------------------------------- cluster


def _keys_on_every_node(cluster: redis.RedisCluster, count: int) -> list[str]:
    """Keys that land on ``count`` different primaries."""
    by_node: dict[str, str] = {}
    for index in range(1000):
        key = f"key-{index}"
        node = cluster.get_node_from_key(key)
        by_node.setdefault(node.name, key)
        if len(by_node) == count:
            break
    return list(by_node.values())


def test_cluster_spreads_keys_over_the_primaries(redis_cluster: rs.RedisClusterNodes) -> None:
    assert redis_cluster.startup_nodes == [
        {"host": "127.0.0.1", "port": port} for port in redis_cluster.ports
    ]
    with redis_cluster.client() as cluster:
        keys = _keys_on_every_node(cluster, len(redis_cluster.ports))
        assert len(keys) == 3
        assert len({cluster.keyslot(key) for key in keys}) == 3
        for key in keys:
            assert cluster.set(key, key)
        assert [cluster.get(key) for key in keys] == [key.encode() for key in keys]
        assert cluster.unlink(*keys) == 3  # multi-key commands are split per slot


def test_cluster_with_a_password(
    make_redis_cluster: Callable[..., rs.RedisClusterNodes],
) -> None:
    token = "ya29.fake-iam-token"
    protected = make_redis_cluster(password=token)
    with protected.client() as cluster:
        assert cluster.set("k", "v")
        assert cluster.get("k") == b"v"
    with pytest.raises(redis.AuthenticationError):
        _bare_client(protected.ports[0]).ping()


async def test_async_cluster_scan_and_unlink_shapes(redis_cluster: rs.RedisClusterNodes) -> None:
    """Pins redis-py's asyncio cluster behaviour the Redis backend relies on."""
    nodes = [
        redis.asyncio.cluster.ClusterNode(n["host"], n["port"]) for n in redis_cluster.startup_nodes
    ]
    cluster = redis.asyncio.RedisCluster(startup_nodes=nodes)
    try:
        keys = [f"scan-{index}" for index in range(30)]
        for key in keys:
            await cluster.set(key, "v")
        found: list[bytes] = []
        for port in redis_cluster.ports:
            node = cluster.get_node(host="127.0.0.1", port=port)
            assert node is not None
            # One node in, still a {node name: next cursor} dict plus a flat key list out
            # (redis-py's annotations say ``tuple[int, list]``: wrong for the cluster client).
            result: Any = await cluster.scan(cursor=0, match="*", count=100, target_nodes=node)
            cursors, batch = result
            assert cursors == {f"127.0.0.1:{port}": 0}
            found += batch
        assert sorted(found) == sorted(key.encode() for key in keys)
        assert await cluster.unlink(*keys) == len(keys)  # keys on different slots
    finally:
        await cluster.aclose()


# --------------------------------------------------------------------------- sentinel


def test_sentinel_master_for_and_failover(redis_sentinel: rs.RedisSentinelGroup) -> None:
    group = redis_sentinel
    assert group.service_name == "mymaster"
    assert group.sentinel_nodes == [["127.0.0.1", port] for port in group.sentinel_ports]
    assert len(group.sentinel_nodes) == 3
    first_primary, first_replica = group.primary_port, group.replica_port
    sentinel = group.sentinel_client()
    master = sentinel.master_for(group.service_name)
    try:
        assert master.set("before", "1")
        group.failover()
        assert (group.primary_port, group.replica_port) == (first_replica, first_primary)
        assert sentinel.discover_master(group.service_name) == ("127.0.0.1", first_replica)
        # redis-py 8.1: the first command on the pooled connection to the demoted primary
        # fails ("The previous master is now a slave", a ConnectionError), retries or not:
        # the retry reconnects to the same address. The next command asks the sentinels.
        with contextlib.suppress(redis.ConnectionError):
            master.set("after", "2")
        assert master.set("after", "2")
        assert master.get("before") == b"1"  # replicated before the failover
        with group.primary.client() as promoted, group.replica.client() as demoted:
            assert promoted.get("after") == b"2"
            assert demoted.info("replication")["role"] == "slave"
    finally:
        master.close()
        for client in sentinel.sentinels:
            client.close()


async def test_sentinel_password_and_primary_outage(
    make_redis_sentinel: Callable[..., rs.RedisSentinelGroup],
) -> None:
    group = make_redis_sentinel(sentinel_password="s3nt!nel")
    host, port = group.sentinel_nodes[0]
    with pytest.raises(redis.AuthenticationError):
        _bare_client(port).ping()

    sentinel = redis.asyncio.sentinel.Sentinel(
        [tuple(node) for node in group.sentinel_nodes],
        sentinel_kwargs={"password": "s3nt!nel"},
        socket_timeout=2,
    )
    master = sentinel.master_for(group.service_name)
    try:
        assert await master.set("k", "v")
        old_primary = group.stop_primary()
        group.wait_for_failover()  # needs the sentinels' votes: sentinel-pass works
        assert group.primary is not old_primary
        assert await sentinel.discover_master(group.service_name) == (host, group.primary_port)
        assert await master.get("k") == b"v"
        assert group.start_primary() is old_primary
        assert group.replica is old_primary
        with old_primary.client() as demoted:
            assert demoted.info("replication")["master_port"] == group.primary_port
    finally:
        await master.aclose()
        for client in sentinel.sentinels:
            await client.aclose()
