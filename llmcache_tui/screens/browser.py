"""The browser: a lazy namespace tree, a paged key table, a glob filter and the entry pane.

Every backend call runs in a worker. Keys arrive page by page (bounded scans, "load more")
and the status line says how much of the keyspace has been examined, so a partial scan
never looks like missing data. Keys that are not cache entries (another application's, on a
shared Redis) show as such and are never purged; a purge says first how many entries it
will delete, and one of the whole cache asks for a typed word. Under tenant isolation a
tenant column shows whose entry each key is (the tree's first level, ``@tenant``, too).
``v`` opens the semantic cache's vectors (:mod:`~llmcache_tui.screens.vectors`) where the
cache type keeps any. The entry shown can be searched (Ctrl+F), copied (y, Y), exported
with the keys shown (x, X; :mod:`~llmcache_tui.screens.entry_actions`), opened full-screen
(z; :mod:`~llmcache_tui.screens.fullscreen`) or paged (``|``).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Input, Label, Tree
from textual.widgets.tree import TreeNode

from llmcache_tui import humanize
from llmcache_tui.cache.backends import CacheBackend, CacheBackendError
from llmcache_tui.cache.browse import (
    NOT_AN_ENTRY,
    UNREADABLE,
    KeyRow,
    PurgeEstimate,
    PurgeProgress,
    count_purge,
    describe_keys,
    glob_escape,
    namespace_pattern,
    namespaces_of,
)
from llmcache_tui.cache.keys import tenant_of
from llmcache_tui.literal import literal, printable
from llmcache_tui.screens.base import AppScreen
from llmcache_tui.screens.confirm import ConfirmScreen
from llmcache_tui.screens.entry_actions import ask_export, page_text
from llmcache_tui.screens.fullscreen import FullEntryScreen
from llmcache_tui.screens.prompt import PromptScreen, parse_ttl, ttl_problem
from llmcache_tui.screens.purge import PurgeConfirmScreen, PurgeScreen, PurgeTypedConfirmScreen
from llmcache_tui.widgets.entry_detail import EntryDetail, LoadedEntry, stored_text

ROWS_PER_LOAD = 100  # "load more" adds at least this many matching rows when it can
SCAN_COUNT = 500  # entries examined per backend call
SCAN_BUDGET = 20_000  # entries examined per "load more" before it stops and says so
EXPLORE_BUDGET = 2_000  # entries examined to discover a branch's sub-namespaces
ROW_CHUNK = 100  # rows added between yields to the event loop
KEY_COLUMN_WIDTH = 24
TENANT_COLUMN_WIDTH = 12
TREE_MIN_SCREEN_WIDTH = 100  # narrower screens start with the tree hidden
MUTATING_ACTIONS = frozenset({"delete", "edit_ttl", "purge"})
LOCAL_NOTE = "In-memory cache: only this process's entries, written by the proxy started here (3)."
PURGE_WORD = "purge"  # typed to confirm a purge of the whole cache
SHORT_TYPES = {"string": "str", "stream": "strm"}  # Redis types, for the 5-column type cell


class BrowserScreen(AppScreen):
    """Browse, inspect and change the keys of the connected backend."""

    AUTO_FOCUS = "#keys"

    BINDINGS = [
        Binding("slash", "focus_filter", "Filter", id="browser.filter", tooltip="Glob filter"),
        # show=False: in the help and the palette; the footer keeps to what fits in 120
        # columns (the status line says "press l to load more" when there is more).
        Binding(
            "n",
            "toggle_tree",
            "Tree",
            show=False,
            id="browser.tree",
            tooltip="Show/hide namespaces",
        ),
        Binding("l", "load_more", "Load more", show=False, id="browser.load_more"),
        Binding("f5,ctrl+r", "refresh", "Refresh", show=False, id="browser.refresh"),
        Binding("d,delete", "delete", "Delete", id="browser.delete", tooltip="Delete the key"),
        Binding("t", "edit_ttl", "TTL", id="browser.ttl", tooltip="Change the key's TTL"),
        # The same keys in read-only mode: say why instead of doing nothing.
        Binding("d,delete", "refuse('delete')", "Delete", show=False, id="browser.delete_off"),
        Binding("t", "refuse('TTL change')", "TTL", show=False, id="browser.ttl_off"),
        Binding("P", "refuse('purge')", "Purge", show=False, id="browser.purge_off"),
        Binding("c", "copy_key", "Copy key", id="browser.copy"),
        Binding(
            "y",
            "copy_answer",
            "Copy answer",
            show=False,
            id="browser.copy_answer",
            tooltip="Copy the answer (decoded response text)",
        ),
        Binding(
            "Y",
            "copy_json",
            "Copy JSON",
            show=False,
            id="browser.copy_json",
            tooltip="Copy the whole stored JSON of the entry",
        ),
        Binding(
            "ctrl+f",
            "find",
            "Find",
            show=False,
            id="browser.find",
            tooltip="Find text in the entry",
        ),
        Binding("z", "full_view", "Zoom", id="browser.full", tooltip="The entry full-screen"),
        Binding(
            "vertical_line",
            "pager",
            "Pager",
            show=False,
            id="browser.pager",
            tooltip="Pipe the entry to $PAGER",
        ),
        Binding(
            "x",
            "export_entry",
            "Export",
            show=False,
            id="browser.export",
            tooltip="Write the entry to a JSON Lines file",
        ),
        Binding(
            "X",
            "export_shown",
            "Export shown",
            show=False,
            id="browser.export_shown",
            tooltip="Write every key loaded in the table to a JSON Lines file",
        ),
        Binding(
            "v", "vectors", "Vectors", id="browser.vectors", tooltip="The semantic cache's vectors"
        ),
        Binding(
            "P", "purge", "Purge", id="browser.purge", tooltip="Delete all matching cache entries"
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.pattern = "*"
        self.cursor: str | None = None
        self.exhausted = False
        self.scanned = 0
        self.total: int | None = None
        self.rows: dict[str, KeyRow] = {}
        self.namespace_nodes: dict[str, TreeNode[str | None]] = {}
        self.explored: set[str | None] = set()
        self.show_tenants = False

    @property
    def backend(self) -> CacheBackend | None:
        return self.llm_app.session.backend

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="browser-main"):
            tree: Tree[str | None] = Tree("all keys", data=None, id="namespaces")
            tree.root.expand()
            yield tree
            with Vertical(id="browser-right"):
                yield Input(placeholder="glob filter, e.g. team-a:*  (Enter)", id="filter")
                yield Label("", id="local-note")
                yield DataTable(id="keys", cursor_type="row", zebra_stripes=True)
                yield Label("", id="scan-status")
                yield EntryDetail(id="detail", clock=self.llm_app.clock)
        yield Footer()

    def on_mount(self) -> None:
        self._add_columns()
        if self.app.size.width < TREE_MIN_SCREEN_WIDTH:
            self.query_one("#namespaces", Tree).display = False

    def _add_columns(self) -> None:
        """The key table's columns; a tenant column only under tenant isolation."""
        self.show_tenants = self.llm_app.session.settings.app.isolation == "tenant"
        table = self.query_one("#keys", DataTable)
        table.clear(columns=True)
        table.add_column("key", key="key", width=KEY_COLUMN_WIDTH)
        if self.show_tenants:
            table.add_column("tenant", key="tenant", width=TENANT_COLUMN_WIDTH)
        table.add_column("model", key="model", width=14)
        table.add_column("type", key="type", width=5)
        table.add_column("age", key="age", width=7)
        table.add_column("TTL", key="ttl", width=7)
        table.add_column("size", key="size", width=9)

    def action_toggle_tree(self) -> None:
        tree = self.query_one("#namespaces", Tree)
        tree.display = not tree.display

    def session_changed(self) -> None:
        self.reset_view()

    def reset_view(self) -> None:
        """Start over for a new backend or config."""
        self.workers.cancel_group(self, "browser-explore")  # it may scan a closed backend
        tree = self.query_one("#namespaces", Tree)
        tree.root.remove_children()
        self.namespace_nodes.clear()
        self.explored.clear()
        if self.show_tenants != (self.llm_app.session.settings.app.isolation == "tenant"):
            self._add_columns()  # a config with the other isolation was loaded
        backend = self.backend
        note = LOCAL_NOTE if backend is not None and backend.process_local else ""
        self.query_one("#local-note", Label).update(note)
        self.query_one("#local-note", Label).display = bool(note)
        if backend is None:
            problem = self.llm_app.session.backend_error or "no cache backend"
            self._status(f"Not connected: {problem}")
            return
        self.load_keys(reset=True)
        self.explore(None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "vectors":  # only semantic cache types keep vectors
            return self.llm_app.session.semantic_available
        if action == "refuse":
            return self.llm_app.session.read_only
        # Hidden in read-only mode, and refused if invoked some other way.
        return not (action in MUTATING_ACTIONS and self.llm_app.session.read_only)

    # -- loading keys ------------------------------------------------------------------
    @work(exclusive=True, group="browser-scan", exit_on_error=False)
    async def load_keys(self, reset: bool) -> None:
        backend = self.backend
        if backend is None:
            return
        table = self.query_one("#keys", DataTable)
        if reset:
            table.clear()
            self.rows.clear()
            self.cursor = None
            self.exhausted = False
            self.scanned = 0
            self.query_one("#detail", EntryDetail).clear()
        elif self.exhausted:
            self._show_scan_status()
            return
        self._status(f"scanning for {self.pattern} ...")
        added = examined = 0
        try:
            while added < ROWS_PER_LOAD and examined < SCAN_BUDGET:
                page = await backend.scan(self.pattern, self.cursor, SCAN_COUNT)
                rows = await describe_keys(backend, page.keys)
                self.scanned += page.scanned
                examined += page.scanned
                if page.total is not None:  # a backend may count only on the first page
                    self.total = page.total
                self.cursor = page.cursor
                added += await self._add_rows(table, rows)
                if page.cursor is None:
                    self.exhausted = True
                    break
        except CacheBackendError as exc:
            self._status(f"scan failed: {exc}")
            self.notify(str(exc), title="Scan failed", severity="error", timeout=8)
            return
        self._show_scan_status()

    async def _add_rows(self, table: DataTable[Text | str], rows: list[KeyRow]) -> int:
        now = self.llm_app.clock()
        added = 0
        for start in range(0, len(rows), ROW_CHUNK):
            for row in rows[start : start + ROW_CHUNK]:
                if row.key in self.rows:
                    continue  # scans may return a key twice
                self.rows[row.key] = row
                table.add_row(*_cells(row, now, tenants=self.show_tenants), key=row.key)
                added += 1
                for namespace in namespaces_of(row.key):
                    self._add_namespace(namespace)
            await asyncio.sleep(0)  # let the UI draw and take keys between chunks
        return added

    def _show_scan_status(self) -> None:
        shown = len(self.rows)
        about = f" of about {self.total:,}" if self.total is not None else ""
        more = "all matching keys loaded" if self.exhausted else "more may match: l loads more"
        self._status(
            f"{shown:,} keys shown for {self.pattern} | scanned {self.scanned:,}{about} | {more}"
        )

    def _status(self, text: str) -> None:
        # The pattern and error messages in it are data: "[ab]*" must not become "*".
        self.query_one("#scan-status", Label).update(literal(text, one_line=True))

    # -- namespace tree -----------------------------------------------------------------
    def _add_namespace(self, namespace: str) -> TreeNode[str | None]:
        node = self.namespace_nodes.get(namespace)
        if node is not None:
            return node
        parent_name, _, label = namespace.rpartition(":")
        tree = self.query_one("#namespaces", Tree)
        parent = self._add_namespace(parent_name) if parent_name else tree.root
        node = parent.add(literal(label, one_line=True), data=namespace, allow_expand=True)
        self.namespace_nodes[namespace] = node
        return node

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[str | None]) -> None:
        namespace = event.node.data
        if namespace is not None and namespace not in self.explored:
            event.node.add_leaf("loading...", data=None)
            self.explore(namespace)

    @work(group="browser-explore", exit_on_error=False)
    async def explore(self, namespace: str | None) -> None:
        """Discover the sub-namespaces of a branch: listed by the store where it can, else
        from a bounded scan under it."""
        backend = self.backend
        if backend is None:
            return
        self.explored.add(namespace)
        match = namespace_pattern(namespace)
        cursor: str | None = None
        examined = 0
        try:
            listed = await backend.list_namespaces(namespace)
            for found in listed or []:
                self._add_namespace(found)
            while listed is None and examined < EXPLORE_BUDGET:
                page = await backend.scan(match, cursor, SCAN_COUNT, details=False)
                examined += page.scanned
                for info in page.keys:
                    for found in namespaces_of(info.key):
                        self._add_namespace(found)
                await asyncio.sleep(0)
                cursor = page.cursor
                if cursor is None:
                    break
        except CacheBackendError as exc:
            self.notify(str(exc), title="Could not list namespaces", severity="error")
        finally:
            node = self.namespace_nodes.get(namespace) if namespace else None
            if node is not None:
                for child in list(node.children):
                    if child.data is None:
                        child.remove()  # the "loading..." placeholder

    def on_tree_node_selected(self, event: Tree.NodeSelected[str | None]) -> None:
        self.apply_filter(namespace_pattern(event.node.data))

    # -- filter ---------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.apply_filter(event.value.strip() or "*")
            self.query_one("#keys", DataTable).focus()

    def apply_filter(self, pattern: str) -> None:
        self.pattern = pattern
        self.query_one("#filter", Input).value = "" if pattern == "*" else pattern
        self.load_keys(reset=True)

    def open_key(self, key: str) -> None:
        """Show ``key`` alone in the table, its entry in the pane (asked for from elsewhere,
        such as the proxy's request log)."""
        self.apply_filter(glob_escape(key))
        self.query_one("#keys", DataTable).focus()

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_load_more(self) -> None:
        self.load_keys(reset=False)

    def action_refresh(self) -> None:
        self.reset_view()

    # -- detail ---------------------------------------------------------------------------
    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value
        if key is not None:
            self.load_detail(key)

    @work(exclusive=True, group="browser-detail", exit_on_error=False)
    async def load_detail(self, key: str) -> None:
        backend = self.backend
        detail = self.query_one("#detail", EntryDetail)
        if backend is None:
            return
        shape = None
        try:
            raw = await backend.get(key)
            if raw is None:  # gone, or a list, hash... of another application
                (shape,) = await backend.value_shapes([key])
            ttl = await backend.ttl(key) if raw is not None or shape is not None else None
        except KeyError:
            raw = shape = None
        except CacheBackendError as exc:
            detail.clear(f"Could not read {key}: {exc}")
            return
        if raw is None and shape is None:
            detail.clear(f"{key} no longer exists (expired or deleted).")
            return
        row = self.rows.get(key)
        memory = row.size if row is not None and backend.sizes_are_memory else None
        loaded = LoadedEntry(key, raw or b"", ttl, self.llm_app.clock(), shape=shape, memory=memory)
        detail.show(loaded)

    def selected_key(self) -> str | None:
        table = self.query_one("#keys", DataTable)
        if table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return row_key.value

    # -- actions ------------------------------------------------------------------------------
    def action_vectors(self) -> None:
        from llmcache_tui.screens.vectors import VectorsScreen

        self.app.push_screen(VectorsScreen())

    def action_copy_key(self) -> None:
        key = self.selected_key()
        if key is None:
            self.notify("No key selected", severity="warning")
            return
        self.app.copy_to_clipboard(key)
        self.notify(f"Copied {key}", title="Key copied")

    # -- the entry shown: find, copy, full view, pager, export ----------------------------
    @property
    def detail(self) -> EntryDetail:
        return self.query_one("#detail", EntryDetail)

    def _shown_entry(self) -> LoadedEntry | None:
        loaded = self.detail.loaded
        if loaded is None:
            self.notify("No entry shown: select a key", severity="warning")
        return loaded

    def action_find(self) -> None:
        if self._shown_entry() is not None:
            self.detail.action_find()

    def action_copy_answer(self) -> None:
        if self._shown_entry() is not None:
            self.detail.action_copy_answer()

    def action_copy_json(self) -> None:
        if self._shown_entry() is not None:
            self.detail.action_copy_json()

    def action_full_view(self) -> None:
        loaded = self._shown_entry()
        if loaded is not None:
            self.app.push_screen(FullEntryScreen(loaded, clock_owner=self.detail))

    def action_pager(self) -> None:
        loaded = self._shown_entry()
        if loaded is not None:
            page_text(self.app, stored_text(loaded))

    def action_export_entry(self) -> None:
        loaded = self._shown_entry()
        if loaded is not None and self.backend is not None:
            ask_export(self, self.llm_app, self.backend, [loaded.key], f"the entry {loaded.key}")

    def action_export_shown(self) -> None:
        table = self.query_one("#keys", DataTable)
        keys = [str(row.key.value) for row in table.ordered_rows if row.key.value is not None]
        if self.backend is None:
            return
        what = f"the {humanize.plural(len(keys), 'key')} loaded for {self.pattern}"
        ask_export(self, self.llm_app, self.backend, keys, what)

    def action_refuse(self, what: str) -> None:
        self.notify(self.llm_app.session.read_only_refusal(what), severity="warning")

    def action_delete(self) -> None:
        key = self.selected_key()
        if not self._may_change("delete") or key is None:
            return

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.delete_key(key)

        self.app.push_screen(ConfirmScreen(f"Delete this entry?\n\n{key}"), answered)

    @work(group="browser-change", exit_on_error=False)
    async def delete_key(self, key: str) -> None:
        backend = self.backend
        if backend is None:
            return
        try:
            deleted = await backend.delete([key])
        except CacheBackendError as exc:
            self.notify(str(exc), title="Delete failed", severity="error", timeout=8)
            return
        table = self.query_one("#keys", DataTable)
        if key in self.rows:
            del self.rows[key]
            table.remove_row(key)
        self.query_one("#detail", EntryDetail).clear(f"Deleted {key}.")
        self.notify(f"Deleted {key}" if deleted else f"{key} was already gone")
        self._show_scan_status()

    def action_edit_ttl(self) -> None:
        key = self.selected_key()
        if not self._may_change("TTL change") or key is None:
            return
        backend = self.backend
        if backend is None or not backend.can_edit_ttl:
            self.notify("This backend cannot change TTLs", severity="warning")
            return

        def answered(text: str | None) -> None:
            if text is not None:
                self.set_ttl(key, parse_ttl(text))

        prompt = PromptScreen(
            f"New TTL for {key}",
            placeholder="seconds, or 10m / 2h / 1d; 'none' for no expiry",
            validate=ttl_problem,
        )
        self.app.push_screen(prompt, answered)

    @work(group="browser-change", exit_on_error=False)
    async def set_ttl(self, key: str, ttl: float | None) -> None:
        backend = self.backend
        if backend is None:
            return
        try:
            changed = await backend.expire(key, ttl)
        except CacheBackendError as exc:
            self.notify(str(exc), title="TTL change failed", severity="error", timeout=8)
            return
        if not changed:
            self.notify(f"{key} no longer exists", severity="warning")
            return
        self.notify(f"TTL of {key}: {humanize.duration(ttl)}")
        if key in self.rows:
            row = self.rows[key]
            self.rows[key] = replace(row, ttl=ttl)
            table = self.query_one("#keys", DataTable)
            table.update_cell(key, "ttl", humanize.duration(ttl, none="-"))
        if self.selected_key() == key:
            self.load_detail(key)

    def action_purge(self) -> None:
        backend = self.backend
        if not self._may_change("purge") or backend is None:
            return
        self.prepare_purge(backend, self.pattern)

    @work(exclusive=True, group="browser-purge-count", exit_on_error=False)
    async def prepare_purge(self, backend: CacheBackend, pattern: str) -> None:
        """Count what a purge would delete (a bounded dry run), then ask before it starts."""
        self._status(f"counting the cache entries matching {pattern} ...")
        try:
            estimate = await count_purge(backend, pattern)
        except CacheBackendError as exc:
            self.notify(str(exc), title="Purge not started", severity="error", timeout=8)
            return
        finally:
            self._show_scan_status()
        if estimate.complete and estimate.entries == 0:
            others = f"; {estimate.others:,} other keys left alone" if estimate.others else ""
            self.notify(f"Nothing to purge: no cache entries match {pattern}{others}")
            return

        def purged(progress: PurgeProgress | None) -> None:
            if progress is not None:
                state = "Purged" if progress.done else "Purge stopped after deleting"
                others = f"; {progress.skipped:,} other keys left alone" if progress.skipped else ""
                what = "keys" if progress.everything else "cache entries"
                self.notify(f"{state} {progress.deleted:,} {what} matching {pattern}{others}")
            self.reset_view()

        question = purge_question(pattern, estimate, reads_values=backend.purge_reads_values)
        dialog: PurgeConfirmScreen | PurgeTypedConfirmScreen
        if is_whole_cache(pattern):
            dialog = PurgeTypedConfirmScreen(question, estimate, word=PURGE_WORD)
        else:
            dialog = PurgeConfirmScreen(question, estimate)

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                purging = PurgeScreen(backend, pattern, everything=dialog.everything)
                self.app.push_screen(purging, purged)

        self.app.push_screen(dialog, answered)

    def _may_change(self, what: str) -> bool:
        if self.llm_app.session.read_only:
            self.action_refuse(what)
            return False
        return True


