"""The purge dialog: deletes every cache entry matching a pattern with a progress bar, leaving
keys that are not cache entries alone; cancellable."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, ProgressBar

from llmcache_tui.cache.backends import CacheBackend, CacheBackendError
from llmcache_tui.cache.browse import PurgeProgress, purge
from llmcache_tui.literal import printable


class PurgeScreen(ModalScreen[PurgeProgress]):
    """Runs the purge in a worker; dismisses with how far it got."""

    BINDINGS = [Binding("escape", "cancel", "Cancel purge", id="purge.cancel")]

    def __init__(self, backend: CacheBackend, pattern: str) -> None:
        super().__init__()
        self.backend = backend
        self.pattern = pattern
        self.cancel_requested = False
        self.progress = PurgeProgress()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            question = Text.assemble(
                "Purging cache entries matching ", (printable(self.pattern), "bold")
            )
            yield Label(question, classes="dialog-question")
            yield ProgressBar(id="purge-bar", show_eta=False)
            yield Label("starting...", id="purge-status")
            yield Button("Cancel (Esc)", id="purge-cancel", variant="warning")

    def on_mount(self) -> None:
        self.run_purge()

    @work(exclusive=True, group="purge", exit_on_error=False)
    async def run_purge(self) -> None:
        try:
            result = await purge(
                self.backend,
                self.pattern,
                on_progress=self._show,
                cancelled=lambda: self.cancel_requested,
            )
        except CacheBackendError as exc:
            self.app.notify(f"Purge stopped: {exc}", severity="error", timeout=8)
            result = self.progress
        self.dismiss(result)

    def _show(self, progress: PurgeProgress) -> None:
        self.progress = progress
        bar = self.query_one("#purge-bar", ProgressBar)
        bar.update(
            total=progress.total or None, progress=min(progress.scanned, progress.total or 0)
        )
        total = f" of about {progress.total:,}" if progress.total else ""
        others = f", left {progress.skipped:,} other keys" if progress.skipped else ""
        self.query_one("#purge-status", Label).update(
            f"scanned {progress.scanned:,}{total} keys, deleted {progress.deleted:,}"
            f" cache entries{others}"
        )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_cancel()

    def action_cancel(self) -> None:
        self.cancel_requested = True
        self.query_one("#purge-status", Label).update("cancelling after this batch...")
