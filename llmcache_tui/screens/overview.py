"""The overview: which config and backend, its masked parameters, health, size, proxy state.

Each number says what it measures: the cache's size is the values' stored bytes, the disk
used, or (Redis) the whole server's memory; the Redis hit rate is the server's keyspace
rate, not the proxy's. A parameter that is not set says so (never ``None``).
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.pretty import Pretty
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from llmcache_tui import humanize
from llmcache_tui.config import ConfigError
from llmcache_tui.literal import literal
from llmcache_tui.screens.base import AppScreen
from llmcache_tui.screens.prompt import PromptScreen
from llmcache_tui.session import Health, SessionError

REFRESH_SECONDS = 5.0
# Already shown another way, or only noise on this panel.
HIDDEN_DETAILS = frozenset({"directory", "used_memory_human"})
# Backend details named for people where the plain name would be ambiguous.
DETAIL_LABELS = {"hit_rate": "keyspace hit rate", "maxmemory": "max memory"}
NOT_SET = "not set"


class OverviewScreen(AppScreen):
    """What the app is connected to, and whether it is healthy."""

    BINDINGS = [
        Binding("r", "reconnect", "Reconnect", id="overview.reconnect"),
        Binding("ctrl+o", "open_config", "Open config", id="overview.open_config"),
        Binding("f5", "refresh", "Refresh", id="overview.refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.health: Health | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="overview"):
            # What changes first: at 80x24 the config panel is the one that scrolls.
            yield Static(id="overview-health")
            yield Static(id="overview-proxy")
            yield Static(id="overview-config")
        yield Footer()

    def on_mount(self) -> None:
        self.every(REFRESH_SECONDS, self.action_refresh)
        self.every(1.0, self._show_proxy)

    def session_changed(self) -> None:
        self.health = None
        self._show_config()

    def shown(self) -> None:
        self.action_refresh()
        self._show_proxy()

    def action_refresh(self) -> None:
        self.check_health()

    @work(exclusive=True, group="overview-health", exit_on_error=False)
    async def check_health(self) -> None:
        self.health = await self.llm_app.session.health(clock=self.llm_app.clock)
        self._show_health()

    def _show_config(self) -> None:
        # Paths, names and warnings come from the config: a str cell of a Rich table is markup.
        session = self.llm_app.session
        settings = session.settings
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("config", literal(settings.source))
        cache = settings.cache
        table.add_row("cache type", cache.type if cache else "off (litellm_settings.cache)")
        labels = {"config", "cache type", "models", "auth", "access"}
        if cache is not None:
            table.add_row("namespace", literal(cache.namespace or "-"))
            table.add_row("cache mode", literal(cache.params.mode))
            table.add_row("call types", literal(", ".join(sorted(cache.routes)) or "none"))
            labels |= {"namespace", "cache mode", "call types"}
        if session.backend is not None:
            kind = session.backend.cache_type
            for name, value in settings.redactor.redact(session.backend.describe()).items():
                # Redis's "mode" (single, cluster...) is not the cache's mode.
                label = f"{kind} {name}" if name in labels or name == "mode" else name
                table.add_row(literal(label), _text(value))
        models = ", ".join(m.model_name for m in settings.model_list) or "-"
        table.add_row("models", literal(models))
        table.add_row("auth", "master key set" if settings.master_key else "none")
        table.add_row("access", "read-only" if session.read_only else "read-write")
        parts: list[Any] = [table]
        for warning in settings.warnings:
            parts.append(literal(f"warning: {warning}", style="yellow"))
        panel = Panel(Group(*parts), title="Configuration", title_align="left")
        self.query_one("#overview-config", Static).update(panel)

    def _show_health(self) -> None:
        health = self.health
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        if health is None:
            table.add_row("state", "checking...")
        elif health.connected:
            table.columns[1].justify = "right"  # numbers line up by their last digit
            table.add_row("state", Text("connected", style="green"))
            ping = "-" if health.ping_ms is None else f"{health.ping_ms:.2f} ms"
            table.add_row("ping", ping)
            table.add_row("entries", humanize.count(health.entries))
            table.add_row(self._size_label(), humanize.size(health.bytes_used))
            for name, value in health.details.items():
                if value is not None and name not in HIDDEN_DETAILS:
                    label = DETAIL_LABELS.get(name, name.replace("_", " "))
                    table.add_row(literal(label), literal(_detail(name, value)))
        else:
            table.add_row("state", Text("not connected", style="red"))
            table.add_row("reason", literal(health.error or "-"))
        if health is not None:
            table.add_row("checked", humanize.timestamp(health.checked_at))
        title = "Cache backend (r reconnects)"
        self.query_one("#overview-health", Static).update(
            Panel(table, title=title, title_align="left")
        )

    def _size_label(self) -> str:
        """What the backend's size measures: the values' bytes, the disk used, or (Redis)
        the server's memory for every key, overhead included."""
        backend = self.llm_app.session.backend
        if backend is not None and backend.sizes_are_memory:
            return "server memory"
        if backend is not None and backend.cache_type == "disk":
            return "on disk"
        return "stored"

    def _show_proxy(self) -> None:
        session = self.llm_app.session
        proxy = session.proxy
        if session.proxy_running and proxy is not None:
            stats = proxy.app.stats.snapshot()
            state = literal(f"running on http://{proxy.host}:{proxy.port}", style="green")
            detail = (
                f"{humanize.plural(stats['requests'], 'request')},"
                f" {humanize.plural(stats['hits'], 'hit')}, hit rate {stats['hit_rate']:.0%}"
            )
            body: Any = Group(state, Text(detail))
        else:
            body = Text("stopped (start it from the Proxy screen: 3)")
        self.query_one("#overview-proxy", Static).update(
            Panel(body, title="Proxy", title_align="left")
        )

    @work(exclusive=True, group="overview-connect", exit_on_error=False)
    async def action_reconnect(self) -> None:
        try:
            await self.llm_app.session.reconnect()
        except SessionError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.llm_app.session_changed()
        self.notify("Reconnected")

    def action_open_config(self) -> None:
        def chosen(path: str | None) -> None:
            if path:
                self.open_config(path.strip())

        self.app.push_screen(
            PromptScreen("Open a LiteLLM config.yaml", placeholder="path/to/config.yaml"), chosen
        )

    @work(exclusive=True, group="overview-connect", exit_on_error=False)
    async def open_config(self, path: str) -> None:
        try:
            await self.llm_app.session.open_config(path)
        except (ConfigError, SessionError) as exc:
            self.notify(str(exc), title="Config not opened", severity="error", timeout=10)
            return
        self.llm_app.session_changed()
        self.notify(f"Opened {path}")


def _text(value: Any) -> Any:
    # Pretty shows a repr, which is never markup.
    if value is None:
        return Text(NOT_SET)
    return Pretty(value) if isinstance(value, dict | list | tuple) else literal(value)


def _detail(name: str, value: Any) -> str:
    """One backend detail for a person: sizes in bytes humanised, rates as percentages."""
    if isinstance(value, int) and ("bytes" in name or "memory" in name or "size" in name):
        return humanize.size(value)
    if isinstance(value, float) and name.endswith("rate"):
        return f"{value:.1%}"
    if isinstance(value, int):
        return humanize.count(value)
    return str(value)
