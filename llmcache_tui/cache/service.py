"""Entry-level cache operations for the proxy: decode, check freshness, and fail open.

A backend that fails never fails a request: errors are logged and counted here and the
request is served from upstream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from llmcache_tui.cache.backends.base import CacheBackend, CacheBackendError, CacheSkipped
from llmcache_tui.cache.entry import CacheEntry, EntryFormatError

log = logging.getLogger("llmcache_tui.cache")


@dataclass(frozen=True, slots=True)
class Lookup:
    """The result of a cache read: an entry to serve, or the RFC 9211 reason for none."""

    entry: CacheEntry | None
    fwd: str = "miss"
    age: float = 0.0
    failed: bool = False


MISS = Lookup(None)


class ResponseCache:
    """Reads and writes :class:`CacheEntry` records through a backend, never raising."""

    def __init__(self, backend: CacheBackend, clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.clock = clock
        self.errors = 0

    async def lookup(self, key: str, route: str, model: str, max_age: float | None) -> Lookup:
        try:
            raw = await self.backend.get(key)
        except CacheBackendError as exc:
            self._failed(exc)
            return Lookup(None, failed=True)
        if raw is None:
            return MISS
        try:
            entry = CacheEntry.decode(raw)
        except EntryFormatError as exc:
            log.warning("ignoring unreadable cache entry %s: %s", key, exc)
            return MISS
        # A digest collision is not a realistic risk, but a shared keyspace is: only ever
        # serve an entry we wrote for this very route and model.
        if entry.foreign or entry.route != route or entry.model != model:
            return MISS
        age = max(0.0, self.clock() - entry.created_at)
        if max_age is not None and age > max_age:
            return Lookup(None, fwd="stale")
        return Lookup(entry, fwd="hit", age=age)

    async def store(self, key: str, entry: CacheEntry, ttl: float | None) -> bool:
        try:
            await self.backend.set(key, entry.encode(), ttl)
        except CacheBackendError as exc:
            self._failed(exc)
            return False
        return True

    def _failed(self, exc: CacheBackendError) -> None:
        self.errors += 1
        if isinstance(exc, CacheSkipped):
            return  # the failure that opened the breaker was logged already
        log.warning("cache unavailable, serving from upstream: %s", exc)
