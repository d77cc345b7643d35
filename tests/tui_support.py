"""Helpers for the terminal app tests (tests/test_tui_*.py).

The app runs in ``App.run_test()`` on the test's own event loop, so the embedded proxy it
starts serves on that loop too: the tests talk to it with ``httpx.AsyncClient``. Waiting is
always for a condition (``wait_until``) or a named worker group, never for every worker:
the proxy's watcher worker lives as long as the proxy runs.
"""

from __future__ import annotations

import html
import io
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import yaml
from rich.console import Console
from textual.app import App
from textual.notifications import Notification
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Label, Static

from llmcache_tui.app import LLMCacheApp
from llmcache_tui.config import parse_settings
from llmcache_tui.screens.confirm import ConfirmScreen, TypedConfirmScreen
from llmcache_tui.session import Session
from tests.ports import free_port
from tests.servers import RunningProxy, litellm_config

SIZE = (120, 36)
SMALL = (80, 24)
CONFIG_SOURCE = "config.yaml"  # the stable source name shown in the header and overview
CHAT_MODEL = "gpt-4o-mini"
PAUSE = 0.02
STORED = "llmcache; fwd=miss; stored"
HIT = "llmcache; hit"


# --------------------------------------------------------------------------- config, app


def config_text(
    api_base: str,
    *,
    cache_type: str = "local",
    cache_params: dict[str, Any] | None = None,
    master_key: str | None = None,
    api_key: str | None = None,
    llmcache: dict[str, Any] | None = None,
    models: dict[str, str] | None = None,
) -> str:
    """A LiteLLM config.yaml (models on ``api_base``, with ``api_key`` if given) as text;
    ``models`` (model_name -> litellm model) replaces the default model list."""
    params: dict[str, Any] = {"type": cache_type, **(cache_params or {})}
    general = {"master_key": master_key} if master_key else None
    document = litellm_config(
        api_base, cache_params=params, general_settings=general, models=models
    )
    if api_key is not None:
        for model in document["model_list"]:
            model["litellm_params"]["api_key"] = api_key
    if llmcache is not None:
        document["llmcache"] = llmcache
    return yaml.safe_dump(document, sort_keys=False)


def make_app(
    text: str, *, read_only: bool = False, clock: Callable[[], float] | None = None
) -> LLMCacheApp:
    session = Session(parse_settings(text, CONFIG_SOURCE), read_only=read_only)
    if clock is None:
        return LLMCacheApp(session)
    return LLMCacheApp(session, clock=clock)


# --------------------------------------------------------------------------- waiting


async def wait_until(
    pilot: Pilot[Any], predicate: Callable[[], object], timeout: float = 10.0, what: str = ""
) -> None:
    """Let the app run until ``predicate()`` is true; fail after about ``timeout`` seconds.

    The bound is a number of short pauses, so a slow machine only makes the test slower.
    """
    for _ in range(int(timeout / PAUSE) + 1):
        if predicate():
            return
        await pilot.pause(PAUSE)
    if predicate():
        return
    raise AssertionError(f"timed out waiting for {what or predicate}")


def running(app: App[Any], group: str) -> list[Any]:
    """The workers of ``group`` still running."""
    return [w for w in app.workers if w.group == group and w.is_running]


async def wait_for_group(pilot: Pilot[Any], group: str, timeout: float = 10.0) -> None:
    """Wait until no worker of ``group`` runs (the scan, the detail load, ...), then let
    the screen take in what they posted. Call it after the key press that starts them."""
    await wait_until(pilot, lambda: not running(pilot.app, group), timeout, f"workers {group}")
    await pilot.pause()


# --------------------------------------------------------------------------- what is shown


_SVG_TEXT = re.compile(
    r'<text [^>]*\bx="([0-9.]+)"[^>]*clip-path="url\(#[^)]*-line-(\d+)\)"[^>]*>(.*?)</text>'
)
SVG_CHAR_WIDTH = 20 * 0.61  # Rich's export_svg: line height 20, font aspect ratio 0.61


def screen_text(app: LLMCacheApp) -> str:
    """The visible screen as plain text, one line per terminal row (from the SVG export).

    Rich leaves whitespace-only segments out of the SVG, so each fragment is placed at
    its column.
    """
    width, height = app.size
    rows = [[" "] * width for _ in range(height)]
    for x, line, fragment in _SVG_TEXT.findall(app.export_screenshot()):
        if int(line) >= height:
            continue  # exported while the screen was being laid out anew: not visible
        row, column = rows[int(line)], round(float(x) / SVG_CHAR_WIDTH)
        for offset, char in enumerate(html.unescape(fragment).replace("\xa0", " ")):
            if column + offset < width:
                row[column + offset] = char
    return "\n".join("".join(row).rstrip() for row in rows)


