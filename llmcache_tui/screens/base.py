"""What every screen of the app shares: typed access to the app and its session."""

from __future__ import annotations

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
