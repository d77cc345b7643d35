"""The vectors view of the browser (``v``): the semantic cache's stored prompts, paged.

Each row is one vector: its namespace, the model its exact entry says, the prompt that was
embedded and when it expires. Rows load a bounded page at a time ("load more"), as keys do.
Deleting a row deletes its exact entry and its vector together; a purge does so for every
vector whose entry key matches the filter. Records of LiteLLM's own semantic cache are
marked as LiteLLM's and are read-only unless the app was started with
``--allow-litellm-writes`` (or ``llmcache.allow_litellm_writes``).
"""

from __future__ import annotations

import asyncio
import re

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Header, Input, Label, Static

from llmcache_tui import humanize
from llmcache_tui.cache.backends import CacheBackendError
from llmcache_tui.cache.semantic.litellm_formats import UNSCOPED, WRITES_HINT, LiteLLMReadOnly
from llmcache_tui.cache.semantic.store import VectorStore
from llmcache_tui.cache.semantic.vector_browse import (
    VectorPurgeProgress,
    VectorRow,
    delete_vectors,
    describe_vectors,
    glob_regex,
    purge_vectors,
)
from llmcache_tui.literal import literal
from llmcache_tui.screens.base import AppScreen
from llmcache_tui.screens.confirm import ConfirmScreen, TypedConfirmScreen
from llmcache_tui.session import SessionError

ROWS_PER_LOAD = 100  # "load more" adds about this many matching rows when it can
PAGE = 100  # records asked of the store per call
PAGES_PER_LOAD = 20  # store calls per "load more" before it stops and says so
RESPONSE_PREVIEW_CHARS = 2_000
LITELLM_LABEL = "LiteLLM's"
MUTATING_ACTIONS = frozenset({"delete", "purge"})
PURGE_WORD = "purge"  # typed to confirm a purge of every vector


