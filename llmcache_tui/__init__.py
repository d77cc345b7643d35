"""llmcache-tui: a caching proxy for OpenAI-compatible LLM traffic, and a terminal app."""

__version__ = "0.1.0"
