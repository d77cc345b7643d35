"""A modal view of one cache entry, opened from the probe: the browser's detail pane, and
delete (asked first; in read-only mode the key says why it is off). The backend's delete
also drops the entry's vector (see :class:`llmcache_tui.session.Session`). z opens the
entry full-screen, ``|`` pipes it to ``$PAGER``, x exports it."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Label

from llmcache_tui.cache.backends import CacheBackend, CacheBackendError
from llmcache_tui.literal import literal
from llmcache_tui.screens.confirm import ConfirmScreen
from llmcache_tui.screens.entry_actions import ask_export, page_text
from llmcache_tui.screens.fullscreen import FullEntryScreen
from llmcache_tui.widgets.entry_detail import EntryDetail, LoadedEntry, stored_text


class EntryScreen(ModalScreen[bool]):
    """Shows the entry under ``key``; dismisses with True once it was deleted."""

    BINDINGS = [
        Binding("escape,q", "close", "Close", id="entry.close"),
        Binding("d,delete", "delete", "Delete", id="entry.delete", tooltip="Delete the entry"),
        Binding("d,delete", "refuse", "Delete", show=False, id="entry.delete_off"),
        Binding("z", "full_view", "Zoom", id="entry.full", tooltip="The entry full-screen"),
        Binding("vertical_line", "pager", "Pager", id="entry.pager", tooltip="Pipe to $PAGER"),
        Binding("x", "export", "Export", id="entry.export", tooltip="Write to a JSON Lines file"),
    ]

    def __init__(
        self,
        backend: CacheBackend,
        key: str,
        *,
        read_only: bool,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.key = key
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        from llmcache_tui.app import LLMCacheApp

        clock = self.app.clock if isinstance(self.app, LLMCacheApp) else None
        with Vertical(classes="dialog entry-dialog"):
            yield Label(literal(f"Entry {self.key}", one_line=True), classes="dialog-question")
            if clock is None:
                yield EntryDetail(id="entry-detail")
            else:
                yield EntryDetail(id="entry-detail", clock=clock)
        yield Footer()

    def on_mount(self) -> None:
        self.load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "refuse":
            return self.read_only
        if action in ("full_view", "pager", "export"):
            details = self.query(EntryDetail)  # none yet while the dialog is built
            return bool(details) and details.first().loaded is not None
        return not (action == "delete" and self.read_only)

    def action_refuse(self) -> None:
        from llmcache_tui.app import LLMCacheApp

        if isinstance(self.app, LLMCacheApp):
            message = self.app.session.read_only_refusal("delete")
        else:
            message = "read-only: delete is off"
        self.notify(message, severity="warning")

    def action_full_view(self) -> None:
        detail = self.query_one("#entry-detail", EntryDetail)
        if detail.loaded is not None:
            self.app.push_screen(FullEntryScreen(detail.loaded, clock_owner=detail))

    def action_pager(self) -> None:
        loaded = self.query_one("#entry-detail", EntryDetail).loaded
        if loaded is not None:
            page_text(self.app, stored_text(loaded))

    def action_export(self) -> None:
        from llmcache_tui.app import LLMCacheApp

        if isinstance(self.app, LLMCacheApp):
            ask_export(self, self.app, self.backend, [self.key], f"the entry {self.key}")

    @work(exclusive=True, group="entry-load", exit_on_error=False)
    async def load(self) -> None:
        detail = self.query_one("#entry-detail", EntryDetail)
        try:
            raw = await self.backend.get(self.key)
            ttl = await self.backend.ttl(self.key) if raw is not None else None
        except CacheBackendError as exc:
            detail.clear(f"Could not read {self.key}: {exc}")
            return
        if raw is None:
            detail.clear(f"{self.key} no longer exists (expired or deleted).")
            return
        detail.show(LoadedEntry(self.key, raw, ttl, detail.clock()))
        self.refresh_bindings()

    def action_close(self) -> None:
        self.dismiss(False)

    def action_delete(self) -> None:
        if self.read_only:
            self.action_refuse()
            return

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.delete_entry()

        self.app.push_screen(ConfirmScreen(f"Delete this entry?\n\n{self.key}"), answered)

    @work(group="entry-change", exit_on_error=False)
    async def delete_entry(self) -> None:
        try:
            deleted = await self.backend.delete([self.key])
        except CacheBackendError as exc:
            self.notify(str(exc), title="Delete failed", severity="error", timeout=8)
            return
        self.notify(f"Deleted {self.key}" if deleted else f"{self.key} was already gone")
        self.dismiss(True)