class VectorsScreen(AppScreen):
    """The semantic tier's vectors, paged, with delete and purge."""

    AUTO_FOCUS = "#vectors"

    BINDINGS = [
        Binding("v,escape", "close", "Entries", id="vectors.close", tooltip="Back to the keys"),
        Binding("slash", "focus_filter", "Filter", id="vectors.filter", tooltip="Glob on the key"),
        Binding("l", "load_more", "Load more", id="vectors.load_more"),
        Binding("f5,ctrl+r", "refresh", "Refresh", id="vectors.refresh"),
        Binding("d,delete", "delete", "Delete", id="vectors.delete", tooltip="Vector and entry"),
        Binding(
            "P", "purge", "Purge", id="vectors.purge", tooltip="Every matching vector and entry"
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.pattern = "*"
        self.cursor: str | None = None
        self.exhausted = False
        self.listed = 0
        self.total: int | None = None
        self.rows: dict[str, VectorRow] = {}
        self.store: VectorStore | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("", id="vectors-title")
        yield Input(placeholder="glob on the entry key, e.g. team-a:*  (Enter)", id="vector-filter")
        yield DataTable(id="vectors", cursor_type="row", zebra_stripes=True)
        yield Label("", id="vectors-status")
        with VerticalScroll(id="vector-detail"):
            yield Static("Select a vector to see its record.", id="vector-detail-body")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#vectors", DataTable)
        table.add_column("key", key="key", width=20)
        table.add_column("namespace", key="namespace", width=12)
        table.add_column("model", key="model", width=14)
        table.add_column("prompt", key="prompt", width=36)
        table.add_column("expires in", key="ttl", width=10)

    def session_changed(self) -> None:
        self.store = None
        self.load(reset=True)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in MUTATING_ACTIONS and self.llm_app.session.read_only)

    # -- loading ------------------------------------------------------------------------
    @work(exclusive=True, group="vectors-load", exit_on_error=False)
    async def load(self, reset: bool) -> None:
        table = self.query_one("#vectors", DataTable)
        if reset:
            table.clear()
            self.rows.clear()
            self.cursor, self.exhausted, self.listed, self.total = None, False, 0, None
            self._detail("Select a vector to see its record.")
        elif self.exhausted:
            self._show_status()
            return
        self._status("opening the vector store ..." if self.store is None else "listing ...")
        session = self.llm_app.session
        matcher = glob_regex(self.pattern)
        try:
            if self.store is None:
                self.store = await session.vector_store()
                self._title(self.store)
            added = 0
            for _ in range(PAGES_PER_LOAD):
                page = await self.store.records(self.cursor, PAGE)
                self.listed += len(page.records)
                if page.total is not None:
                    self.total = page.total
                chosen = [r for r in page.records if matcher.fullmatch(r.key)]
                rows = await describe_vectors(session.backend, chosen)
                added += self._add_rows(table, rows)
                self.cursor = page.cursor
                if self.cursor is None:
                    self.exhausted = True
                    break
                if added >= ROWS_PER_LOAD:
                    break
                await asyncio.sleep(0)
        except SessionError as exc:
            self._status(f"No vectors to show: {exc}")
            return
        except CacheBackendError as exc:
            self._status(f"listing failed: {exc}")
            self.notify(str(exc), title="Listing vectors failed", severity="error", timeout=8)
            return
        self._show_status()

    def _add_rows(self, table: DataTable[Text], rows: list[VectorRow]) -> int:
        now = self.llm_app.clock()
        added = 0
        for row in rows:
            if row.key in self.rows:
                continue
            self.rows[row.key] = row
            table.add_row(*_cells(row, now), key=row.key)
            added += 1
        if any(row.record.foreign for row in rows):
            self._title(self.store)
        return added

    def _title(self, store: VectorStore | None) -> None:
        if store is None:
            return
        shown = store.describe()
        where = shown.get("collection") or shown.get("index") or shown.get("prefix") or ""
        kind = shown.get("kind", "")
        if shown.get("mode") or shown.get("store"):  # embedded / server; which Redis store
            kind = f"{kind} ({shown.get('mode') or shown.get('store')})"
        text = f"Vectors: {kind} {where} at {shown.get('location', '')}"
        if any(row.record.foreign for row in self.rows.values()):
            if self.llm_app.session.allow_litellm_writes:
                text += "  |  LiteLLM's semantic cache (deletes allowed)"
            else:
                text += "  |  LiteLLM's semantic cache: read-only"
        self.query_one("#vectors-title", Label).update(literal(text, one_line=True))

    def _show_status(self) -> None:
        about = f" of about {self.total:,}" if self.total is not None else ""
        more = "all listed" if self.exhausted else "more may match: press l to load more"
        self._status(
            f"{len(self.rows):,} vectors shown for {self.pattern} | listed"
            f" {self.listed:,}{about} | {more}"
        )

    def _status(self, text: str) -> None:
        self.query_one("#vectors-status", Label).update(literal(text, one_line=True))

    # -- filter and detail ----------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "vector-filter":
            self.pattern = event.value.strip() or "*"
            self.load(reset=True)
            self.query_one("#vectors", DataTable).focus()

    def action_focus_filter(self) -> None:
        self.query_one("#vector-filter", Input).focus()

    def action_load_more(self) -> None:
        self.load(reset=False)

    def action_refresh(self) -> None:
        self.load(reset=True)

    def action_close(self) -> None:
        if isinstance(self.focused, Input):  # Escape in the filter leaves it, as elsewhere
            self.query_one("#vectors", DataTable).focus()
            return
        self.app.pop_screen()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value
        row = self.rows.get(key) if key is not None else None
        if row is not None:
            self._detail(detail_text(row, self.llm_app.clock()))

    def _detail(self, text: str) -> None:
        self.query_one("#vector-detail-body", Static).update(literal(text))

    def selected(self) -> VectorRow | None:
        table = self.query_one("#vectors", DataTable)
        if table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return self.rows.get(row_key.value) if row_key.value is not None else None

    # -- changes ----------------------------------------------------------------------------
    def _may_change(self, rows: list[VectorRow]) -> bool:
        session = self.llm_app.session
        if session.read_only:
            self.notify("Read-only mode: changes are disabled", severity="warning")
            return False
        if any(row.record.foreign for row in rows) and not session.allow_litellm_writes:
            self.notify(
                f"LiteLLM's semantic cache is read-only here: {WRITES_HINT}",
                title="Not deleted",
                severity="warning",
                timeout=8,
            )
            return False
        return True

    def action_delete(self) -> None:
        row = self.selected()
        if row is None or not self._may_change([row]):
            return
        if row.record.foreign:
            question = f"Delete this record of LiteLLM's semantic cache?\n\n{row.key}"
        else:
            question = f"Delete this vector and its cache entry?\n\n{row.key}"

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.delete_row(row)

        self.app.push_screen(ConfirmScreen(question), answered)

    @work(group="vectors-change", exit_on_error=False)
    async def delete_row(self, row: VectorRow) -> None:
        store = self.store
        if store is None:
            return
        session = self.llm_app.session
        try:
            deleted = await delete_vectors(
                store, session.backend, [row.record], allow_litellm=session.allow_litellm_writes
            )
        except LiteLLMReadOnly as exc:
            self.notify(str(exc), title="Not deleted", severity="warning", timeout=8)
            return
        except CacheBackendError as exc:
            self.notify(str(exc), title="Delete failed", severity="error", timeout=8)
            return
        if row.key in self.rows:
            del self.rows[row.key]
            self.query_one("#vectors", DataTable).remove_row(row.key)
        entry = " and its entry" if deleted.entries else ""
        if deleted.records or deleted.entries:
            self.notify(f"Deleted the vector{entry}: {row.key}")
        else:
            self.notify(f"{row.key} was already gone")
        self._detail(f"Deleted {row.key}.")
        self._show_status()

    def action_purge(self) -> None:
        store = self.store
        if store is None or not self._may_change(list(self.rows.values())):
            return
        pattern = self.pattern
        everything = not pattern.strip("*")
        target = "every vector" if everything else f"every vector whose key matches '{pattern}'"
        question = (
            f"Delete {target}, and its cache entry?\n\n{len(self.rows):,} of them are"
            " listed so far; the purge goes through every vector.\nThis cannot be undone."
        )
        if everything:
            question += f"\nType {PURGE_WORD} and press Enter to confirm."

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.purge(store, pattern)

        if everything:
            self.app.push_screen(TypedConfirmScreen(question, word=PURGE_WORD), answered)
        else:
            self.app.push_screen(ConfirmScreen(question, confirm_label="Purge"), answered)

    @work(exclusive=True, group="vectors-purge", exit_on_error=False)
    async def purge(self, store: VectorStore, pattern: str) -> None:
        session = self.llm_app.session

        def progress(done: VectorPurgeProgress) -> None:
            self._status(f"purging {pattern}: {done.deleted.records:,} vectors deleted ...")

        try:
            result = await purge_vectors(
                store,
                session.backend,
                pattern,
                allow_litellm=session.allow_litellm_writes,
                on_progress=progress,
            )
        except LiteLLMReadOnly as exc:
            self.notify(str(exc), title="Purge stopped", severity="warning", timeout=8)
            self.load(reset=True)
            return
        except CacheBackendError as exc:
            self.notify(str(exc), title="Purge failed", severity="error", timeout=8)
            self.load(reset=True)
            return
        deleted = result.deleted
        self.notify(
            f"Purged {deleted.records:,} vectors matching {pattern}"
            f" ({deleted.entries:,} cache entries with them)"
        )
        self.load(reset=True)


def detail_text(row: VectorRow, now: float) -> str:
    """What the detail pane says about one vector."""
    record = row.record
    lines = [record.key, ""]
    if record.foreign:
        lines.append(f"{UNSCOPED}.")
        cache_key = record.details.get("litellm_cache_key", "absent")
        if cache_key is None:
            lines.append("No litellm_cache_key: older LiteLLM served it to any request.")
        elif cache_key != "absent":
            lines.append(f"LiteLLM serves it only under its cache key {cache_key}.")
        else:
            lines.append("LiteLLM serves it to any model and conversation above its threshold.")
    else:
        state = {True: "exists", False: "gone (the vector is dropped when met)", None: "-"}
        lines.append(f"model: {row.model or '-'}   entry: {state[row.entry_exists]}")
        lines.append(f"scope: {record.scope or '-'}")
    created = None if record.created_at is None else max(0.0, now - record.created_at)
    lines.append(
        f"age: {humanize.duration(created, none='unknown')}   expires in:"
        f" {humanize.duration(row.remaining(now))}"
    )
    lines += ["", "prompt:", record.text]
    if record.response is not None:
        response = record.response
        if len(response) > RESPONSE_PREVIEW_CHARS:
            response = response[:RESPONSE_PREVIEW_CHARS] + " ..."
        lines += ["", "response:", response]
    for name, value in record.details.items():
        if name != "litellm_cache_key":
            lines.append(f"{name}: {value}")
    return "\n".join(lines)


def _cells(row: VectorRow, now: float) -> tuple[Text, ...]:
    # Everything here comes from the store: literal text, never markup.
    model = LITELLM_LABEL if row.record.foreign else (row.model or "(entry gone)")
    return (
        literal(_middle(row.key, 20), one_line=True),
        literal(row.namespace or "-", one_line=True),
        literal(model, one_line=True),
        literal(_SPACES.sub(" ", row.record.text), one_line=True),
        Text(humanize.duration(row.remaining(now), none="never")),
    )


_SPACES = re.compile(r"\s+")


def _middle(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return f"{text[:head]}…{text[-(width - 1 - head) :]}"
