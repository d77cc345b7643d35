"""The probe's histogram: how near each stored prompt of a namespace is to its nearest twin.

One bar per 0.05 of similarity from 0.50 to 1.00 (and one for everything below), the
threshold drawn as a marker across bars and axis, and the counts on either side of it
beside them.
Bars at or above the threshold are green: those pairs pass the threshold guard.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from llmcache_tui.cache.semantic.neighbour_stats import BINS, HIGH, LOW, NeighbourStats
from llmcache_tui.literal import literal

CELL = 5  # characters per bin: a space, three of bar or label, a space
LEVELS = " ▁▂▃▄▅▆▇█"
MARKER = "┃"
TITLE = "nearest twin in scope"


class SimilarityHistogram(Static):
    """Nearest-neighbour similarities of one namespace's stored vectors, as text."""

    def show_message(self, message: str) -> None:
        self.update(literal(message))

    def show_stats(self, stats: NeighbourStats, threshold: float) -> None:
        self.update(render_histogram(stats, threshold))


def namespace_label(namespace: str | None) -> str:
    return "(none)" if namespace is None else namespace


def render_histogram(stats: NeighbourStats, threshold: float) -> Text:
    """Summary line, bars and axis (or the summary alone when there is nothing to draw)."""
    name = namespace_label(stats.namespace)
    sampled = (
        f"{stats.sampled} vectors"
        if stats.sampled == stats.matched and stats.complete
        else f"a sample of {stats.sampled} of {stats.matched}{'' if stats.complete else '+'}"
    )
    summary = Text(f"{TITLE}, namespace ")
    summary.append(literal(name, one_line=True))
    summary.append(f": {sampled}")
    if stats.alone:
        summary.append(f", {stats.alone} alone")
    if stats.sampled == 0:
        summary.append(" (nothing stored yet)")
        return summary
    if not stats.similarities:
        summary.append(": no pair any threshold could join")
        return summary
    above, below = stats.at_or_above(threshold), stats.below(threshold)
    counts = stats.histogram()
    highest = max(counts)
    bars, axis = Text(), Text()
    width = (HIGH - LOW) / BINS
    for index, count in enumerate(counts):
        level = 0 if count == 0 else max(1, round(count / highest * (len(LEVELS) - 1)))
        bin_low = -1.0 if index == 0 else LOW + (index - 1) * width
        passing = bin_low >= threshold - 1e-9
        bars.append(f" {LEVELS[level] * 3} ", style="green" if passing else "")
        label = "<.5" if index == 0 else f"{bin_low:.2f}"[1:]
        axis.append(f" {label:<3} ", style="dim")
    column = marker_column(threshold)
    bars, axis = _marked(bars, column), _marked(axis, column)
    bars.append(f"  >= {threshold:.2f}: {above}", style="bold green")
    axis.append(f"   below: {below}")
    return Text("\n").join([summary, bars, axis])


def marker_column(threshold: float) -> int:
    """The column of the threshold: the left edge of the bin starting at it, or within."""
    if threshold < LOW:
        return CELL - 1
    offset = (min(threshold, HIGH) - LOW) / ((HIGH - LOW) / BINS) * CELL
    return min(CELL * (BINS + 1) - 1, CELL + round(offset))


def _marked(line: Text, column: int) -> Text:
    marked = line[:column]
    marked.append(MARKER, style="bold yellow")
    marked.append_text(line[column + 1 :])
    return marked
