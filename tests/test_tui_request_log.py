"""The proxy screen's request log: one row per request through the embedded proxy, filtered
by result, Enter opening the entry in the browser; the stats per model and namespace, and
the hit-rate sparkline.

Requests go over real HTTP (``httpx.AsyncClient`` on the app's loop) to the embedded
proxy, in front of the fake upstream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest
from textual.widgets import ContentSwitcher, RichLog, Sparkline, Static

from llmcache_tui.app import LLMCacheApp
from llmcache_tui.proxy.events import RequestEvent
from llmcache_tui.screens.browser import BrowserScreen
from llmcache_tui.screens.proxy import ProxyScreen
from llmcache_tui.widgets.request_table import RequestTable
from tests.tui_support import (
    CHAT_MODEL,
    SIZE,
    SMALL,
    cache_key,
    chat_body,
    detail_text,
    make_app,
    notified,
    rendered_text,
    screen_text,
    selected_key,
    start_proxy,
    wait_for_group,
    wait_until,
)


def table(app: LLMCacheApp) -> RequestTable:
    return app.screen.query_one("#proxy-requests", RequestTable)


def shown_events(app: LLMCacheApp) -> list[RequestEvent]:
    """The events of the request log's rows, top to bottom."""
    requests = table(app)
    events = [requests.event_at(str(row.key.value)) for row in requests.ordered_rows]
    return [event for event in events if event is not None]


def results(app: LLMCacheApp) -> list[str]:
    return [event.result for event in shown_events(app)]


def row_texts(app: LLMCacheApp) -> list[str]:
    """Each row as the cells' text, joined by single spaces."""
    requests = table(app)
    return [
        " ".join(str(cell) for cell in requests.get_row(row.key)) for row in requests.ordered_rows
    ]


def models(app: LLMCacheApp) -> list[list[str]]:
    """The per model and namespace table, one list of cells per line (header first)."""
    text = rendered_text(app.screen.query_one("#proxy-models", Static))
    return [line.split() for line in text.splitlines() if line.strip()]


def views_title(app: LLMCacheApp) -> str:
    return str(app.screen.query_one("#proxy-views", ContentSwitcher).border_title)


def select(app: LLMCacheApp, key: str, result: str) -> None:
    """Put the cursor on the row of ``key`` with ``result``."""
    requests = table(app)
    for index, event in enumerate(shown_events(app)):
        if event.key == key and event.result == result:
            requests.focus()
            requests.move_cursor(row=index)
            return
    raise AssertionError(f"no {result} row for {key}")


