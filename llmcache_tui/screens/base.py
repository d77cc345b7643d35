"""What every screen of the app shares: typed access to the app and its session."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.screen import Screen

if TYPE_CHECKING:
    from llmcache_tui.app import LLMCacheApp


class AppScreen(Screen[None]):
    """A screen of :class:`~llmcache_tui.app.LLMCacheApp`."""

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
