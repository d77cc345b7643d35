"""The Textual app: wiring only. Screens do the work; the session holds the connections."""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import Input
from textual.worker import Worker, WorkerState

from llmcache_tui.cache.export import output_directory
from llmcache_tui.literal import printable
from llmcache_tui.log_bridge import LogBridge
from llmcache_tui.request_log import RequestLog
from llmcache_tui.screens.base import AppScreen
from llmcache_tui.screens.browser import BrowserScreen
from llmcache_tui.screens.help import HelpScreen
from llmcache_tui.screens.overview import OverviewScreen
from llmcache_tui.screens.probe import UNAVAILABLE, ProbeScreen
from llmcache_tui.screens.proxy import ProxyScreen
from llmcache_tui.session import Session

SCREENS_BY_MODE: dict[str, type[Screen[None]]] = {
    "overview": OverviewScreen,
    "browser": BrowserScreen,
    "proxy": ProxyScreen,
    "probe": ProbeScreen,
}


class LLMCacheApp(App[None]):
    """See and steer an LLM response cache; run the caching proxy."""

    TITLE = "llmcache-tui"
    CSS_PATH = "app.tcss"
    MODES = SCREENS_BY_MODE  # type: ignore[assignment]
    BINDINGS = [
        Binding("1", "switch_mode('overview')", "Overview", id="app.overview"),
        Binding("2", "switch_mode('browser')", "Browser", id="app.browser"),
        Binding("3", "switch_mode('proxy')", "Proxy", id="app.proxy"),
        Binding(
            "4",
            "probe",
            "Probe",
            id="app.probe",
            tooltip="Ask the semantic cache about a prompt",
        ),
        # The same key where there is nothing to probe: says why instead of doing nothing.
        Binding("4", "probe_unavailable", "Probe", show=False, id="app.probe_unavailable"),
        Binding("question_mark", "help", "Help", id="app.help", tooltip="List every key"),
        Binding("q", "quit", "Quit", id="app.quit", tooltip="Stop the proxy and quit"),
        Binding("escape", "leave_input", "Leave input", show=False, id="app.leave_input"),
    ]

    def __init__(self, session: Session, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.session = session
        self.clock = clock
        self.generation = 0  # bumped when the session connects elsewhere
        self.log_bridge = LogBridge(redactor=lambda: self.session.settings.redactor)
        self.request_log = RequestLog()  # the embedded proxy's requests, for its screen

    def _show_session_in_header(self) -> None:
        cache = self.session.settings.cache
        kind = cache.type if cache else "no cache"
        mode = " (read-only)" if self.session.read_only else ""
        source = printable(self.session.settings.source, one_line=True)
        self.sub_title = f"{kind} | {source}{mode}"

    def on_mount(self) -> None:
        self.log_bridge.install()
        self._show_session_in_header()
        if self.session.settings.app.keymap:
            self.set_keymap(self.session.settings.app.keymap)
        self.switch_mode("overview")
        # The UI holds a large, long-lived object graph; collecting it whole took 60-100 ms
        # at a time in the 1,000,000-key benchmark. Freezing what start-up built keeps the
        # collector to what changes.
        gc.freeze()

    async def on_unmount(self) -> None:
        await self.session.close()
        self.log_bridge.uninstall()

    def session_changed(self) -> None:
        """Tell the screens the backend or config changed; they reload when shown."""
        self.generation += 1
        self._show_session_in_header()
        self.refresh_bindings()
        if isinstance(self.screen, AppScreen):
            self.screen.catch_up()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        available = self.session.semantic_available
        if action == "probe":
            return available
        if action == "probe_unavailable":
            return not available
        return True

    def action_probe(self) -> None:
        if not self.session.semantic_available:
            self.action_probe_unavailable()
            return
        self.switch_mode("probe")

    def action_probe_unavailable(self) -> None:
        self.notify(UNAVAILABLE, title="No semantic probe", severity="warning")

    def action_leave_input(self) -> None:
        """Escape from a text field so single-key commands work again."""
        if not isinstance(self.focused, Input):
            return
        home = self.screen.AUTO_FOCUS
        targets = self.screen.query(home) if home else None
        if targets:
            targets.first().focus()
        else:
            self.set_focus(None)

    def action_help(self) -> None:
        shown = [
            b
            for b in self.BINDINGS
            if not (isinstance(b, Binding) and self.check_action(b.action, ()) is False)
            and not (isinstance(b, Binding) and b.action == "probe_unavailable")
        ]
        groups = {"anywhere": shown}
        for mode, screen in SCREENS_BY_MODE.items():
            if mode == "probe" and not self.session.semantic_available:
                continue
            groups[mode] = screen.BINDINGS
        self.push_screen(HelpScreen(groups, self.session.settings.app.keymap))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        # Ours replace Textual's of the same name ("Quit", "Screenshot"), so no title appears
        # twice. Textual's screenshot goes to a Downloads folder that may not exist.
        ours = {b.description for b in self.BINDINGS if isinstance(b, Binding)}
        for command in super().get_system_commands(screen):
            if command.title not in ours and command.title != "Screenshot":
                yield command
        yield SystemCommand(
            "Screenshot",
            "Save an SVG screenshot next to the config file (else in the current directory)",
            lambda: self.set_timer(0.1, self.save_screenshot_here),  # once the palette is gone
        )
        for namespace, bindings in (("app", self.BINDINGS), ("screen", screen.BINDINGS)):
            for binding in bindings:
                if not isinstance(binding, Binding) or binding.action == "help":
                    continue
                if binding.action == "probe_unavailable" or binding.action.startswith("refuse"):
                    continue  # the same key's explanation where its action is off
                checker = screen if namespace == "screen" else self
                if checker.check_action(binding.action, ()) is False:
                    continue
                target = screen if namespace == "screen" else self
                yield SystemCommand(
                    binding.description,
                    binding.tooltip or binding.description,
                    partial(self.run_action, binding.action, target),
                )
        yield SystemCommand("Help", "List every key binding", self.action_help)

    def save_screenshot_here(self) -> str | None:
        """Save an SVG of the screen in the config file's directory (else the current one);
        say the full path, or why it failed."""
        directory = output_directory(self.session.settings.source)
        try:
            path = self.save_screenshot(path=str(directory))
        except OSError as exc:
            self.notify(f"Screenshot not saved in {directory}: {exc}", severity="error")
            return None
        self.notify(f"Saved {os.path.abspath(path)}", title="Screenshot")
        return path

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Show a toast, always as plain text: ``markup`` is accepted and ignored.

        Every message of this app may carry a key, a pattern, a path or an error message,
        and a screen's ``notify`` asks for markup by default.
        """
        super().notify(
            printable(message),
            title=printable(title, one_line=True),
            severity=severity,
            timeout=timeout,
            markup=False,
        )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Workers run with exit_on_error=False: a failure is reported, never a crash.
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.notify(
                f"{type(error).__name__}: {error}",
                title=f"{event.worker.name or 'task'} failed",
                severity="error",
                timeout=10,
            )


MAX_REASON_CHARS = 500


def run_tui(session: Session) -> int:
    """Run the app until the user quits; non-zero, with the reason, if it crashed."""
    app = LLMCacheApp(session)
    app.run()
    return exit_status(app)


def exit_status(app: App[Any]) -> int:
    """The process exit code for an app that has stopped; on a crash also say why.

    Textual ends the app on an unhandled exception and prints its traceback, but ``run()``
    returns normally: its ``return_code`` and the exception it keeps are the only trace.
    The reason goes last on stderr, one line, so it is what a person sees.
    """
    code = app.return_code or 0
    if code:
        error = app._exception  # Textual keeps the first unhandled exception here
        reason = f"{type(error).__name__}: {error}" if error else f"exit code {code}"
        reason = printable(" ".join(reason.split()), one_line=True)[:MAX_REASON_CHARS]
        print(f"llmcache-tui: the terminal app stopped on an error: {reason}", file=sys.stderr)
    return code
