"""Confirmation dialogs, shown before every destructive action: a yes/no question, and for
the most sweeping ones (a purge of the whole cache) a word the user must type."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from llmcache_tui.literal import literal


class ConfirmScreen(ModalScreen[bool]):
    """Ask a question; ``True`` only when the user explicitly confirms.

    The question is shown as written (it may name a key or a pattern), never as markup.
    """

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str, *, confirm_label: str = "Delete") -> None:
        super().__init__()
        self.question = question
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(literal(self.question), classes="dialog-question")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.confirm_label} (y)", variant="error", id="yes")
                yield Button("Cancel (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # the safe choice has focus

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class TypedConfirmScreen(ModalScreen[bool]):
    """Ask a question that only typing ``word`` (and Enter) confirms; Escape cancels.

    A stray ``y`` or Enter cannot confirm: anything but the word is refused, and the
    dialog stays open saying what to type."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="typed-confirm.cancel")]

    def __init__(self, question: str, *, word: str) -> None:
        super().__init__()
        self.question = question
        self.word = word

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(literal(self.question), classes="dialog-question")
            yield Input(placeholder=f"type {self.word} to confirm", id="confirm-word")
            yield Label("", id="confirm-word-error", classes="dialog-error")
            yield Label("Enter to confirm, Escape to cancel", classes="dialog-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip() == self.word:
            self.dismiss(True)
            return
        event.input.value = ""
        self.query_one("#confirm-word-error", Label).update(
            Text(f"Type {self.word} exactly to confirm, or press Escape to cancel.")
        )

    def action_cancel(self) -> None:
        self.dismiss(False)