def footer_text(app: LLMCacheApp) -> str:
    """The bottom row: the footer's key bindings."""
    return screen_text(app).split("\n")[-1]


def notifications(app: LLMCacheApp) -> list[Notification]:
    """The notifications (toasts) the app has shown and not yet expired."""
    return list(app._notifications)


def notified(app: LLMCacheApp, text: str) -> bool:
    """Whether a notification's title or message contains ``text``."""
    return any(text in f"{n.title} {n.message}" for n in notifications(app))


def rendered_text(widget: Static, width: int = 200) -> str:
    """What a Static shows, as plain text, including any part scrolled out of view."""
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()


def detail_text(app: LLMCacheApp) -> str:
    screen = app.screen
    return "\n".join(
        rendered_text(screen.query_one(selector, Static))
        for selector in ("#detail-summary", "#detail-body")
    )


def table_keys(app: LLMCacheApp) -> list[str]:
    table = app.screen.query_one("#keys", DataTable)
    return [str(row.key.value) for row in table.ordered_rows]


def table_row(app: LLMCacheApp, key: str) -> dict[str, str]:
    """One row of the key table by column label: key, model, type, age, TTL, size."""
    table = app.screen.query_one("#keys", DataTable)
    labels = [str(column.label) for column in table.ordered_columns]
    return dict(zip(labels, map(str, table.get_row(key)), strict=True))


def scan_status(app: LLMCacheApp) -> str:
    return str(app.screen.query_one("#scan-status", Label).content)


def selected_key(app: LLMCacheApp) -> str | None:
    table = app.screen.query_one("#keys", DataTable)
    if table.row_count == 0:
        return None
    row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
    return None if row_key.value is None else str(row_key.value)


# --------------------------------------------------------------------------- the browser


async def open_browser(pilot: Pilot[Any], *, refresh: bool = False) -> None:
    """Show the browser (2) and wait for its key scan and namespace discovery."""
    await pilot.press("2")
    if refresh:
        await pilot.press("f5")
    await wait_for_group(pilot, "browser-scan")
    await wait_for_group(pilot, "browser-explore")


async def select_row(pilot: Pilot[Any], key: str) -> None:
    """Move the table cursor to ``key`` with the arrow keys; wait for the detail pane."""
    app = pilot.app
    assert isinstance(app, LLMCacheApp)
    table = app.screen.query_one("#keys", DataTable)
    table.focus()
    await pilot.press("ctrl+home")
    for _ in range(table.row_count):
        if selected_key(app) == key:
            break
        await pilot.press("down")
    assert selected_key(app) == key, f"{key} is not in the table"
    await wait_for_group(pilot, "browser-detail")
    await wait_until(pilot, lambda: key in detail_text(app), what=f"the detail of {key}")


async def ask_purge(pilot: Pilot[Any]) -> str:
    """Press P and wait for the purge's question (it comes after the dry-run count);
    return the question's text."""
    app = pilot.app
    await pilot.press("P")
    await wait_until(
        pilot,
        lambda: isinstance(app.screen, ConfirmScreen | TypedConfirmScreen),
        what="the purge confirmation",
    )
    return str(app.screen.query_one(".dialog-question", Label).content)


async def purge_whole_cache(pilot: Pilot[Any]) -> None:
    """Press P and confirm a purge of everything by typing the word it asks for."""
    await ask_purge(pilot)
    assert isinstance(pilot.app.screen, TypedConfirmScreen)
    await pilot.press(*"purge", "enter")


# --------------------------------------------------------------------------- the proxy


async def type_into(pilot: Pilot[Any], selector: str, text: str) -> None:
    """Focus an input, clear it and type ``text``, then leave it with Escape."""
    pilot.app.screen.query_one(selector, Input).focus()
    await pilot.press("ctrl+a", "ctrl+k", *text, "escape")