def is_whole_cache(pattern: str) -> bool:
    """Whether a purge of ``pattern`` reaches every key (no filter, or only ``*``)."""
    return not pattern.strip("*")


def purge_question(pattern: str, estimate: PurgeEstimate, *, reads_values: bool) -> str:
    """The confirmation of a purge: how many cache entries it deletes, and what it leaves."""
    count = f"{estimate.entries:,}" if estimate.complete else f"at least {estimate.entries:,}"
    noun = "cache entry" if count == "1" else "cache entries"
    if is_whole_cache(pattern):
        lines = [f"Purge {count} {noun}: every cache entry in the cache?"]
    else:
        lines = [f"Purge {count} {noun} matching '{pattern}'?"]
    lines.append("")
    if not estimate.complete:
        lines.append(
            f"Counted in the first {estimate.scanned:,} keys examined;"
            " the purge goes through every matching key."
        )
    if estimate.others:
        so_far = "" if estimate.complete else " so far"
        lines.append(f"{estimate.others:,} matching keys{so_far} are not cache entries: they stay.")
        lines.append("Tick the box below to delete every matching key instead.")
    elif not reads_values:
        lines.append("Every key this cache lists is taken for a cache entry.")
    lines.append("This cannot be undone.")
    if is_whole_cache(pattern):
        lines.append(f"Type {PURGE_WORD} and press Enter to confirm.")
    return "\n".join(lines)


