"""The proxy screen (3): the built-in proxy started and stopped on the app's own loop, its
live stats and log, bind errors reported without a crash, and a clean stop on quit.

Requests go over real HTTP (``httpx.AsyncClient`` on the test's loop, which is the app's)
to the embedded proxy, in front of the fake upstream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from textual.widgets import Button, RichLog, Static

from llmcache_tui.app import LLMCacheApp
from llmcache_tui.screens.proxy import ProxyScreen
from tests.fake_upstream import FakeUpstreamServer
from tests.ports import free_port
from tests.tui_support import (
    HIT,
    SIZE,
    STORED,
    chat_body,
    make_app,
    notified,
    occupied_port,
    port_is_free,
    rendered_text,
    screen_text,
    start_proxy,
    type_into,
    wait_until,
)


def stats(app: LLMCacheApp) -> dict[str, str]:
    """The stats table of the proxy screen, by column."""
    header, values = rendered_text(app.screen.query_one("#proxy-stats", Static)).splitlines()
    names = ["requests", "hits", "misses", "collapsed", "hit rate", "p50", "p99"]
    names += ["tokens saved", "errors"]
    assert header.split() == " ".join(names).split()
    cells = values.replace(" ms", "ms").split()
    return dict(zip(names, cells, strict=True))


def log_lines(app: LLMCacheApp) -> list[str]:
    return [strip.text for strip in app.screen.query_one("#proxy-log", RichLog).lines]


def buttons(app: LLMCacheApp) -> tuple[bool, bool]:
    """Whether Start and Stop can be pressed."""
    screen = app.screen
    start = screen.query_one("#proxy-start", Button)
    stop = screen.query_one("#proxy-stop", Button)
    return not start.disabled, not stop.disabled


@pytest.mark.usefixtures("uvicorn_logs_to_app")
async def test_start_count_requests_show_the_log_and_stop(
    tui_config: Callable[..., str],
) -> None:
    app = make_app(tui_config())
    async with app.run_test(size=SIZE) as pilot:
        url = await start_proxy(pilot)
        port = int(url.rsplit(":", 1)[1])
        assert isinstance(app.screen, ProxyScreen)
        await wait_until(pilot, lambda: f"running on {url}" in screen_text(app))
        assert "in-memory cache: the Browser (2) shows this proxy's own entries" in (
            screen_text(app)
        )
        assert buttons(app) == (False, True)

        # Without the /v1 prefix, so that these log lines are the proxy's, not the upstream's.
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            miss = await client.post("/chat/completions", json=chat_body("one"))
            hit = await client.post("/chat/completions", json=chat_body("one"))
            other = await client.post("/chat/completions", json=chat_body("two"))
        assert miss.headers["cache-status"] == STORED
        assert hit.headers["cache-status"] == HIT
        assert other.headers["cache-status"] == STORED

        await wait_until(pilot, lambda: stats(app)["requests"] == "3", what="stats")
        shown = stats(app)
        assert (shown["hits"], shown["misses"], shown["hit rate"]) == ("1", "2", "33%")
        assert shown["p50"].endswith("ms")
        assert shown["tokens saved"] == str(miss.json()["usage"]["total_tokens"])
        assert shown["errors"] == "0"
        await pilot.press("r")  # the raw log
        await wait_until(
            pilot,
            lambda: sum('"POST /chat/completions HTTP/1.1" 200' in x for x in log_lines(app)) == 3,
            what="the access log",
        )
        assert any("Application startup complete" in x for x in log_lines(app))

        await pilot.press("s")  # already running: refused, nothing breaks
        assert app.session.proxy_running

        await pilot.press("1")  # the overview shows it too
        await wait_until(pilot, lambda: "3 requests, 1 hit, hit rate 33%" in screen_text(app))
        assert f"running on {url}" in screen_text(app)

        await pilot.press("3", "x")
        await wait_until(pilot, lambda: not app.session.proxy_running, what="the stop")
        await wait_until(pilot, lambda: notified(app, "Proxy stopped"))
        assert port_is_free(port)
        assert "stopped" in screen_text(app)
        assert buttons(app) == (True, False)
        assert stats(app)["requests"] == "3"  # the last numbers stay on screen

        await pilot.press("x")  # stopping again only says so
        await wait_until(pilot, lambda: notified(app, "The proxy is not running"))
        assert app.is_running


async def test_port_in_use_is_reported_and_the_app_keeps_running(
    tui_config: Callable[..., str],
) -> None:
    app = make_app(tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        with occupied_port() as port:
            await type_into(pilot, "#proxy-port", str(port))
            await pilot.press("s")
            await wait_until(pilot, lambda: notified(app, "Proxy did not start"))
            assert notified(app, f"cannot listen on 127.0.0.1:{port}")
            [error] = [n for n in app._notifications if n.title == "Proxy did not start"]
            assert error.severity == "error"
            assert app.is_running
            assert not app.session.proxy_running
            await wait_until(pilot, lambda: buttons(app) == (True, False))
            assert "stopped" in screen_text(app)
            await wait_until(pilot, lambda: any("ERROR cannot listen" in x for x in log_lines(app)))

        await type_into(pilot, "#proxy-port", "0")
        await pilot.press("s")
        await wait_until(pilot, lambda: notified(app, "Port must be a number from 1 to 65535"))
        assert not app.session.proxy_running
        assert app.is_running


async def test_quit_stops_the_proxy_after_its_open_requests_and_frees_the_port(
    tui_config: Callable[..., str], upstream: FakeUpstreamServer
) -> None:
    app = make_app(tui_config())
    async with app.run_test(size=SIZE) as pilot:
        url = await start_proxy(pilot)
        port = int(url.rsplit(":", 1)[1])
        upstream.app.delay = 0.5
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            in_flight = asyncio.create_task(
                client.post("/v1/chat/completions", json=chat_body("slow one"))
            )
            await wait_until(pilot, lambda: upstream.app.call_count("chat/completions") == 1)
            await pilot.press("q")
            response = await in_flight
        assert response.status_code == 200  # answered before the proxy stopped
        assert response.json()["choices"][0]["message"]["content"] == "echo: slow one"
        await wait_until(pilot, lambda: not app.is_running, what="the app to exit")
    assert app.return_code == 0
    assert app.session.proxy_task is None
    assert port_is_free(port)


async def test_quit_without_a_proxy_exits(tui_config: Callable[..., str]) -> None:
    app = make_app(tui_config())
    port = free_port()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await wait_until(pilot, lambda: not app.is_running, what="the app to exit")
    assert app.return_code == 0
    assert port_is_free(port)
