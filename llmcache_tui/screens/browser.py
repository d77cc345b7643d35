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
from collections.abc import Iterable
from dataclasses import replace

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Input, Label, Tree
from textual.widgets.tree import TreeNode

from llmcache_tui import humanize
from llmcache_tui.cache.backends import CacheBackend, CacheBackendError
from llmcache_tui.cache.backends.base import KeyInfo
from llmcache_tui.cache.browse import (
    KeyRow,
    NamespaceCounts,
    PurgeEstimate,
    PurgeProgress,
    count_purge,
    describe_keys,
    glob_escape,
    namespace_pattern,
    namespaces_of,
    plural,
)
from llmcache_tui.literal import literal
from llmcache_tui.screens.base import AppScreen
from llmcache_tui.screens.confirm import ConfirmScreen
from llmcache_tui.screens.entry_actions import ask_export, page_text
from llmcache_tui.screens.fullscreen import FullEntryScreen
from llmcache_tui.screens.prompt import PromptScreen, parse_ttl, ttl_problem
from llmcache_tui.screens.purge import PurgeConfirmScreen, PurgeScreen, PurgeTypedConfirmScreen
from llmcache_tui.widgets.entry_detail import EntryDetail, LoadedEntry, stored_text
from llmcache_tui.widgets.key_table import KeyTable

