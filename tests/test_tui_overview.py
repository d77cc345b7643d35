"""The overview screen (1): which config and backend, masked parameters, health, size and
proxy state; reconnect (r) and opening another config (ctrl+o)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from llmcache_tui.app import LLMCacheApp
from llmcache_tui.screens.prompt import PromptScreen
from tests.conftest import ProxyFactory
from tests.tui_support import (
    SIZE,
    Ask,
    chat_body,
    make_app,
    notified,
    open_browser,
    rendered_text,
    scan_status,
    screen_text,
    seed_served_proxy,
    seed_through_proxy,
    select_row,
    start_proxy,
    table_keys,
    wait_for_group,
    wait_until,
)

MASTER_KEY = "sk-master-TOPSECRET-1"
UPSTREAM_KEY = "sk-upstream-TOPSECRET-2"
REDIS_PASSWORD = "pw-TOPSECRET-3"
REDIS_URL = "redis://cache:url-TOPSECRET-4@redis.internal:6379/0"
SECRET_MARK = "TOPSECRET"


def shown(app: LLMCacheApp) -> str:
    """Everything the current screen shows: the visible screen, and each Static in full
    (a scrolled-out part included), plus the header."""
    parts = [screen_text(app), app.title, app.sub_title]
    parts += [rendered_text(widget) for widget in app.screen.query(Static)]
    return "\n".join(parts)


def assert_no_secret(app: LLMCacheApp) -> None:
    assert SECRET_MARK not in shown(app)
    assert SECRET_MARK not in app.export_screenshot()
    for notification in app._notifications:
        assert SECRET_MARK not in f"{notification.title} {notification.message}"


async def overview_says(pilot: Pilot[None], app: LLMCacheApp, pattern: str) -> None:
    await wait_until(pilot, lambda: re.search(pattern, screen_text(app)), what=pattern)


async def test_overview_shows_backend_health_and_never_a_secret(
    tui_config: Callable[..., str], tmp_path: Path
) -> None:
    directory = tmp_path / "cache"
    text = tui_config(
        cache_type="disk",
        cache_params={
            "disk_cache_dir": str(directory),
            "password": REDIS_PASSWORD,
            "redis_url": REDIS_URL,
        },
        master_key=MASTER_KEY,
        api_key=UPSTREAM_KEY,
    )
    app = make_app(text)
    async with app.run_test(size=SIZE) as pilot:
        await overview_says(pilot, app, r"state +connected")
        screen = screen_text(app)
        assert app.sub_title == "disk | config.yaml"
        for pattern in [
            r"config +config\.yaml",
            r"cache type +disk",
            rf"disk_cache_dir +{re.escape(str(directory))}",
            r"models +gpt-4o-mini, gpt-3\.5-turbo-instruct",
            r"auth +master key set",
            r"access +read-write",
            r"ping +\d+\.\d\d ms",
            r"entries +0\b",
            r"on disk +\d",
            r"checked +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d",
            r"stopped \(start it from the Proxy screen: 3\)",
        ]:
            assert re.search(pattern, screen), pattern
        assert_no_secret(app)

        auth = {"authorization": f"Bearer {MASTER_KEY}"}
        keys = await seed_through_proxy(pilot, [Ask("hello"), Ask("hi", "team-a")], auth)
        proxy = app.session.proxy
        assert proxy is not None
        url = f"http://127.0.0.1:{proxy.port}"
        async with httpx.AsyncClient(base_url=url) as client:
            refused = await client.post("/v1/chat/completions", json=chat_body("no key"))
        assert refused.status_code == 401
        assert_no_secret(app)  # the proxy screen, its log included

        await pilot.press("1")
        await overview_says(pilot, app, r"entries +2\b")
        assert re.search(rf"running on {re.escape(url)}", screen_text(app))
        assert re.search(r"\d requests, 0 hits, hit rate 0%", screen_text(app))
        assert_no_secret(app)

        await open_browser(pilot)
        await select_row(pilot, keys["hi"])
        assert_no_secret(app)
        await pilot.press("question_mark")
        assert_no_secret(app)


async def test_reconnect_builds_the_backend_again(
    make_proxy: ProxyFactory, tui_disk_config: str
) -> None:
    keys = seed_served_proxy(make_proxy(cache_type="disk"), [Ask("one"), Ask("two")])
    app = make_app(tui_disk_config)
    async with app.run_test(size=SIZE) as pilot:
        await overview_says(pilot, app, r"entries +2\b")
        await open_browser(pilot)
        before = app.session.backend
        await pilot.press("1", "r")
        await wait_until(pilot, lambda: notified(app, "Reconnected"))
        assert app.session.backend is not None and app.session.backend is not before
        await overview_says(pilot, app, r"state +connected")
        assert re.search(r"entries +2\b", screen_text(app))
        await open_browser(pilot)  # the browser starts over on the new backend
        assert sorted(table_keys(app)) == sorted(keys.values())


async def test_reconnect_and_open_config_wait_for_the_proxy_to_stop(
    tui_config: Callable[..., str],
) -> None:
    app = make_app(tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await start_proxy(pilot)
        backend = app.session.backend
        await pilot.press("1", "r")
        await wait_until(pilot, lambda: notified(app, "stop the proxy before you reconnect"))
        await pilot.press("ctrl+o", "a", "enter")
        await wait_until(
            pilot, lambda: notified(app, "stop the proxy before you open another config")
        )
        assert app.session.backend is backend
        assert app.session.proxy_running


async def test_open_config_switches_to_another_backend(
    make_proxy: ProxyFactory,
    tui_config: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = seed_served_proxy(make_proxy(cache_type="disk"), [Ask("one"), Ask("two", "team-a")])
    monkeypatch.chdir(tmp_path)
    other = tui_config(cache_type="disk", cache_params={"disk_cache_dir": "disk-cache"})
    Path("other.yaml").write_text(other, encoding="utf-8")
    app = make_app(tui_config())  # local: empty
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        assert table_keys(app) == []

        await pilot.press("1", "ctrl+o")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"other.yaml", "enter")
        await wait_for_group(pilot, "overview-connect")
        assert notified(app, "Opened other.yaml")
        assert app.session.settings.source == "other.yaml"
        assert app.sub_title == "disk | other.yaml"
        await overview_says(pilot, app, r"entries +2\b")
        assert re.search(r"config +other\.yaml", screen_text(app))
        assert re.search(r"cache type +disk", screen_text(app))

        await open_browser(pilot)  # the browser reloads for the new backend
        assert sorted(table_keys(app)) == sorted(keys.values())


async def test_open_config_that_cannot_be_used_keeps_the_current_one(
    tui_config: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("bad.yaml").write_text(
        "litellm_settings:\n  cache: true\n  cache_params:\n    type: bogus\n", encoding="utf-8"
    )
    app = make_app(tui_config())
    async with app.run_test(size=SIZE) as pilot:
        backend = app.session.backend
        await pilot.press("ctrl+o", *"nope.yaml", "enter")
        await wait_until(pilot, lambda: notified(app, "Config not opened"))
        assert notified(app, "nope.yaml: cannot read config file")

        await pilot.press("ctrl+o", *"bad.yaml", "enter")
        await wait_until(pilot, lambda: notified(app, "litellm_settings.cache_params.type"))
        errors = [n for n in app._notifications if n.title == "Config not opened"]
        assert len(errors) == 2 and all(n.severity == "error" for n in errors)

        await pilot.press("ctrl+o", "escape")  # cancelled
        assert not isinstance(app.screen, PromptScreen)
        assert app.session.settings.source == "config.yaml"
        assert app.session.backend is backend
        assert app.sub_title == "local | config.yaml"
        assert re.search(r"cache type +local", screen_text(app))
        assert app.is_running


async def test_a_backend_that_cannot_be_used_is_explained(
    tui_config: Callable[..., str], tmp_path: Path
) -> None:
    not_a_directory = tmp_path / "cache-file"
    not_a_directory.write_text("", encoding="utf-8")
    params = {"disk_cache_dir": str(not_a_directory)}
    app = make_app(tui_config(cache_type="disk", cache_params=params))
    async with app.run_test(size=SIZE) as pilot:
        await overview_says(pilot, app, r"state +not connected")
        health = rendered_text(app.screen.query_one("#overview-health", Static))
        assert re.search(r"reason +disk cache directory .* cannot be used", health)
        await pilot.press("2")
        assert scan_status(app).startswith("Not connected: disk cache directory")
        assert table_keys(app) == []
        assert app.is_running
