"""The purge dialogs: the confirmation, and the run with a progress bar (cancellable).

A purge deletes the cache entries matching a pattern and keeps every other key (another
application's data on a shared Redis: LiteLLM's rate-limit counters, sessions...). The
confirmation says how many such keys stay, and offers, unticked, to delete every matching
key instead.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, ProgressBar

from llmcache_tui.cache.backends import CacheBackend, CacheBackendError
from llmcache_tui.cache.browse import PurgeEstimate, PurgeProgress, purge
from llmcache_tui.literal import literal, printable
from llmcache_tui.screens.confirm import ConfirmScreen, TypedConfirmScreen

EVERYTHING_ID = "purge-everything"


def everything_label(estimate: PurgeEstimate) -> str:
    """The option to delete the keys that are not cache entries too."""
    more = "" if estimate.complete else " (counted so far)"
    noun = "key" if estimate.others == 1 else "keys"
    return f"Also delete the {estimate.others:,} matching {noun}{more} that are not cache entries"


class _EverythingOption:
    """The unticked "delete every matching key" box the purge confirmations share.

    ``everything`` holds the box's state, kept on the screen so that it can be read after
    the dialog is dismissed (and its widgets gone).
    """

    estimate: PurgeEstimate
    everything: bool = False

    def option(self) -> ComposeResult:
        if self.estimate.others:
            yield Checkbox(everything_label(self.estimate), False, id=EVERYTHING_ID)

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self.everything = event.value


class PurgeConfirmScreen(_EverythingOption, ConfirmScreen):
    """Confirm a purge with y; ``everything`` tells which purge was confirmed."""

    BINDINGS = [
        Binding("a", "toggle_everything", "All keys", id="purge-confirm.everything"),
    ]

    def __init__(self, question: str, estimate: PurgeEstimate) -> None:
        super().__init__(question, confirm_label="Purge")
        self.estimate = estimate

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(literal(self.question), classes="dialog-question")
            yield from self.option()
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.confirm_label} (y)", variant="error", id="yes")
                yield Button("Cancel (n)", variant="primary", id="no")

    def action_toggle_everything(self) -> None:
        for box in self.query(f"#{EVERYTHING_ID}").results(Checkbox):
            box.toggle()


class PurgeTypedConfirmScreen(_EverythingOption, TypedConfirmScreen):
    """Confirm a purge of the whole cache by typing a word; ``everything`` as above."""

    def __init__(self, question: str, estimate: PurgeEstimate, *, word: str) -> None:
        super().__init__(question, word=word)
        self.estimate = estimate

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(literal(self.question), classes="dialog-question")
            # First, so it has the focus: a stray key cannot tick the box below.
            yield Input(placeholder=f"type {self.word} to confirm", id="confirm-word")
            yield Label("", id="confirm-word-error", classes="dialog-error")
            yield from self.option()
            yield Label("Enter to confirm, Escape to cancel", classes="dialog-hint")


class PurgeScreen(ModalScreen[PurgeProgress]):
    """Runs the purge in a worker; dismisses with how far it got.

    ``everything``: delete every matching key, not only cache entries.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel purge", id="purge.cancel")]

    def __init__(self, backend: CacheBackend, pattern: str, *, everything: bool = False) -> None:
        super().__init__()
        self.backend = backend
        self.pattern = pattern
        self.everything = everything
        self.cancel_requested = False
        self.progress = PurgeProgress(everything=everything)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            what = "every key" if self.everything else "cache entries"
            question = Text.assemble(f"Purging {what} matching ", (printable(self.pattern), "bold"))
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
                everything=self.everything,
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
        what = "keys" if progress.everything else "cache entries"
        self.query_one("#purge-status", Label).update(
            f"scanned {progress.scanned:,}{total} keys, deleted {progress.deleted:,} {what}{others}"
        )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_cancel()

    def action_cancel(self) -> None:
        self.cancel_requested = True
        self.query_one("#purge-status", Label).update("cancelling after this batch...")
