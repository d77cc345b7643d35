"""The detail pane: what a cache entry was asked, what it answered, and how long it lives.

A key that is not a cache entry (another application's, on a shared Redis) is shown as such:
what it holds, its size, and its raw bytes when it is a plain value.
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
from textual.containers import VerticalScroll
from textual.widgets import Static

from llmcache_tui import humanize
from llmcache_tui.cache.backends.base import ValueShape
from llmcache_tui.cache.browse import describe_shape
from llmcache_tui.cache.entry import ENTRY_HEAD_BYTES, CacheEntry, EntryFormatError, entry_origin
from llmcache_tui.literal import literal, printable

PREVIEW_BYTES = 64 * 1024
ANSWER_PREVIEW_CHARS = 300


@dataclass(frozen=True, slots=True)
class LoadedEntry:
    """An entry as fetched for display, with its TTL at fetch time."""

    key: str
    raw: bytes
    ttl: float | None
    fetched_at: float
    #: set for a key that holds no plain value (a Redis list, hash...); ``raw`` is then empty
    shape: ValueShape | None = None


class EntryDetail(VerticalScroll):
    """Shows one entry; the age and remaining TTL tick every second."""

    def __init__(self, *, clock: Callable[[], float] = time.time, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.loaded: LoadedEntry | None = None
        self.entry: CacheEntry | None = None

    def compose(self) -> Any:
        yield Static("Select a key to see its entry.", id="detail-summary")
        yield Static("", id="detail-body")

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)

    def show(self, loaded: LoadedEntry) -> None:
        self.loaded = loaded
        self.entry = None
        body: RenderableType
        if loaded.shape is not None:
            body = Text(
                f"Not a cache entry: this key holds a {loaded.shape.type}. A purge leaves it alone."
            )
        elif entry_origin(loaded.raw[:ENTRY_HEAD_BYTES]) is None:
            body = Group(Text("Not a cache entry; raw bytes:"), literal(_preview(loaded.raw)))
        else:
            try:
                self.entry = CacheEntry.decode(loaded.raw)
                body = _response_view(self.entry)
            except EntryFormatError as exc:
                body = Group(
                    literal(f"A damaged cache entry ({exc}); raw bytes:"),
                    literal(_preview(loaded.raw)),
                )
        self.query_one("#detail-body", Static).update(body)
        self._tick()
        self.scroll_home(animate=False)

    def clear(self, message: str = "Select a key to see its entry.") -> None:
        self.loaded = None
        self.entry = None
        self.query_one("#detail-summary", Static).update(literal(message))
        self.query_one("#detail-body", Static).update("")

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
                table.add_row("tokens", literal(entry.usage.get("total_tokens", "-")))
            if entry.chunks is not None:
                table.add_row("streamed", f"{len(entry.chunks)} chunks, replayed as a stream")
                answer = answer_text(entry.response)
                if answer:
                    table.add_row("answer", literal(answer[:ANSWER_PREVIEW_CHARS]))
        table.add_row("expires in", "expired" if ttl == 0 else humanize.duration(ttl))
        table.add_row("size", humanize.size(len(loaded.raw)))
        return table


def _response_view(entry: CacheEntry) -> RenderableType:
    if entry.media_type is not None or isinstance(entry.response, str):
        return literal(_preview(str(entry.response).encode("utf-8", "replace")))
    pretty = orjson.dumps(entry.response, option=orjson.OPT_INDENT_2)
    if len(pretty) > PREVIEW_BYTES:
        note = Text(f"(first {PREVIEW_BYTES // 1024} KiB of {humanize.size(len(pretty))})")
        return Group(note, literal(_preview(pretty)))
    # orjson escapes C0 controls in strings but leaves DEL and C1 controls as they are.
    text = printable(pretty.decode())
    return Syntax(text, "json", word_wrap=True, background_color="default")


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
