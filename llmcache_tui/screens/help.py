"""The ``?`` help screen: every key binding of the app and of each screen."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from llmcache_tui.literal import literal


class HelpScreen(ModalScreen[None]):
    """Lists bindings grouped by where they apply, with remapped keys shown."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="help.close")]

    def __init__(
        self, groups: Mapping[str, Iterable[BindingType]], keymap: Mapping[str, str]
    ) -> None:
        super().__init__()
        self.groups = groups
        self.keymap = keymap

    def compose(self) -> ComposeResult:
        table = Table(title="Keys (Escape closes)", expand=True, show_edge=False)
        table.add_column("where", style="bold")
        table.add_column("key", style="cyan")
        table.add_column("action")
        for where, bindings in self.groups.items():
            for binding in bindings:
                if not isinstance(binding, Binding) or binding.action.startswith("refuse"):
                    continue  # a read-only explanation on a key that is listed already
                keys = self.keymap.get(binding.id or "", binding.key)
                shown = ", ".join(_key_name(key) for key in keys.split(","))
                description = binding.description or binding.action
                if binding.tooltip:
                    description += f" - {binding.tooltip}"
                # Remapped keys come from the config: a str cell of a Rich table is markup.
                table.add_row(where, literal(shown), literal(description))
                where = ""
        table.add_row("anywhere", "ctrl+p", "command palette: every action by name")
        with VerticalScroll(classes="dialog help"):
            yield Static(table)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)


def _key_name(key: str) -> str:
    names = {"slash": "/", "question_mark": "?", "delete": "Del", "vertical_line": "|"}
    key = key.strip()
    if key in names:
        return names[key]
    return f"shift+{key.lower()}" if len(key) == 1 and key.isupper() else key
