"""Changing the cache from the browser: delete (confirmed), TTL edit, copy, purge (confirmed,
with progress, cancellable), the read-only mode that blocks all of them, and remapped keys.

Entries are written by the real proxy: the one started inside the app, or one served
separately over the same disk directory the app opens.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import pytest
from textual.widgets import Button, Label, ProgressBar, Tree

from llmcache_tui.cache import browse
from llmcache_tui.cache.backends import CacheBackend
from llmcache_tui.screens.browser import BrowserScreen
from llmcache_tui.screens.confirm import ConfirmScreen, TypedConfirmScreen
from llmcache_tui.screens.prompt import PromptScreen
from llmcache_tui.screens.purge import PurgeScreen
from tests.conftest import ProxyFactory
from tests.fake_upstream import FakeUpstreamServer
from tests.tui_support import (
    HIT,
    SIZE,
    STORED,
    Ask,
    ask_purge,
    cache_key,
    chat_body,
    detail_text,
    footer_text,
    make_app,
    notified,
    open_browser,
    screen_text,
    seed_served_proxy,
    select_row,
    start_proxy,
    table_keys,
    table_row,
    wait_for_group,
    wait_until,
)

ASKS = [
    Ask("hello"),
    Ask("what is a cache?"),
    Ask("team question", "team-a"),
    Ask("team follow-up", "team-a"),
    Ask("eu question", "team-b:eu"),
]


async def all_keys(backend: CacheBackend | None) -> list[str]:
    assert backend is not None
    keys: list[str] = []
    cursor: str | None = None
    while True:
        page = await backend.scan("*", cursor, 1000)
        keys += [info.key for info in page.keys]
        cursor = page.cursor
        if cursor is None:
            return sorted(keys)


# --------------------------------------------------------------------------- delete


async def test_done_when_miss_hit_browse_delete_then_miss_again(
    tui_config: Callable[..., str], upstream: FakeUpstreamServer
) -> None:
    """The issue's scenario end to end, on the proxy started from the app."""
    app = make_app(tui_config())
    async with app.run_test(size=SIZE) as pilot:
        url = await start_proxy(pilot)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            body = chat_body("write a poem about caches")
            first = await client.post("/v1/chat/completions", json=body)
            second = await client.post("/v1/chat/completions", json=body)
            assert first.headers["cache-status"] == STORED
            assert second.headers["cache-status"] == HIT
            key = cache_key(first)
            assert cache_key(second) == key

            await open_browser(pilot)
            assert key in table_keys(app)
            await select_row(pilot, key)
            detail = detail_text(app)
            assert re.search(r"^prompt +write a poem about caches", detail, re.M)
            assert '"content": "echo: write a poem about caches"' in detail
            assert re.search(r"^age +\d+s", detail, re.M)
            assert re.search(r"^expires in +(9m \d+s|10m 0s)", detail, re.M)

            await pilot.press("d")
            assert isinstance(app.screen, ConfirmScreen)
            assert key in screen_text(app)  # the dialog names the key
            await pilot.press("y")
            await wait_for_group(pilot, "browser-change")
            assert isinstance(app.screen, BrowserScreen)
            assert app.session.backend is not None
            assert await app.session.backend.get(key) is None
            assert key not in table_keys(app)
            assert notified(app, f"Deleted {key}")
            assert f"Deleted {key}." in detail_text(app)

            third = await client.post("/v1/chat/completions", json=body)
            assert third.headers["cache-status"] == STORED  # fwd=miss: asked upstream again
            assert cache_key(third) == key
        assert upstream.app.call_count("chat/completions") == 2


async def test_declining_the_confirmation_keeps_the_key_which_can_be_copied(
    make_proxy: ProxyFactory, tui_disk_config: str
) -> None:
    keys = seed_served_proxy(make_proxy(cache_type="disk"), ASKS[:2])
    app = make_app(tui_disk_config)
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        key = keys["hello"]
        await select_row(pilot, key)
        for answer in ("n", "escape"):
            await pilot.press("d")
            assert isinstance(app.screen, ConfirmScreen)
            assert app.focused is app.screen.query_one("#no", Button)  # the safe choice
            await pilot.press(answer)
            assert isinstance(app.screen, BrowserScreen)
        await pilot.press("d", "enter")  # Enter presses the focused button: Cancel
        assert isinstance(app.screen, BrowserScreen)
        await wait_for_group(pilot, "browser-change")
        assert app.session.backend is not None
        assert await app.session.backend.get(key) is not None
        assert sorted(table_keys(app)) == sorted(keys.values())

        await pilot.press("c")  # and the key can be copied, e.g. for redis-cli
        assert app.clipboard == key
        assert notified(app, "Key copied")


# --------------------------------------------------------------------------- TTL


