"""A bounded in-process memory tier in front of a shared backend (``default_in_memory_ttl``).

Reads try memory, then the shared backend, filling memory on a hit; writes and deletes go
to both. Browsing, TTLs and stats are the shared backend's: memory only speeds reads up,
and its short TTL bounds how stale a copy can be after a change made elsewhere.
"""

from __future__ import annotations

from typing import Any

from llmcache_tui.cache.backends.base import BackendStats, CacheBackend, ScanPage, ValueShape
from llmcache_tui.cache.backends.local import LocalBackend


class TieredBackend(CacheBackend):
    """Memory first, then ``shared``; failures of ``shared`` surface as usual."""

    @property
    def sizes_are_memory(self) -> bool:
        return self.shared.sizes_are_memory  # keys are listed and counted by the shared tier

    def __init__(self, memory: LocalBackend, shared: CacheBackend, memory_ttl: float) -> None:
        super().__init__(default_ttl=shared.default_ttl)
        self.memory = memory
        self.shared = shared
        self.memory_ttl = memory_ttl
        self.cache_type = shared.cache_type  # type: ignore[misc]
        self.can_edit_ttl = shared.can_edit_ttl  # type: ignore[misc]
        self.purge_batch = shared.purge_batch  # type: ignore[misc]
        self.purge_reads_values = shared.purge_reads_values  # type: ignore[misc]

    def timed_parts(self) -> list[CacheBackend]:
        # Each tier times its own calls; this one's would only add the two together.
        return [*self.memory.timed_parts(), *self.shared.timed_parts()]

    async def _get(self, key: str) -> bytes | None:
        value = await self.memory.get(key)
        if value is not None:
            return value
        value = await self.shared.get(key)
        if value is None:
            return None
        await self.memory.set(key, value, self.memory_ttl)
        # Answer with memory's own copy: the next read returns that very object, which lets
        # the decoded-entry cache recognise it instead of keeping a second copy.
        held = await self.memory.get(key)
        return value if held is None else held

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        return await self.shared.get_many(keys)

    async def _value_heads(self, keys: list[str], size: int) -> list[bytes | None]:
        return await self.shared.value_heads(keys, size)

    async def _value_shapes(self, keys: list[str]) -> list[ValueShape | None]:
        return await self.shared.value_shapes(keys)

    async def _sweep_entries(
        self, keys: list[str], patterns: tuple[str, ...], head_size: int, delete: bool
    ) -> tuple[int, int] | None:
        if delete:  # memory holds only copies of shared values: none may outlive them
            await self.memory.delete(keys)
        return await self.shared.sweep_entries(keys, patterns, head_size, delete=delete)

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        await self.shared.set(key, value, ttl)  # if this fails, memory must not serve it
        await self.memory.set(key, value, self._memory_ttl(ttl))

    async def _delete(self, keys: list[str]) -> int:
        await self.memory.delete(keys)
        return await self.shared.delete(keys)

    async def _ping(self) -> bool:
        return await self.shared.ping()

    async def _scan(self, match: str, cursor: str | None, count: int) -> ScanPage:
        return await self.shared.scan(match, cursor, count)

    async def _scan_names(self, match: str, cursor: str | None, count: int) -> ScanPage:
        return await self.shared.scan(match, cursor, count, details=False)

    async def _list_namespaces(self, parent: str | None) -> list[str] | None:
        return await self.shared.list_namespaces(parent)

    async def _ttl(self, key: str) -> float | None:
        return await self.shared.ttl(key)

    async def _expire(self, key: str, ttl: float | None) -> bool:
        await self.memory.delete([key])  # refilled from the shared copy on the next read
        return await self.shared.expire(key, ttl)

    async def _stats(self) -> BackendStats:
        stats = await self.shared.stats()
        memory = await self.memory.stats()
        details = {
            **stats.details,
            "memory_tier_entries": memory.entries,
            "memory_tier_bytes": memory.bytes_used,
        }
        return BackendStats(stats.entries, stats.bytes_used, details)

    async def server_info(self) -> dict[str, Any]:
        return await self.shared.server_info()

    def describe(self) -> dict[str, Any]:
        return {**self.shared.describe(), "default_in_memory_ttl": self.memory_ttl}

    async def close(self) -> None:
        await self.memory.close()
        await self.shared.close()

    def _memory_ttl(self, ttl: float | None) -> float:
        return self.memory_ttl if ttl is None else min(ttl, self.memory_ttl)
