"""The semantic probe: type a prompt, see what the proxy would answer and why.

The probe itself (key, scope, neighbours, guards, decision) is the cache layer's
(:mod:`llmcache_tui.cache.semantic.probe`); this screen gathers the request, runs it in a
worker and shows the report: a verdict panel, then the nearest stored prompts best first,
with a line where the similarity threshold falls. ``+``/``-``, or a value typed in the
threshold field, move the threshold for this view only and re-judge the rows without
embedding again; ctrl+s saves it to the config file (after a confirmation), and the
proxy started from the app uses it from then on.
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

THRESHOLD_STEP = 0.01
THRESHOLD_ROW = "~threshold"  # the separator's row key; storage keys never start with "~"
MAX_K = 100
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
        yield DataTable(id="probe-rows", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#probe-rows", DataTable)
        table.add_column("sim", key="sim", width=5)
        table.add_column("verdict", key="verdict", width=38)
        table.add_column("prompt", key="prompt", width=28)
        table.add_column("model", key="model", width=11)
        table.add_column("namespace", key="namespace", width=8)
        table.add_column("age", key="age", width=7)
        table.add_column("TTL", key="ttl", width=8)

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
        session = self.llm_app.session
        self._panel(None if session.semantic_available else UNAVAILABLE)

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
        namespace = self.query_one("#probe-namespace", Input).value.strip() or None
        cache = session.settings.cache
        if namespace is None and cache is not None:
            namespace = cache.namespace  # what a request without cache controls gets
        self._panel(f"probing {prompt!r} ...")
        self.query_one("#probe-rows", DataTable).focus()
        self.run_probe(chat_body(model, prompt, temperature), model, namespace, min(k, MAX_K))

    @work(exclusive=True, group="probe-run", exit_on_error=False)
    async def run_probe(
        self, body: dict[str, object], model: str, namespace: str | None, k: int
    ) -> None:
        session = self.llm_app.session
        tier, problem = session.semantic_tier()
        backend = session.backend
        if tier is None or backend is None:
            self._panel(f"Semantic caching is off: {problem or 'no backend'}")
            return
        report = await probe(tier, backend, dict(body), "chat", model, namespace, k)
        if self.threshold is not None:
            report = report.with_threshold(self.threshold)
        self.report = report
        self._show()

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
            return
        try:
            threshold = parse_threshold(text)
        except ValueError as exc:
            self.notify(str(exc), title="Threshold not changed", severity="warning")
            return
        if self.report is None:
            self.threshold = threshold
            self._panel(f"Threshold {threshold:.2f} for this view: now type a prompt (Enter).")
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
        self._panel("\n".join(lines))
        self.query_one("#probe-threshold", Input).value = f"{report.threshold:.2f}"
        table = self.query_one("#probe-rows", DataTable)
        table.clear()
        now = self.llm_app.clock()
        separator = False
        for row in report.rows:
            if not separator and row.similarity < report.threshold:
                self._add_separator(table, report.threshold)
                separator = True
            table.add_row(*_cells(row, now), key=row.key)
        if not separator:
            self._add_separator(table, report.threshold)

    @staticmethod
    def _add_separator(table: DataTable[Text], threshold: float) -> None:
        line = Text(f"── threshold {threshold:.2f} ──", style="bold yellow")
        table.add_row(Text("──"), line, *(Text("") for _ in range(5)), key=THRESHOLD_ROW)

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


def _cells(row: ProbeRow, now: float) -> tuple[Text, ...]:
    # Prompts, keys and models come from the cache: every cell is literal text.
    style = "" if row.in_scope else "dim"
    if row.in_scope and row.verdict is not None and row.verdict.hit and row.entry == "ok":
        verdict_style = "bold green"
    else:
        verdict_style = style
    cells = (
        Text(f"{row.similarity:.2f}", style=style),
        literal(row.verdict_text(), one_line=True, style=verdict_style),
        literal(row.text, one_line=True, style=style),
        literal(row.model or "-", one_line=True, style=style),
        literal(row.namespace or "-", one_line=True, style=style),
        Text(humanize.duration(row.age(now), none="-"), style=style),
        Text(humanize.duration(row.remaining(now), none="-"), style=style),
    )
    return cells
