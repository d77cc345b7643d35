"""What every screen of the app shares: typed access to the app and its session."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.screen import Screen

if TYPE_CHECKING:
    from llmcache_tui.app import LLMCacheApp


class AppScreen(Screen[None]):
    """A screen of :class:`~llmcache_tui.app.LLMCacheApp`.

    When the session connects elsewhere, each screen reloads (``session_changed``) the
    next time it is shown, or at once if it is in view.
    """

    _seen_generation = -1

    def on_screen_resume(self) -> None:
        self.catch_up()

    def catch_up(self) -> None:
        """Reload if the session changed since this screen last looked; then refresh."""
        if self._seen_generation != self.llm_app.generation:
            self._seen_generation = self.llm_app.generation
            self.session_changed()
        self.shown()

    def session_changed(self) -> None:
        """Reload everything that depends on the session's config or backend."""

    def shown(self) -> None:
        """Refresh what may have changed while the screen was hidden."""

    @property
    def llm_app(self) -> LLMCacheApp:
        from llmcache_tui.app import LLMCacheApp  # the app imports the screens

        assert isinstance(self.app, LLMCacheApp)
        return self.app

    def every(self, seconds: float, refresh: Callable[[], object]) -> None:
        """Call ``refresh`` every ``seconds`` while this screen is the one in view.

        Textual keeps a hidden screen's timers running; its refreshes would be wasted.
        """

        def tick() -> None:
            if self.is_current:
                refresh()

        self.set_interval(seconds, tick)
