"""The backend contract on real Redis: one server and a 3-primary cluster.

The portable contract tests of tests/test_backends.py are imported and collected here, where
``harness`` builds the Redis backend from ``cache_params`` (as the proxy does); what differs on
Redis by design (SCAN's COUNT is a hint, MEMORY USAGE counts Redis's overhead) is tested
below against the server's own view: PTTL, DBSIZE, INFO, and which node holds a key.
An "already expired" entry is written with ``SET ... PXAT 1`` (an absolute time in the
past), so no test waits for a TTL to run out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from redis import exceptions as redis_errors

from llmcache_tui.cache.backends.base import CacheBackendError, CacheDataError
from llmcache_tui.cache.backends.redis import RedisBackend
from llmcache_tui.cache.backends.tiered import TieredBackend
from tests import redis_servers as rs
from tests.redis_support import build, cluster_params, scan_all, scanned_keys, server_params
from tests.test_backends import (  # noqa: F401 - collected here, run on Redis by `harness`
    FakeClock,
    Harness,
    test_close_twice_is_safe,
    test_default_ttl_applies,
    test_delete_returns_count,
    test_expire_changes_ttl,
    test_expire_missing_key_is_false,
    test_expire_rejects_non_positive,
    test_expired_entry_is_gone,
    test_get_many_in_order,
    test_get_set_overwrite,
    test_no_ttl_means_no_expiry,
    test_ping,
    test_scan_glob_negation_and_escape,
    test_scan_is_stable_while_keys_are_deleted,
    test_scan_is_stable_while_keys_are_read,
    test_scan_names_only_lists_the_same_keys,
    test_scan_namespace_with_glob_characters,
    test_set_refuses_a_ttl_that_would_never_expire_or_overflow,
    test_stats_entries_and_bytes,
    test_ttl_is_within_bounds,
    test_ttl_missing_key_raises_key_error,
    test_unicode_keys,
)

KINDS = ["redis", "redis-cluster"]
RawClient = redis.Redis | redis.RedisCluster


@dataclass
class RedisHarness(Harness):
    """The Redis backend under test plus a plain redis-py client on the same server(s)."""

    raw: Any = None

    async def put_expired(self, key: str, value: bytes) -> None:
        self.raw.set(key, value, pxat=1)  # expired at the epoch: Redis drops it at once


def _connect(request: pytest.FixtureRequest, kind: str) -> tuple[dict[str, Any], RawClient]:
    if kind == "redis":
        server: rs.RedisProcess = request.getfixturevalue("redis_plain")
        return server_params(server), server.client()
    cluster: rs.RedisClusterNodes = request.getfixturevalue("redis_cluster")
    return cluster_params(cluster), cluster.client()


async def _harness(
    request: pytest.FixtureRequest, extra: dict[str, Any]
) -> AsyncIterator[RedisHarness]:
    params, raw = _connect(request, request.param)
    backend = build({**params, **extra})
    try:
        yield RedisHarness(request.param, backend, FakeClock(), raw=raw)
    finally:
        await backend.close()
        raw.close()


@pytest.fixture(params=KINDS)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[RedisHarness]:
    async for made in _harness(request, {}):
        yield made


@pytest.fixture(params=KINDS)
async def ttl_harness(request: pytest.FixtureRequest) -> AsyncIterator[RedisHarness]:
    """``ttl: 60`` in cache_params: the default expiry of every write."""
    async for made in _harness(request, {"ttl": 60}):
        yield made


def _dbsize(raw: RawClient) -> int:
    if isinstance(raw, redis.RedisCluster):
        return int(raw.dbsize(target_nodes=redis.RedisCluster.PRIMARIES))  # summed
    return int(raw.dbsize())


def _info(raw: RawClient) -> dict[str, Any]:
    info: dict[str, Any] = raw.info("server")
    if "redis_version" not in info:  # a cluster client may answer {node name: info}
        info = next(iter(info.values()))
    return info


def _pttl(harness: RedisHarness, key: str) -> int:
    return int(harness.raw.pttl(key))


# --------------------------------------------------------------------------- values, TTLs


async def test_values_are_redis_strings_sized_by_memory_usage(harness: RedisHarness) -> None:
    backend = harness.backend
    small = bytes(range(256))
    large = bytes(range(256)) * 400
    await backend.set("small", small)
    await backend.set("large", large)
    assert await backend.get("small") == small
    assert harness.raw.get("large") == large  # stored as is: any client reads it
    sizes = {info.key: info.size for page in await scan_all(backend) for info in page.keys}
    for key, value in (("small", small), ("large", large)):
        size = sizes[key]
        assert size is not None
        assert len(value) <= size <= 2 * len(value) + 512  # MEMORY USAGE: value + overhead


async def test_ttls_are_redis_expiries(harness: RedisHarness) -> None:
    backend = harness.backend
    await backend.set("brief", b"v", 100)
    await backend.set("forever", b"v")
    assert 0 < _pttl(harness, "brief") <= 100_000
    assert _pttl(harness, "forever") == -1
    remaining = await backend.ttl("brief")
    assert remaining is not None
    assert 0 < remaining <= 100

    assert await backend.expire("forever", 2.5) is True
    assert 0 < _pttl(harness, "forever") <= 2_500  # milliseconds kept: PEXPIRE
    assert await backend.expire("brief", None) is True  # None: PERSIST
    assert _pttl(harness, "brief") == -1
    assert await backend.ttl("brief") is None
    assert await backend.expire("gone", None) is False
    assert harness.raw.exists("gone") == 0  # checking did not create it
    infos = {info.key: info.ttl for page in await scan_all(backend) for info in page.keys}
    forever_ttl = infos["forever"]
    assert forever_ttl is not None
    assert 0 < forever_ttl <= 2.5
    assert infos["brief"] is None


@pytest.mark.parametrize(
    ("params", "limit_ms"),
    [
        ({"ttl": 600}, 600_000),
        ({"default_in_redis_ttl": 300}, 300_000),
        ({"ttl": 600, "default_in_redis_ttl": 300}, 600_000),  # ttl wins, as in LiteLLM
    ],
)
async def test_ttl_settings_give_every_write_an_expiry(
    redis_plain: rs.RedisProcess, params: dict[str, Any], limit_ms: int
) -> None:
    backend = build({**server_params(redis_plain), **params})
    try:
        await backend.set("default", b"v")
        await backend.set("explicit", b"v", 30)
    finally:
        await backend.close()
    with redis_plain.client() as raw:
        assert limit_ms - 60_000 < raw.pttl("default") <= limit_ms
        assert 0 < raw.pttl("explicit") <= 30_000


# --------------------------------------------------------------------------- scan


async def test_scan_pages_cover_every_key_once_on_every_primary(harness: RedisHarness) -> None:
    backend = harness.backend
    expected = {f"key:{i:03d}" for i in range(90)}
    for key in sorted(expected):
        await backend.set(key, b"v")
    pages = await scan_all(backend, count=10)
    keys = scanned_keys(pages)
    assert len(keys) == len(set(keys)) == len(expected)
    assert set(keys) == expected
    assert pages[0].total == len(expected)  # DBSIZE (summed over the primaries), asked once
    for page in pages:
        assert len(page.keys) <= 20  # SCAN's COUNT is a hint, not a cap: bounded all the same
    assert all(page.total is None for page in pages[1:])
    assert len(pages) >= len(expected) // 20

    if isinstance(harness.raw, redis.RedisCluster):
        # The cursor walks one primary at a time: each page's keys live on a single node,
        # and every primary is visited once, in a row.
        visited: list[str] = []
        for page in pages:
            nodes = {harness.raw.get_node_from_key(info.key).name for info in page.keys}
            assert len(nodes) <= 1
            if nodes and (not visited or visited[-1] not in nodes):
                visited += nodes
        assert sorted(visited) == sorted(node.name for node in harness.raw.get_primaries())
        assert len(visited) == 3


async def test_scanned_counts_what_a_small_scan_examined(harness: RedisHarness) -> None:
    """Each primary's last SCAN call examined only what it returned, not COUNT entries."""
    for key in ("a", "b", "c", "d", "e"):
        await harness.backend.set(key, b"v")
    pages = await scan_all(harness.backend, count=500)
    assert sorted(scanned_keys(pages)) == ["a", "b", "c", "d", "e"]
    assert [page.scanned for page in pages] == [len(page.keys) for page in pages]
    assert len(pages) == (3 if isinstance(harness.raw, redis.RedisCluster) else 1)


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ("*", {"ns:1", "ns:22", "other:1", "a1", "b2", "c3", "ab"}),
        ("ns:*", {"ns:1", "ns:22"}),
        ("ns:?", {"ns:1"}),
        ("[ab]?", {"a1", "b2", "ab"}),
        ("C3", set()),
    ],
)
async def test_scan_glob_is_redis_match(
    harness: RedisHarness, match: str, expected: set[str]
) -> None:
    for key in ("ns:1", "ns:22", "other:1", "a1", "b2", "c3", "ab"):
        await harness.backend.set(key, b"v")
    keys = scanned_keys(await scan_all(harness.backend, match, count=2))
    assert len(keys) == len(set(keys))
    assert set(keys) == expected


