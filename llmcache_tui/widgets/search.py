"""Find text in the entry shown: the matches of a query in a text, and the bar that asks.

:class:`TextSearch` is plain logic (case-insensitive matches, which one is current);
:class:`SearchBar` is the one-line input with its "3 of 12" count, docked at the top of
an :class:`~llmcache_tui.widgets.entry_detail.EntryDetail`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Input, Label


@dataclass
class TextSearch:
    """The matches of ``query`` in ``text`` (ignoring case) and the current one."""

    text: str = ""
    query: str = ""
    spans: list[tuple[int, int]] = field(default_factory=list)
    current: int = 0

    def find(self, query: str, text: str | None = None) -> None:
        """Look for ``query`` (in a new ``text`` if given); the first match becomes current."""
        if text is not None:
            self.text = text
        self.query = query
        self.spans = []
        self.current = 0
        if not query:
            return
        haystack, needle = self.text.casefold(), query.casefold()
        if len(haystack) != len(self.text):  # casefold changed lengths: match exactly
            haystack, needle = self.text, query
        start = haystack.find(needle)
        while start >= 0:
            self.spans.append((start, start + len(needle)))
            start = haystack.find(needle, start + len(needle))

    def step(self, forward: bool = True) -> None:
        """Make the next (or previous) match current, wrapping around."""
        if self.spans:
            self.current = (self.current + (1 if forward else -1)) % len(self.spans)

    @property
    def span(self) -> tuple[int, int] | None:
        """The current match's start and end offsets, if any."""
        return self.spans[self.current] if self.spans else None

    def describe(self) -> str:
        """``3 of 12``, ``no matches``, or nothing before a query is typed."""
        if not self.query:
            return ""
        if not self.spans:
            return "no matches"
        return f"{self.current + 1} of {len(self.spans)}"


class SearchBar(Horizontal):
    """``find:`` input and match count. Enter: next match, Shift+Enter: previous,
    Escape: back to the entry with the matches still marked."""

    DEFAULT_CSS = """
    SearchBar {
        dock: top;
        height: 1;
        display: none;
        background: $boost;
    }
    SearchBar.-open {
        display: block;
    }
    SearchBar > Input {
        border: none;
        height: 1;
        padding: 0 1;
        width: 1fr;
    }
    SearchBar > Label {
        width: auto;
        padding: 0 1;
        color: $text-muted;
    }
    """

    BINDINGS = [
        Binding("shift+enter", "step(False)", "Previous", show=False, id="search.previous"),
        Binding("escape", "leave", "Back to entry", show=False, id="search.leave"),
    ]

    class Changed(Message):
        """The query was edited."""

        def __init__(self, query: str) -> None:
            super().__init__()
            self.query = query

    class Step(Message):
        """Jump to the next match (or the previous one)."""

        def __init__(self, forward: bool) -> None:
            super().__init__()
            self.forward = forward

    class Leave(Message):
        """Leave the input; the matches stay marked."""

    def compose(self) -> ComposeResult:
        yield Input(placeholder="find in entry", id="entry-search-input")
        yield Label("", id="entry-search-count")

    @property
    def input(self) -> Input:
        return self.query_one(Input)

    def open(self) -> None:
        self.add_class("-open")
        self.input.focus()

    def close(self) -> None:
        self.remove_class("-open")
        self.input.value = ""
        self.show_count("")

    def show_count(self, text: str) -> None:
        self.query_one("#entry-search-count", Label).update(text)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.Changed(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()  # the browser's filter also listens for Submitted
        self.post_message(self.Step(True))

    def action_step(self, forward: bool) -> None:
        self.post_message(self.Step(forward))

    def action_leave(self) -> None:
        self.post_message(self.Leave())
