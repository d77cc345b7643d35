"""The proxy screen: start and stop the built-in proxy, its live log and request stats."""

from __future__ import annotations

import asyncio

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, Footer, Header, Input, Label, RichLog, Static

from llmcache_tui.defaults import DEFAULT_HOST, DEFAULT_PORT, valid_port
from llmcache_tui.literal import literal, printable
from llmcache_tui.log_bridge import MAX_LINES
from llmcache_tui.proxy.app import ProxyApp
from llmcache_tui.proxy.embedded import ProxyStartError
from llmcache_tui.screens.base import AppScreen
from llmcache_tui.session import SessionError


class ProxyScreen(AppScreen):
    """Runs the proxy as a worker on the app's own event loop."""

    AUTO_FOCUS = "#proxy-start"

    BINDINGS = [
        Binding("s", "start", "Start", id="proxy.start", tooltip="Start the proxy"),
        Binding("x", "stop", "Stop", id="proxy.stop", tooltip="Stop the proxy"),
        Binding("ctrl+l", "clear_log", "Clear log", id="proxy.clear_log"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.shown_lines = 0

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="proxy-controls"):
            yield Label("host", classes="field-label")
            yield Input(DEFAULT_HOST, id="proxy-host")
            yield Label("port", classes="field-label")
            yield Input(str(DEFAULT_PORT), id="proxy-port", type="integer")
            yield Button("Start (s)", id="proxy-start", variant="success")
            yield Button("Stop (x)", id="proxy-stop", variant="error")
        yield Static(id="proxy-status")
        yield Static(id="proxy-stats")
        yield RichLog(id="proxy-log", max_lines=MAX_LINES, wrap=True, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.every(0.5, self.refresh_view)
        self.refresh_view()

    def shown(self) -> None:
        self.refresh_view()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "proxy-start":
            self.action_start()
        elif event.button.id == "proxy-stop":
            self.action_stop()

    def action_start(self) -> None:
        session = self.llm_app.session
        host = self.query_one("#proxy-host", Input).value.strip() or DEFAULT_HOST
        port_text = self.query_one("#proxy-port", Input).value.strip()
        if not port_text.isdigit() or not valid_port(int(port_text)):
            self.notify("Port must be a number from 1 to 65535", severity="error")
            return
        try:
            task = session.start_proxy(host, int(port_text))
        except SessionError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.watch_proxy(task)
        self.refresh_view()
        self.query_one("#proxy-stop", Button).focus()

    @work(group="proxy-run", exit_on_error=False)
    async def watch_proxy(self, task: asyncio.Task[None]) -> None:
        """Wait for the proxy to finish, turning a failed start into a message."""
        try:
            await task
        except ProxyStartError as exc:
            self.llm_app.log_bridge.add(f"ERROR {exc}")
            self.notify(str(exc), title="Proxy did not start", severity="error", timeout=10)
        self.refresh_view()
        self.query_one("#proxy-start", Button).focus()

    @work(group="proxy-stop", exit_on_error=False)
    async def action_stop(self) -> None:
        session = self.llm_app.session
        if not session.proxy_running:
            self.notify("The proxy is not running")
            return
        await session.stop_proxy()
        self.notify("Proxy stopped")  # watch_proxy refreshes the view as the task ends

    def action_clear_log(self) -> None:
        self.query_one("#proxy-log", RichLog).clear()

    def refresh_view(self) -> None:
        session = self.llm_app.session
        proxy = session.proxy
        running = session.proxy_running
        self.query_one("#proxy-start", Button).disabled = running
        self.query_one("#proxy-stop", Button).disabled = not running
        status = Text()
        if running and proxy is not None:
            status.append("running", style="bold green")
            status.append(printable(f" on http://{proxy.host}:{proxy.port}"))
            if session.backend is not None and session.backend.process_local:
                note = "\nin-memory cache: the Browser (2) shows this proxy's own entries"
                status.append(note, style="dim")
        else:
            status.append("stopped", style="dim")
        self.query_one("#proxy-status", Static).update(status)
        if proxy is not None:
            self.query_one("#proxy-stats", Static).update(_stats_table(proxy.app))
        log = self.query_one("#proxy-log", RichLog)
        bridge = self.llm_app.log_bridge
        for line in bridge.since(self.shown_lines):
            # Log lines quote clients' paths and errors: never markup, never raw controls.
            log.write(literal(line))
        self.shown_lines = bridge.total


def _stats_table(app: ProxyApp) -> Table:
    stats = app.stats.snapshot()
    cache_errors = app.cache.errors if app.cache is not None else 0
    p50 = stats["latency_p50_ms"]
    table = Table(box=None, padding=(0, 1), show_edge=False)
    columns = ("requests", "hits", "misses", "shared", "hit rate", "p50", "tokens saved", "errors")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(
        f"{stats['requests']:,}",
        f"{stats['hits']:,}",
        f"{stats['misses']:,}",
        f"{stats['coalesced']:,}",
        f"{stats['hit_rate']:.0%}",
        "-" if p50 is None else f"{p50:.1f} ms",
        f"{stats['tokens_saved']:,}",
        f"{stats['upstream_errors'] + cache_errors:,}",
    )
    return table