async def test_get_many_and_delete_span_slots(harness: RedisHarness) -> None:
    backend = harness.backend
    keys = [f"spread-{i}" for i in range(20)]  # on every primary of the cluster
    for key in keys:
        await backend.set(key, key.encode())
    assert await backend.get_many([*keys, "missing"]) == [k.encode() for k in keys] + [None]
    assert await backend.delete([*keys, "missing"]) == len(keys)
    assert harness.raw.exists(*keys) == 0


# --------------------------------------------------------------------------- failure kinds
# Only an outage (the server or the way to it failing) opens the breaker; an error about
# one command's data must not keep every other request off the cache.


def _redis(backend: Any) -> RedisBackend:
    assert isinstance(backend, RedisBackend)
    assert backend.breaker is not None
    return backend


async def test_a_key_of_another_type_is_a_miss_that_leaves_the_breaker_closed(
    harness: RedisHarness,
) -> None:
    backend = _redis(harness.backend)
    harness.raw.lpush("a-list", "x")  # another application's key, of another type
    harness.raw.set("k", b"v")
    for _ in range(5):
        assert await backend.get("a-list") is None
    assert backend.breaker is not None
    assert not backend.breaker.open
    assert await backend.get("k") == b"v"  # not skipped
    assert backend.errors == 0


