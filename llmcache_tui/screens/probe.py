"""The semantic probe: type a prompt, see what the proxy would answer and why.

The probe itself (key, scope, neighbours, guards, decision) is the cache layer's
(:mod:`llmcache_tui.cache.semantic.probe`); this screen gathers the request, runs it in a
worker and shows the report: a verdict panel, then the nearest stored prompts best first,
with a line where the similarity threshold falls. ``+``/``-``, or a value typed in the
threshold field, move the threshold for this view only and re-judge the rows without
embedding again; ctrl+s saves it to the config file (after a confirmation), and the
proxy started from the app uses it from then on.

Above the table, a histogram of how near the namespace's stored prompts are to their
nearest twin in scope (:mod:`llmcache_tui.cache.semantic.neighbour_stats`, in a worker),
with the threshold marked. Below 100 columns the table keeps sim, verdict (outcome and
guard), prompt, model and age; the line under it shows the highlighted row in full.
"""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Input, Select, Static

from llmcache_tui import humanize
from llmcache_tui.cache.backends.base import CacheBackendError
from llmcache_tui.cache.keys import NAMESPACE_SEPARATOR, TENANT_MARK
from llmcache_tui.cache.semantic.embedder import EmbedderError
from llmcache_tui.cache.semantic.neighbour_stats import NeighbourStats, neighbour_stats
from llmcache_tui.cache.semantic.probe import DEFAULT_K, ProbeReport, ProbeRow, chat_body, probe
from llmcache_tui.config import BUILTIN_SOURCE, CONFIG_ENV_VAR
from llmcache_tui.config_edit import (
    THRESHOLD_PATH,
    ConfigEditError,
    apply_threshold_edit,
    format_threshold,
    plan_threshold_edit,
)
from llmcache_tui.literal import literal
from llmcache_tui.screens.base import AppScreen
from llmcache_tui.screens.confirm import ConfirmScreen
from llmcache_tui.screens.entry import EntryScreen
from llmcache_tui.widgets.similarity_histogram import SimilarityHistogram, namespace_label

THRESHOLD_STEP = 0.01
THRESHOLD_ROW = "~threshold"  # the separator's row key; storage keys never start with "~"
MAX_K = 100
NARROW = 100  # below this many columns the table drops the namespace and TTL columns
# (key, label, width) of the table's columns, wide and narrow; the first four in both.
WIDE_COLUMNS = (
    ("sim", "sim", 5),
    ("verdict", "verdict", 38),
    ("prompt", "prompt", 28),
    ("model", "model", 11),
    ("namespace", "namespace", 8),
    ("age", "age", 7),
    ("ttl", "TTL", 8),
)
NARROW_COLUMNS = (
    ("sim", "sim", 4),
    ("verdict", "verdict", 19),  # "refused: direction", the longest guard's
    ("prompt", "prompt", 27),
    ("model", "model", 11),
    ("age", "age", 7),
)
THRESHOLD_RANGE = "The threshold is a cosine similarity in [0, 1]"
UNAVAILABLE = (
    "The probe needs a semantic cache (type qdrant-semantic or redis-semantic) over a"
    " working backend."
)


