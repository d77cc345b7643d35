"""Listing the vector stores page by page, and LiteLLM's own semantic caches in them.

Real parts: qdrant-client's embedded mode in a temporary directory; Redis 8.2 with the
query engine, with Vector Sets only, and a cluster of it. LiteLLM's records are written
with qdrant-client and redis-py from the documented formats (tests/litellm_writers.py).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

pytest.importorskip("qdrant_client")
pytest.importorskip("numpy")

import redis

from llmcache_tui.cache.semantic.litellm_formats import LiteLLMReadOnly
from llmcache_tui.cache.semantic.qdrant_store import QdrantStore
from llmcache_tui.cache.semantic.redis_search_store import RedisSearchStore
from llmcache_tui.cache.semantic.redis_store_base import RedisStoreBase
from llmcache_tui.cache.semantic.redis_stores import open_redis_vector_store
from llmcache_tui.cache.semantic.redis_vset_store import RedisVectorSetStore
from llmcache_tui.cache.semantic.store import (
    LITELLM,
    OURS,
    VectorRecord,
    VectorRecordInfo,
    VectorStore,
    VectorStoreError,
)
from llmcache_tui.cache.semantic.vector_browse import (
    delete_vectors,
    describe_vectors,
    glob_regex,
    purge_vectors,
)
from tests import redis_servers as rs
from tests.litellm_writers import (
    LITELLM_INDEX,
    create_litellm_index,
    write_litellm_qdrant,
    write_litellm_redis,
)
from tests.redis_support import cache_settings, cluster_params, server_params

DIM = 4
T = time.time() + 86_400.0  # a day ahead: Redis expiries set from it are still to come


def record(
    key: str, index: int, *, scope: str = "s", expires: float | None = T + 60
) -> VectorRecord:
    vector = [1.0, float(index), 0.5, 0.0]
    return VectorRecord(
        key=key,
        vector=vector,
        scope=scope,
        text=f"prompt {index}",
        created_at=T - index,
        expires_at=expires,
    )


async def list_all(store: VectorStore, limit: int) -> tuple[list[VectorRecordInfo], int]:
    """Every record, page by page; and how many pages it took."""
    found: list[VectorRecordInfo] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await store.records(cursor, limit)
        pages += 1
        found += page.records
        cursor = page.cursor
        if cursor is None:
            return found, pages
        assert pages < 100


# --------------------------------------------------------------------------- Qdrant


@pytest.fixture
async def qdrant(tmp_path: Path) -> AsyncIterator[Callable[..., QdrantStore]]:
    made: list[QdrantStore] = []

    def make(collection: str = "llmcache") -> QdrantStore:
        store = QdrantStore(DIM, path=tmp_path / "qdrant", collection=collection)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


async def test_qdrant_lists_its_records_in_bounded_pages(
    qdrant: Callable[..., QdrantStore],
) -> None:
    store = qdrant()
    assert (await store.records(None, 10)).records == []  # no collection yet
    for i in range(7):
        await store.add(record(f"ns:k{i}", i, expires=None if i == 0 else T + i))

    first = await store.records(None, 3)
    assert len(first.records) == 3 and first.cursor is not None and first.total == 7
    found, pages = await list_all(store, 3)

    assert pages == 3
    assert sorted(r.key for r in found) == [f"ns:k{i}" for i in range(7)]
    by_key = {r.key: r for r in found}
    assert by_key["ns:k2"] == VectorRecordInfo(
        key="ns:k2", text="prompt 2", created_at=T - 2, expires_at=T + 2, scope="s"
    )
    assert by_key["ns:k0"].expires_at is None
    assert all(r.origin == OURS for r in found)


async def test_a_litellm_collection_is_listed_searched_unscoped_and_never_written(
    tmp_path: Path, qdrant: Callable[..., QdrantStore]
) -> None:
    ids = write_litellm_qdrant(
        tmp_path / "qdrant",
        "litellm_collection",
        [
            ("What is the capital of Sweden?", "{'answer': 'Stockholm'}", [1.0, 0.0, 0.0, 0.0]),
            ("How do I enable SSL?", "{'answer': 'verify=True'}", [0.0, 1.0, 0.0, 0.0]),
        ],
    )
    store = qdrant("litellm_collection")

    found, _ = await list_all(store, 10)
    assert {r.key for r in found} == set(ids)
    assert all(r.origin == LITELLM and r.expires_at is None for r in found)
    sweden = next(r for r in found if r.text.startswith("What"))
    assert sweden.response == "{'answer': 'Stockholm'}"

    # The probe's unscoped search finds them; a scoped one (the proxy's) never does.
    near = await store.search([0.9, 0.1, 0.0, 0.0], None, limit=5, now=T)
    assert [n.key for n in near] == [sweden.key, *(i for i in ids if i != sweden.key)]
    assert near[0].origin == LITELLM and near[0].response == "{'answer': 'Stockholm'}"
    assert await store.search([0.9, 0.1, 0.0, 0.0], "s", limit=5, now=T) == []

    with pytest.raises(VectorStoreError, match="LiteLLM's semantic cache"):
        await store.add(record("k", 1))
    assert "LiteLLM's semantic cache" in (await store.health()).details["format"]

    with pytest.raises(LiteLLMReadOnly, match="--allow-litellm-writes"):
        await delete_vectors(store, None, [sweden])
    assert len((await store.records(None, 10)).records) == 2

    removed = await delete_vectors(store, None, [sweden], allow_litellm=True)
    assert removed.foreign == 1
    assert [r.key for r in (await store.records(None, 10)).records] == [
        i for i in ids if i != sweden.key
    ]


async def test_purging_vectors_takes_only_the_matching_ones(
    qdrant: Callable[..., QdrantStore],
) -> None:
    store = qdrant()
    for i in range(5):
        await store.add(record(f"{'a' if i < 3 else 'b'}:k{i}", i))

    progress = await purge_vectors(store, None, "a:*")

    assert progress.done and progress.deleted.vectors == 3
    assert sorted(r.key for r in (await store.records(None, 10)).records) == ["b:k3", "b:k4"]


def test_the_glob_reads_like_redis_match() -> None:
    assert glob_regex("team-a:*").fullmatch("team-a:abc")
    assert not glob_regex("team-a:*").fullmatch("team-b:abc")
    assert glob_regex(r"a\*b").fullmatch("a*b") and not glob_regex(r"a\*b").fullmatch("axb")
    assert glob_regex("k[0-2]").fullmatch("k1") and not glob_regex("k[^0-2]").fullmatch("k1")
    assert not glob_regex("[]").fullmatch("")


async def test_rows_read_the_model_from_the_exact_entry(
    qdrant: Callable[..., QdrantStore], tmp_path: Path
) -> None:
    from llmcache_tui.cache.backends.local import LocalBackend
    from llmcache_tui.cache.entry import CacheEntry

    backend = LocalBackend()
    entry = CacheEntry({"choices": []}, "chat", "gpt-4o-mini", "prompt 1", created_at=T)
    await backend.set("ns:k1", entry.encode(), None)
    store = qdrant()
    await store.add(record("ns:k1", 1))
    await store.add(record("ns:k2", 2))

    rows = {
        row.key: row
        for row in await describe_vectors(backend, (await store.records(None, 10)).records)
    }

    assert rows["ns:k1"].model == "gpt-4o-mini" and rows["ns:k1"].entry_exists
    assert rows["ns:k2"].entry_exists is False and rows["ns:k2"].namespace == "ns"

    # Deleting a row takes its entry and its vector.
    deleted = await delete_vectors(store, backend, [rows["ns:k1"].record, rows["ns:k2"].record])
    assert (deleted.entries, deleted.vectors) == (1, 2)
    assert await backend.get("ns:k1") is None
    assert (await store.records(None, 10)).records == []


# --------------------------------------------------------------------------- Redis

KINDS = ["search", "vectorset", "vectorset-cluster"]


@pytest.fixture(params=KINDS)
async def redis_store(request: pytest.FixtureRequest) -> AsyncIterator[RedisStoreBase]:
    kind = request.param
    if kind == "search":
        params = server_params(request.getfixturevalue("redis8_search"))
    elif kind == "vectorset":
        params = server_params(request.getfixturevalue("redis8_vectorset"))
    else:
        params = cluster_params(request.getfixturevalue("redis8_cluster"))
    from llmcache_tui.cache.backends.redis_options import redis_options

    options = redis_options(cache_settings(params), env={})
    cls = RedisSearchStore if kind == "search" else RedisVectorSetStore
    store: RedisStoreBase = cls(options, DIM)
    yield store
    await store.close()


async def test_redis_stores_list_their_records_page_by_page(redis_store: RedisStoreBase) -> None:
    for i in range(9):
        scope = "s" if i % 2 else "t"
        await redis_store.add(record(f"ns:k{i}", i, scope=scope, expires=None if i == 0 else T + i))
    # Another program's key under the prefix is no record.
    await redis_store.redis.run(lambda: redis_store.client.set(f"{redis_store.prefix}x", "1"))

    found, _ = await list_all(redis_store, 2)

    assert sorted(r.key for r in found) == [f"ns:k{i}" for i in range(9)]
    by_key = {r.key: r for r in found}
    assert by_key["ns:k3"].scope == "s" and by_key["ns:k4"].scope == "t"
    assert by_key["ns:k3"].text == "prompt 3"
    assert by_key["ns:k3"].created_at == pytest.approx(T - 3, abs=0.01)
    assert by_key["ns:k3"].expires_at == pytest.approx(T + 3, abs=0.01)
    assert by_key["ns:k0"].expires_at is None

    await redis_store.delete(["ns:k3"])
    found, _ = await list_all(redis_store, 100)
    assert "ns:k3" not in {r.key for r in found} and len(found) == 8


@pytest.fixture
def litellm_redis(redis8_search: rs.RedisProcess) -> redis.Redis:
    client = redis.Redis(port=redis8_search.port, decode_responses=False)
    create_litellm_index(client, DIM)
    yield client
    client.close()


async def test_a_redisvl_index_of_litellm_is_recognised_listed_and_read_only(
    redis8_search: rs.RedisProcess, litellm_redis: redis.Redis
) -> None:
    sweden = write_litellm_redis(
        litellm_redis, "What is the capital of Sweden?", {"answer": "Stockholm"},
        [1.0, 0.0, 0.0, 0.0], ttl=3600, metadata={"team": "a"},
    )  # fmt: skip
    old = write_litellm_redis(
        litellm_redis, "How do I enable SSL?", "verify=True", [0.0, 1.0, 0.0, 0.0], cache_key=None
    )
    # Another RedisVL index whose name starts the same is not listed as this one's.
    litellm_redis.hset(f"{LITELLM_INDEX}_isolated:abc", mapping={"prompt": "x"})
    from llmcache_tui.cache.backends.redis_options import redis_options

    options = redis_options(cache_settings(server_params(redis8_search)), env={})
    store = open_redis_vector_store(options, DIM, index_name=LITELLM_INDEX)
    try:
        found, _ = await list_all(store, 10)
        assert {r.key for r in found} == {sweden, old}
        by_key = {r.key: r for r in found}
        assert all(r.origin == LITELLM for r in found)
        assert by_key[sweden].text == "What is the capital of Sweden?"
        assert by_key[sweden].response == "{'answer': 'Stockholm'}"
        assert by_key[sweden].details["litellm_cache_key"] == "litellm-key-1"
        assert by_key[old].details["litellm_cache_key"] is None
        expires = by_key[sweden].expires_at
        assert expires is not None and time.time() < expires <= time.time() + 3600
        assert by_key[old].expires_at is None

        near = await store.search([0.9, 0.1, 0.0, 0.0], None, limit=5, now=time.time())
        assert [n.key for n in near] == [sweden, old]
        assert near[0].origin == LITELLM and near[0].similarity == pytest.approx(0.9939, abs=1e-3)
        assert await store.search([0.9, 0.1, 0.0, 0.0], "s", limit=5, now=time.time()) == []

        with pytest.raises(VectorStoreError, match="LiteLLM's semantic cache"):
            await store.add(record("k", 1))
        health = await store.health()
        assert health.ready and "LiteLLM's semantic cache" in health.details["format"]
        with pytest.raises(LiteLLMReadOnly):
            await delete_vectors(store, None, [by_key[old]])
        assert litellm_redis.exists(old)

        removed = await delete_vectors(store, None, [by_key[old]], allow_litellm=True)
        assert removed.foreign == 1 and not litellm_redis.exists(old)
        # Never a key outside the index's own, whatever is asked.
        assert await store.delete_foreign([f"{LITELLM_INDEX}_isolated:abc"]) == 0
        assert litellm_redis.exists(f"{LITELLM_INDEX}_isolated:abc")
    finally:
        await store.close()


async def test_a_litellm_record_lists_the_same_through_the_session_rows(
    redis8_search: rs.RedisProcess, litellm_redis: redis.Redis
) -> None:
    key = write_litellm_redis(litellm_redis, "hello", "hi", [0.0, 0.0, 1.0, 0.0])
    from llmcache_tui.cache.backends.redis_options import redis_options

    options = redis_options(cache_settings(server_params(redis8_search)), env={})
    store = RedisSearchStore(options, DIM, index_name=LITELLM_INDEX)
    try:
        rows = await describe_vectors(None, (await store.records(None, 10)).records)
        assert [(row.key, row.namespace, row.entry_exists) for row in rows] == [(key, None, None)]
    finally:
        await store.close()


def test_a_litellm_neighbour_is_never_a_candidate_whatever_the_threshold() -> None:
    from llmcache_tui.cache.semantic.probe import (
        LITELLM_UNSCOPED,
        ProbeDecision,
        ProbeReport,
        ProbeRow,
    )
    from llmcache_tui.cache.semantic.scope import SemanticQuery

    row = ProbeRow(
        key="3f2c0c5e-0000-4000-8000-000000000000",
        similarity=0.93,
        text="What is the capital of Sweden?",
        in_scope=False,
        verdict=None,
        created_at=float("nan"),
        expires_at=None,
        entry="unservable",
        origin=LITELLM,
    )
    report = ProbeReport(
        key="k",
        body={},
        query=SemanticQuery(text="capital of sweden?", scope="s"),
        threshold=0.8,
        candidates=4,
        exact=None,
        rows=(row,),
        decision=ProbeDecision("miss", ""),
    )

    at_08 = report.with_threshold(0.8)
    assert at_08.rows[0].verdict_text().startswith(LITELLM_UNSCOPED)
    assert "LiteLLM would match it" in at_08.rows[0].verdict_text()
    assert at_08.decision.outcome == "miss"
    assert "1 near LiteLLM entries, unscoped" in at_08.decision.reason
    at_095 = report.with_threshold(0.95)
    assert "below the threshold for LiteLLM too" in at_095.rows[0].verdict_text()
    assert at_095.rows[0].namespace is None and at_095.rows[0].age(T) is None
