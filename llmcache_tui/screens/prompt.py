"""A one-line input dialog (a TTL, a file path) that validates before it dismisses."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from llmcache_tui.config import MAX_TTL_SECONDS
from llmcache_tui.literal import literal


class PromptScreen(ModalScreen[str | None]):
    """Ask for a value; ``validate`` returns an error message or None. Escape cancels.

    The question is shown as written (it may name a key), never as markup.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(
        self,
        question: str,
        *,
        placeholder: str = "",
        validate: Callable[[str], str | None] | None = None,
        value: str = "",
    ) -> None:
        super().__init__()
        self.question = question
        self.placeholder = placeholder
        self.validate = validate
        self.value = value  # the answer offered, to accept or edit

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(literal(self.question), classes="dialog-question")
            yield Input(self.value, placeholder=self.placeholder, id="prompt-input")
            yield Label("", id="prompt-error", classes="dialog-error")
            yield Label("Enter to accept, Escape to cancel", classes="dialog-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        problem = self.validate(event.value) if self.validate else None
        if problem:
            self.query_one("#prompt-error", Label).update(literal(problem))
            return
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


def parse_ttl(text: str) -> float | None:
    """A TTL typed by a person: seconds, or ``none``/empty for no expiry."""
    cleaned = text.strip().lower()
    if cleaned in ("", "none", "never", "persist"):
        return None
    multiplier = 1.0
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    if cleaned[-1] in units:
        multiplier = units[cleaned[-1]]
        cleaned = cleaned[:-1]
    seconds = float(cleaned) * multiplier
    # float() also reads "inf" and "nan" (refused here too: NaN compares false).
    if not 0 < seconds <= MAX_TTL_SECONDS:
        raise ValueError("must be positive and at most ten years")
    return seconds


def ttl_problem(text: str) -> str | None:
    try:
        parse_ttl(text)
    except ValueError:
        return "Enter seconds up to 10 years (e.g. 600, 10m, 2h, 1d), or 'none' for no expiry"
    return None
