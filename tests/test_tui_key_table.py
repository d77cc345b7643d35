"""The browser's key table: keys as wide as the screen allows, age and TTL counting on the
app's clock, auto-refresh, recovery from an outage, sort and the loaded-rows filter.

Entries are written straight into the app's ``local`` backend (the same memory the browser
reads), with known models, prompts, ages, TTLs and sizes; times are on an injected clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from textual.widgets import Label, Tree

from llmcache_tui.app import LLMCacheApp
from llmcache_tui.cache.entry import CacheEntry
from llmcache_tui.cache.keys import request_digest, storage_key
from llmcache_tui.config import ConfigError, parse_settings
from llmcache_tui.screens import browser
from llmcache_tui.screens.browser import BrowserScreen
from llmcache_tui.screens.purge import PurgeScreen
from llmcache_tui.widgets.key_table import KeyTable, shorten_key
from tests import redis_servers as rs
from tests.tui_support import (
    SIZE,
    SMALL,
    config_text,
    make_app,
    open_browser,
    purge_whole_cache,
    scan_status,
    screen_text,
    select_row,
    selected_key,
    table_keys,
    wait_for_group,
    wait_until,
)

NOW = 1_790_000_000.0
API_BASE = "http://127.0.0.1:9/v1"  # never called: nothing here sends a request


class Seed:
    """One entry to store: its model, prompt, namespace, age, TTL and answer length."""

    def __init__(
        self, name: str, model: str, prompt: str, namespace: str | None, age: float, ttl: float
    ) -> None:
        self.name, self.model, self.prompt, self.namespace = name, model, prompt, namespace
        self.age, self.ttl = age, ttl
        body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
        self.key = storage_key(request_digest("chat", body), namespace)

    def raw(self, answer_chars: int) -> bytes:
        response = {
            "object": "chat.completion",
            "model": self.model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "x" * answer_chars}}
            ],
        }
        entry = CacheEntry(response, "chat", self.model, self.prompt, created_at=NOW - self.age)
        return entry.encode()


NO_TTL = 0.0
# name: (model, prompt, namespace, seconds ago, TTL (0: none), answer characters)
SEEDS = {
    "sweden": ("gpt-4o-mini", "What is the capital of Sweden?", None, 30.0, 600.0, 100),
    "notes": ("gpt-4o", "Summarise the release notes", "team-a", 7200.0, NO_TTL, 2000),
    "france": ("claude-3-haiku", "Capital of France?", "team-b:eu", 600.0, 3600.0, 500),
    "prime": ("gpt-3.5-turbo", "Name a prime", "team-a", 86_400.0, 120.0, 10),
}


async def store(app: LLMCacheApp, name: str, spec: tuple[Any, ...]) -> Seed:
    model, prompt, namespace, age, ttl, answer = spec
    seed = Seed(name, model, prompt, namespace, age, ttl)
    backend = app.session.backend
    assert backend is not None
    await backend.set(seed.key, seed.raw(answer), ttl=ttl or 600)
    if not ttl:
        await backend.expire(seed.key, None)
    return seed


def local_app(clock: Callable[[], float] = lambda: NOW, **llmcache: Any) -> LLMCacheApp:
    settings = {"auto_refresh_seconds": 0, **llmcache}  # off unless a test turns it on
    return make_app(config_text(API_BASE, llmcache=settings), clock=clock)


async def seed_all(app: LLMCacheApp) -> dict[str, Seed]:
    return {name: await store(app, name, spec) for name, spec in SEEDS.items()}


def table(app: LLMCacheApp) -> KeyTable:
    return app.screen.query_one("#keys", KeyTable)


def cell(app: LLMCacheApp, key: str, column: str) -> str:
    keys = ["key", "model", "type", "age", "ttl", "size"]
    return str(table(app).get_row(key)[keys.index(column)])


def header(app: LLMCacheApp) -> list[str]:
    return [str(column.label) for column in table(app).ordered_columns]


def names(app: LLMCacheApp, seeds: dict[str, Seed]) -> list[str]:
    by_key = {seed.key: name for name, seed in seeds.items()}
    return [by_key[key] for key in table_keys(app)]


def tree_shown(app: LLMCacheApp) -> bool:
    return bool(app.screen.query_one("#namespaces", Tree).display)


# --------------------------------------------------------------------------- readable keys


def test_a_key_keeps_its_namespace_whole_and_shortens_its_hash() -> None:
    key = "team-b:eu:" + "3f2a" + "0" * 56 + "9c1d"
    assert shorten_key(key, 80) == key
    assert shorten_key(key, 19) == "team-b:eu:3f2a…9c1d"
    assert shorten_key("ns:" + "3f2a" + "0" * 56 + "9c1d", 12) == "ns:3f2a…9c1d"
    shown = shorten_key("a-very-long-namespace-name:" + "f" * 64, 16)  # no room: both ends
    assert len(shown) == 16 and shown.startswith("a-very-") and shown.endswith("ffff")


async def test_keys_and_tree_follow_the_terminal_width() -> None:
    app = local_app()
    async with app.run_test(size=SMALL) as pilot:
        seeds = await seed_all(app)
        await open_browser(pilot, refresh=True)
        france = seeds["france"].key  # team-b:eu: and 64 hex digits
        # 80 columns: no tree, the key column as wide as the others leave, namespace whole.
        assert not tree_shown(app)
        shown = cell(app, france, "key")
        width = table(app).key_width
        assert width >= 20 and len(shown) == width
        assert shown.startswith("team-b:eu:") and "…" in shown and shown.endswith(france[-4:])
        # The detail pane wraps the whole key instead of cutting it.
        await select_row(pilot, france)
        text = screen_text(app)
        assert france[:40] in text.replace("\n", "")  # its first line
        assert france[-10:] in text  # and the rest below it (the table shows fewer)

        await pilot.resize_terminal(120, 36)
        await wait_until(pilot, lambda: tree_shown(app), what="the tree to show again")
        assert table(app).key_width > width
        assert "team-b:eu:" in cell(app, france, "key")
        tree = app.screen.query_one("#namespaces", Tree)
        labels = {str(node.label) for node in tree.root.children}
        assert labels == {
            "team-a 2 · " + _size(app, "team-a"),
            "team-b 1 · " + _size(app, "team-b"),
        }

        await pilot.resize_terminal(200, 50)
        await wait_until(pilot, lambda: cell(app, france, "key") == france, what="the whole key")
        assert all(cell(app, seed.key, "key") == seed.key for seed in seeds.values())
        assert selected_key(app) == france  # a resize keeps the selection

        await pilot.press("n")  # hidden by hand: it stays hidden whatever the width
        assert not tree_shown(app)
        await pilot.resize_terminal(80, 24)
        await pilot.resize_terminal(200, 50)
        await pilot.pause()
        assert not tree_shown(app)
        await pilot.press("n")
        assert tree_shown(app)
        await pilot.resize_terminal(80, 24)  # below 100 columns it goes again
        await wait_until(pilot, lambda: not tree_shown(app), what="the tree to hide")


def _size(app: LLMCacheApp, namespace: str) -> str:
    screen = app.screen
    assert isinstance(screen, BrowserScreen)
    return screen.counts.describe(namespace).split(" · ")[1]


async def test_tree_counts_are_lower_bounds_until_every_key_was_scanned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(browser, "ROWS_PER_LOAD", 1)
    monkeypatch.setattr(browser, "SCAN_COUNT", 2)
    app = local_app()
    async with app.run_test(size=SIZE) as pilot:
        await seed_all(app)
        await open_browser(pilot, refresh=True)
        screen = app.screen
        assert isinstance(screen, BrowserScreen)
        assert len(table_keys(app)) == 2
        counted = [screen.counts.describe(ns) for ns in screen.namespace_nodes]
        assert counted and all(text.startswith("≥") for text in counted if text), counted
        while "all matching keys loaded" not in scan_status(app):
            await pilot.press("l")
            await wait_for_group(pilot, "browser-scan")
        assert screen.counts.describe("team-a").startswith("2 · ")
        assert "team-a 2 · " in screen_text(app)


# --------------------------------------------------------------------------- live rows


async def test_age_and_ttl_count_on_in_the_rows_without_a_refetch() -> None:
    now = [NOW]
    app = local_app(clock=lambda: now[0])
    async with app.run_test(size=SIZE) as pilot:
        seeds = await seed_all(app)
        await open_browser(pilot, refresh=True)
        sweden, notes, prime = seeds["sweden"].key, seeds["notes"].key, seeds["prime"].key
        assert cell(app, sweden, "age") == "30s"
        # The TTL is the store's, on the real clock: a loaded machine may take seconds here.
        assert re.fullmatch(r"9m [45]\ds|10m 0s", cell(app, sweden, "ttl"))
        assert cell(app, notes, "ttl") == "no TTL"
        assert cell(app, notes, "age") == "2h 0m"

        backend = app.session.backend
        assert backend is not None
        reads: list[str] = []
        scan = backend.scan

        async def counted_scan(*args: Any, **kwargs: Any) -> Any:
            reads.append("scan")
            return await scan(*args, **kwargs)

        backend.scan = counted_scan  # type: ignore[method-assign]
        now[0] += 125  # the app's clock moves on; the table's timer redraws the rows
        await wait_until(pilot, lambda: cell(app, sweden, "age") == "2m 35s", what="the age")
        assert re.fullmatch(r"7m [345]\ds", cell(app, sweden, "ttl"))
        assert cell(app, prime, "ttl") == "expired"
        assert cell(app, notes, "ttl") == "no TTL"
        assert reads == []  # counted from what was fetched, nothing read again


async def test_numbers_align_right_and_nothing_shows_none() -> None:
    app = local_app()
    async with app.run_test(size=SIZE) as pilot:
        seeds = await seed_all(app)
        backend = app.session.backend
        assert backend is not None
        await backend.set("plain-value", b"not an entry")
        await open_browser(pilot, refresh=True)
        row = table(app).get_row(seeds["notes"].key)
        for value in row[3:]:  # age, TTL, size
            assert getattr(value, "justify", None) == "right", value
        assert str(table(app).get_row("plain-value")[3]) == "—"  # no age known
        assert "None" not in screen_text(app)
        assert scan_status(app).startswith("5 keys shown for * |")
        await pilot.press("f", *"notes", "enter")
        assert scan_status(app).startswith("1 of 5 loaded keys match 'notes'")


async def test_auto_refresh_shows_new_entries_and_keeps_selection_and_scroll() -> None:
    app = local_app(auto_refresh_seconds=0.2)
    async with app.run_test(size=SMALL) as pilot:
        seeds = await seed_all(app)
        for n in range(40):  # enough rows to scroll
            spec = ("gpt-4o-mini", f"filler question {n}", None, 900.0 + n, 600.0, 50)
            await store(app, f"filler-{n}", spec)
        await open_browser(pilot, refresh=True)
        assert app.screen.query_one("#refresh-state", Label).content == "auto 0.2s"
        await pilot.press("s", "s")  # age, newest first: a new entry goes on top
        assert header(app)[3] == "age ▲"
        last = table_keys(app)[-1]
        await select_row(pilot, last)
        await pilot.pause()  # the scroll to the selected row lands on the next frame
        keys_table = table(app)
        on_screen = keys_table.cursor_row - keys_table.scroll_y
        assert keys_table.scroll_y > 0

        fresh = await store(app, "fresh", ("gpt-4o", "a brand new question", None, 1.0, 600.0, 50))
        await wait_until(pilot, lambda: fresh.key in table_keys(app), what="the new entry")
        assert table_keys(app)[0] == fresh.key
        assert selected_key(app) == last
        # It has not moved: the scroll that makes up for the new row follows the rows.
        await wait_until(
            pilot,
            lambda: keys_table.cursor_row - keys_table.scroll_y == on_screen,
            what="the selected row back in its place",
        )
        assert scan_status(app).startswith("45 keys shown for * | scanned 45 of about 45")

        backend = app.session.backend
        assert backend is not None
        await backend.delete([seeds["prime"].key])  # behind the browser's back: it goes too
        await wait_until(pilot, lambda: seeds["prime"].key not in table_keys(app))

        await pilot.press("a")
        assert app.screen.query_one("#refresh-state", Label).content == "auto off"
        await pilot.press("a")
        assert app.screen.query_one("#refresh-state", Label).content == "auto 0.2s"


async def test_auto_refresh_defaults_on_for_disk_and_off_for_redis(
    tui_disk_config: str, tui_config: Callable[..., str], redis_plain: rs.RedisProcess
) -> None:
    for text, state in [
        (tui_disk_config, "auto 5s"),
        (tui_config(cache_type="redis", cache_params={"url": redis_plain.url}), "auto off"),
    ]:
        app = make_app(text)
        async with app.run_test(size=SIZE) as pilot:
            await open_browser(pilot)
            assert app.screen.query_one("#refresh-state", Label).content == state


async def test_a_scan_error_clears_when_redis_is_back(
    tui_config: Callable[..., str],
    redis_restartable: rs.RedisProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(browser, "RETRY_SECONDS", 0.2)
    server = redis_restartable
    with server.client() as raw:
        raw.set("other-app:1", "a value of another application")
    app = make_app(tui_config(cache_type="redis", cache_params={"url": server.url}))
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        assert table_keys(app) == ["other-app:1"]

        server.stop()
        await pilot.press("f5")
        await wait_until(pilot, lambda: scan_status(app).startswith("scan failed"))
        assert "trying again every 0.2s" in scan_status(app)

        server.start()  # a new, empty server on the same port
        with server.client() as raw:
            raw.set("other-app:2", "written after the restart")
        await wait_until(
            pilot, lambda: scan_status(app).startswith("1 key shown for *"), what="recovery"
        )
        assert table_keys(app) == ["other-app:2"]
        assert "scan failed" not in screen_text(app)


async def test_status_line_after_a_purge_counts_from_zero() -> None:
    app = local_app()
    async with app.run_test(size=SIZE) as pilot:
        await seed_all(app)
        await open_browser(pilot, refresh=True)
        assert scan_status(app).startswith("4 keys shown for * | scanned 4 of about 4")
        await purge_whole_cache(pilot)
        await wait_until(pilot, lambda: not isinstance(app.screen, PurgeScreen))
        await wait_for_group(pilot, "browser-scan")
        assert table_keys(app) == []
        assert scan_status(app) == (
            "0 keys shown for * | scanned 0 of about 0 | all matching keys loaded"
        )
        tree = app.screen.query_one("#namespaces", Tree)
        assert list(tree.root.children) == []


# --------------------------------------------------------------------------- sort, filter


async def test_sort_by_each_column_with_the_direction_in_the_header() -> None:
    app = local_app()
    async with app.run_test(size=SIZE) as pilot:
        seeds = await seed_all(app)
        await open_browser(pilot, refresh=True)
        loaded = names(app, seeds)
        cycle = [
            ("size ▼", 5, ["notes", "france", "sweden", "prime"]),  # biggest first
            ("age ▲", 3, ["sweden", "france", "notes", "prime"]),  # newest first
            ("TTL ▲", 4, ["prime", "sweden", "france", "notes"]),  # no TTL last
            ("model ▲", 1, ["france", "prime", "notes", "sweden"]),
        ]
        for label, column, order in cycle:
            await pilot.press("s")
            assert header(app)[column] == label
            assert names(app, seeds) == order
        await pilot.press("S")  # the other way round
        assert header(app)[1] == "model ▼"
        assert names(app, seeds) == ["sweden", "notes", "prime", "france"]
        await pilot.press("s")  # back to the order of loading, no arrow
        assert names(app, seeds) == loaded
        assert not any("▲" in label or "▼" in label for label in header(app))

        keys_table = table(app)
        size_x = sum(
            column.get_render_width(keys_table) for column in keys_table.ordered_columns[:5]
        )
        await pilot.click("#keys", offset=(size_x + 2, 0))  # the size header
        assert header(app)[5] == "size ▼"
        assert names(app, seeds) == ["notes", "france", "sweden", "prime"]
        await pilot.click("#keys", offset=(size_x + 2, 0))
        assert header(app)[5] == "size ▲"
        assert names(app, seeds) == ["prime", "sweden", "france", "notes"]


async def test_find_filters_the_loaded_rows_by_model_or_prompt() -> None:
    app = local_app()
    async with app.run_test(size=SIZE) as pilot:
        seeds = await seed_all(app)
        await open_browser(pilot, refresh=True)
        await pilot.press("f", *"gpt-4o")
        assert sorted(names(app, seeds)) == ["notes", "sweden"]
        assert scan_status(app).startswith(
            "2 of 4 loaded keys match 'gpt-4o' (filters the loaded rows only) for * |"
        )
        await pilot.press("ctrl+a", "ctrl+k", *"CAPITAL")  # a prompt, in any case
        assert sorted(names(app, seeds)) == ["france", "sweden"]
        await pilot.press("enter")
        assert app.focused is table(app)
        await pilot.press("s")  # sorted and filtered at once
        assert names(app, seeds) == ["france", "sweden"]
        await pilot.press("f", "ctrl+a", "ctrl+k", "enter")
        assert len(table_keys(app)) == 4
        assert scan_status(app).startswith("4 keys shown for * |")


def test_auto_refresh_setting_is_validated() -> None:
    def settings(value: object) -> object:
        text = config_text(API_BASE, llmcache={"auto_refresh_seconds": value})
        return parse_settings(text, "config.yaml").app.auto_refresh_seconds

    assert settings(2.5) == 2.5
    assert settings(0) == 0
    for bad in (-1, "soon"):
        with pytest.raises(ConfigError, match="auto_refresh_seconds"):
            settings(bad)