async def test_ttl_edit_accepts_seconds_units_and_none(
    make_proxy: ProxyFactory, tui_disk_config: str
) -> None:
    keys = seed_served_proxy(make_proxy(cache_type="disk"), ASKS[:2])
    key = keys["what is a cache?"]
    app = make_app(tui_disk_config)
    async with app.run_test(size=SIZE) as pilot:
        backend = app.session.backend
        assert backend is not None
        assert await backend.ttl(key) is None
        await open_browser(pilot)
        await select_row(pilot, key)

        await pilot.press("t")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"abc", "enter")  # refused, the dialog stays
        assert isinstance(app.screen, PromptScreen)
        assert "Enter seconds" in str(app.screen.query_one("#prompt-error", Label).content)
        await pilot.press("escape")  # cancelled: nothing changes
        assert isinstance(app.screen, BrowserScreen)
        assert await backend.ttl(key) is None

        for typed, low, high, cell in [
            ("10m", 590, 600, re.compile(r"9m \d+s|10m 0s")),
            ("2h", 7190, 7200, re.compile(r"1h 59m|2h 0m")),
            ("600", 590, 600, re.compile(r"9m \d+s|10m 0s")),
        ]:
            await pilot.press("t", *typed, "enter")
            await wait_for_group(pilot, "browser-change")
            ttl = await backend.ttl(key)
            assert ttl is not None and low <= ttl <= high, (typed, ttl)
            assert cell.fullmatch(table_row(app, key)["TTL"]), typed
            await wait_until(pilot, lambda c=cell: c.search(detail_text(app)))
        assert notified(app, f"TTL of {key}: 10m 0s")

        await pilot.press("t", *"none", "enter")
        await wait_for_group(pilot, "browser-change")
        assert await backend.ttl(key) is None
        assert table_row(app, key)["TTL"] == "no TTL"
        assert await backend.ttl(keys["hello"]) is None  # only the selected key changed


# --------------------------------------------------------------------------- purge


