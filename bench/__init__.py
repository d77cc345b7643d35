"""Benchmarks for the llmcache-tui proxy: ``python -m bench.run``."""
