"""The caching proxy: one ASGI app, run alone (``--headless serve``) or inside the TUI."""