async def test_requests_appear_filter_by_result_and_open_in_the_browser(
    tui_config: Callable[..., str],
) -> None:
    app = make_app(tui_config())
    async with app.run_test(size=SIZE) as pilot:
        url = await start_proxy(pilot)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            stored = await client.post("/v1/chat/completions", json=chat_body("one"))
            await client.post("/v1/chat/completions", json=chat_body("one"))
            team = await client.post(
                "/v1/chat/completions", json=chat_body("two", namespace="team-a")
            )
            bypass = chat_body("three", **{"no-cache": True, "no-store": True})
            await client.post("/v1/chat/completions", json=bypass)
            await client.post("/v1/chat/completions", content=b"{not json")
        key, team_key = cache_key(stored), cache_key(team)

        await wait_until(pilot, lambda: len(results(app)) == 5, what="five rows")
        assert results(app) == ["stored", "hit", "stored", "bypass", "rejected"]
        events = shown_events(app)
        assert [event.key for event in events] == [key, key, team_key, "", ""]
        assert [event.model for event in events] == [CHAT_MODEL] * 4 + [""]
        assert events[2].namespace == "team-a"
        rows = row_texts(app)
        assert all(CHAT_MODEL in row for row in rows[:4])
        assert key[:8] in rows[0] and key[-8:] in rows[0]  # cut in the middle to fit
        assert " 200 " in rows[1] and " 400 " in rows[4]
        assert "namespace" in screen_text(app)  # wide enough for every column
        assert views_title(app).startswith("Requests: all requests, 5 shown")

        # Per model and namespace: the busiest first, hit rates of lookups only.
        assert models(app)[0] == ["model", "namespace", "requests", "hits", "hit", "rate"]
        assert [CHAT_MODEL, "-", "3", "1", "50%"] in models(app)
        assert [CHAT_MODEL, "team-a", "1", "0", "0%"] in models(app)
        assert ["-", "-", "1", "0", "-"] in models(app)  # the rejected request: no rate
        sparkline = app.screen.query_one("#proxy-sparkline", Sparkline)
        assert sparkline.data is not None and len(sparkline.data) == 60
        assert max(sparkline.data[1::2]) > 0  # this bucket's hit rate, the others idle
        assert "None" not in screen_text(app)

        await pilot.press("f")
        await wait_until(pilot, lambda: results(app) == ["hit"], what="the hits")
        assert views_title(app).startswith("Requests: hits, 1 shown")
        await pilot.press("f")
        assert results(app) == ["stored", "stored"]
        await pilot.press("f")
        assert results(app) == ["bypass"]
        await pilot.press("f")
        assert results(app) == ["rejected"]
        await pilot.press("f")
        assert len(results(app)) == 5

        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            await client.post("/v1/chat/completions", json=chat_body("two", namespace="team-a"))
        await wait_until(pilot, lambda: len(results(app)) == 6, what="a live row")
        assert results(app)[-1] == "hit"
        assert table(app).cursor_row == 5  # the cursor follows the newest row
        await wait_until(
            pilot, lambda: [CHAT_MODEL, "team-a", "2", "1", "50%"] in models(app), what="stats"
        )

        select(app, team_key, "hit")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, BrowserScreen), what="browser")
        await wait_for_group(pilot, "browser-scan")
        await wait_until(pilot, lambda: selected_key(app) == team_key, what="the row")
        await wait_for_group(pilot, "browser-detail")
        await wait_until(pilot, lambda: team_key in detail_text(app), what="the detail")
        assert "echo: two" in detail_text(app)

        # An entry that is gone is said to be gone; the request log stays in view.
        backend = app.session.backend
        assert backend is not None
        await backend.delete([key])
        await pilot.press("3")
        select(app, key, "hit")
        await pilot.press("enter")
        await wait_until(pilot, lambda: notified(app, "is not in the cache"), what="the toast")
        assert isinstance(app.screen, ProxyScreen)

        select(app, "", "bypass")
        await pilot.press("enter")
        await wait_until(pilot, lambda: notified(app, "has no cache entry (bypass)"))
        assert isinstance(app.screen, ProxyScreen)


@pytest.mark.usefixtures("uvicorn_logs_to_app")
async def test_narrow_screen_drops_columns_and_the_raw_log_is_a_key_away(
    tui_config: Callable[..., str],
) -> None:
    app = make_app(tui_config())
    async with app.run_test(size=SMALL) as pilot:
        url = await start_proxy(pilot)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            stored = await client.post("/v1/chat/completions", json=chat_body("narrow"))
        await wait_until(pilot, lambda: results(app) == ["stored"], what="the row")
        text = screen_text(app)
        header = next(line for line in text.splitlines() if line.lstrip().startswith("time"))
        assert header.split() == ["time", "result", "st.", "latency", "model", "key"]
        assert CHAT_MODEL in row_texts(app)[0]
        assert cache_key(stored)[:8] in row_texts(app)[0]
        assert all(len(line) <= 80 for line in text.splitlines())

        logging.getLogger("llmcache_tui.proxy").warning("something to read")
        await wait_until(
            pilot, lambda: "1 warning or error" in views_title(app), what="the warning count"
        )
        # Hidden, the raw log is not written to (it would hold every line until shown).
        assert not app.screen.query_one("#proxy-log", RichLog)._deferred_renders
        await pilot.press("r")
        views = app.screen.query_one("#proxy-views", ContentSwitcher)
        assert views.current == "proxy-log"
        assert views_title(app) == "Raw log (r: requests)"
        await wait_until(
            pilot,
            lambda: '"POST /v1/chat/completions HTTP/1.1" 200' in screen_text(app),
            what="the raw log lines",
        )
        assert "something to read" in screen_text(app)
        await pilot.press("r")
        assert views.current == "proxy-requests"
        assert "warning" not in views_title(app)  # seen

        await pilot.press("ctrl+l")  # clears the view in sight: the request log
        assert results(app) == []
        assert views_title(app).startswith("Requests: all requests, 0 shown")
        assert app.request_log.groups()[0].tally.requests == 1  # the stats stay
