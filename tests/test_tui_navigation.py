"""Getting around: the number keys, Escape out of text fields, the ``?`` help screen, the
command palette, and every screen and dialog at the smallest supported size (80x24)."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
from textual.binding import Binding
from textual.command import CommandPalette
from textual.widgets import Button, DataTable, Input, Static, Tree

from llmcache_tui.app import SCREENS_BY_MODE, LLMCacheApp
from llmcache_tui.screens.browser import BrowserScreen
from llmcache_tui.screens.confirm import ConfirmScreen, TypedConfirmScreen
from llmcache_tui.screens.help import HelpScreen
from llmcache_tui.screens.overview import OverviewScreen
from llmcache_tui.screens.prompt import PromptScreen
from llmcache_tui.screens.proxy import ProxyScreen
from llmcache_tui.screens.purge import PurgeScreen
from tests.conftest import ProxyFactory
from tests.tui_support import (
    SIZE,
    SMALL,
    Ask,
    chat_body,
    footer_text,
    make_app,
    open_browser,
    rendered_text,
    scan_status,
    screen_text,
    seed_served_proxy,
    select_row,
    start_proxy,
    table_keys,
    wait_for_group,
    wait_until,
)

ASKS = [Ask("hello"), Ask("team question", "team-a"), Ask("eu question", "team-b:eu")]


# Offered only over a semantic cache (tests/test_tui_probe.py); these configs have none.
SEMANTIC_MODES = {"probe"}


def all_bindings() -> list[Binding]:
    screens = [s for mode, s in SCREENS_BY_MODE.items() if mode not in SEMANTIC_MODES]
    groups = [LLMCacheApp.BINDINGS, *(screen.BINDINGS for screen in screens)]
    return [
        binding
        for group in groups
        for binding in group
        if isinstance(binding, Binding) and not binding.action.startswith("probe")
    ]


def palette_titles(app: LLMCacheApp) -> list[str]:
    return [command.title for command in app.get_system_commands(app.screen)]


async def test_number_keys_switch_screens_and_escape_leaves_a_text_field(
    tui_config: Callable[..., str],
) -> None:
    app = make_app(tui_config())
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, OverviewScreen)
        await pilot.press("2")
        assert isinstance(app.screen, BrowserScreen)
        assert app.focused is app.screen.query_one("#keys", DataTable)

        await pilot.press("slash", "1")  # typed into the filter, not a screen switch
        field = app.screen.query_one("#filter", Input)
        assert isinstance(app.screen, BrowserScreen)
        assert field.value == "1"
        await pilot.press("escape")
        assert app.focused is app.screen.query_one("#keys", DataTable)

        await pilot.press("3")
        assert isinstance(app.screen, ProxyScreen)
        assert app.focused is app.screen.query_one("#proxy-start", Button)
        app.screen.query_one("#proxy-host", Input).focus()
        await pilot.press("escape", "1")
        assert isinstance(app.screen, OverviewScreen)
        await pilot.press("escape")  # nothing to leave: harmless
        assert app.is_running


def test_every_binding_has_a_unique_id_for_the_keymap() -> None:
    dialogs = [ConfirmScreen, TypedConfirmScreen, PromptScreen, HelpScreen, PurgeScreen]
    bindings = all_bindings() + [b for d in dialogs for b in d.BINDINGS if isinstance(b, Binding)]
    ids = [binding.id for binding in bindings]
    assert all(ids), [b for b in bindings if not b.id]
    assert len(ids) == len(set(ids))


async def test_help_lists_every_binding(tui_config: Callable[..., str]) -> None:
    app = make_app(tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = rendered_text(app.screen.query_one(Static), width=120)
        for binding in all_bindings():
            assert binding.description in text, binding
        for row in [
            r"overview +│ r +│ Reconnect",
            r"│ ctrl\+o +│ Open config",
            r"│ shift\+p +│ Purge - Delete all matching cache entries",
            r"│ d, Del +│ Delete - Delete the key",
            r"│ / +│ Filter - Glob filter",
            r"proxy +│ s +│ Start - Start the proxy",
            r"│ q +│ Quit - Stop the proxy and quit",
            r"│ ctrl\+p +│ command palette",
        ]:
            assert re.search(row, text), row
        assert "Reconnect" in screen_text(app)

        await pilot.press("escape")
        assert isinstance(app.screen, BrowserScreen)
        await pilot.press("question_mark", "question_mark")  # ? closes it too
        assert isinstance(app.screen, BrowserScreen)


SEMANTIC_ONLY = {"Vectors"}


async def test_command_palette_offers_every_action(
    make_proxy: ProxyFactory, tui_disk_config: str
) -> None:
    keys = seed_served_proxy(make_proxy(cache_type="disk"), ASKS)
    app = make_app(tui_disk_config)
    async with app.run_test(size=SIZE) as pilot:
        everywhere = {"Overview", "Browser", "Proxy", "Help", "Quit"}
        for mode, screen_type in SCREENS_BY_MODE.items():
            if mode in SEMANTIC_MODES:
                continue
            await pilot.press(str(list(SCREENS_BY_MODE).index(mode) + 1))
            assert type(app.screen) is screen_type
            titles = palette_titles(app)
            assert len(titles) == len(set(titles)), titles  # no action offered twice
            own = {b.description for b in screen_type.BINDINGS if isinstance(b, Binding)}
            own -= SEMANTIC_ONLY  # offered only where the cache type keeps vectors
            assert everywhere | own <= set(titles), mode
        assert {"Start", "Stop", "Clear log"} <= set(palette_titles(app))

        await open_browser(pilot)
        assert {"Delete", "Purge", "TTL", "Copy key", "Load more", "Filter"} <= set(
            palette_titles(app)
        )
        key = keys["team question"]
        await select_row(pilot, key)
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"delete")
        await wait_until(pilot, lambda: "Delete the key" in screen_text(app), what="a match")
        await pilot.press("enter")  # runs the best match, as the key would
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for_group(pilot, "browser-change")
        assert key not in table_keys(app)


async def test_every_screen_and_dialog_fits_80x24(
    make_proxy: ProxyFactory, tui_disk_config: str
) -> None:
    keys = seed_served_proxy(make_proxy(cache_type="disk"), ASKS)
    app = make_app(tui_disk_config)
    async with app.run_test(size=SMALL) as pilot:
        # Overview: the health and proxy panels come first, above the long config panel.
        await wait_until(pilot, lambda: re.search(r"entries +3\b", screen_text(app)))
        text = screen_text(app)
        assert re.search(r"state +connected", text)
        assert "stopped (start it from the Proxy screen: 3)" in text
        await wait_until(pilot, lambda: "Reconnect" in footer_text(app), what="the footer")

        # Browser: the tree starts hidden; table, status line and detail all show.
        await open_browser(pilot)
        assert not app.screen.query_one("#namespaces", Tree).display
        await select_row(pilot, keys["team question"])
        text = screen_text(app)
        assert "team-a:" in text
        assert "3 keys shown for * | scanned 3 of about 3" in text
        assert re.search(r"model +gpt-4o-mini", text)
        assert re.search(r"prompt +team question", text)
        assert "d Delete" in footer_text(app)
        await pilot.press("n")
        assert "team-a" in screen_text(app).splitlines()[2]  # the tree, on the left
        await pilot.press("n")

        for key, dialog, visible in [
            ("d", ConfirmScreen, ["Delete this entry?", "Delete (y)", "Cancel (n)"]),
            ("t", PromptScreen, ["New TTL for", "Enter to accept, Escape to cancel"]),
            ("question_mark", HelpScreen, ["Keys (Escape closes)", "Overview"]),
        ]:
            await pilot.press(key)
            assert isinstance(app.screen, dialog)
            await wait_until(pilot, lambda v=visible: all(s in screen_text(app) for s in v))
            await pilot.press("escape")
            assert isinstance(app.screen, BrowserScreen)
        assert len(table_keys(app)) == 3  # nothing was changed on the way

        # Proxy: controls, status and stats in one screen.
        url = await start_proxy(pilot)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            await client.post("/v1/chat/completions", json=chat_body("hello"))
        await wait_until(pilot, lambda: "running on" in screen_text(app))
        text = screen_text(app)
        for part in ("Start (s)", "Stop (x)", "host", "port", "hit rate", "tokens saved"):
            assert part in text, part
        await wait_until(pilot, lambda: re.search(r"^ +1 +1 +0 +0 +100%", screen_text(app), re.M))
        await pilot.press("2")
        assert "3 keys shown" in scan_status(app)
        assert app.is_running
