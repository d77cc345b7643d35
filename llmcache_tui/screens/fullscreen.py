"""One entry on the whole screen, scrollable: the detail pane with room to read.

Opened with ``z`` from the browser (or the entry dialog) on the entry already loaded there,
so nothing is read again. Ctrl+F finds, y / Y copy the answer / the stored JSON, ``|``
pipes the entry to ``$PAGER``; Escape, q or z closes.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header

from llmcache_tui.screens.entry_actions import page_text
from llmcache_tui.widgets.entry_detail import EntryDetail, LoadedEntry, stored_text


class FullEntryDetail(EntryDetail):
    """The detail pane with its keys shown in the footer (the browser hides them for room)."""

    BINDINGS = [
        Binding("ctrl+f", "find", "Find", id="full.find", tooltip="Find text in the entry"),
        Binding("y", "copy_answer", "Copy answer", id="full.copy_answer"),
        Binding("Y", "copy_json", "Copy JSON", id="full.copy_json"),
    ]


class FullEntryScreen(Screen[None]):
    """The entry ``loaded`` full-screen."""

    BINDINGS = [
        Binding("escape,q,z", "close", "Close", id="full.close"),
        Binding("vertical_line", "pager", "Pager", id="full.pager", tooltip="Pipe to $PAGER"),
    ]

    def __init__(self, loaded: LoadedEntry, *, clock_owner: EntryDetail | None = None) -> None:
        super().__init__()
        self.loaded = loaded
        self.clock_owner = clock_owner

    def compose(self) -> ComposeResult:
        yield Header()
        if self.clock_owner is not None:
            yield FullEntryDetail(id="full-detail", clock=self.clock_owner.clock)
        else:
            yield FullEntryDetail(id="full-detail")
        yield Footer()

    @property
    def detail(self) -> EntryDetail:
        return self.query_one("#full-detail", EntryDetail)

    def on_mount(self) -> None:
        self.detail.show(self.loaded)
        self.detail.focus()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_pager(self) -> None:
        page_text(self.app, stored_text(self.loaded))