def _cells(row: KeyRow, now: float, *, tenants: bool = False) -> tuple[Text | str, ...]:
    age = None if row.created_at is None else max(0.0, now - row.created_at)
    if row.origin == NOT_AN_ENTRY:
        model = "(not an entry)"
        value_type = row.shape.type if row.shape is not None else "string"
        kind = SHORT_TYPES.get(value_type, value_type)
    else:
        model = row.model or ("(unreadable)" if row.origin == UNREADABLE else "-")
        kind = {"text_completion": "text", "embedding": "embed", "transcription": "audio"}.get(
            row.route, row.route or "-"
        )
    if row.shape is not None and row.shape.items is not None:
        size = f"{row.shape.items:,} items"
    else:
        size = humanize.size(row.size)
    # Keys, model names and Redis types come from the cache: a str cell would be markup.
    key = Text(_middle_truncate(printable(row.key, one_line=True), KEY_COLUMN_WIDTH))
    owner = (literal(tenant_of(row.key) or "-", one_line=True),) if tenants else ()
    return (
        key,
        *owner,
        literal(model, one_line=True),
        literal(kind, one_line=True),
        humanize.duration(age, none="-"),
        humanize.duration(row.ttl, none="-"),
        size,
    )


def _middle_truncate(text: str, width: int) -> str:
    """Keep both ends of a long key visible: the namespace and the end of the hash."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return f"{text[:head]}…{text[-(width - 1 - head) :]}"