async def test_purge_a_namespace_or_a_glob_deletes_only_what_matches(
    make_proxy: ProxyFactory, tui_disk_config: str
) -> None:
    keys = seed_served_proxy(make_proxy(cache_type="disk"), ASKS)
    app = make_app(tui_disk_config)
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        question = await ask_purge(pilot)  # everything: declined
        assert isinstance(app.screen, TypedConfirmScreen)
        assert question.startswith("Purge 5 cache entries: every cache entry in the cache?")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, BrowserScreen))
        assert await all_keys(app.session.backend) == sorted(keys.values())

        tree = app.screen.query_one("#namespaces", Tree)
        tree.focus()
        tree.move_cursor(tree.root.children[0])  # team-a
        await pilot.press("enter")
        await wait_for_group(pilot, "browser-scan")
        question = await ask_purge(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert question.startswith("Purge 2 cache entries matching 'team-a:*'?")
        await pilot.press("y")
        await wait_until(pilot, lambda: not isinstance(app.screen, PurgeScreen | ConfirmScreen))
        await wait_for_group(pilot, "browser-scan")

        assert notified(app, "Purged 2 cache entries matching team-a:*")
        remaining = [keys[text] for text in ("hello", "what is a cache?", "eu question")]
        assert await all_keys(app.session.backend) == sorted(remaining)
        assert table_keys(app) == []  # the view reloads: team-a:* is empty now

        await pilot.press("slash", "ctrl+a", "ctrl+k", *"t*:e?:*", "enter")  # a glob
        await wait_for_group(pilot, "browser-scan")
        assert (await ask_purge(pilot)).startswith("Purge 1 cache entry matching 't*:e?:*'?")
        await pilot.press("y")
        await wait_until(pilot, lambda: notified(app, "Purged 1 cache entries matching t*:e?:*"))
        remaining = [keys[text] for text in ("hello", "what is a cache?")]
        assert await all_keys(app.session.backend) == sorted(remaining)


async def test_a_count_stopped_at_its_bound_says_at_least(
    make_proxy: ProxyFactory, tui_disk_config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert browse.count_purge.__kwdefaults__ is not None
    monkeypatch.setitem(browse.count_purge.__kwdefaults__, "budget", 2)  # COUNT_BUDGET
    keys = seed_served_proxy(make_proxy(cache_type="disk"), ASKS)
    app = make_app(tui_disk_config)
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        question = await ask_purge(pilot)
        assert question.startswith("Purge at least 2 cache entries: every cache entry in the")
        assert "Counted in the first 2 keys examined" in question
        await pilot.press(*"purge", "enter")
        await wait_until(pilot, lambda: notified(app, "Purged 5 cache entries matching *"))
        assert await all_keys(app.session.backend) == []
        assert len(keys) == 5


@contextmanager
def sqlite_write_lock(directory: Path) -> Iterator[None]:
    """Hold the disk cache's write lock: deletes wait (diskcache retries) until released."""
    with closing(sqlite3.connect(directory / "cache.db", isolation_level=None)) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")


async def test_cancelling_a_purge_stops_after_the_current_batch(
    make_proxy: ProxyFactory,
    tui_disk_config: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert browse.purge.__kwdefaults__ is not None
    monkeypatch.setitem(browse.purge.__kwdefaults__, "batch", 2)  # PURGE_BATCH, per call
    seed_served_proxy(make_proxy(cache_type="disk"), [Ask(f"q{n}") for n in range(12)])
    app = make_app(tui_disk_config)
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        await ask_purge(pilot)
        with sqlite_write_lock(tmp_path / "disk-cache"):
            await pilot.press(*"purge", "enter")  # the first batch's delete waits for the lock
            assert isinstance(app.screen, PurgeScreen)
            assert "Purging cache entries matching *" in screen_text(app)
            assert app.screen.query_one("#purge-bar", ProgressBar).display
            await pilot.press("escape")
            assert "cancelling after this batch" in screen_text(app)
            assert isinstance(app.screen, PurgeScreen)  # still finishing its batch
        await wait_until(pilot, lambda: isinstance(app.screen, BrowserScreen), what="dismiss")
        await wait_for_group(pilot, "browser-scan")

        assert notified(app, "Purge stopped after deleting 2 cache entries matching *")
        assert len(await all_keys(app.session.backend)) == 10
        assert len(table_keys(app)) == 10


# --------------------------------------------------------------------------- read-only


@pytest.mark.parametrize("how", ["session", "config"])
async def test_read_only_hides_and_refuses_every_change(
    how: str,
    make_proxy: ProxyFactory,
    tui_config: Callable[..., str],
    tmp_path: Path,
) -> None:
    keys = seed_served_proxy(make_proxy(cache_type="disk"), ASKS[:2])
    key = keys["hello"]
    disk = {"disk_cache_dir": str(tmp_path / "disk-cache")}
    text = tui_config(
        cache_type="disk",
        cache_params=disk,
        llmcache={"read_only": True} if how == "config" else None,
    )
    app = make_app(text, read_only=how == "session")
    async with app.run_test(size=SIZE) as pilot:
        assert "read-only" in screen_text(app)  # the overview says so, and the header
        assert app.sub_title.endswith("(read-only)")
        await open_browser(pilot)
        await select_row(pilot, key)
        screen = app.screen
        for action in ("delete", "edit_ttl", "purge"):
            assert screen.check_action(action, ()) is False
            assert await app.run_action(action, screen) is False
        footer = footer_text(app)
        assert "Copy key" in footer
        for hidden in ("Delete", "TTL", "Purge"):
            assert hidden not in footer

        why = "started with --read-only" if how == "session" else "llmcache.read_only is set"
        await pilot.press("d", "t", "P", "delete")
        assert app.screen is screen  # no dialog opened, but each key says why
        for what in ("delete", "TTL change", "purge"):
            message = f"read-only: {why}; {what} is off"
            await wait_until(pilot, lambda m=message: notified(app, m), what=message)
        app.clear_notifications()
        screen.action_delete()  # even called directly, it refuses
        await wait_until(pilot, lambda: notified(app, f"read-only: {why}; delete is off"))
        titles = {command.title for command in app.get_system_commands(screen)}
        assert {"Copy key", "Load more"} <= titles
        assert not {"Delete", "TTL", "Purge"} & titles
        await wait_for_group(pilot, "browser-change")
        assert await all_keys(app.session.backend) == sorted(keys.values())
        assert app.session.backend is not None
        assert await app.session.backend.ttl(key) is None


# --------------------------------------------------------------------------- keymap


async def test_keymap_in_config_remaps_delete(
    make_proxy: ProxyFactory, tui_config: Callable[..., str], tmp_path: Path
) -> None:
    keys = seed_served_proxy(make_proxy(cache_type="disk"), ASKS[:2])
    disk = {"disk_cache_dir": str(tmp_path / "disk-cache")}
    app = make_app(
        tui_config(
            cache_type="disk", cache_params=disk, llmcache={"keymap": {"browser.delete": "x"}}
        )
    )
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        key = keys["what is a cache?"]
        await select_row(pilot, key)
        assert "x Delete" in footer_text(app)
        await pilot.press("d")  # no longer bound
        assert isinstance(app.screen, BrowserScreen)
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for_group(pilot, "browser-change")
        assert await all_keys(app.session.backend) == [keys["hello"]]

        await pilot.press("question_mark")  # help shows the remapped key
        assert re.search(r"│ x +│ Delete", screen_text(app))