ROWS_PER_LOAD = 100  # "load more" adds at least this many matching rows when it can
SCAN_COUNT = 500  # entries examined per backend call
SCAN_BUDGET = 20_000  # entries examined per "load more" before it stops and says so
EXPLORE_BUDGET = 2_000  # entries examined to discover a branch's sub-namespaces
ROW_CHUNK = 100  # rows added between yields to the event loop
TREE_MIN_SCREEN_WIDTH = 100  # narrower screens hide the tree
TREE_MIN_WIDTH = 20
TREE_MAX_SHARE = 0.4  # of the screen's width, however long the namespace names
TREE_GUIDE = 4  # columns a tree level indents by (Textual's default guide depth)
#: auto-refresh where a scan is cheap (in this process, or a local file); off elsewhere
LOCAL_REFRESH_SECONDS = 5.0
CHEAP_SCAN_TYPES = frozenset({"local", "disk"})
REFRESH_BUDGET = 5_000  # entries a refresh re-examines at most (from the start of the scan)
RETRY_SECONDS = 3.0  # after a failed scan, how often to try the backend again
MUTATING_ACTIONS = frozenset({"delete", "edit_ttl", "purge"})
LOCAL_NOTE = "In-memory cache: only this process's entries, written by the proxy started here (3)."
PURGE_WORD = "purge"  # typed to confirm a purge of the whole cache


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
        # Out of the footer, which has no room left at 120 columns: in the help and palette.
        Binding(
            "f",
            "focus_row_filter",
            "Filter rows",
            show=False,
            id="browser.filter_rows",
            tooltip="Filter the loaded rows by model or prompt",
        ),
        Binding(
            "s",
            "cycle_sort",
            "Sort",
            show=False,
            id="browser.sort",
            tooltip="Sort by size, age, TTL, model",
        ),
        Binding(
            "S", "reverse_sort", "Reverse", show=False, id="browser.reverse", tooltip="Reverse sort"
        ),
        Binding(
            "a",
            "toggle_auto_refresh",
            "Auto-refresh",
            show=False,  # the status line says whether it is on
            id="browser.auto",
            tooltip="Re-read the loaded keys every few seconds, or stop",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.pattern = "*"
        self.cursor: str | None = None
        self.exhausted = False
        self.scanned = 0
        self.total: int | None = None
        self.namespace_nodes: dict[str, TreeNode[str | None]] = {}
        self.explored: set[str | None] = set()
        self.counts = NamespaceCounts()
        self.tree_widest = 0  # columns the longest tree label needs
        self.show_tenants = False
        #: None: the tree follows the screen's width; else the person's last choice
        self.tree_hidden_by_user = False
        self.wide: bool | None = None
        #: seconds between refreshes (None: off) and whether the person turned it on or off
        self.refresh_seconds: float | None = None
        self.refresh_timer: Timer | None = None
        #: the last scan's failure, shown until the backend answers again
        self.outage: str | None = None
        self.retry_timer: Timer | None = None
        self.detail_key: str | None = None

    @property
    def table(self) -> KeyTable:
        return self.query_one("#keys", KeyTable)

    @property
    def rows(self) -> dict[str, KeyRow]:
        """Every loaded row (the filter may show fewer)."""
        return self.table.loaded

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
                with Horizontal(id="filters"):
                    yield Input(placeholder="glob filter, e.g. team-a:*  (Enter)", id="filter")
                    yield Input(placeholder="find: model or prompt (f)", id="row-filter")
                yield Label("", id="local-note")
                yield KeyTable(id="keys", clock=self.llm_app.clock)
                with Horizontal(id="status-line"):
                    yield Label("", id="scan-status")
                    yield Label("", id="refresh-state")
                yield EntryDetail(id="detail", clock=self.llm_app.clock)
        yield Footer()

    def on_mount(self) -> None:
        self._set_columns()
        self._follow_width(self.app.size.width)

    def _set_columns(self) -> None:
        """A tenant column only under tenant isolation."""
        self.show_tenants = self.llm_app.session.settings.app.isolation == "tenant"
        backend = self.llm_app.session.backend
        memory = backend is not None and backend.sizes_are_memory
        self.table.size_label = "memory" if memory else "size"
        self.table.set_tenants(self.show_tenants)

    def on_resize(self, event: Resize) -> None:
        self._follow_width(self.app.size.width)

    def _follow_width(self, width: int) -> None:
        """Hide the tree below ``TREE_MIN_SCREEN_WIDTH`` columns and show it again above,
        unless the person hid it; only when the width crosses that line, so a tree shown
        by hand on a narrow screen stays."""
        wide = width >= TREE_MIN_SCREEN_WIDTH
        if wide == self.wide:
            return
        self.wide = wide
        self.query_one("#namespaces", Tree).display = wide and not self.tree_hidden_by_user
        self._fit_tree()

    def action_toggle_tree(self) -> None:
        tree = self.query_one("#namespaces", Tree)
        tree.display = not tree.display
        self.tree_hidden_by_user = not tree.display

    def session_changed(self) -> None:
        self.reset_view()

    def reset_view(self) -> None:
        """Start over for a new backend or config."""
        self.workers.cancel_group(self, "browser-explore")  # it may scan a closed backend
        self.workers.cancel_group(self, "browser-refresh")
        tree = self.query_one("#namespaces", Tree)
        tree.root.remove_children()
        self.namespace_nodes.clear()
        self.explored.clear()
        self.counts.clear()
        self.tree_widest = 0
        if self.show_tenants != (self.llm_app.session.settings.app.isolation == "tenant"):
            self._set_columns()  # a config with the other isolation was loaded
        backend = self.backend
        note = LOCAL_NOTE if backend is not None and backend.process_local else ""
        self.query_one("#local-note", Label).update(note)
        self.query_one("#local-note", Label).display = bool(note)
        self._set_auto_refresh(self._default_refresh(backend))
        if backend is None:
            problem = self.llm_app.session.backend_error or "no cache backend"
            self._status(f"Not connected: {problem}")
            return
        self.load_keys(reset=True)
        self.explore(None)

    # -- auto-refresh and recovery -------------------------------------------------------
    def _default_refresh(self, backend: CacheBackend | None) -> float | None:
        """``llmcache.auto_refresh_seconds`` (0: off), else on only where scans are cheap."""
        if backend is None:
            return None
        configured = self.llm_app.session.settings.app.auto_refresh_seconds
        if configured is not None:
            return configured or None
        cheap = backend.process_local or backend.cache_type in CHEAP_SCAN_TYPES
        return LOCAL_REFRESH_SECONDS if cheap else None

    def _set_auto_refresh(self, seconds: float | None) -> None:
        if self.refresh_timer is not None:
            self.refresh_timer.stop()
            self.refresh_timer = None
        self.refresh_seconds = seconds
        if seconds is not None:
            self.refresh_timer = self.set_interval(seconds, self._refresh_due)
        state = f"auto {seconds:g}s" if seconds is not None else "auto off"
        self.query_one("#refresh-state", Label).update(state)

    def action_toggle_auto_refresh(self) -> None:
        if self.refresh_seconds is not None:
            self._set_auto_refresh(None)
            self.notify("Auto-refresh off")
            return
        configured = self.llm_app.session.settings.app.auto_refresh_seconds
        self._set_auto_refresh(configured or LOCAL_REFRESH_SECONDS)
        self.notify(f"Auto-refresh every {self.refresh_seconds:g}s of the loaded keys")

    def _refresh_due(self) -> None:
        if self.outage is None:
            self.refresh_keys()

    def _scan_failed(self, exc: CacheBackendError, *, notify: bool) -> None:
        """Say so until the backend answers again, and try it every ``RETRY_SECONDS``."""
        first = self.outage is None
        self.outage = str(exc)
        self._status(f"scan failed: {exc} | trying again every {RETRY_SECONDS:g}s")
        if first and notify:
            self.notify(str(exc), title="Scan failed", severity="error", timeout=8)
        if self.retry_timer is None:
            self.retry_timer = self.set_interval(RETRY_SECONDS, self._retry)

    def _retry(self) -> None:
        if any(
            w.is_running for w in self.workers if w.group in ("browser-scan", "browser-refresh")
        ):
            return
        if self.rows:
            self.refresh_keys()
        else:
            self.load_keys(reset=True)

    def _scan_succeeded(self) -> None:
        if self.retry_timer is not None:
            self.retry_timer.stop()
            self.retry_timer = None
        if self.outage is not None:
            self.outage = None
            self.notify("The cache backend answers again", title="Reconnected")
            if not self.namespace_nodes:
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
        table = self.table
        if reset:
            self.workers.cancel_group(self, "browser-refresh")  # it reads the old pattern
            table.clear_rows()
            self.cursor = None
            self.exhausted = False
            self.scanned = 0
            self.total = None
            self.detail_key = None
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
            self._scan_failed(exc, notify=True)
            return
        self._scan_succeeded()
        self._note_complete()
        self._show_scan_status()

    async def _add_rows(self, table: KeyTable, rows: list[KeyRow]) -> int:
        added = 0
        for start in range(0, len(rows), ROW_CHUNK):
            new = table.add_loaded(rows[start : start + ROW_CHUNK])
            added += len(new)
            changed: set[str] = set()
            for row in new:
                for namespace in namespaces_of(row.key):
                    self._add_namespace(namespace)
                changed.update(self.counts.add(row.key, row.size))
            self._label_namespaces(changed)
            await asyncio.sleep(0)  # let the UI draw and take keys between chunks
        return added

    def _note_complete(self) -> None:
        """Counts are exact once every key of the whole keyspace has been seen."""
        if self.exhausted and self.pattern == "*" and not self.counts.complete:
            self.counts.complete = True
            self.tree_widest = 0  # the labels lose their "≥": measure them again
            self._label_namespaces(list(self.namespace_nodes))

    @work(exclusive=True, group="browser-refresh", exit_on_error=False)
    async def refresh_keys(self) -> None:
        """Read the loaded part of the keyspace again: new keys there join the table, known
        ones get their TTL and size anew, and (when the re-read reaches the end) keys gone
        leave it. Bounded by ``REFRESH_BUDGET``: a huge keyspace is never rescanned."""
        backend = self.backend
        if backend is None or any(w.is_running for w in self.workers if w.group == "browser-scan"):
            return
        budget = min(max(self.scanned, SCAN_COUNT), REFRESH_BUDGET)
        pattern = self.pattern
        cursor: str | None = None
        examined = 0
        found: list[KeyInfo] = []
        try:
            while examined < budget:
                page = await backend.scan(pattern, cursor, min(SCAN_COUNT, budget - examined))
                examined += page.scanned
                found += page.keys
                if page.total is not None:
                    self.total = page.total
                cursor = page.cursor
                if cursor is None:
                    break
                await asyncio.sleep(0)
            new = [info for info in found if info.key not in self.rows]
            described = await describe_keys(backend, new) if new else []
        except CacheBackendError as exc:
            self._scan_failed(exc, notify=False)
            return
        if pattern != self.pattern:
            return  # the filter changed meanwhile: its own scan fills the table
        self._scan_succeeded()
        table = self.table
        for info in found:
            row = self.rows.get(info.key)
            if row is not None:  # its TTL counts from now again
                size = row.size if info.size is None else info.size
                table.update_row(replace(row, ttl=info.ttl, size=size), redraw=False)
        await self._add_rows(table, described)
        if cursor is None:  # the whole matching keyspace was read again
            seen = {info.key for info in found}
            gone = [key for key in self.rows if key not in seen]
            self._forget(gone)
            if not self.exhausted:
                self.exhausted, self.cursor = True, None
            self.scanned = max(self.scanned, examined)
            self._note_complete()
        self._show_scan_status()

    def _forget(self, keys: list[str]) -> None:
        """Keys deleted or expired: out of the table and the tree's counts."""
        if not keys:
            return
        self.table.remove_keys(keys)
        changed: set[str] = set()
        for key in keys:
            changed.update(self.counts.remove(key))
        self._label_namespaces(changed)
        if self.detail_key in keys:
            self.detail_key = None

    def _show_scan_status(self) -> None:
        if self.outage is not None:
            return  # the failure stays in view until the backend answers
        loaded = len(self.rows)
        about = f" of about {self.total:,}" if self.total is not None else ""
        more = "all matching keys loaded" if self.exhausted else "more may match: l loads more"
        text_filter = self.table.text_filter
        if text_filter:
            shown = (
                f"{self.table.shown:,} of {plural(loaded, 'loaded key')} match '{text_filter}'"
                f" (filters the loaded rows only) for {self.pattern}"
            )
        else:
            shown = f"{plural(loaded, 'key')} shown for {self.pattern}"
        self._status(f"{shown} | scanned {self.scanned:,}{about} | {more}")

    def _status(self, text: str) -> None:
        # The pattern and error messages in it are data: "[ab]*" must not become "*".
        self.query_one("#scan-status", Label).update(literal(text, one_line=True))

    # -- namespace tree -----------------------------------------------------------------
    def _add_namespace(self, namespace: str) -> TreeNode[str | None]:
        node = self.namespace_nodes.get(namespace)
        if node is not None:
            return node
        parent_name, _, _ = namespace.rpartition(":")
        tree = self.query_one("#namespaces", Tree)
        parent = self._add_namespace(parent_name) if parent_name else tree.root
        node = parent.add(self._tree_label(namespace), data=namespace, allow_expand=True)
        self.namespace_nodes[namespace] = node
        self._measure(namespace, node)
        self._fit_tree()
        return node

    def _tree_label(self, namespace: str) -> Text:
        """The namespace's last part whole, and the keys (and bytes) counted under it."""
        label = literal(namespace.rpartition(":")[2], one_line=True)
        counted = self.counts.describe(namespace)
        if counted:
            label.append(f" {counted}", style="dim")
        return label

    def _label_namespaces(self, namespaces: Iterable[str]) -> None:
        for namespace in namespaces:
            node = self.namespace_nodes.get(namespace)
            if node is not None:
                node.set_label(self._tree_label(namespace))
                self._measure(namespace, node)
        self._fit_tree()

    def _measure(self, namespace: str, node: TreeNode[str | None]) -> None:
        """Widen the tree's need for this label: its depth's indent plus its text."""
        depth = namespace.count(":") + 1
        self.tree_widest = max(self.tree_widest, TREE_GUIDE * depth + len(str(node.label)))

    def _fit_tree(self) -> None:
        """As wide as its longest label (within ``TREE_MAX_SHARE`` of the screen)."""
        limit = max(TREE_MIN_WIDTH, int(self.app.size.width * TREE_MAX_SHARE))
        width = min(limit, max(TREE_MIN_WIDTH, self.tree_widest + 4))  # + border, scrollbar
        tree = self.query_one("#namespaces", Tree)
        if tree.styles.width is None or tree.styles.width.value != width:
            tree.styles.width = width

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
            self.table.focus()
        elif event.input.id == "row-filter":
            self.table.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "row-filter":  # the loaded rows only: nothing is fetched
            self.table.set_text_filter(event.value)
            self._show_scan_status()

    def action_focus_row_filter(self) -> None:
        self.query_one("#row-filter", Input).focus()

    def action_cycle_sort(self) -> None:
        self.table.cycle_sort()

    def action_reverse_sort(self) -> None:
        self.table.reverse_sort()

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
        # A refresh, sort or resize lays the table out again on the same row: keep the pane.
        if key is not None and key != self.detail_key:
            self.detail_key = key
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
        return self.table.selected_key()

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
        self._forget([key])
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
            self.table.update_row(replace(self.rows[key], ttl=ttl))
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
