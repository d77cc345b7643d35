"""What a purge deletes: cache entries only (ours and LiteLLM's), on every backend that can
share its keyspace or directory, never another application's data.

Run on the local and disk backends and on real Redis (one server, a 3-primary cluster, one
server behind the in-memory tier, a Sentinel group, and a user whose ACL forbids scripts).
Other applications' data is written the way they would write it: plain strings through the
backend on local and disk, and with redis-py on Redis, where it also comes as lists, hashes,
sets, sorted sets and streams. Redis judges values in a script (per page, or per hash slot
on a cluster) and, where scripts are refused, this process does: both must give every value
the same verdict. The dry-run count is checked against what the purge then deletes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from llmcache_tui.cache.backends import CacheBackend, ValueShape
from llmcache_tui.cache.backends.disk import DiskBackend
from llmcache_tui.cache.backends.local import LocalBackend
from llmcache_tui.cache.browse import (
    NOT_AN_ENTRY,
    UNREADABLE,
    PurgeEstimate,
    cache_entry_keys,
    count_purge,
    describe_keys,
    describe_shape,
    purge,
)
from llmcache_tui.cache.entry import (
    ENTRY_HEAD_BYTES,
    ENTRY_HEAD_LUA_PATTERNS,
    CacheEntry,
    entry_origin,
)
from tests import redis_servers as rs
from tests.redis_support import (
    build,
    cluster_params,
    scan_all,
    scanned_keys,
    sentinel_params,
    server_params,
)

KINDS = ["local", "disk", "redis", "redis-cluster", "redis+memory"]
RawClient = redis.Redis | redis.RedisCluster
CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
}


def our_entry(text: str = "hi") -> bytes:
    return CacheEntry(
        response={**CHAT, "choices": [{"message": {"content": text}}]},
        route="chat",
        model="gpt-4o-mini",
        prompt_preview="a question",
        created_at=1_764_150_000.0,
    ).encode()


#: Cache entries: ours (one big enough for diskcache to keep in a file), LiteLLM's as its
#: json.dumps writes them and in compact JSON, and one of ours cut short (damaged, but ours).
ENTRIES: dict[str, bytes] = {
    "ours-1": our_entry(),
    "ns:ours-2": our_entry("there"),
    "ns:big": our_entry("x" * 60_000),
    "litellm:a": json.dumps({"timestamp": 1764150000.25, "response": json.dumps(CHAT)}).encode(),
    "ns:litellm-b": orjson.dumps({"timestamp": 5, "response": orjson.dumps(CHAT).decode()}),
    "ns:damaged": our_entry()[:40],
}
#: Other applications' plain values: not JSON, JSON that is no entry, and a large binary.
OTHER_STRINGS: dict[str, bytes] = {
    "myapp:session:1": b"token-abc",
    "ns:config": b'{"user": "ada", "response": "ok"}',
    "myapp:blob": bytes(range(256)) * 200,
}


@dataclass
class Store:
    """A backend under test, plus a raw client on Redis to write other types with."""

    kind: str
    backend: CacheBackend
    raw: Any = None
    #: keys that are not cache entries -> what each holds (None: a plain value)
    others: dict[str, ValueShape | None] = field(default_factory=dict)

    async def seed(self) -> None:
        for key, value in {**ENTRIES, **OTHER_STRINGS}.items():
            await self.backend.set(key, value)
        self.others = dict.fromkeys(OTHER_STRINGS)
        if self.raw is None:
            return
        raw = self.raw
        raw.rpush("myapp:queue", "a", "b", "c")
        raw.hset("myapp:profile", mapping={"name": "ada", "lang": "en"})
        raw.sadd("ns:tags", "x", "y", "z", "w")
        raw.zadd("myapp:scores", {"ada": 1.0})
        raw.xadd("myapp:events", {"kind": "login"})
        self.others |= {
            "myapp:queue": ValueShape("list", 3),
            "myapp:profile": ValueShape("hash", 2),
            "ns:tags": ValueShape("set", 4),
            "myapp:scores": ValueShape("zset", 1),
            "myapp:events": ValueShape("stream", 1),
        }

    async def keys(self, match: str = "*") -> set[str]:
        return set(scanned_keys(await scan_all(self.backend, match, count=100)))


@pytest.fixture(params=KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    kind: str = request.param
    raw: Any = None
    backend: CacheBackend
    if kind == "local":
        backend = LocalBackend()
    elif kind == "disk":
        backend = DiskBackend(tmp_path / "disk-cache")
    elif kind == "redis-cluster":
        cluster: rs.RedisClusterNodes = request.getfixturevalue("redis_cluster")
        backend, raw = build(cluster_params(cluster)), cluster.client()
    else:
        server: rs.RedisProcess = request.getfixturevalue("redis_plain")
        memory = {"default_in_memory_ttl": 60} if kind == "redis+memory" else {}
        backend, raw = build({**server_params(server), **memory}), server.client()
    made = Store(kind, backend, raw)
    await made.seed()
    try:
        yield made
    finally:
        await backend.close()
        if raw is not None:
            raw.close()


def matching(keys: dict[str, Any], prefix: str) -> set[str]:
    return {key for key in keys if key.startswith(prefix)}


async def test_only_cache_entries_are_taken_for_cache_entries(store: Store) -> None:
    keys = sorted(await store.keys())
    assert set(keys) == set(ENTRIES) | set(store.others)
    assert set(await cache_entry_keys(store.backend, keys)) == set(ENTRIES)


async def test_value_heads_read_the_start_of_plain_values_only(store: Store) -> None:
    keys = ["ns:big", "myapp:session:1", "missing", *(k for k, s in store.others.items() if s)]
    heads = await store.backend.value_heads(keys, 12)
    assert heads[:3] == [ENTRIES["ns:big"][:12], b"token-abc", None]
    assert heads[3:] == [None] * (len(keys) - 3)  # lists, hashes...: no plain value


async def test_value_heads_of_many_keys_come_back_in_order(store: Store) -> None:
    keys = [f"many:{n}" for n in range(1_200)]
    for key in keys[::2]:
        await store.backend.set(key, key.encode())
    heads = await store.backend.value_heads(keys, 96)
    assert heads == [key.encode() if n % 2 == 0 else None for n, key in enumerate(keys)]


async def test_purge_of_everything_leaves_other_data_alone(store: Store) -> None:
    estimate = await count_purge(store.backend, "*")
    assert estimate == PurgeEstimate(len(ENTRIES), len(store.others), estimate.scanned, True)

    progress = await purge(store.backend, "*", batch=4)

    assert progress.done
    assert (progress.deleted, progress.skipped) == (len(ENTRIES), len(store.others))
    assert await store.keys() == set(store.others)
    for key, value in OTHER_STRINGS.items():
        assert await store.backend.get(key) == value
    if store.raw is not None:
        assert store.raw.lrange("myapp:queue", 0, -1) == [b"a", b"b", b"c"]
        assert store.raw.hgetall("myapp:profile") == {b"name": b"ada", b"lang": b"en"}
        assert store.raw.scard("ns:tags") == 4
        assert store.raw.xlen("myapp:events") == 1


async def test_purge_of_a_namespace_leaves_its_other_data_alone(store: Store) -> None:
    entries, others = matching(ENTRIES, "ns:"), matching(store.others, "ns:")
    estimate = await count_purge(store.backend, "ns:*")
    assert (estimate.entries, estimate.others, estimate.complete) == (
        len(entries),
        len(others),
        True,
    )

    progress = await purge(store.backend, "ns:*")

    assert (progress.deleted, progress.skipped) == (len(entries), len(others))
    assert await store.keys("ns:*") == others
    assert await store.keys() == (set(ENTRIES) - entries) | set(store.others)


async def test_count_stops_at_its_budget_with_a_lower_bound(store: Store) -> None:
    for n in range(300):
        await store.backend.set(f"bulk:{n}", our_entry(str(n)))
    estimate = await count_purge(store.backend, "bulk:*", budget=50, batch=20)
    assert not estimate.complete
    assert 50 <= estimate.scanned < 300 + len(ENTRIES) + len(store.others)
    assert estimate.entries < 300  # a lower bound: the purge finds them all
    assert (await purge(store.backend, "bulk:*")).deleted == 300


async def test_browser_rows_say_what_is_not_a_cache_entry(store: Store) -> None:
    infos = [info for page in await scan_all(store.backend) for info in page.keys]
    rows = {row.key: row for row in await describe_keys(store.backend, infos)}
    assert set(rows) == set(ENTRIES) | set(store.others)
    assert rows["ours-1"].origin == "llmcache"
    assert rows["litellm:a"].origin == "litellm"
    assert (rows["ns:litellm-b"].origin, rows["ns:litellm-b"].model) == ("litellm", "gpt-4o-mini")
    assert rows["ns:damaged"].origin == UNREADABLE
    assert rows["ns:damaged"].is_entry
    for key, shape in store.others.items():
        row = rows[key]
        assert (row.origin, row.shape, row.is_entry) == (NOT_AN_ENTRY, shape, False), key
    assert rows["myapp:session:1"].size is not None


async def test_redis_keys_of_other_types_are_no_failure(store: Store) -> None:
    if store.raw is None:
        pytest.skip("only Redis holds values that are not plain")
    backend = store.backend
    assert await backend.get("myapp:queue") is None  # WRONGTYPE: not an entry, not an error
    assert backend.errors == 0
    assert await backend.value_shapes(["myapp:queue", "gone"]) == [ValueShape("list", 3), None]
    assert describe_shape(ValueShape("list", 3)) == "list, 3 items"
    assert describe_shape(ValueShape("zset", 1)) == "zset, 1 item"


async def test_a_server_that_refuses_scripts_is_read_with_a_pipeline(
    make_redis_server: Callable[..., rs.RedisProcess],
) -> None:
    """Value heads come from one script call where the server runs scripts; a user whose
    ACL forbids them (as some managed services do) gets the same answers, pipelined."""
    server = make_redis_server()
    with server.client() as raw:
        raw.execute_command("ACL", "SETUSER", "noscripts", "on", ">pw", "~*", "&*", "+@all")
        raw.execute_command("ACL", "SETUSER", "noscripts", "-@scripting")
        for key, value in {**ENTRIES, **OTHER_STRINGS}.items():
            raw.set(key, value)
        raw.rpush("myapp:queue", "a")
        keys = [*ENTRIES, *OTHER_STRINGS, "myapp:queue", "missing"]
        for user in ({}, {"username": "noscripts", "password": "pw"}):
            raw.config_resetstat()
            backend = build({"host": server.host, "port": server.port, **user})
            try:
                assert set(await cache_entry_keys(backend, keys)) == set(ENTRIES), user
                assert (await purge(backend, "ns:*")).deleted == len(matching(ENTRIES, "ns:"))
                assert backend.errors == 0
            finally:
                await backend.close()
            evalsha = raw.info("commandstats")["cmdstat_evalsha"]
            if user:  # refused once, then never asked again
                assert (evalsha["calls"], evalsha["rejected_calls"]) == (0, 1)
            else:
                assert evalsha["calls"] > 0
            for key, value in ENTRIES.items():  # for the next user
                raw.set(key, value)
        assert raw.get("ns:config") == OTHER_STRINGS["ns:config"]


async def test_purge_through_sentinel_keeps_other_data(
    redis_sentinel: rs.RedisSentinelGroup,
) -> None:
    made = Store("redis-sentinel", build(sentinel_params(redis_sentinel)))
    made.raw = redis_sentinel.primary.client()
    try:
        await made.seed()
        progress = await purge(made.backend, "*")
        assert (progress.deleted, progress.skipped) == (len(ENTRIES), len(made.others))
        assert await made.keys() == set(made.others)
    finally:
        await made.backend.close()
        made.raw.close()


#: Values at the edge of the rule, beside ENTRIES and OTHER_STRINGS.
EDGE_VALUES = [
    b"",
    b"42",
    b"{}",
    b' \n{ "v" : 1 , "response" : {} }',
    b'{"v": 2, "response": {}}',
    b'{"v": "1", "response": {}}',
    b'{"response": {}, "v": 1}',
    b'{"timestamp": -1.5e+9, "response": "x"}',
    b'{"timestamp": "today", "response": "{}"}',
    b'{"timestamp":1,"response":',
    b'[{"v":1,"response":{}}]',
    b"\x00\xff" + our_entry(),
    b" " * 90 + b'{"v":1,"response":{}}',  # the test starts past the bytes read: not one
]


async def test_the_server_side_check_agrees_with_the_client_side_one(
    redis_plain: rs.RedisProcess,
) -> None:
    """Redis judges values in a script (Lua patterns), a server that refuses scripts leaves
    it to this process (regexes): every value must get the same verdict from both."""
    backend = build(server_params(redis_plain))
    try:
        values = [*ENTRIES.values(), *OTHER_STRINGS.values(), *EDGE_VALUES]
        with redis_plain.client() as raw:
            for index, value in enumerate(values):
                raw.set(f"v:{index}", value)
        for index, value in enumerate(values):
            swept = await backend.sweep_entries(
                [f"v:{index}"], ENTRY_HEAD_LUA_PATTERNS, ENTRY_HEAD_BYTES, delete=False
            )
            expected = entry_origin(value[:ENTRY_HEAD_BYTES]) is not None
            assert swept == (int(expected), 0), value
    finally:
        await backend.close()


async def test_a_cluster_checks_and_deletes_with_the_script_per_hash_slot(
    redis_cluster: rs.RedisClusterNodes,
) -> None:
    """Keys of one slot (a hash tag) share a script call; nodes that have not loaded the
    script yet (flushed here) get it on the first call that misses it."""
    with redis_cluster.client() as raw:
        primaries = redis.RedisCluster.PRIMARIES
        raw.script_flush()  # on every primary
        tagged = {f"{{tenant-1}}:entry-{n}": our_entry(str(n)) for n in range(20)}
        for key, value in {**ENTRIES, **OTHER_STRINGS, **tagged}.items():
            raw.set(key, value)
        raw.rpush("{tenant-1}:queue", "a")
        raw.config_resetstat(target_nodes=primaries)
        backend = build(cluster_params(redis_cluster))
        try:
            progress = await purge(backend, "*")
        finally:
            await backend.close()
        assert (progress.deleted, progress.skipped) == (len(ENTRIES) + 20, len(OTHER_STRINGS) + 1)
        assert raw.exists(*OTHER_STRINGS, "{tenant-1}:queue") == len(OTHER_STRINGS) + 1
        stats = raw.info("commandstats", target_nodes=primaries).values()
        evalsha = [node.get("cmdstat_evalsha", {}) for node in stats]
        ran = sum(calls.get("calls", 0) - calls.get("failed_calls", 0) for calls in evalsha)
        assert 0 < ran <= 1 + len(ENTRIES) + len(OTHER_STRINGS)  # 30 keys: one call per slot
        assert sum(calls.get("rejected_calls", 0) for calls in evalsha) == 0
        assert sum(calls.get("failed_calls", 0) for calls in evalsha) > 0  # NOSCRIPT: loaded
