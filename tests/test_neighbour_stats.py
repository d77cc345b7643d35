"""Nearest-neighbour similarity statistics (``cache/semantic/neighbour_stats.py``).

Each store a user can configure (embedded Qdrant in a temporary directory, Redis 8 with
the query engine, Redis 8 with Vector Sets only) holding hand-made vectors whose cosine
similarities are known; the tier never embeds (its store's dimension is given).
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("numpy")
pytest.importorskip("qdrant_client")

from llmcache_tui.cache.backends.redis import RedisBackend
from llmcache_tui.cache.backends.redis_options import redis_options
from llmcache_tui.cache.semantic.neighbour_stats import (
    NeighbourStats,
    namespace_of,
    neighbour_stats,
)
from llmcache_tui.cache.semantic.qdrant_store import QdrantStore
from llmcache_tui.cache.semantic.redis_stores import open_redis_vector_store
from llmcache_tui.cache.semantic.store import VectorRecord, VectorStore
from llmcache_tui.cache.semantic.tier import SemanticTier
from llmcache_tui.cache.semantic.vector_mirror import VectorMirror
from tests import redis_servers as rs
from tests.redis_support import cache_settings, server_params

NOW = 1_790_000_000.0


class GivenDimension:
    """The tier's embedder where nothing is embedded: vectors are written directly."""

    name = "none"
    dimension = 3

    async def embed(self, texts: list[str]) -> Any:
        raise AssertionError("statistics must not embed anything")

    async def aclose(self) -> None:
        return None


def at(similarity: float) -> list[float]:
    """A unit vector whose cosine with (1, 0, 0) is ``similarity``."""
    return [similarity, math.sqrt(1 - similarity**2), 0.0]


def record(key: str, vector: list[float], scope: str, expires_at: float | None = None) -> Any:
    return VectorRecord(key, vector, scope, key, created_at=NOW - 60, expires_at=expires_at)


@pytest.fixture(params=["qdrant", "redis-search", "redis-vectorset"])
async def tier(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SemanticTier]:
    redis: RedisBackend | None = None
    store: VectorStore
    if request.param == "qdrant":
        store = QdrantStore(3, path=tmp_path / "qdrant")
    else:
        server: rs.RedisProcess = request.getfixturevalue(
            "redis8_search" if request.param == "redis-search" else "redis8_vectorset"
        )
        redis = RedisBackend(redis_options(cache_settings(server_params(server)), env={}))
        store = open_redis_vector_store(redis, 3)
    tier = SemanticTier(
        GivenDimension(),  # type: ignore[arg-type]
        lambda dimension: store,
        clock=lambda: NOW,
        sweep_interval=0,
    )
    yield tier
    await tier.aclose()
    if redis is not None:
        await redis.close()


async def add(tier: SemanticTier, *records: VectorRecord) -> None:
    store = await tier.open_store()
    for item in records:
        await store.add(item)


async def test_each_vector_gets_its_nearest_neighbour_in_its_scope(tier: SemanticTier) -> None:
    await add(
        tier,
        record("team:a", [1.0, 0.0, 0.0], "s1"),
        record("team:b", at(0.9), "s1"),
        record("team:c", at(0.6), "s1"),
        record("team:d", [0.0, 0.0, 1.0], "s2"),  # alone in its scope
        record("team:e", [1.0, 0.0, 0.0], "s3"),  # identical to a, but another scope
        record("other:f", at(0.99), "s1"),  # another namespace, same scope: a neighbour
        record("team:g", at(0.95), "s4", expires_at=NOW - 1),  # expired: not counted
    )
    stats = await neighbour_stats(tier, "team")
    assert stats.matched == 5 and stats.complete
    assert stats.alone == 2  # d and e
    # a's nearest is f (0.99), b's is f too (0.952), c's is b (0.889).
    # (Vector Sets quantise to int8 by default: a cosine moves by under 0.01.)
    assert sorted(stats.similarities) == pytest.approx([0.889, 0.952, 0.99], abs=0.01)
    assert stats.sampled == 5
    assert (stats.at_or_above(0.95), stats.below(0.95)) == (2, 1)
    assert (stats.at_or_above(0.5), stats.below(0.5)) == (3, 0)

    # No namespace: bare keys only.
    assert (await neighbour_stats(tier, None)).matched == 0


async def test_the_sample_is_bounded(tier: SemanticTier) -> None:
    await add(tier, *(record(f"n:{i}", at(0.5 + i / 100), "s") for i in range(30)))
    stats = await neighbour_stats(tier, "n", limit=10)
    assert stats.matched == 30
    assert stats.sampled == 10
    assert stats.alone == 0  # every one still searched against its whole scope


async def test_an_empty_store_has_no_statistics(tier: SemanticTier) -> None:
    stats = await neighbour_stats(tier, "team")
    assert (stats.sampled, stats.matched, stats.similarities) == (0, 0, ())


def test_histogram_bins() -> None:
    stats = NeighbourStats("x", (0.1, 0.5, 0.549, 0.55, 0.8, 0.999, 1.0), 1, 8, True)
    counts = stats.histogram()
    assert len(counts) == 11
    assert counts[0] == 1  # below 0.5
    assert counts[1] == 2  # [0.50, 0.55)
    assert counts[2] == 1
    assert counts[7] == 1  # [0.80, 0.85)
    assert counts[10] == 2  # [0.95, 1.0]
    assert sum(counts) == len(stats.similarities)


def test_namespace_of() -> None:
    assert namespace_of("abc") is None
    assert namespace_of("team-a:abc") == "team-a"
    assert namespace_of("team-b:eu:abc") == "team-b:eu"


def test_the_mirror_samples_unexpired_matching_records() -> None:
    mirror = VectorMirror(3)
    for i in range(20):
        expires = NOW - 1 if i % 5 == 0 else None
        mirror.put(record(f"{'a' if i % 2 else 'b'}:{i}", at(0.5), f"s{i % 3}", expires))
    records, matched = mirror.sample_records(
        5, now=NOW, keys=lambda key: key.startswith("a:"), rng=random.Random(1)
    )
    assert matched == 8  # odd i, less 5 and 15 (expired)
    assert len(records) == 5
    assert all(r.key.startswith("a:") and r.expires_at is None for r in records)
    assert all(abs(sum(v * v for v in r.vector) - 1) < 1e-6 for r in records)
    everything, matched = mirror.sample_records(100, now=NOW)
    assert matched == len(everything) == 16
