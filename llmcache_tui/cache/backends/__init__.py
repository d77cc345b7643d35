"""Cache backends, built from settings. SDKs are imported only for the chosen type."""

from __future__ import annotations

from pathlib import Path

from llmcache_tui.cache.backends.base import (
    BackendStats,
    CacheBackend,
    CacheBackendError,
    KeyInfo,
    ScanPage,
    UnsupportedCacheType,
)
from llmcache_tui.config import CacheSettings

__all__ = [
    "BackendStats",
    "CacheBackend",
    "CacheBackendError",
    "KeyInfo",
    "ScanPage",
    "UnsupportedCacheType",
    "build_backend",
]

# LiteLLM keeps in-memory entries 10 minutes unless told otherwise.
DEFAULT_LOCAL_TTL = 600.0


def build_backend(cache: CacheSettings) -> CacheBackend:
    """Construct the backend the settings ask for; raise a clear error if we cannot."""
    params = cache.params
    if params.type == "local":
        from llmcache_tui.cache.backends.local import LocalBackend

        return LocalBackend(
            max_entries=params.max_size_in_memory,
            max_bytes=params.max_bytes_in_memory,
            default_ttl=params.ttl or params.default_in_memory_ttl or DEFAULT_LOCAL_TTL,
        )
    if params.type == "disk":
        from llmcache_tui.cache.backends.disk import DiskBackend

        return DiskBackend(Path(params.disk_cache_dir), default_ttl=params.ttl)
    raise UnsupportedCacheType(
        f"cache type {params.type!r} is not supported yet by this version of llmcache-tui"
        " (supported now: local, disk)"
    )