async def test_a_full_redis_refuses_writes_but_keeps_serving_reads(
    make_redis_server: Callable[..., rs.RedisProcess],
) -> None:
    server = make_redis_server()
    raw = server.client()
    backend = _redis(build(server_params(server)))
    try:
        await backend.set("kept", b"v")
        raw.config_set("maxmemory", 1)  # noeviction: every write is now OOM
        with pytest.raises(CacheDataError, match="maxmemory"):
            await backend.set("new", b"v")
        assert backend.breaker is not None
        assert not backend.breaker.open
        assert await backend.get("kept") == b"v"
    finally:
        raw.config_set("maxmemory", 0)
        raw.close()
        await backend.close()


async def test_an_unreachable_redis_opens_the_breaker(
    make_redis_server: Callable[..., rs.RedisProcess],
) -> None:
    server = make_redis_server()
    backend = _redis(build(server_params(server)))
    try:
        server.stop()
        with pytest.raises(CacheBackendError) as caught:
            await backend.get("k")
        assert not isinstance(caught.value, CacheDataError)
        assert backend.breaker is not None
        assert backend.breaker.open
    finally:
        await backend.close()


OUTAGES = [
    redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."),
    redis_errors.TimeoutError("Timeout reading from socket"),
    redis_errors.BusyLoadingError("Redis is loading the dataset in memory"),
    redis_errors.AuthenticationError("invalid username-password pair"),
    redis_errors.MaxConnectionsError("Too many connections"),
    redis_errors.ClusterDownError("CLUSTERDOWN The cluster is down"),
    redis_errors.MasterDownError("MASTERDOWN Link with MASTER is down"),
    redis_errors.ReadOnlyError("You can't write against a read only replica."),
    redis_errors.RedisClusterException("Redis Cluster cannot be connected."),
    redis_errors.InvalidResponse("Protocol error, got 'H' as reply type byte"),
    ConnectionResetError(104, "Connection reset by peer"),
    TimeoutError(),
    CacheBackendError("cannot get a GCP access token"),
]
DATA_ERRORS = [
    redis_errors.ResponseError("invalid expire time in 'set' command"),
    redis_errors.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"),
    redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
    redis_errors.NoPermissionError("this user has no permissions to run the 'set' command"),
    redis_errors.DataError("Invalid input of type: 'dict'."),
    OverflowError("int too large to convert"),
    TypeError("unexpected value"),
]


