"""The Redis vector stores of the redis-semantic cache, against real servers.

``RedisSearchStore`` runs on Redis 8.2 with RediSearch loaded, ``RedisVectorSetStore`` on
Redis 8.2 with Vector Sets only and on a cluster of it; detection and the "neither" error
also run on Debian's Redis 7 (``redis_plain``). Times are explicit ``now`` values a long
way ahead of the clock (records also get a real Redis expiry), so nothing sleeps.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from llmcache_tui.cache.backends.redis import RedisBackend
from llmcache_tui.cache.backends.redis_options import RedisOptions, redis_options
from llmcache_tui.cache.semantic.redis_search_store import RedisSearchStore
from llmcache_tui.cache.semantic.redis_store_base import RedisStoreBase
from llmcache_tui.cache.semantic.redis_stores import (
    AutoRedisVectorStore,
    detect_redis_vector_support,
    open_redis_vector_store,
)
from llmcache_tui.cache.semantic.redis_vset_store import RedisVectorSetStore
from llmcache_tui.cache.semantic.store import (
    VectorDimensionError,
    VectorRecord,
    VectorStoreError,
    VectorStoreUnsupported,
)
from tests import redis_servers as rs
from tests.ports import free_port
from tests.redis_support import assert_no_password, cache_settings, cluster_params, server_params

DIM = 16
SCOPE = "a" * 64
OTHER_SCOPE = "b" * 64
#: "now" for the tests: a day ahead, so the Redis expiries set from it are real ones that
#: have not happened yet while a test runs.
T = time.time() + 86_400.0
#: Q8 quantisation moves a cosine by about 0.001; the query engine keeps float32.
TOLERANCE = 0.01
#: The query engine returns its numeric fields to 12 significant digits (10 ms for a time).
TIME_TOLERANCE = 0.01

StoreFactory = Callable[..., RedisStoreBase]


def options_for(params: dict[str, Any]) -> RedisOptions:
    """Client options from ``cache_params``, as the config layer resolves them."""
    return redis_options(cache_settings(params), env={})


def unit(rng: np.random.Generator) -> np.ndarray:
    vector = rng.normal(size=DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def near(vector: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """A vector about ``noise`` away from ``vector`` (for a cosine close to 1)."""
    other = vector + noise * unit(rng)
    return (other / np.linalg.norm(other)).astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def record(key: str, vector: Any, scope: str = SCOPE, **kwargs: Any) -> VectorRecord:
    kwargs.setdefault("created_at", T - 100)
    kwargs.setdefault("expires_at", T + 3600)
    kwargs.setdefault("text", f"text of {key}")
    return VectorRecord(key=key, vector=vector, scope=scope, **kwargs)


# --------------------------------------------------------------------------- fixtures

KINDS = ["search", "vectorset", "vectorset-cluster"]


@pytest.fixture(params=KINDS)
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """``make_store(dimension=DIM, **kwargs)``: a store of this run's kind on its server
    (emptied once per test); every store made is closed at teardown."""
    kind = request.param
    if kind == "search":
        params = server_params(request.getfixturevalue("redis8_search"))
    elif kind == "vectorset":
        params = server_params(request.getfixturevalue("redis8_vectorset"))
    else:
        params = cluster_params(request.getfixturevalue("redis8_cluster"))
    stores: list[RedisStoreBase] = []

    def make(dimension: int = DIM, **kwargs: Any) -> RedisStoreBase:
        options = options_for({**params, **kwargs.pop("params", {})})
        cls = RedisSearchStore if kind == "search" else RedisVectorSetStore
        store: RedisStoreBase = cls(options, dimension, **kwargs)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> RedisStoreBase:
    return make_store()


# --------------------------------------------------------------------------- search


async def test_round_trip_gives_cosine_similarity_best_first(store: RedisStoreBase) -> None:
    rng = np.random.default_rng(7)
    query = unit(rng)
    vectors = {f"k{i}": near(query, rng, 0.1 * i) for i in range(30)}
    for key, vector in vectors.items():
        await store.add(record(key, vector))
    await store.add(record("forever", near(query, rng, 5.0), expires_at=None, text="für immer"))

    found = await store.search(query, SCOPE, limit=40, now=T)

    assert len(found) == 31
    assert [n.similarity for n in found] == sorted((n.similarity for n in found), reverse=True)
    assert found[0].key == "k0" and found[0].similarity == pytest.approx(1.0, abs=TOLERANCE)
    for neighbour in found:
        if neighbour.key == "forever":
            assert (neighbour.text, neighbour.expires_at) == ("für immer", None)
            continue
        expected = cosine(query, vectors[neighbour.key])
        assert neighbour.similarity == pytest.approx(expected, abs=TOLERANCE)
        assert neighbour.text == f"text of {neighbour.key}"
        assert neighbour.created_at == pytest.approx(T - 100, abs=TIME_TOLERANCE)
        assert neighbour.expires_at == pytest.approx(T + 3600, abs=TIME_TOLERANCE)
    top = await store.search(query.tolist(), SCOPE, limit=3, now=T)  # a list works as well
    assert [n.key for n in top] == ["k0", "k1", "k2"]


async def test_a_closer_vector_of_another_scope_is_never_returned(store: RedisStoreBase) -> None:
    rng = np.random.default_rng(1)
    query = unit(rng)
    await store.add(record("other", query, scope=OTHER_SCOPE))
    await store.add(record("mine", near(query, rng, 1.0)))

    assert [n.key for n in await store.search(query, SCOPE, limit=5, now=T)] == ["mine"]
    assert [n.key for n in await store.search(query, OTHER_SCOPE, limit=5, now=T)] == ["other"]
    assert await store.search(query, "c" * 64, limit=5, now=T) == []


async def test_scopes_with_query_syntax_in_them_match_only_themselves(
    store: RedisStoreBase,
) -> None:
    rng = np.random.default_rng(14)
    query = unit(rng)
    odd = "tenant-1:model/gpt 4o|{x}*"
    await store.add(record("odd", query, scope=odd))
    await store.add(record("prefix", query, scope="tenant-1"))

    assert [n.key for n in await store.search(query, odd, limit=3, now=T)] == ["odd"]
    assert [n.key for n in await store.search(query, "tenant-1", limit=3, now=T)] == ["prefix"]
    assert await store.delete(["odd"]) == 1


async def test_expired_records_are_filtered_before_ranking(store: RedisStoreBase) -> None:
    rng = np.random.default_rng(2)
    query = unit(rng)
    # Twenty near copies of the query expire first: a filter applied after taking the
    # nearest three would return nothing.
    for i in range(20):
        await store.add(record(f"soon{i}", near(query, rng, 0.01), expires_at=T + 10))
    for i in range(5):
        await store.add(record(f"later{i}", near(query, rng, 1.5), expires_at=T + 1000))
    await store.add(record("never", near(query, rng, 2.0), expires_at=None))

    before = await store.search(query, SCOPE, limit=3, now=T)
    assert all(n.key.startswith("soon") for n in before)
    after = await store.search(query, SCOPE, limit=3, now=T + 10)  # expiry is not "fresh"
    assert len(after) == 3 and not any(n.key.startswith("soon") for n in after)
    much_later = await store.search(query, SCOPE, limit=10, now=T + 5000)
    assert [n.key for n in much_later] == ["never"]


async def test_created_after_keeps_only_records_created_then_or_later(
    store: RedisStoreBase,
) -> None:
    rng = np.random.default_rng(3)
    query = unit(rng)
    await store.add(record("old", query, created_at=T - 500))
    await store.add(record("edge", near(query, rng, 0.5), created_at=T - 100))
    await store.add(record("new", near(query, rng, 1.0), created_at=T - 10))

    found = await store.search(query, SCOPE, limit=5, now=T, created_after=T - 100)

    assert sorted(n.key for n in found) == ["edge", "new"]


async def test_adding_a_key_again_replaces_its_record(store: RedisStoreBase) -> None:
    rng = np.random.default_rng(4)
    first, second = unit(rng), unit(rng)
    await store.add(record("k", first, text="first"))
    await store.add(record("k", second, text="second", expires_at=None))

    found = await store.search(second, SCOPE, limit=5, now=T)
    assert [(n.key, n.text, n.expires_at) for n in found] == [("k", "second", None)]
    assert found[0].similarity == pytest.approx(1.0, abs=TOLERANCE)

    await store.add(record("k", second, scope=OTHER_SCOPE, text="moved"))
    assert await store.search(second, SCOPE, limit=5, now=T) == []
    moved = await store.search(second, OTHER_SCOPE, limit=5, now=T)
    assert [(n.key, n.text) for n in moved] == [("k", "moved")]


async def test_delete_removes_by_entry_key_and_counts_what_existed(
    store: RedisStoreBase,
) -> None:
    rng = np.random.default_rng(5)
    query = unit(rng)
    await store.add(record("a", query))
    await store.add(record("b", near(query, rng, 0.5), scope=OTHER_SCOPE))
    await store.add(record("c", near(query, rng, 0.5)))

    assert await store.delete(["a", "b", "missing"]) == 2
    assert await store.delete([]) == 0
    assert [n.key for n in await store.search(query, SCOPE, limit=5, now=T)] == ["c"]
    assert await store.search(query, OTHER_SCOPE, limit=5, now=T) == []
    assert await store.delete(["a"]) == 0


async def test_sweep_removes_what_expired_at_now(store: RedisStoreBase) -> None:
    rng = np.random.default_rng(6)
    query = unit(rng)
    for i in range(3):
        await store.add(record(f"gone{i}", near(query, rng, 0.1), expires_at=T + 10))
    await store.add(record("gone-elsewhere", query, scope=OTHER_SCOPE, expires_at=T + 20))
    await store.add(record("stays", near(query, rng, 0.5), expires_at=T + 1000))
    await store.add(record("forever", near(query, rng, 0.5), expires_at=None))

    assert await store.sweep(T) == 0
    assert await store.sweep(T + 100) == 4
    assert await store.sweep(T + 100) == 0
    # Searched as of before their expiry, the swept records are gone for good.
    found = await store.search(query, SCOPE, limit=10, now=T)
    assert sorted(n.key for n in found) == ["forever", "stays"]
    assert await store.search(query, OTHER_SCOPE, limit=10, now=T) == []


async def test_a_sweep_removes_a_bounded_number_and_the_next_goes_on(
    store: RedisStoreBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmcache_tui.cache.semantic import redis_search_store, redis_vset_store

    monkeypatch.setattr(redis_search_store, "SWEEP_BATCH", 5)
    monkeypatch.setattr(redis_vset_store, "SWEEP_BATCH", 5)
    rng = np.random.default_rng(13)
    scopes = [SCOPE, OTHER_SCOPE, "c" * 64]
    for i in range(12):
        await store.add(record(f"k{i}", unit(rng), scope=scopes[i % 3], expires_at=T + i))

    swept = [await store.sweep(T + 100) for _ in range(4)]

    assert all(n <= 5 for n in swept) and sum(swept) == 12 and swept[-1] == 0


async def test_a_store_of_another_dimension_is_refused(make_store: StoreFactory) -> None:
    rng = np.random.default_rng(8)
    first = make_store()
    await first.add(record("k", unit(rng)))
    other = make_store(dimension=DIM * 2)
    wide = np.ones(DIM * 2, dtype=np.float32)

    with pytest.raises(VectorDimensionError, match=f"dimension {DIM}"):
        await other.add(record("w", wide))
    with pytest.raises(VectorDimensionError):
        await other.search(wide, SCOPE, limit=3, now=T)
    health = await other.health()
    assert health.reachable and not health.ready
    assert health.dimension == DIM and f"dimension {DIM}" in (health.problem or "")
    with pytest.raises(VectorDimensionError, match="3 values"):
        await first.add(record("short", [1.0, 0.0, 0.0]))


async def test_health_reports_readiness_count_and_location(make_store: StoreFactory) -> None:
    store = make_store()
    fresh = await store.health()
    assert (fresh.kind, fresh.reachable, fresh.ready, fresh.problem) == (
        store.kind,
        True,
        False,
        None,
    )
    assert "127.0.0.1:" in fresh.location
    rng = np.random.default_rng(9)
    for i in range(7):
        await store.add(record(f"k{i}", unit(rng), scope=SCOPE if i % 2 else OTHER_SCOPE))

    health = await store.health()

    assert (health.reachable, health.ready, health.dimension, health.vectors) == (
        True,
        True,
        DIM,
        7,
    )
    assert health.details["redis_version"].startswith("8.")
    assert any("exact cache" in limit for limit in health.limits)
    if store.kind == "redis-vectorset":
        assert any("sweep" in limit for limit in health.limits)


# --------------------------------------------------------------------------- one server kind


async def test_the_query_engine_store_recreates_a_dropped_index(
    redis8_search: rs.RedisProcess,
) -> None:
    store = RedisSearchStore(options_for(server_params(redis8_search)), DIM)
    rng = np.random.default_rng(10)
    vector = unit(rng)
    try:
        await store.add(record("k", vector))
        redis8_search.flushall()  # drops the index with the data
        assert await store.search(vector, SCOPE, limit=3, now=T) == []
        await store.add(record("k", vector))
        assert [n.key for n in await store.search(vector, SCOPE, limit=3, now=T)] == ["k"]
    finally:
        await store.close()


@pytest.mark.parametrize("kind", ["search", "vectorset"])
async def test_replies_are_read_in_resp2_as_well(kind: str, request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue(f"redis8_{kind}")
    options = options_for({**server_params(server), "protocol": 2})
    cls = RedisSearchStore if kind == "search" else RedisVectorSetStore
    store = cls(options, DIM)
    rng = np.random.default_rng(11)
    query = unit(rng)
    try:
        other = near(query, rng, 0.5)
        await store.add(record("k", query, expires_at=None))
        await store.add(record("j", other))
        found = await store.search(query, SCOPE, limit=5, now=T)
        assert [(n.key, n.expires_at) for n in found] == [
            ("k", None),
            ("j", pytest.approx(T + 3600, abs=TIME_TOLERANCE)),
        ]
        assert found[1].similarity == pytest.approx(cosine(query, other), abs=TOLERANCE)
        assert (await store.health()).vectors == 2
        assert await store.sweep(T + 7200) == 1
    finally:
        await store.close()


async def test_a_store_shares_a_backend_connection_without_closing_it(
    redis8_vectorset: rs.RedisProcess,
) -> None:
    backend = RedisBackend(options_for(server_params(redis8_vectorset)))
    store = RedisVectorSetStore(backend, DIM)
    await store.add(record("k", np.ones(DIM, dtype=np.float32)))
    await store.close()
    assert await backend.ping()  # still open: the backend's owner closes it
    await backend.close()


# --------------------------------------------------------------------------- detection


async def test_detection_names_what_each_server_has(
    redis8_search: rs.RedisProcess,
    redis8_vectorset: rs.RedisProcess,
    redis_plain: rs.RedisProcess,
    redis8_cluster: rs.RedisClusterNodes,
    redis8_search_cluster: rs.RedisClusterNodes,
) -> None:
    expected = [
        (server_params(redis8_search), "search"),
        (server_params(redis8_vectorset), "vectorset"),
        (server_params(redis_plain), None),
        (cluster_params(redis8_cluster), "vectorset"),
        # RediSearch without its coordinator would search one shard: vector sets instead.
        (cluster_params(redis8_search_cluster), "vectorset"),
    ]
    with redis8_search_cluster.nodes[0].probe() as node:
        assert node.execute_command("COMMAND INFO", "FT.SEARCH")[0] is not None
    for params, support in expected:
        backend = RedisBackend(options_for(params))
        try:
            assert await detect_redis_vector_support(backend.client) == support, params
        finally:
            await backend.close()


@pytest.mark.parametrize(
    ("server", "kind"), [("redis8_search", "redis-search"), ("redis8_vectorset", "redis-vectorset")]
)
async def test_the_opened_store_is_the_one_the_server_supports(
    server: str, kind: str, request: pytest.FixtureRequest
) -> None:
    params = server_params(request.getfixturevalue(server))
    store = open_redis_vector_store(options_for(params), DIM, index_name="my_index")
    assert store.store is None  # nothing asked yet
    rng = np.random.default_rng(12)
    vector = unit(rng)
    try:
        await store.add(record("k", vector))
        assert [n.key for n in await store.search(vector, SCOPE, limit=2, now=T)] == ["k"]
        assert store.store is not None and store.store.kind == kind
        health = await store.health()
        assert (health.kind, health.ready, health.vectors) == (kind, True, 1)
        assert store.describe()["store"] == kind
        assert await store.delete(["k"]) == 1
        assert await store.sweep(T) == 0
    finally:
        await store.close()


async def test_old_redis_gets_a_clear_unsupported_error(redis_plain: rs.RedisProcess) -> None:
    store = open_redis_vector_store(options_for(server_params(redis_plain)), DIM)
    version = redis_plain.client().info("server")["redis_version"]
    try:
        with pytest.raises(VectorStoreUnsupported) as caught:
            await store.search([0.0] * DIM, SCOPE, limit=3, now=T)
        message = str(caught.value)
        assert f"this Redis ({version})" in message
        assert "neither the query engine" in message and "nor Vector Sets (Redis 8)" in message
        assert "the exact cache still works" in message
        with pytest.raises(VectorStoreUnsupported):  # remembered, not asked again
            await store.add(record("k", [1.0] * DIM))
        health = await store.health()
        assert (health.reachable, health.ready) == (True, False)
        assert health.problem == message
    finally:
        await store.close()


async def test_an_unreachable_server_is_a_store_error_and_unhealthy() -> None:
    options = options_for({"host": "127.0.0.1", "port": free_port(), "password": rs.PASSWORD})
    for store in (
        RedisSearchStore(options, DIM),
        RedisVectorSetStore(options, DIM),
        AutoRedisVectorStore(options, DIM),
    ):
        try:
            with pytest.raises(VectorStoreError) as caught:
                await store.search([1.0] * DIM, SCOPE, limit=3, now=T)
            health = await store.health()
            assert (health.reachable, health.ready) == (False, False)
            assert health.problem and "cannot connect" in health.problem
            assert_no_password(str(caught.value), health.problem, health.location)
            assert_no_password(repr(store.describe()))
        finally:
            await store.close()


async def test_errors_and_health_never_show_the_password(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    try:
        binary = rs.redis8_binary()
    except rs.ServerUnavailable as exc:
        pytest.skip(str(exc))
    server = rs.redis_server(
        tmp_path_factory.mktemp("redis8-password"), password=rs.PASSWORD, executable=binary
    ).start()
    try:
        url = {"url": server.url}
        good = open_redis_vector_store(options_for(url), DIM)
        await good.add(record("k", [1.0] * DIM))
        health = await good.health()
        assert health.ready
        assert_no_password(health.location, repr(health.details), repr(good.describe()))
        await good.close()

        wrong = {"host": server.host, "port": server.port, "password": "not-" + rs.PASSWORD}
        bad = RedisVectorSetStore(options_for(wrong), DIM)
        with pytest.raises(VectorStoreError, match="authentication failed") as caught:
            await bad.search([1.0] * DIM, SCOPE, limit=1, now=T)
        assert_no_password(str(caught.value))
        assert "not-" not in str(caught.value)
        await bad.close()
    finally:
        server.stop()


def test_construction_checks_its_arguments() -> None:
    options = options_for({"host": "127.0.0.1", "port": 1})
    with pytest.raises(ValueError):
        RedisSearchStore(options, 0)
    with pytest.raises(ValueError):
        RedisSearchStore(options, DIM, index_name="")
    with pytest.raises(ValueError):
        RedisVectorSetStore(options, DIM, quantization="Q4")  # type: ignore[arg-type]
    assert RedisSearchStore(options, DIM, index_name="idx").prefix == "idx:"


# --------------------------------------------------------------------------- unscoped


async def test_the_unscoped_search_ranks_every_scope_with_its_parts(
    store: RedisStoreBase,
) -> None:
    rng = np.random.default_rng(21)
    query = unit(rng)
    await store.add(record("near", near(query, rng, 0.1), parts='{"d":{"model":"1"}}'))
    await store.add(record("elsewhere", query, scope=OTHER_SCOPE, parts='{"d":{"model":"2"}}'))
    await store.add(record("old", near(query, rng, 0.3), scope="c" * 64))  # no parts kept
    await store.add(record("expired", query, scope="d" * 64, expires_at=T - 1))

    found = await store.search_everywhere(query, limit=10, now=T)

    assert [n.key for n in found.neighbours] == ["elsewhere", "near", "old"]
    assert [n.parts for n in found.neighbours] == [
        '{"d":{"model":"2"}}',
        '{"d":{"model":"1"}}',
        None,
    ]
    assert found.cut_short is None
    assert [n.key for n in await store.search(query, None, limit=2, now=T)] == ["elsewhere", "near"]
    # The scoped search (a request's) reads no parts where it need not.
    scoped = await store.search(query, SCOPE, limit=5, now=T)
    assert [n.key for n in scoped] == ["near"]


async def test_the_vector_set_unscoped_search_is_bounded_and_says_so(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store()
    if not isinstance(store, RedisVectorSetStore):
        pytest.skip("the query engine ranks every scope in one search")
    from llmcache_tui.cache.semantic import redis_vset_store

    rng = np.random.default_rng(22)
    query = unit(rng)
    for i in range(5):
        await store.add(record(f"k{i}", near(query, rng, 0.1 * i), scope=f"{i}" * 64))
    monkeypatch.setattr(redis_vset_store, "UNSCOPED_SETS", 3)

    found = await store.search_everywhere(query, limit=10, now=T)

    assert len(found.neighbours) == 3  # one set each, of three
    assert found.cut_short is not None and "searched 3 scopes' sets only" in found.cut_short
    monkeypatch.setattr(redis_vset_store, "UNSCOPED_SETS", 5)
    everything = await store.search_everywhere(query, limit=10, now=T)
    assert [n.key for n in everything.neighbours] == [f"k{i}" for i in range(5)]
    assert everything.cut_short is None
