"""The detail pane: what a cache entry was asked, what it answered, and how long it lives.

A key that is not a cache entry (another application's, on a shared Redis) is shown as such:
what it holds, its size, and its raw bytes when it is a plain value. Ctrl+F finds text in
the body (:mod:`~llmcache_tui.widgets.search`); y copies the answer, Y the stored JSON.
Two sizes are kept apart: the value's stored bytes, and (on Redis) the server's memory for
the key, overhead included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from llmcache_tui import humanize
from llmcache_tui.cache.backends.base import ValueShape
from llmcache_tui.cache.browse import describe_shape
from llmcache_tui.cache.entry import ENTRY_HEAD_BYTES, CacheEntry, EntryFormatError, entry_origin
from llmcache_tui.literal import literal, printable
from llmcache_tui.widgets.search import SearchBar, TextSearch

PREVIEW_BYTES = 64 * 1024
ANSWER_PREVIEW_CHARS = 300
STORED_NOTE = "(the value's bytes)"
MEMORY_NOTE = "(server memory, overhead included)"
MATCH_STYLE = "black on #e6c84f"
CURRENT_MATCH_STYLE = "bold white on #d7005f"


@dataclass(frozen=True, slots=True)
class LoadedEntry:
    """An entry as fetched for display, with its TTL at fetch time."""

    key: str
    raw: bytes
    ttl: float | None
    fetched_at: float
    #: set for a key that holds no plain value (a Redis list, hash...); ``raw`` is then empty
    shape: ValueShape | None = None
    #: the server's memory for the key, overhead included (Redis MEMORY USAGE), if known
    memory: int | None = None


class EntryDetail(VerticalScroll):
    """Shows one entry; the age and remaining TTL tick every second."""

    BINDINGS = [
        Binding(
            "ctrl+f", "find", "Find", show=False, id="entry.find", tooltip="Find text in the entry"
        ),
        Binding("n", "step_match(True)", "Next match", show=False, id="entry.next_match"),
        Binding("N", "step_match(False)", "Previous match", show=False, id="entry.prev_match"),
        Binding("escape", "end_search", "End search", show=False, id="entry.end_search"),
        Binding("y", "copy_answer", "Copy answer", show=False, id="entry.copy_answer"),
        Binding("Y", "copy_json", "Copy JSON", show=False, id="entry.copy_json"),
    ]

    def __init__(self, *, clock: Callable[[], float] = time.time, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.loaded: LoadedEntry | None = None
        self.entry: CacheEntry | None = None
        self.search = TextSearch()
        self._note: RenderableType | None = None  # shown above the searchable text
        self._json = False  # the searchable text is JSON: shown highlighted

    def compose(self) -> Any:
        yield SearchBar(id="entry-search")
        yield Static("Select a key to see its entry.", id="detail-summary")
        yield Static("", id="detail-body")

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)

    def show(self, loaded: LoadedEntry) -> None:
        self.loaded = loaded
        self.entry = None
        self._note, text, self._json = None, "", False
        if loaded.shape is not None:
            self._note = Text(
                f"Not a cache entry: this key holds a {loaded.shape.type}. A purge leaves it alone."
            )
        elif entry_origin(loaded.raw[:ENTRY_HEAD_BYTES]) is None:
            self._note = Text("Not a cache entry; raw bytes:")
            text = printable(_preview(loaded.raw))
        else:
            try:
                self.entry = CacheEntry.decode(loaded.raw)
                self._note, text, self._json = _response_view(self.entry)
            except EntryFormatError as exc:
                self._note = literal(f"A damaged cache entry ({exc}); raw bytes:")
                text = printable(_preview(loaded.raw))
        self.search.find(self.search.query, text)
        self._show_body()
        self._tick()
        self.scroll_home(animate=False)
        if self.search.spans:
            self.call_after_refresh(self._scroll_to_match)

    def clear(self, message: str = "Select a key to see its entry.") -> None:
        self.loaded = None
        self.entry = None
        self._note = None
        self.search.find(self.search.query, "")
        self._show_count()
        self.query_one("#detail-summary", Static).update(literal(message))
        self.query_one("#detail-body", Static).update("")

    # -- the body, and finding text in it -------------------------------------------------
    def body_text(self) -> str:
        """The text of the body as shown (and searched): the JSON or the raw bytes."""
        return self.search.text

    def _body_renderable(self) -> Text:
        text = self.search.text
        if self._json:
            body = Syntax(text, "json", word_wrap=True, background_color="default").highlight(text)
        else:
            body = Text(text)
        for index, (start, end) in enumerate(self.search.spans):
            current = index == self.search.current
            body.stylize(CURRENT_MATCH_STYLE if current else MATCH_STYLE, start, end)
        return body

    def _show_body(self) -> None:
        body: RenderableType = self._body_renderable() if self.search.text else Text("")
        if self._note is not None:
            body = Group(self._note, body) if self.search.text else self._note
        self.query_one("#detail-body", Static).update(body)
        self._show_count()

    def _show_count(self) -> None:
        self.query_one(SearchBar).show_count(self.search.describe())

    def _scroll_to_match(self) -> None:
        """Scroll so the current match is in view, a third of the way down."""
        span = self.search.span
        if span is None:
            return
        body = self.query_one("#detail-body", Static)
        width = max(1, body.content_region.width)
        before = self._body_renderable()[: span[0]]
        rows = len(before.wrap(self.app.console, width)) - 1 if span[0] else 0
        if self._note is not None:
            rows += 1
        target = body.virtual_region.y + rows
        self.scroll_to(y=max(0, target - self.size.height // 3), animate=False)

    def action_find(self) -> None:
        self.query_one(SearchBar).open()

    def action_step_match(self, forward: bool) -> None:
        self.search.step(forward)
        self._show_body()
        self._scroll_to_match()

    def action_end_search(self) -> None:
        self.query_one(SearchBar).close()
        self.search.find("")
        self._show_body()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # n, N and Escape are the screen's (the browser's tree, a dialog's close) unless a
        # search is on; copying needs an entry.
        if action in ("step_match", "end_search"):
            return bool(self.search.query)
        if action in ("copy_answer", "copy_json"):
            return self.loaded is not None
        return True

    def on_search_bar_changed(self, event: SearchBar.Changed) -> None:
        self.search.find(event.query)
        self._show_body()
        self._scroll_to_match()

    def on_search_bar_step(self, event: SearchBar.Step) -> None:
        self.action_step_match(event.forward)

    def on_search_bar_leave(self, event: SearchBar.Leave) -> None:
        if not self.search.query:
            self.query_one(SearchBar).close()
        self.focus()

    # -- copying --------------------------------------------------------------------------
    def action_copy_answer(self) -> None:
        loaded = self.loaded
        if loaded is None:
            self.notify("No entry shown", severity="warning")
            return
        text, what = value_text(loaded, self.entry)
        self._copy(text, what, loaded.key)

    def action_copy_json(self) -> None:
        loaded = self.loaded
        if loaded is None:
            self.notify("No entry shown", severity="warning")
            return
        self._copy(stored_text(loaded), "stored JSON" if self.entry else "stored value", loaded.key)

    def _copy(self, text: str, what: str, key: str) -> None:
        if not text:
            self.notify(f"Nothing to copy: {key} holds no plain value", severity="warning")
            return
        self.app.copy_to_clipboard(text)
        chars = humanize.plural(len(text), "character")
        self.notify(f"Copied the {what} of {key} ({chars})", title=f"{what.capitalize()} copied")

    def _tick(self) -> None:
        if self.loaded is None:
            return
        self.query_one("#detail-summary", Static).update(self._summary(self.loaded, self.entry))

    def _summary(self, loaded: LoadedEntry, entry: CacheEntry | None) -> Table:
        # Every value here may come from the cache: a str cell of a Rich table is markup.
        now = self.clock()
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column(overflow="fold")  # a long key wraps whole, never cut short
        table.add_row("key", literal(loaded.key))
        ttl = None if loaded.ttl is None else max(0.0, loaded.ttl - (now - loaded.fetched_at))
        if loaded.shape is not None:
            table.add_row("holds", literal(describe_shape(loaded.shape)))
            table.add_row("kind", "not a cache entry")
            table.add_row("expires in", humanize.duration(ttl))
            if loaded.memory is not None:
                table.add_row("memory", f"{humanize.size(loaded.memory)} {MEMORY_NOTE}")
            return table
        if entry is None and entry_origin(loaded.raw[:ENTRY_HEAD_BYTES]) is None:
            table.add_row("kind", "not a cache entry")
        if entry is not None:
            origin = "written by LiteLLM" if entry.foreign else "llmcache-tui"
            table.add_row("model", literal(entry.model or "-"))
            table.add_row("call type", literal(entry.route))
            table.add_row("origin", origin)
            created = entry.created_at or None
            age = None if created is None else now - created
            table.add_row("created", humanize.timestamp(created))
            table.add_row("age", humanize.duration(age, none="-"))
            if entry.prompt_preview:
                table.add_row("prompt", literal(entry.prompt_preview))
            if entry.usage:
                tokens = entry.usage.get("total_tokens")
                table.add_row("tokens", literal("-" if tokens is None else tokens))
            if entry.chunks is not None:
                table.add_row("streamed", f"{len(entry.chunks)} chunks, replayed as a stream")
                answer = answer_text(entry.response)
                if answer:
                    table.add_row("answer", literal(answer[:ANSWER_PREVIEW_CHARS]))
        table.add_row("expires in", "expired" if ttl == 0 else humanize.duration(ttl))
        table.add_row("stored", f"{humanize.size(len(loaded.raw))} {STORED_NOTE}")
        if loaded.memory is not None:
            table.add_row("memory", f"{humanize.size(loaded.memory)} {MEMORY_NOTE}")
        return table


def _response_view(entry: CacheEntry) -> tuple[Text | None, str, bool]:
    """What the body shows of an entry: a note above it, the text, and whether it is JSON."""
    if entry.media_type is not None or isinstance(entry.response, str):
        return None, printable(_preview(str(entry.response).encode("utf-8", "replace"))), False
    pretty = orjson.dumps(entry.response, option=orjson.OPT_INDENT_2)
    if len(pretty) > PREVIEW_BYTES:
        note = Text(f"(first {PREVIEW_BYTES // 1024} KiB of {humanize.size(len(pretty))})")
        return note, printable(_preview(pretty)), False
    # orjson escapes C0 controls in strings but leaves DEL and C1 controls as they are.
    return None, printable(pretty.decode()), True


def value_text(loaded: LoadedEntry, entry: CacheEntry | None) -> tuple[str, str]:
    """The text a person copies as "the value", and what it is called: a completion's
    answer; else the response (as pretty JSON); else the raw value of a key that is not
    a cache entry (empty for a list, hash...)."""
    if entry is None:
        return loaded.raw.decode("utf-8", "replace"), "value"
    answer = answer_text(entry.response)
    if answer:
        return answer, "answer"
    if entry.media_type is not None or isinstance(entry.response, str):
        return str(entry.response), "response"
    return orjson.dumps(entry.response, option=orjson.OPT_INDENT_2).decode(), "response"


def stored_text(loaded: LoadedEntry) -> str:
    """The stored value in full as text: JSON pretty-printed, anything else as it is."""
    try:
        document = orjson.loads(loaded.raw)
    except orjson.JSONDecodeError:
        return loaded.raw.decode("utf-8", "replace")
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()


def _preview(raw: bytes) -> str:
    text = raw[:PREVIEW_BYTES].decode("utf-8", "replace")
    return text + ("\n..." if len(raw) > PREVIEW_BYTES else "")


def answer_text(response: Any) -> str:
    """The text a completion answered (a chat message's content or a completion's text)."""
    if not isinstance(response, dict):
        return ""
    parts = []
    for choice in response.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else choice.get("text")
        if isinstance(text, str):
            parts.append(text)
    return "\n".join(parts)