def test_outages_and_data_errors_are_told_apart(redis_plain: rs.RedisProcess) -> None:
    """The classification, error by error, as redis-py raises them."""
    backend = _redis(build(server_params(redis_plain)))  # connects lazily: nothing to close
    assert [backend._outage(exc) for exc in OUTAGES] == [True] * len(OUTAGES)
    assert [backend._outage(exc) for exc in DATA_ERRORS] == [False] * len(DATA_ERRORS)
    wrapped = redis_errors.RedisClusterException("Redis Cluster cannot be connected")
    wrapped.__cause__ = redis_errors.AuthenticationError("WRONGPASS")
    assert backend._outage(wrapped)


# --------------------------------------------------------------------------- stats


async def test_stats_come_from_info_and_dbsize(harness: RedisHarness) -> None:
    backend = harness.backend
    for key in ("a", "b", "c"):
        await backend.set(key, b"x" * 100)
    before = await backend.stats()
    for key in ("a", "b", "c", "nope-1", "nope-2"):
        await backend.get(key)
    after = await backend.stats()

    assert after.entries == 3 == _dbsize(harness.raw)
    assert after.bytes_used is not None
    assert after.bytes_used > 0
    details = after.details
    version = _info(harness.raw)["redis_version"]
    assert details["redis_version"] == version
    assert details["nodes"] == (3 if isinstance(harness.raw, redis.RedisCluster) else 1)
    assert details["keyspace_hits"] - before.details["keyspace_hits"] == 3
    assert details["keyspace_misses"] - before.details["keyspace_misses"] == 2
    assert 0 < details["hit_rate"] <= 1
    assert details["evicted_keys"] == 0
    assert await backend.server_info() == {"redis_version": version}


async def test_a_fresh_backend_can_browse_before_anything_else(harness: RedisHarness) -> None:
    """The terminal app's first calls are stats and scan, not a read or a write."""
    for key in ("x", "y"):
        harness.raw.set(key, b"v")
    assert (await harness.backend.stats()).entries == 2
    assert sorted(scanned_keys(await scan_all(harness.backend))) == ["x", "y"]


# --------------------------------------------------------------------------- memory tier


@pytest.fixture
async def tiered(redis_plain: rs.RedisProcess) -> AsyncIterator[TieredBackend]:
    """``default_in_memory_ttl: 5`` in front of Redis with ``ttl: 600``."""
    backend = build({**server_params(redis_plain), "ttl": 600, "default_in_memory_ttl": 5})
    assert isinstance(backend, TieredBackend)
    assert isinstance(backend.shared, RedisBackend)
    yield backend
    await backend.close()


async def test_memory_tier_writes_both_and_reads_memory_first(
    tiered: TieredBackend, redis_plain: rs.RedisProcess
) -> None:
    with redis_plain.client() as raw:
        await tiered.set("k", b"v")
        assert await tiered.memory.get("k") == b"v"
        assert raw.get("k") == b"v"
        assert 0 < raw.pttl("k") <= 600_000  # Redis keeps the long TTL ...
        memory_ttl = await tiered.memory.ttl("k")
        assert memory_ttl is not None
        assert 0 < memory_ttl <= 5  # ... memory the short one

        raw.delete("k")  # changed behind this process's back
        assert await tiered.get("k") == b"v"  # memory first: the copy answers


async def test_memory_tier_fills_from_redis(
    tiered: TieredBackend, redis_plain: rs.RedisProcess
) -> None:
    with redis_plain.client() as raw:
        raw.set("from-elsewhere", b"v", px=100_000)
        assert await tiered.memory.get("from-elsewhere") is None
        assert await tiered.get("from-elsewhere") == b"v"  # from Redis ...
        assert await tiered.memory.get("from-elsewhere") == b"v"  # ... into memory
        raw.delete("from-elsewhere")
        assert await tiered.get("from-elsewhere") == b"v"


async def test_memory_tier_delete_and_expire_clear_both(
    tiered: TieredBackend, redis_plain: rs.RedisProcess
) -> None:
    with redis_plain.client() as raw:
        await tiered.set("a", b"1")
        await tiered.set("b", b"2")
        assert await tiered.delete(["a", "missing"]) == 1
        assert await tiered.memory.get("a") is None
        assert raw.exists("a") == 0
        assert await tiered.get("a") is None

        assert await tiered.expire("b", None) is True  # memory dropped, Redis persisted
        assert await tiered.memory.get("b") is None
        assert raw.pttl("b") == -1
        assert await tiered.get("b") == b"2"  # refilled from Redis

    stats = await tiered.stats()
    assert stats.entries == 1
    assert stats.details["memory_tier_entries"] == 1
    assert "redis_version" in stats.details
    assert tiered.describe()["default_in_memory_ttl"] == 5