class ProbeScreen(AppScreen):
    """Ask the semantic cache about a prompt without sending it upstream."""

    AUTO_FOCUS = "#probe-prompt"
    # Below 100 columns the fixed fields shrink so that the prompt keeps some room.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]

    BINDINGS = [
        Binding(
            "plus", "threshold(1)", "Threshold +", id="probe.raise", tooltip="Raise by 0.01 (view)"
        ),
        Binding("minus", "threshold(-1)", "Threshold -", id="probe.lower", tooltip="Lower by 0.01"),
        Binding("slash", "focus_prompt", "Prompt", id="probe.prompt", tooltip="Type a prompt"),
        Binding(
            "ctrl+s",
            "save_threshold",
            "Save threshold",
            id="probe.save",
            tooltip="Write the threshold to the config file (asks first)",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.report: ProbeReport | None = None
        self.threshold: float | None = None  # None: the tier's own
        self.stats: NeighbourStats | None = None
        self._narrow = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="probe-form"):
            yield Input(placeholder="prompt to probe (Enter)", id="probe-prompt")
            yield Select[str]([], prompt="model", id="probe-model", allow_blank=True)
            yield Input(placeholder="namespace", id="probe-namespace")
            yield Input(placeholder="temperature", id="probe-temperature")
            yield Input(value=str(DEFAULT_K), placeholder="k", id="probe-k", type="integer")
            yield Input(placeholder="threshold", id="probe-threshold")
        yield Static("", id="probe-verdict")
        yield SimilarityHistogram("", id="probe-stats")
        yield DataTable(id="probe-rows", cursor_type="row")
        yield Static("", id="probe-note")
        yield Footer()

    def on_mount(self) -> None:
        self._set_columns()

    @property
    def narrow(self) -> bool:
        return self.app.size.width < NARROW

    def _set_columns(self) -> None:
        """The table's columns for the terminal's width (rows are shown again after)."""
        table = self.query_one("#probe-rows", DataTable)
        self._narrow = self.narrow
        table.clear(columns=True)
        for key, label, width in NARROW_COLUMNS if self._narrow else WIDE_COLUMNS:
            table.add_column(label, key=key, width=width)

    def on_resize(self) -> None:
        if self.narrow != self._narrow:
            self._set_columns()
            self._show()

    def session_changed(self) -> None:
        settings = self.llm_app.session.settings
        names = list(dict.fromkeys(entry.model_name for entry in settings.model_list))
        select = self.query_one("#probe-model", Select)
        select.set_options((literal(name, one_line=True), name) for name in names)
        if names:
            select.value = names[0]
        namespace = settings.cache.namespace if settings.cache else None
        self.query_one("#probe-namespace", Input).placeholder = (
            f"namespace ({namespace})" if namespace else "namespace"
        )
        self.report = None
        self.threshold = None
        self.query_one("#probe-threshold", Input).value = ""
        self.query_one("#probe-rows", DataTable).clear()
        self.query_one("#probe-note", Static).update("")
        self.stats = None
        self.query_one(SimilarityHistogram).show_message("")
        session = self.llm_app.session
        self._panel(None if session.semantic_available else UNAVAILABLE)

    def shown(self) -> None:
        self.start_stats()

    # -- running the probe ---------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "probe-threshold":
            self.set_threshold(event.value)
        elif event.input.id and event.input.id.startswith("probe-"):
            self.start_probe()

    def action_focus_prompt(self) -> None:
        self.query_one("#probe-prompt", Input).focus()

    def start_probe(self) -> None:
        session = self.llm_app.session
        if not session.semantic_available:
            self._panel(UNAVAILABLE)
            return
        prompt = self.query_one("#probe-prompt", Input).value
        if not prompt.strip():
            self._panel("Type a prompt first.")
            return
        model = self.query_one("#probe-model", Select).value
        if not isinstance(model, str):
            self._panel("Pick a model first.")
            return
        temperature_text = self.query_one("#probe-temperature", Input).value.strip()
        temperature = None
        if temperature_text:
            try:
                temperature = float(temperature_text)
            except ValueError:
                self._panel(f"The temperature must be a number, not {temperature_text!r}.")
                return
        k_text = self.query_one("#probe-k", Input).value.strip()
        k = int(k_text) if k_text.isdigit() and int(k_text) > 0 else DEFAULT_K
        namespace, tenant = self._namespace()
        self._panel(f"probing {prompt!r} ...")
        self.query_one("#probe-rows", DataTable).focus()
        body = chat_body(model, prompt, temperature)
        self.run_probe(body, model, namespace, min(k, MAX_K), tenant or None)

    def _namespace(self) -> tuple[str | None, str | None]:
        """The namespace typed, else the config's (what a request without controls gets),
        and the tenant typed before it: "@team-a" or "@team-a:eu" asks as that tenant."""
        namespace = self.query_one("#probe-namespace", Input).value.strip() or None
        tenant = None
        if namespace is not None and namespace.startswith(TENANT_MARK):
            tenant, _, rest = namespace[len(TENANT_MARK) :].partition(NAMESPACE_SEPARATOR)
            namespace = rest or None
        cache = self.llm_app.session.settings.cache
        if namespace is None and cache is not None:
            namespace = cache.namespace
        return namespace, tenant or None

    @work(exclusive=True, group="probe-run", exit_on_error=False)
    async def run_probe(
        self,
        body: dict[str, object],
        model: str,
        namespace: str | None,
        k: int,
        tenant: str | None = None,
    ) -> None:
        session = self.llm_app.session
        tier, problem = session.semantic_tier()
        backend = session.backend
        if tier is None or backend is None:
            self._panel(f"Semantic caching is off: {problem or 'no backend'}")
            return
        report = await probe(tier, backend, dict(body), "chat", model, namespace, k, tenant=tenant)
        if self.threshold is not None:
            report = report.with_threshold(self.threshold)
        self.report = report
        self._show()
        self.start_stats()

    # -- the namespace's similarity histogram ------------------------------------------------
    def start_stats(self) -> None:
        """Compute the histogram of the namespace in the field (or the config's) anew."""
        if not self.llm_app.session.semantic_available:
            return
        namespace, _ = self._namespace()
        if self.stats is None or self.stats.namespace != namespace:
            self.query_one(SimilarityHistogram).show_message(
                f"nearest twin in scope, namespace {namespace_label(namespace)}: sampling ..."
            )
        self.run_stats(namespace)

    @work(exclusive=True, group="probe-stats", exit_on_error=False)
    async def run_stats(self, namespace: str | None) -> None:
        tier, problem = self.llm_app.session.semantic_tier()
        histogram = self.query_one(SimilarityHistogram)
        if tier is None:
            histogram.show_message(f"Semantic caching is off: {problem or 'no backend'}")
            return
        try:
            stats = await neighbour_stats(tier, namespace, clock=self.llm_app.clock)
        except (EmbedderError, CacheBackendError) as exc:
            self.stats = None
            histogram.show_message(f"nearest twin in scope: not available ({exc})")
            return
        self.stats = stats
        self._show_stats()

    def _current_threshold(self) -> float | None:
        if self.threshold is not None:
            return self.threshold
        tier, _ = self.llm_app.session.semantic_tier()
        return None if tier is None else tier.threshold

    def _show_stats(self) -> None:
        threshold = self._current_threshold()
        if self.stats is not None and threshold is not None:
            self.query_one(SimilarityHistogram).show_stats(self.stats, threshold)

    def rerun(self) -> None:
        """Probe the same request again (after a delete)."""
        if self.report is not None:
            self.start_probe()

    # -- threshold --------------------------------------------------------------------------
    def action_threshold(self, steps: int) -> None:
        if self.report is None:
            self.notify("Probe a prompt first", severity="warning")
            return
        current = self.report.threshold
        self._rejudge(round(min(1.0, max(0.0, current + steps * THRESHOLD_STEP)), 2))

    def set_threshold(self, text: str) -> None:
        """The threshold typed in its field; empty: back to the tier's own."""
        if not text.strip():
            tier, _ = self.llm_app.session.semantic_tier()
            self.threshold = None
            if self.report is not None and tier is not None:
                self.report = self.report.with_threshold(tier.threshold)
                self._show()
            self._show_stats()
            return
        try:
            threshold = parse_threshold(text)
        except ValueError as exc:
            self.notify(str(exc), title="Threshold not changed", severity="warning")
            return
        if self.report is None:
            self.threshold = threshold
            self._panel(f"Threshold {threshold:.2f} for this view: now type a prompt (Enter).")
            self._show_stats()
            return
        self._rejudge(threshold)

    # -- saving the threshold ---------------------------------------------------------------
    def action_save_threshold(self) -> None:
        session = self.llm_app.session
        tier, problem = session.semantic_tier()
        if tier is None:
            self.notify(problem or UNAVAILABLE, title="Threshold not saved", severity="warning")
            return
        value = tier.threshold if self.threshold is None else self.threshold
        setting = f"{THRESHOLD_PATH}: {format_threshold(value)}"
        source = session.settings.source
        if session.read_only:
            self.notify(
                f"Read-only mode: nothing is written. To keep this threshold, set {setting}"
                f" in {source} yourself.",
                title="Threshold not saved",
                severity="warning",
                timeout=10,
            )
            return
        if source == BUILTIN_SOURCE:
            self.notify(
                "The app runs on the built-in default config: there is no file to save to."
                f" Put {setting} in a config file (--config, ${CONFIG_ENV_VAR} or"
                " ./config.yaml) and start the app on it.",
                title="Threshold not saved",
                severity="warning",
                timeout=10,
            )
            return
        self.save_threshold(source, value)

    @work(exclusive=True, group="probe-save", exit_on_error=False)
    async def save_threshold(self, source: str, value: float) -> None:
        """Plan the edit, ask, write; the file is read and written off the event loop."""
        try:
            edit = await asyncio.to_thread(plan_threshold_edit, source, value)
        except ConfigEditError as exc:
            self.notify(str(exc), title="Threshold not saved", severity="error", timeout=10)
            return
        new = format_threshold(value)
        if _same_value(edit.old, value):
            self.llm_app.session.use_similarity_threshold(edit.new)
            self._threshold_saved()
            self.notify(f"{edit.path} already says {THRESHOLD_PATH}: {new}")
            return
        question = (
            f"Save the similarity threshold to the config file?\n\n{edit.path}\n"
            f"{THRESHOLD_PATH}: {edit.describe()}\n\nOnly this value changes in the file."
            " The proxy started from this app uses it at once; other proxies when they"
            " next start."
        )
        if not await self.app.push_screen_wait(ConfirmScreen(question, confirm_label="Save")):
            return
        try:
            await asyncio.to_thread(apply_threshold_edit, edit)
        except ConfigEditError as exc:
            self.notify(str(exc), title="Threshold not saved", severity="error", timeout=10)
            return
        self.llm_app.session.use_similarity_threshold(edit.new)
        self._threshold_saved()
        self.notify(f"Saved {THRESHOLD_PATH}: {new} to {edit.path}", title="Threshold saved")

    def _threshold_saved(self) -> None:
        """The saved value is the tier's now: the view no longer overrides it."""
        self.threshold = None
        tier, _ = self.llm_app.session.semantic_tier()
        if self.report is not None and tier is not None:
            self.report = self.report.with_threshold(tier.threshold)
            self._show()
        self._show_stats()

    def _rejudge(self, threshold: float) -> None:
        """The same neighbours judged at ``threshold``: no embedding, no search."""
        if self.report is None:
            return
        self.threshold = threshold
        self.report = self.report.with_threshold(threshold)
        self._show()

    # -- showing the report ------------------------------------------------------------------
    def _panel(self, message: str | None) -> None:
        self.query_one("#probe-verdict", Static).update(literal(message or ""))

    def _show(self) -> None:
        self._show_stats()
        report = self.report
        if report is None:
            return
        lines = [report.decision.summary()]
        if report.error:
            lines.append(f"error: {report.error}")
        lines.append(
            f"key {report.key} | threshold {report.threshold:.2f}"
            f"{'' if self.threshold is None else ' (this view only)'}"
            f" | judged: the best {report.candidates} in scope"
        )
        if report.note:
            lines.append(report.note)
        panel = "\n".join(lines)
        if self._narrow:  # a key is 64 hex digits (after any namespace): its head will do
            for key in {report.key, report.decision.key or report.key}:
                panel = panel.replace(key, short_key(key))
        self._panel(panel)
        self.query_one("#probe-threshold", Input).value = f"{report.threshold:.2f}"
        table = self.query_one("#probe-rows", DataTable)
        table.clear()
        now = self.llm_app.clock()
        separator = False
        for row in report.rows:
            if not separator and row.similarity < report.threshold:
                self._add_separator(table, report.threshold)
                separator = True
            table.add_row(*_cells(row, now, narrow=self._narrow), key=row.key)
        if not separator:
            self._add_separator(table, report.threshold)
        self._show_note()

    @staticmethod
    def _add_separator(table: DataTable[Text], threshold: float) -> None:
        line = Text(f"─ threshold {threshold:.2f} ─", style="bold yellow")
        blanks = (Text("") for _ in range(len(table.columns) - 2))
        table.add_row(Text("──"), line, *blanks, key=THRESHOLD_ROW)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_note()

    def _show_note(self) -> None:
        """The highlighted row in full, below the table: its columns cut verdicts short."""
        note = self.query_one("#probe-note", Static)
        table = self.query_one("#probe-rows", DataTable)
        report = self.report
        if report is None or table.row_count == 0:
            note.update("")
            return
        key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        row = next((row for row in report.rows if row.key == key.value), None)
        if row is None:
            note.update(Text(f"the threshold: {report.threshold:.2f}", style="dim"))
            return
        text = literal(row.verdict_text(), one_line=True, style="bold")
        text.append(" | ")
        text.append(literal(row.text, one_line=True))
        note.update(text)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        session = self.llm_app.session
        if key is None or key == THRESHOLD_ROW or session.backend is None:
            return
        screen = EntryScreen(session.backend, key, read_only=session.read_only)

        def closed(deleted: bool | None) -> None:
            if deleted:
                self.rerun()

        self.app.push_screen(screen, closed)


def parse_threshold(text: str) -> float:
    """A typed threshold; ValueError (naming the range) for anything but a number in [0, 1]."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"{THRESHOLD_RANGE}, not {text.strip()!r}.") from None
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"{THRESHOLD_RANGE}, not {text.strip()}.")
    return value


def _same_value(written: str | None, value: float) -> bool:
    try:
        return written is not None and float(written) == round(value, 4)
    except ValueError:
        return False


def short_key(key: str, digits: int = 12) -> str:
    """``key`` with its digest cut to its first ``digits`` hex digits and an ellipsis."""
    namespace, separator, digest = key.rpartition(NAMESPACE_SEPARATOR)
    if len(digest) <= digits:
        return key
    return f"{namespace}{separator}{digest[:digits]}…"


# How the verdict column names a part of the scope that differs (wide, narrow).
PART_LABELS = {
    "model": ("model", "model"),
    "namespace": ("namespace", "ns"),
    "tenant": ("tenant", "tenant"),
    "route": ("route", "route"),
    "params": ("params", "params"),
    "context": ("conversation", "conv"),
}


def scope_verdict(row: ProbeRow, *, narrow: bool) -> str:
    """The verdict column of a row of another scope: the parts that differ, named short
    (the note below the table says how they differ)."""
    if not row.scope_diff:
        return "other scope" if narrow else row.verdict_text()
    labels = [PART_LABELS.get(part, (part, part))[narrow] for part, _ in row.scope_diff]
    return f"other {'+'.join(labels)}" if narrow else f"other: {', '.join(labels)}"


def short_verdict(row: ProbeRow) -> str:
    """The verdict column when narrow: the outcome and the guard, the reason in the note."""
    if not row.in_scope or row.verdict is None:
        return scope_verdict(row, narrow=True)
    if row.entry == "gone":
        return "entry gone"
    if row.verdict.hit:
        return "hit" if row.considered else "hit (not judged)"
    return f"refused: {row.verdict.guard}"


def _cells(row: ProbeRow, now: float, *, narrow: bool = False) -> tuple[Text, ...]:
    # Prompts, keys and models come from the cache: every cell is literal text.
    style = "" if row.in_scope else "dim"
    if row.in_scope and row.verdict is not None and row.verdict.hit and row.entry == "ok":
        verdict_style = "bold green"
    else:
        verdict_style = style
    if narrow:
        verdict = short_verdict(row)
    elif not row.foreign and (not row.in_scope or row.verdict is None):
        verdict = scope_verdict(row, narrow=False)
    else:
        verdict = row.verdict_text()
    age = Text(humanize.duration(row.age(now), none="-"), style=style)
    head = (
        Text(f"{row.similarity:.2f}", style=style),
        literal(verdict, one_line=True, style=verdict_style),
        literal(row.text, one_line=True, style=style),
        literal(row.model or "-", one_line=True, style=style),
    )
    if narrow:
        return (*head, age)
    return (
        *head,
        literal(row.namespace or "-", one_line=True, style=style),
        age,
        Text(humanize.duration(row.remaining(now), none="-"), style=style),
    )
