"""The proxy screen: start and stop the built-in proxy, its requests, stats and raw log.

The request log is a table of the proxy's request events (one row each, coloured by cache
result, filtered by result with ``f``); Enter opens a row's entry in the browser. The raw
log (``r``) keeps the proxy's and uvicorn's log lines, warnings and errors included.
Above them: the totals, a hit-rate sparkline over the last five minutes, and the busiest
models and namespaces. Everything is read from bounded buffers on a timer, so traffic never
blocks the screen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import (
    Button,
    ContentSwitcher,
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    RichLog,
    Sparkline,
    Static,
)

from llmcache_tui import humanize
from llmcache_tui.cache.backends import CacheBackendError
from llmcache_tui.defaults import DEFAULT_HOST, DEFAULT_PORT, valid_port
from llmcache_tui.literal import literal, printable
from llmcache_tui.log_bridge import MAX_LINES
from llmcache_tui.proxy.app import ProxyApp
from llmcache_tui.proxy.embedded import ProxyStartError
from llmcache_tui.request_log import FILTERS, Group, RequestLog, Tally
from llmcache_tui.screens.base import AppScreen
from llmcache_tui.screens.browser import BrowserScreen
from llmcache_tui.session import SessionError
from llmcache_tui.widgets.request_table import WIDE, RequestTable, latency, middle_truncate

FILTER_TITLES = {
    "all": "all requests",
    "hit": "hits",
    "miss": "misses",
    "bypass": "bypasses",
    "error": "errors",
}
PROBLEM_LEVELS = (" WARNING ", " ERROR ", " CRITICAL ")  # as the log bridge formats them
TALL = 30  # from this height on, more models and namespaces are listed
TREND_LABEL = "hit rate per 10 s, last 5 min"


class ProxyScreen(AppScreen):
    """Runs the proxy as a worker on the app's own event loop, and shows its traffic."""

    AUTO_FOCUS = "#proxy-start"  # once started, the request log takes the focus

    BINDINGS = [
        Binding("s", "start", "Start", id="proxy.start", tooltip="Start the proxy"),
        Binding("x", "stop", "Stop", id="proxy.stop", tooltip="Stop the proxy"),
        Binding(
            "f",
            "cycle_filter",
            "Filter",
            id="proxy.filter",
            tooltip="Cycle the request log: all, hits, misses, bypasses, errors",
        ),
        Binding(
            "r",
            "toggle_raw_log",
            "Raw log",
            id="proxy.raw_log",
            tooltip="Switch between the request log and the raw log",
        ),
        Binding(
            "enter",
            "open_entry",
            "Open entry",
            id="proxy.open_entry",
            tooltip="Open the selected request's entry in the browser",
        ),
        Binding("ctrl+l", "clear_log", "Clear log", id="proxy.clear_log"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.shown_lines = 0  # log bridge lines written to the raw log
        self.counted_lines = 0  # log bridge lines looked at for warnings
        self.shown_events = 0
        self.problems = 0  # warnings and errors in the raw log since it was last looked at

    @property
    def request_log(self) -> RequestLog:
        return self.llm_app.request_log

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
        with Horizontal(id="proxy-trend"):
            yield Label(TREND_LABEL, id="proxy-trend-label")
            yield Sparkline([], id="proxy-sparkline", summary_function=_last)
            yield Label("", id="proxy-trend-note")
        yield Static(id="proxy-models")
        with ContentSwitcher(initial="proxy-requests", id="proxy-views"):
            yield RequestTable(id="proxy-requests")
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
        if session.proxy is not None:
            # Before the loop runs again: no request of this run goes untold.
            self.request_log.reset_tallies()
            session.proxy.app.request_listeners.append(self.request_log.add)
        self.watch_proxy(task)
        self.refresh_view()
        self.query_one("#proxy-requests", RequestTable).focus()

    @work(group="proxy-run", exit_on_error=False)
    async def watch_proxy(self, task: asyncio.Task[None]) -> None:
        """Wait for the proxy to finish, turning a failed start into a message."""
        try:
            await task
        except ProxyStartError as exc:
            self.llm_app.log_bridge.add(f"ERROR {exc}")
            self.notify(str(exc), title="Proxy did not start", severity="error", timeout=10)
            self._show_view("proxy-log")  # the lines before it say more
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

    # -- the request log -----------------------------------------------------------------
    def action_cycle_filter(self) -> None:
        table = self.query_one("#proxy-requests", RequestTable)
        table.filter = FILTERS[(FILTERS.index(table.filter) + 1) % len(FILTERS)]
        table.load(self.request_log.events)
        self._show_view("proxy-requests")

    def action_toggle_raw_log(self) -> None:
        views = self.query_one("#proxy-views", ContentSwitcher)
        self._show_view("proxy-log" if views.current == "proxy-requests" else "proxy-requests")

    def _show_view(self, view: str) -> None:
        self.query_one("#proxy-views", ContentSwitcher).current = view
        if view == "proxy-log":
            self.problems = 0
            self._refresh_raw_log()
        self.query_one(f"#{view}").focus()
        self._title_views()

    def action_clear_log(self) -> None:
        if self.query_one("#proxy-views", ContentSwitcher).current == "proxy-log":
            self.query_one("#proxy-log", RichLog).clear()
            self.problems = 0
        else:
            self.request_log.clear_events()
            self.query_one("#proxy-requests", RequestTable).load([])
        self._title_views()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "proxy-requests":
            self._open(event.row_key.value)

    def action_open_entry(self) -> None:
        table = self.query_one("#proxy-requests", RequestTable)
        if table.row_count == 0:
            self.notify("No request selected", severity="warning")
            return
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        self._open(row_key.value)

    def _open(self, row_key: str | None) -> None:
        event = self.query_one("#proxy-requests", RequestTable).event_at(row_key)
        if event is None:
            return
        if not event.key:
            self.notify(f"This request has no cache entry ({event.result})", severity="warning")
            return
        self.open_entry(event.key)

    @work(exclusive=True, group="proxy-open", exit_on_error=False)
    async def open_entry(self, key: str) -> None:
        """Show ``key`` in the browser, or say why not (gone, or never stored)."""
        backend = self.llm_app.session.backend
        if backend is None:
            self.notify("Not connected to a cache", severity="warning")
            return
        try:
            raw = await backend.get(key)
        except KeyError:
            raw = None
        except CacheBackendError as exc:
            self.notify(f"Could not read {key}: {exc}", severity="error", timeout=8)
            return
        if raw is None:
            self.notify(
                f"{key} is not in the cache (expired, deleted, or never stored)",
                title="No entry",
                severity="warning",
            )
            return
        await self.app.switch_mode("browser")
        browser = self.app.screen
        if isinstance(browser, BrowserScreen):
            browser.open_key(key)

    # -- refreshing ----------------------------------------------------------------------
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
        wide = self.app.size.width >= WIDE
        totals = self.query_one("#proxy-stats", Static)
        totals.display = proxy is not None  # the last run's numbers stay once it stops
        if proxy is not None:
            totals.update(stats_table(proxy.app, wide=wide))
        self._refresh_trend()
        limit = 6 if self.app.size.height >= TALL else 3
        self.query_one("#proxy-models", Static).update(
            models_table(self.request_log.groups(), limit, wide=wide)
        )
        self.query_one("#proxy-requests", RequestTable).append(
            self.request_log.since(self.shown_events)
        )
        self.shown_events = self.request_log.total
        self._refresh_raw_log()
        self._title_views()

    def _refresh_raw_log(self) -> None:
        bridge = self.llm_app.log_bridge
        if self.query_one("#proxy-views", ContentSwitcher).current == "proxy-log":
            log = self.query_one("#proxy-log", RichLog)
            for line in bridge.since(self.shown_lines):
                # Log lines quote clients' paths and errors: never markup, never raw controls.
                log.write(literal(line))
            self.shown_lines = bridge.total
        else:
            # Not written while hidden: a log without a size holds every write until it is
            # shown; the bridge keeps the recent lines for then.
            for line in bridge.since(self.counted_lines):
                if any(level in line for level in PROBLEM_LEVELS):
                    self.problems += 1
        self.counted_lines = bridge.total

    def _refresh_trend(self) -> None:
        rates = self.request_log.hit_rates(self.llm_app.clock())
        # The sparkline scales to its data's own extremes, so a steady 95% with one 90%
        # would look like a cliff: a 0 and a 1 ride along in each bar's pair as its first
        # value, which the bar (the pair's last value) never shows, to pin 0-100%.
        data: list[float] = []
        for index, rate in enumerate(rates):
            data += [1.0 if index == 1 else 0.0, rate or 0.0]
        self.query_one("#proxy-sparkline", Sparkline).data = data
        latest = next((rate for rate in reversed(rates) if rate is not None), None)
        note = "no lookups" if latest is None else f"latest {latest:.0%}"
        self.query_one("#proxy-trend-note", Label).update(note)

    def _title_views(self) -> None:
        views = self.query_one("#proxy-views", ContentSwitcher)
        if views.current == "proxy-log":
            views.border_title = "Raw log (r: requests)"
            return
        table = self.query_one("#proxy-requests", RequestTable)
        shown = FILTER_TITLES[table.filter]
        title = f"Requests: {shown}, {humanize.count(table.shown)} shown (f: filter"
        title += ", r: raw log"
        if self.problems:
            title += f", {humanize.plural(self.problems, 'warning or error', 'warnings or errors')}"
        views.border_title = title + ")"


def _last(values: Sequence[float]) -> float:
    """Each bar's summary: the last value of its pair (see ``_refresh_trend``)."""
    return values[-1]


def stats_table(app: ProxyApp, *, wide: bool = True) -> Table:
    """The proxy's totals since it started, one row; p99 only where there is room."""
    stats = app.stats.snapshot()
    cache_errors = app.cache.errors if app.cache is not None else 0
    columns = ["requests", "hits", "misses", "collapsed", "hit rate", "p50"]
    cells = [
        humanize.count(stats["requests"]),
        humanize.count(stats["hits"]),
        humanize.count(stats["misses"]),
        humanize.count(stats["coalesced"]),
        _rate(stats["hit_rate"] if stats["hits"] + stats["misses"] else None),
        _milliseconds(stats["latency_p50_ms"]),
    ]
    if wide:
        columns.append("p99")
        cells.append(_milliseconds(stats["latency_p99_ms"]))
    columns += ["tokens saved", "errors"]
    cells += [
        humanize.count(stats["tokens_saved"]),
        humanize.count(stats["upstream_errors"] + cache_errors),
    ]
    table = Table(box=None, padding=(0, 1), show_edge=False)
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(*cells)
    return table


def models_table(groups: list[Group], limit: int, *, wide: bool = True) -> Table | Text:
    """Requests, hits and hit rate per model and namespace, the busiest ``limit`` first."""
    if not groups:
        return Text("no requests yet", style="dim")
    model_width, namespace_width = (32, 20) if wide else (22, 14)
    table = Table(box=None, padding=(0, 1), show_edge=False)
    table.add_column("model", width=model_width, no_wrap=True)
    table.add_column("namespace", width=namespace_width, no_wrap=True)
    for column in ("requests", "hits", "hit rate"):
        table.add_column(column, justify="right")
    shown = groups if len(groups) <= limit else groups[: limit - 1]
    for group in shown:
        tally = group.tally
        table.add_row(
            literal(middle_truncate(group.model or "-", model_width), one_line=True),
            literal(middle_truncate(group.namespace or "-", namespace_width), one_line=True),
            humanize.count(tally.requests),
            humanize.count(tally.hits),
            _rate(tally.hit_rate),
        )
    rest = groups[len(shown) :]
    if rest:
        together = Tally()
        for group in rest:
            together.requests += group.tally.requests
            together.hits += group.tally.hits
            together.lookups += group.tally.lookups
        table.add_row(
            Text(f"and {len(rest):,} more", style="dim"),
            "",
            humanize.count(together.requests),
            humanize.count(together.hits),
            _rate(together.hit_rate),
        )
    return table


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def _milliseconds(value: float | None) -> str:
    return "-" if value is None else latency(value)
