"""The proxy's request log as a table: one row per request, newest at the bottom.

Columns fit the width: below :data:`WIDE` columns the route and namespace are left out and
the key is cut in the middle to what is left. The result cell is coloured by result. The
cursor follows new rows while it is on the last one, so reading an older row is not
interrupted by traffic.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from rich.text import Text
from textual.widgets import DataTable

from llmcache_tui.literal import literal
from llmcache_tui.proxy.events import RequestEvent
from llmcache_tui.request_log import MAX_EVENTS, shown_by

WIDE = 110  # from this width on, the route and namespace columns are shown
TRIM_SLACK = 100  # rows past the bound before the oldest are dropped, all in one go
MIN_KEY_WIDTH = 12
RESULT_STYLES = {
    "hit": "bold green",
    "semantic-hit": "green",
    "miss": "yellow",
    "stored": "yellow",
    "collapsed": "cyan",
    "bypass": "dim",
    "cache-error": "bold red",
    "rejected": "red",
}


class RequestTable(DataTable[Text]):
    """Request events as rows; :attr:`filter` (see :data:`~llmcache_tui.request_log.FILTERS`)
    picks which."""

    def __init__(self, *, max_rows: int = MAX_EVENTS, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self.max_rows = max_rows
        self.filter = "all"
        self._events: dict[str, RequestEvent] = {}  # by row key: the rows shown, in order
        self._numbered = 0
        self._layout: list[Column] = []  # set once the table knows its width

    def event_at(self, row_key: str | None) -> RequestEvent | None:
        return None if row_key is None else self._events.get(row_key)

    @property
    def shown(self) -> int:
        """How many events the table holds, drawn or not (rows are drawn from the first
        resize on, when the columns are known)."""
        return len(self._events)

    def load(self, events: Iterable[RequestEvent]) -> None:
        """Show the events (oldest first) that the filter lets through, and no others."""
        self.clear()
        self._events.clear()
        self.append(events)

    def append(self, events: Iterable[RequestEvent]) -> None:
        """Add the new events the filter lets through at the bottom."""
        following = self.row_count == 0 or self.cursor_row >= self.row_count - 1
        fresh = [event for event in events if shown_by(event, self.filter)]
        for event in fresh[-self.max_rows :]:  # a burst: only what would stay is drawn
            self._add(event)
        if len(self._events) > self.max_rows + TRIM_SLACK:
            self.load(list(self._events.values())[-self.max_rows :])
        elif fresh and following and self.row_count:
            self.move_cursor(row=self.row_count - 1)

    def on_resize(self) -> None:
        layout = columns_for(self.size.width, self.cell_padding)
        if layout != self._layout:
            self._layout = layout
            shown = list(self._events.values())
            self.clear(columns=True)
            for column in layout:
                self.add_column(column.label, key=column.key, width=column.width)
            self.load(shown)

    def _add(self, event: RequestEvent) -> None:
        self._numbered += 1
        row_key = str(self._numbered)
        self._events[row_key] = event
        if self._layout:  # else the first resize adds it
            cells = [_cell(event, column) for column in self._layout]
            self.add_row(*cells, key=row_key)


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the table: its heading, width and alignment."""

    label: str
    key: str
    width: int
    right: bool = False


def columns_for(width: int, padding: int) -> list[Column]:
    """The columns that fit ``width``: the key takes what the others leave."""
    if width <= 0:
        return []
    wide = width >= WIDE
    columns = [
        Column("time", "time", 8),
        Column("result", "result", 12),
        Column("status", "status", 6, right=True) if wide else Column("st.", "status", 3, True),
        Column("latency", "latency", 9, right=True),
    ]
    if wide:
        columns.append(Column("route", "route", 15))
    columns.append(Column("model", "model", 18 if wide else 14))
    if wide:
        columns.append(Column("namespace", "namespace", 12))
    used = sum(column.width + 2 * padding for column in columns)
    # Less the key's own padding and the vertical scrollbar.
    columns.append(Column("key", "key", max(MIN_KEY_WIDTH, width - used - 2 * padding - 2)))
    return columns


def _cell(event: RequestEvent, layout: Column) -> Text:
    cell = _text(event, layout.key, layout.width)
    if layout.right:
        cell.justify = "right"
    return cell


def _text(event: RequestEvent, column: str, width: int) -> Text:
    if column == "time":
        return Text(time.strftime("%H:%M:%S", time.localtime(event.time)))
    if column == "result":
        return Text(event.result, style=RESULT_STYLES.get(event.result, ""))
    if column == "status":
        return Text(str(event.status), style="red" if event.status >= 400 else "")
    if column == "latency":
        return Text(latency(event.latency_ms))
    if column == "route":
        return Text(event.route)
    if column == "model":
        return literal(middle_truncate(event.model, width) or "-", one_line=True)
    if column == "namespace":
        return literal(middle_truncate(event.namespace or "-", width), one_line=True)
    return literal(middle_truncate(event.key or "-", width), one_line=True)


def latency(milliseconds: float) -> str:
    """``0.4 ms``, ``12.3 ms``, ``1.24 s``."""
    if milliseconds < 1000:
        return f"{milliseconds:.1f} ms"
    return f"{milliseconds / 1000:.2f} s"


def middle_truncate(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters by an ellipsis in the middle, if longer."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return f"{text[:head]}…{text[len(text) - (width - 1 - head) :]}"