async def start_proxy(pilot: Pilot[Any], port: int | None = None) -> str:
    """Start the app's own proxy from its screen (3) on a free port; return its base URL."""
    app = pilot.app
    assert isinstance(app, LLMCacheApp)
    await pilot.press("3")
    if app.session.proxy_running and app.session.proxy is not None:
        return f"http://127.0.0.1:{app.session.proxy.port}"
    for _ in range(3):  # a free port may be taken before the proxy binds it
        await type_into(pilot, "#proxy-port", str(port or free_port()))
        await pilot.press("s")
        await wait_until(
            pilot,
            lambda: (
                app.session.proxy is not None
                and (app.session.proxy.running or not app.session.proxy_running)
            ),
            what="the proxy to start",
        )
        proxy = app.session.proxy
        assert proxy is not None
        if proxy.running:
            return f"http://127.0.0.1:{proxy.port}"
        if port is not None:
            break
    raise AssertionError("the proxy did not start")


@dataclass(frozen=True)
class Ask:
    """One chat prompt to seed the cache with, optionally namespaced or with its own TTL."""

    text: str
    namespace: str | None = None
    ttl: float | None = None

    def body(self) -> dict[str, Any]:
        cache = {} if self.ttl is None else {"ttl": self.ttl}
        return chat_body(self.text, namespace=self.namespace, **cache)


def chat_body(text: str, *, namespace: str | None = None, **cache: Any) -> dict[str, Any]:
    """A chat completion request; ``cache`` holds per-request controls (``ttl``, ...)."""
    body: dict[str, Any] = {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": text}],
    }
    if namespace is not None:
        cache["namespace"] = namespace
    if cache:
        body["cache"] = cache
    return body


def cache_key(response: httpx.Response) -> str:
    return response.headers["x-litellm-cache-key"]


@contextmanager
def occupied_port() -> Iterator[int]:
    """A loopback port with a listening socket on it, for the duration of the block."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def seed_through_proxy(
    pilot: Pilot[Any], asks: list[Ask], headers: dict[str, str] | None = None
) -> dict[str, str]:
    """Start the app's own proxy and send one chat per ``Ask``; prompt text -> stored key."""
    url = await start_proxy(pilot)
    keys: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=url, timeout=10, headers=headers) as client:
        for ask in asks:
            response = await client.post("/v1/chat/completions", json=ask.body())
            assert response.headers["cache-status"] == STORED, response.text
            keys[ask.text] = cache_key(response)
    return keys


def seed_served_proxy(proxy: RunningProxy, asks: list[Ask]) -> dict[str, str]:
    """Send one chat per ``Ask`` through a separately served proxy; prompt text -> key."""
    keys: dict[str, str] = {}
    with proxy.http() as http:
        for ask in asks:
            response = http.post("/v1/chat/completions", json=ask.body())
            assert response.headers["cache-status"] == STORED, response.text
            keys[ask.text] = cache_key(response)
    return keys


# --------------------------------------------------------------------------- the probe


async def probe_prompt(pilot: Pilot[Any], prompt: str) -> None:
    """Show the probe (4), put ``prompt`` in its field, press Enter and wait for the report."""
    app = pilot.app
    await pilot.press("4")
    await wait_until(pilot, lambda: app.current_mode == "probe", what="the probe screen")
    field = app.screen.query_one("#probe-prompt", Input)
    field.value = prompt
    field.focus()
    await pilot.press("enter")
    await wait_until(pilot, lambda: bool(app.screen.query("#probe-rows")), what="rows")
    await wait_for_group(pilot, "probe-run", timeout=60)


def verdict_panel(app: LLMCacheApp) -> str:
    """The probe's verdict panel: what the proxy would answer, the key, the threshold."""
    return rendered_text(app.screen.query_one("#probe-verdict", Static))


def probe_rows(app: LLMCacheApp) -> dict[str, dict[str, str]]:
    """The probe's rows by storage key, best first: each cell by its column's key (sim,
    verdict, prompt, model, ...) plus ``style``, the prompt cell's style ("dim": another
    scope)."""
    table = app.screen.query_one("#probe-rows", DataTable)
    columns = [str(column.key.value) for column in table.ordered_columns]
    shown = {}
    for row in table.ordered_rows:
        cells = table.get_row(row.key)
        by_column = dict(zip(columns, cells, strict=True))
        shown[str(row.key.value)] = {
            **{column: str(cell) for column, cell in by_column.items()},
            "style": str(getattr(by_column["prompt"], "style", "")),
        }
    return shown


async def type_threshold(pilot: Pilot[Any], text: str) -> None:
    """Type ``text`` in the probe's threshold field and press Enter."""
    field = pilot.app.screen.query_one("#probe-threshold", Input)
    field.value = text
    field.focus()
    await pilot.press("enter")
    await pilot.pause()
