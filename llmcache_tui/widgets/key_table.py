"""The browser's key table: the loaded rows, sorted and filtered here, with live age and TTL.

The table holds every row the browser has loaded (``rows``, in load order) and shows those
that pass the text filter (model or prompt), in the chosen order. Sorting and filtering
work on the loaded rows only: nothing is fetched for them. Age and TTL are worked out from
the values fetched and the time since (the app's clock), and the cells of the rows in view
are brought up to date every second without asking the backend again. The key column takes
the width the other columns leave: a key is shown whole when it fits, else its namespace
whole and its hash shortened in the middle (``ns:3f2a…9c1d``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rich.text import Text
from textual.coordinate import Coordinate
from textual.events import Resize
from textual.widgets import DataTable

from llmcache_tui import humanize
from llmcache_tui.cache.browse import NOT_AN_ENTRY, UNREADABLE, KeyRow, plural
from llmcache_tui.cache.keys import NAMESPACE_SEPARATOR, tenant_of
from llmcache_tui.literal import literal, printable

MIN_KEY_WIDTH = 16
TENANT_COLUMN_WIDTH = 12
SCROLLBAR_WIDTH = 2  # kept free so the key column does not jump when a scrollbar appears
NONE = "—"  # an unknown value: never "None"
SHORT_TYPES = {"string": "str", "stream": "strm"}  # Redis types, for the 5-column type cell
ROUTE_LABELS = {"text_completion": "text", "embedding": "embed", "transcription": "audio"}
UP, DOWN = "▲", "▼"


@dataclass(frozen=True, slots=True)
class Column:
    """A column after the key: its key, label, width and whether numbers align right."""

    key: str
    label: str
    width: int
    numeric: bool = False


COLUMNS = (
    Column("model", "model", 14),
    Column("type", "type", 5),
    Column("age", "age", 7, numeric=True),
    Column("ttl", "TTL", 7, numeric=True),
    Column("size", "size", 9, numeric=True),
)
#: what ``s`` steps through, each with its first direction (True: descending): the biggest,
#: the newest and the soonest to expire come first; then back to the order of loading
SORT_CYCLE: tuple[tuple[str, bool], ...] = (
    ("size", True),
    ("age", False),
    ("ttl", False),
    ("model", False),
)
SORTABLE = {"key": False, **dict(SORT_CYCLE)}


class KeyTable(DataTable[Text | str]):
    """The loaded keys, with client-side sort and filter and age and TTL that count live."""

    def __init__(self, *, clock: Callable[[], float] = time.time, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.clock = clock
        #: every loaded row, in load order (``rows`` is DataTable's: the rows shown), and
        #: when its TTL was read (on ``clock``)
        self.loaded: dict[str, KeyRow] = {}
        self.fetched_at: dict[str, float] = {}
        self.tenants = False
        # "memory" where the backend's sizes are the server's memory use (Redis), not bytes
        self.size_label = "size"
        self.sort_by: str | None = None
        self.descending = False
        self.text_filter = ""
        self.key_width = MIN_KEY_WIDTH

    def on_mount(self) -> None:
        self.set_interval(1.0, self.tick)
        self.rebuild()

    # -- what is shown -----------------------------------------------------------------
    def shown_keys(self) -> list[str]:
        """The keys that pass the filter, in the table's order."""
        keys = [key for key, row in self.loaded.items() if self._passes(row)]
        if self.sort_by is not None:
            now = self.clock()
            keys.sort(key=lambda key: self._sort_value(key, now), reverse=self.descending)
        return keys

    @property
    def shown(self) -> int:
        return self.row_count

    def selected_key(self) -> str | None:
        if self.row_count == 0:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return row_key.value

    def _passes(self, row: KeyRow) -> bool:
        if not self.text_filter:
            return True
        needle = self.text_filter.casefold()
        return needle in row.model.casefold() or needle in row.prompt.casefold()

    def _sort_value(self, key: str, now: float) -> tuple[int, float | str]:
        """Unknown values sort after known ones either way round."""
        row = self.loaded[key]
        value: float | str | None
        if self.sort_by == "size":
            value = row.size
        elif self.sort_by == "age":
            value = None if row.created_at is None else now - row.created_at
        elif self.sort_by == "ttl":
            value = math.inf if row.ttl is None else self._ttl_left(key, now)
        elif self.sort_by == "model":
            value = row.model.casefold() or None
        else:
            value = key
        if value is None:
            return (0, "") if self.descending else (1, "")
        return (1, value) if self.descending else (0, value)

    def _ttl_left(self, key: str, now: float) -> float | None:
        ttl = self.loaded[key].ttl
        if ttl is None:
            return None
        return max(0.0, ttl - (now - self.fetched_at.get(key, now)))

    # -- changing the rows ---------------------------------------------------------------
    def clear_rows(self) -> None:
        self.loaded.clear()
        self.fetched_at.clear()
        self.clear()

    def add_loaded(self, rows: Iterable[KeyRow]) -> list[KeyRow]:
        """Add the rows not loaded yet; return those added."""
        now = self.clock()
        added = []
        for row in rows:
            if row.key in self.loaded:
                continue  # scans may return a key twice
            self.loaded[row.key] = row
            self.fetched_at[row.key] = now
            added.append(row)
        if not added:
            return added
        if self.sort_by is not None:
            self.rebuild()  # new rows take their place in the order
        else:
            for row in added:
                if self._passes(row):
                    self.add_row(*self._cells(row, now), key=row.key)
        return added

    def update_row(self, row: KeyRow, *, redraw: bool = True) -> None:
        """A loaded row read again (a refresh, a TTL change): its cells follow. Without
        ``redraw`` only its size cell is redrawn now (when it changed): age and TTL follow
        within a second for the rows in view, which keeps a refresh of many rows cheap."""
        old = self.loaded.get(row.key)
        if old is None:
            return
        self.loaded[row.key] = row
        self.fetched_at[row.key] = self.clock()
        if row.key not in self.rows:  # DataTable's own: the rows shown
            return
        if redraw:
            self._update_cells(row.key)
        elif old.size != row.size:
            self._update_cells(row.key, ("size",))

    def remove_keys(self, keys: Iterable[str]) -> None:
        for key in keys:
            if self.loaded.pop(key, None) is not None:
                self.fetched_at.pop(key, None)
                if key in self.rows:  # DataTable's own: the rows shown
                    self.remove_row(key)

    # -- sort and filter -----------------------------------------------------------------
    def set_sort(self, column: str | None, descending: bool = False) -> None:
        self.sort_by, self.descending = column, descending
        self.rebuild()

    def sort_on(self, column: str) -> None:
        """A header click: sort by that column, or turn the direction round if it is the one."""
        if column not in SORTABLE:
            return
        if column == self.sort_by:
            self.set_sort(column, not self.descending)
        else:
            self.set_sort(column, SORTABLE[column])

    def cycle_sort(self) -> None:
        """The next column of ``SORT_CYCLE``, then the order of loading again."""
        order = [column for column, _ in SORT_CYCLE]
        if self.sort_by not in order:
            self.set_sort(*SORT_CYCLE[0])
            return
        index = order.index(self.sort_by) + 1
        self.set_sort(*SORT_CYCLE[index]) if index < len(SORT_CYCLE) else self.set_sort(None)

    def reverse_sort(self) -> None:
        if self.sort_by is not None:
            self.set_sort(self.sort_by, not self.descending)

    def set_text_filter(self, text: str) -> None:
        self.text_filter = text.strip()
        self.rebuild()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        if event.column_key.value is not None:
            self.sort_on(event.column_key.value)

    # -- layout ------------------------------------------------------------------------
    def on_resize(self, event: Resize) -> None:
        width = self._fitting_key_width(event.size.width)
        if width != self.key_width:
            self.key_width = width
            self.rebuild()

    def _fitting_key_width(self, table_width: int) -> int:
        padding = 2 * self.cell_padding
        others = sum(column.width + padding for column in COLUMNS)
        if self.tenants:
            others += TENANT_COLUMN_WIDTH + padding
        return max(MIN_KEY_WIDTH, table_width - SCROLLBAR_WIDTH - others - padding)

    def set_tenants(self, tenants: bool) -> None:
        self.tenants = tenants
        self.key_width = self._fitting_key_width(self.size.width)
        self.rebuild()

    def rebuild(self) -> None:
        """Lay the table out anew (columns, order, filter). The selected row stays selected
        and where it was on screen: rows added above it scroll the view with it."""
        selected = self.selected_key()
        old_index = self.cursor_row
        scroll_y = self.scroll_y
        with self.app.batch_update():
            self.clear(columns=True)
            self.add_column(self._label("key"), key="key", width=self.key_width)
            if self.tenants:
                self.add_column("tenant", key="tenant", width=TENANT_COLUMN_WIDTH)
            for column in COLUMNS:
                self.add_column(self._label(column.key), key=column.key, width=column.width)
            now = self.clock()
            keys = self.shown_keys()
            for key in keys:
                self.add_row(*self._cells(self.loaded[key], now), key=key)
            if selected is not None and selected in self.rows:
                index = keys.index(selected)
                scroll_y = max(0.0, scroll_y + index - old_index)
                self.move_cursor(row=index, scroll=False)
            self.scroll_to(y=scroll_y, animate=False, immediate=True)

    def _label(self, column: str) -> Text:
        if column == "size":
            label = self.size_label
        else:
            label = "key" if column == "key" else next(c.label for c in COLUMNS if c.key == column)
        if column == self.sort_by:
            label = f"{label} {DOWN if self.descending else UP}"
        return Text(label, justify="right" if column in ("age", "ttl", "size") else "left")

    # -- live age and TTL ----------------------------------------------------------------
    def tick(self) -> None:
        """Count age and TTL on in the rows in view, from the values fetched."""
        if self.row_count == 0:
            return
        first = max(0, int(self.scroll_y))
        last = min(self.row_count, first + self.size.height)
        for index in range(first, last):
            row_key, _ = self.coordinate_to_cell_key(Coordinate(index, 0))
            if row_key.value is not None:
                self._update_cells(row_key.value, ("age", "ttl"))

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if round(old_value) != round(new_value):
            self.tick()  # rows scrolled into view show their age and TTL as of now

    def _update_cells(self, key: str, columns: tuple[str, ...] | None = None) -> None:
        cells = dict(
            zip(self._column_keys(), self._cells(self.loaded[key], self.clock()), strict=True)
        )
        for column in columns or tuple(cells):
            self.update_cell(key, column, cells[column])

    def _column_keys(self) -> list[str]:
        return ["key", *(["tenant"] if self.tenants else []), *(c.key for c in COLUMNS)]

    def _cells(self, row: KeyRow, now: float) -> tuple[Text | str, ...]:
        # Keys, model names and Redis types come from the cache: a str cell would be markup.
        age = None if row.created_at is None else max(0.0, now - row.created_at)
        if row.origin == NOT_AN_ENTRY:
            model = "(not an entry)"
            value_type = row.shape.type if row.shape is not None else "string"
            kind = SHORT_TYPES.get(value_type, value_type)
        else:
            model = row.model or ("(unreadable)" if row.origin == UNREADABLE else NONE)
            kind = ROUTE_LABELS.get(row.route, row.route or NONE)
        if row.shape is not None and row.shape.items is not None:
            size = plural(row.shape.items, "item")
        else:
            size = humanize.size(row.size) if row.size is not None else NONE
        left = self._ttl_left(row.key, now)
        ttl = "no TTL" if row.ttl is None else "expired" if left == 0 else humanize.duration(left)
        key = Text(shorten_key(printable(row.key, one_line=True), self.key_width))
        owner = (literal(tenant_of(row.key) or NONE, one_line=True),) if self.tenants else ()
        return (
            key,
            *owner,
            literal(model, one_line=True),
            literal(kind, one_line=True),
            Text(humanize.duration(age, none=NONE), justify="right"),
            Text(ttl, justify="right"),
            Text(size, justify="right"),
        )


def shorten_key(key: str, width: int) -> str:
    """A key in ``width`` characters: whole if it fits, else its namespace whole and the
    hash shortened in the middle (``team-a:3f2a…9c1d``), else both ends of it."""
    if len(key) <= width:
        return key
    namespace, separator, tail = key.rpartition(NAMESPACE_SEPARATOR)
    head = namespace + separator
    room = width - len(head) - 1
    if namespace and room >= 6:
        front = (room + 1) // 2
        return f"{head}{tail[:front]}…{tail[-(room - front) :]}"
    return middle_truncate(key, width)


def middle_truncate(text: str, width: int) -> str:
    """Keep both ends of a long text visible."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return f"{text[:head]}…{text[-(width - 1 - head) :]}"
