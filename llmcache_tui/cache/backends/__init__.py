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
    """Construct the backend the settings ask for.

    Raises UnsupportedCacheType for a type not built yet and ConfigError for settings the
    backend cannot use; connecting happens lazily, on first use.
    """
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
    if params.type == "redis":
        return _with_memory_tier(cache, _redis_backend(cache))
    raise UnsupportedCacheType(
        f"cache type {params.type!r} is not supported yet by this version of llmcache-tui"
        " (supported now: local, disk, redis)"
    )


def _redis_backend(cache: CacheSettings) -> CacheBackend:
    """Raises ConfigError for unusable Redis settings (they may come from REDIS_* variables)."""
    from llmcache_tui.cache.backends.redis import RedisBackend
    from llmcache_tui.cache.backends.redis_options import redis_options

    options = redis_options(cache)
    provider = None
    if options.gcp_service_account:
        from llmcache_tui.cache.backends.gcp_iam import GcpIamCredentialProvider

        provider = GcpIamCredentialProvider(options.gcp_service_account)
    params = cache.params
    return RedisBackend(
        options,
        default_ttl=params.ttl or params.default_in_redis_ttl,
        credential_provider=provider,
    )


def _with_memory_tier(cache: CacheSettings, shared: CacheBackend) -> CacheBackend:
    """Put a per-process memory tier in front when ``default_in_memory_ttl`` asks for one."""
    params = cache.params
    if not params.default_in_memory_ttl:
        return shared
    from llmcache_tui.cache.backends.local import LocalBackend
    from llmcache_tui.cache.backends.tiered import TieredBackend

    memory = LocalBackend(
        max_entries=params.max_size_in_memory,
        max_bytes=params.max_bytes_in_memory,
        default_ttl=params.default_in_memory_ttl,
    )
    return TieredBackend(memory, shared, params.default_in_memory_ttl)
