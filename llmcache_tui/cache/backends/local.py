"""The in-memory backend: LRU bounded by entry count and bytes, TTL on an injectable clock.

The byte bound counts what the process really holds for an entry: the value and key
objects and the bookkeeping around them, not just the value's length. Values are kept as
exactly sized copies: ``orjson.dumps`` over-allocates its output (a 20 KB entry can sit in
a 256 KiB block), and keeping that block would hold many times the bound.
"""

from __future__ import annotations

import bisect
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from llmcache_tui.cache.backends.base import (
    BackendStats,
    CacheBackend,
    KeyInfo,
    ScanPage,
    compact,
    glob_matcher,
)

# Bytes held per entry besides its key and value: the item with its expiry and counters,
# its place in the LRU dict, and two write-order rows (measured with tracemalloc).
ITEM_OVERHEAD = 320


def held_bytes(key: str, value: bytes) -> int:
    """What keeping ``value`` under ``key`` costs this process, as counted against the bound.

    The key counts twice: write-order rows of removed keys, which keep those keys alive,
    are compacted away only once there are about as many of them as live entries.
    """
    return sys.getsizeof(value) + 2 * sys.getsizeof(key) + ITEM_OVERHEAD


@dataclass(slots=True)
class _Item:
    value: bytes
    expires_at: float | None
    seq: int  # write order; scan cursors are write sequence numbers
    size: int  # held_bytes() when stored, so removal subtracts exactly what was added


class LocalBackend(CacheBackend):
    """Entries live in this process's memory and vanish with it.

    ``clock`` returns seconds and defaults to ``time.monotonic``; tests pass their own to
    move time forward without sleeping.
    """

    cache_type = "local"
    process_local = True

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 256 * 1024 * 1024,
        default_ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(default_ttl=default_ttl)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._items: OrderedDict[str, _Item] = OrderedDict()
        # (seq, key) in write order. Scans page through it by sequence number, so deleting
        # keys mid-scan (a purge) never shifts the cursor; stale rows are skipped and
        # compacted away once they outnumber live ones.
        self._writes: list[tuple[int, str]] = []
        self._seq = 0
        self._bytes = 0
        self.evictions = 0

    async def get(self, key: str) -> bytes | None:
        # The hot path of a local hit: nothing here can fail or needs a breaker, so the
        # base class's wrapping (one more coroutine per hit) is skipped, timing included:
        # timing a dict read would cost more than the read (bench/metrics_overhead.py).
        return self._read(key)

    async def _get(self, key: str) -> bytes | None:
        return self._read(key)

    def _read(self, key: str) -> bytes | None:
        item = self._live(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item.value

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        self._remove(key)  # even if the new value is not kept: the old one is outdated
        size = held_bytes(key, value)
        if size > self.max_bytes:
            return  # could never fit; storing it would only flush everything else
        expires_at = None if ttl is None else self._clock() + ttl
        self._seq += 1
        self._items[key] = _Item(compact(value), expires_at, self._seq, size)
        self._writes.append((self._seq, key))
        self._bytes += size
        while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
            oldest = next(iter(self._items))
            self._remove(oldest)
            self.evictions += 1
        self._compact_writes()  # here too: a headless proxy never scans

    async def _delete(self, keys: list[str]) -> int:
        return sum(1 for key in keys if self._remove(key))

    async def _value_heads(self, keys: list[str], size: int) -> list[bytes | None]:
        # A look, not a use: unlike a read it leaves the LRU order alone.
        now = self._clock()
        heads: list[bytes | None] = []
        for key in keys:
            item = self._items.get(key)
            heads.append(None if item is None or _expired(item, now) else item.value[:size])
        return heads

    async def _ping(self) -> bool:
        return True

    def _compact_writes(self) -> None:
        """Drop rows of deleted or rewritten keys once they outnumber live ones.

        Rows keep their sequence numbers, so scan cursors stay valid; the cost is amortised
        (the list at least doubles between compactions).
        """
        if len(self._writes) > 2 * len(self._items) + 256:
            self._writes = sorted((item.seq, key) for key, item in self._items.items())

    async def _scan(self, match: str, cursor: str | None, count: int) -> ScanPage:
        self._compact_writes()
        matcher = glob_matcher(match)
        now = self._clock()
        position = bisect.bisect_right(self._writes, int(cursor or 0), key=lambda row: row[0])
        keys: list[KeyInfo] = []
        scanned = 0
        last_seq = 0
        while position < len(self._writes) and scanned < count:
            seq, key = self._writes[position]
            position += 1
            item = self._items.get(key)
            if item is None or item.seq != seq:
                continue  # deleted or rewritten since; the newer write is further on
            scanned += 1
            last_seq = seq
            if matcher.match(key) and not _expired(item, now):
                keys.append(KeyInfo(key, _remaining(item, now), len(item.value)))
        next_cursor = str(last_seq) if position < len(self._writes) else None
        return ScanPage(keys, next_cursor, scanned=scanned, total=len(self._items))

    async def _ttl(self, key: str) -> float | None:
        item = self._live(key)
        if item is None:
            raise KeyError(key)
        return _remaining(item, self._clock())

    async def _expire(self, key: str, ttl: float | None) -> bool:
        item = self._live(key)
        if item is None:
            return False
        item.expires_at = None if ttl is None else self._clock() + ttl
        return True

    async def _stats(self) -> BackendStats:
        now = self._clock()
        for key in [k for k, item in self._items.items() if _expired(item, now)]:
            self._remove(key)
        return BackendStats(
            entries=len(self._items),
            bytes_used=self._bytes,
            details={
                "max_entries": self.max_entries,
                "max_bytes": self.max_bytes,
                "evictions": self.evictions,
            },
        )

    def describe(self) -> dict[str, object]:
        return {
            "max_size_in_memory": self.max_entries,
            "max_bytes_in_memory": self.max_bytes,
            "default_ttl": self.default_ttl,
        }

    def _live(self, key: str) -> _Item | None:
        item = self._items.get(key)
        if item is not None and _expired(item, self._clock()):
            self._remove(key)
            return None
        return item

    def _remove(self, key: str) -> bool:
        item = self._items.pop(key, None)
        if item is None:
            return False
        self._bytes -= item.size
        return True


def _expired(item: _Item, now: float) -> bool:
    return item.expires_at is not None and item.expires_at <= now


def _remaining(item: _Item, now: float) -> float | None:
    return None if item.expires_at is None else max(0.0, item.expires_at - now)
