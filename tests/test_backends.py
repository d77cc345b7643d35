"""The backend contract, run against every backend we can build, plus ResponseCache and probes.

Real components only: the disk backend works on a real diskcache directory under
``tmp_path``; the local backend gets an injected clock so TTL tests move time forward
instead of sleeping. diskcache keeps wall-clock expiry times, so for the disk backend an
already-expired entry is written through a second diskcache handle (as another process
sharing the directory would), and TTLs are checked against the stored expiry timestamp.
"""

from __future__ import annotations

import math
import time
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache
import orjson
import pytest

from llmcache_tui.cache.backends import (
    CacheBackend,
    CacheBackendError,
    KeyInfo,
    ScanPage,
    build_backend,
)
from llmcache_tui.cache.backends.base import CacheDataError, glob_matcher
from llmcache_tui.cache.backends.disk import DiskBackend
from llmcache_tui.cache.backends.local import LocalBackend, held_bytes
from llmcache_tui.cache.backends.tiered import TieredBackend
from llmcache_tui.cache.browse import glob_escape, namespace_pattern
from llmcache_tui.cache.entry import CacheEntry
from llmcache_tui.cache.health import PROBE_NAMESPACE, probe_backend
from llmcache_tui.cache.service import DECODED_BUDGET, ResponseCache
from llmcache_tui.config import MAX_TTL_SECONDS, parse_settings

BACKENDS = ["local", "disk"]


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Harness:
    """A backend plus the per-backend ways to make time pass for it."""

    kind: str
    backend: CacheBackend
    clock: FakeClock
    directory: Path | None = None

    async def put_expired(self, key: str, value: bytes) -> None:
        """Store an entry whose expiry time has already passed."""
        if self.directory is None:
            await self.backend.set(key, value, 5)
            self.clock.advance(10)
        else:
            other = diskcache.Cache(str(self.directory))  # another process, same directory
            try:
                other.set(key, value, expire=-60)
            finally:
                other.close()


def _make(kind: str, tmp_path: Path, clock: FakeClock, **kwargs: Any) -> Harness:
    if kind == "local":
        return Harness(kind, LocalBackend(clock=clock, **kwargs), clock)
    directory = tmp_path / "disk-cache"
    return Harness(kind, DiskBackend(directory, **kwargs), clock, directory)


@pytest.fixture(params=BACKENDS)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    made = _make(request.param, tmp_path, FakeClock())
    yield made
    await made.backend.close()


@pytest.fixture(params=BACKENDS)
async def ttl_harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    made = _make(request.param, tmp_path, FakeClock(), default_ttl=60.0)
    yield made
    await made.backend.close()


async def _scan_all(backend: CacheBackend, match: str = "*", count: int = 10) -> list[ScanPage]:
    pages: list[ScanPage] = []
    cursor: str | None = None
    for _ in range(1000):  # a bound, so a cursor bug fails instead of hanging
        page = await backend.scan(match, cursor, count)
        pages.append(page)
        cursor = page.cursor
        if cursor is None:
            return pages
    raise AssertionError("scan never finished")


def _keys(pages: list[ScanPage]) -> list[str]:
    return [info.key for page in pages for info in page.keys]


# ------------------------------------------------------------------------- core contract


async def test_get_set_overwrite(harness: Harness) -> None:
    backend = harness.backend
    assert await backend.get("missing") is None
    await backend.set("k", b"one")
    assert await backend.get("k") == b"one"
    await backend.set("k", b"two")
    assert await backend.get("k") == b"two"


async def test_binary_and_large_values(harness: Harness) -> None:
    backend = harness.backend
    small = bytes(range(256))
    large = bytes(range(256)) * 400  # ~100 KB: diskcache keeps this in a file, not SQLite
    await backend.set("small", small)
    await backend.set("large", large)
    assert await backend.get("small") == small
    assert await backend.get("large") == large
    sizes = {info.key: info.size for info in _flatten(await _scan_all(backend))}
    assert sizes == {"small": len(small), "large": len(large)}


def _flatten(pages: list[ScanPage]) -> list[KeyInfo]:
    return [info for page in pages for info in page.keys]


async def test_get_many_in_order(harness: Harness) -> None:
    backend = harness.backend
    await backend.set("a", b"1")
    await backend.set("b", b"2")
    await harness.put_expired("dead", b"x")
    assert await backend.get_many(["b", "missing", "a", "dead"]) == [b"2", None, b"1", None]
    assert await backend.get_many([]) == []


async def test_unicode_keys(harness: Harness) -> None:
    await harness.backend.set("ns:ключ ✓", b"v")
    assert await harness.backend.get("ns:ключ ✓") == b"v"
    assert _keys(await _scan_all(harness.backend, "ns:*")) == ["ns:ключ ✓"]


async def test_delete_returns_count(harness: Harness) -> None:
    backend = harness.backend
    await backend.set("a", b"1")
    await backend.set("b", b"2")
    await backend.set("c", b"3")
    assert await backend.delete(["a", "b", "missing"]) == 2
    assert await backend.get("a") is None
    assert await backend.get("b") is None
    assert await backend.get("c") == b"3"
    assert await backend.delete([]) == 0
    assert await backend.delete(["a"]) == 0
    assert await backend.delete(["c", "c"]) == 1
    assert await backend.delete(key for key in ["x", "y"]) == 0  # any iterable


async def test_ping(harness: Harness) -> None:
    assert await harness.backend.ping() is True


async def test_close_twice_is_safe(harness: Harness) -> None:
    await harness.backend.close()
    await harness.backend.close()


# --------------------------------------------------------------------------------- TTLs


async def test_no_ttl_means_no_expiry(harness: Harness) -> None:
    await harness.backend.set("k", b"v")
    assert await harness.backend.ttl("k") is None
    harness.clock.advance(10**9)
    assert await harness.backend.get("k") == b"v"


async def test_ttl_missing_key_raises_key_error(harness: Harness) -> None:
    with pytest.raises(KeyError):
        await harness.backend.ttl("missing")


async def test_ttl_is_within_bounds(harness: Harness) -> None:
    await harness.backend.set("k", b"v", 100)
    remaining = await harness.backend.ttl("k")
    assert remaining is not None
    assert 0 < remaining <= 100


async def test_expired_entry_is_gone(harness: Harness) -> None:
    backend = harness.backend
    await backend.set("live", b"v")
    await harness.put_expired("dead", b"v")
    assert await backend.get("dead") is None
    with pytest.raises(KeyError):
        await backend.ttl("dead")
    assert await backend.expire("dead", 100) is False
    assert _keys(await _scan_all(backend)) == ["live"]
    assert await backend.get("live") == b"v"


async def test_expire_changes_ttl(harness: Harness) -> None:
    backend = harness.backend
    await backend.set("k", b"v")
    assert await backend.expire("k", 50) is True
    remaining = await backend.ttl("k")
    assert remaining is not None
    assert 0 < remaining <= 50
    assert await backend.expire("k", None) is True
    assert await backend.ttl("k") is None
    assert await backend.get("k") == b"v"


async def test_expire_missing_key_is_false(harness: Harness) -> None:
    assert await harness.backend.expire("missing", 10) is False
    assert await harness.backend.expire("missing", None) is False


@pytest.mark.parametrize("bad", [0, -1, -0.5, math.nan, math.inf, 1e300, MAX_TTL_SECONDS + 1])
async def test_expire_rejects_non_positive(harness: Harness, bad: float) -> None:
    await harness.backend.set("k", b"v")
    with pytest.raises(ValueError, match="positive"):
        await harness.backend.expire("k", bad)
    assert await harness.backend.ttl("k") is None


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, -math.inf, 1e300])
async def test_set_refuses_a_ttl_that_would_never_expire_or_overflow(
    harness: Harness, bad: float
) -> None:
    """Refused as this call's data (never a backend outage), and nothing is stored."""
    with pytest.raises(CacheDataError, match="ttl"):
        await harness.backend.set("k", b"v", bad)
    assert await harness.backend.get("k") is None
    await harness.backend.set("k", b"v", MAX_TTL_SECONDS)  # ten years is fine
    assert await harness.backend.get("k") == b"v"


async def test_default_ttl_applies(ttl_harness: Harness) -> None:
    backend = ttl_harness.backend
    await backend.set("default", b"v")
    await backend.set("explicit", b"v", 500)
    default = await backend.ttl("default")
    explicit = await backend.ttl("explicit")
    assert default is not None
    assert explicit is not None
    assert 0 < default <= 60
    assert 60 < explicit <= 500


async def test_disk_expiry_timestamp(tmp_path: Path) -> None:
    """diskcache stores an absolute expiry time; it must be now + ttl, not some other unit."""
    directory = tmp_path / "cache"
    backend = DiskBackend(directory)
    try:
        before = time.time()
        await backend.set("k", b"v", 120)
        await backend.set("n", b"v")
        after = time.time()
        assert await backend.expire("e", 5) is False
    finally:
        await backend.close()
    with diskcache.Cache(str(directory)) as raw:
        value, expire_time = raw.get("k", expire_time=True)
        assert value == b"v"
        assert before + 120 <= expire_time <= after + 120
        assert raw.get("n", expire_time=True) == (b"v", None)


async def test_local_ttl_follows_injected_clock() -> None:
    clock = FakeClock()
    backend = LocalBackend(clock=clock)
    await backend.set("k", b"v", 30)
    assert await backend.ttl("k") == 30
    clock.advance(29.5)
    assert await backend.ttl("k") == 0.5
    assert await backend.get("k") == b"v"
    clock.advance(0.5)
    assert await backend.get("k") is None
    with pytest.raises(KeyError):
        await backend.ttl("k")


async def test_local_expire_resets_from_now() -> None:
    clock = FakeClock()
    backend = LocalBackend(clock=clock)
    await backend.set("k", b"v", 10)
    clock.advance(8)
    assert await backend.expire("k", 10) is True
    clock.advance(8)
    assert await backend.get("k") == b"v"
    clock.advance(2)
    assert await backend.get("k") is None


async def test_local_default_ttl() -> None:
    clock = FakeClock()
    backend = LocalBackend(clock=clock, default_ttl=5)
    await backend.set("k", b"v")
    assert await backend.ttl("k") == 5
    clock.advance(5)
    assert await backend.get("k") is None


# --------------------------------------------------------------------------------- scan


async def test_scan_paging_covers_every_key_once(harness: Harness) -> None:
    backend = harness.backend
    expected = {f"key:{i:03d}" for i in range(57)}
    for key in sorted(expected):
        await backend.set(key, b"v")
    pages = await _scan_all(backend, count=10)
    keys = _keys(pages)
    assert len(keys) == len(expected)
    assert set(keys) == expected
    for page in pages:
        assert len(page.keys) <= 10
        assert page.scanned <= 10
        assert page.total == 57
    assert sum(page.scanned for page in pages) == 57
    assert 6 <= len(pages) <= 7  # 57 keys at 10 a page (plus at most one empty last page)


async def test_scan_names_only_lists_the_same_keys(harness: Harness) -> None:
    backend = harness.backend
    for i in range(30):
        await backend.set(f"ns:{i:02d}", b"v", ttl=60)
    detailed, names = set(), set()
    cursor: str | None = None
    while True:
        page = await backend.scan("ns:*", cursor, 7)
        detailed.update(info.key for info in page.keys)
        cursor = page.cursor
        if cursor is None:
            break
    while True:
        page = await backend.scan("ns:*", cursor, 7, details=False)
        names.update(info.key for info in page.keys)
        cursor = page.cursor
        if cursor is None:
            break
    assert names == detailed == {f"ns:{i:02d}" for i in range(30)}


async def test_scan_single_page_and_empty(harness: Harness) -> None:
    backend = harness.backend
    empty = await backend.scan()
    assert empty.keys == []
    assert empty.cursor is None
    assert empty.scanned == 0
    for key in ("a", "b", "c"):
        await backend.set(key, b"v")
    page = await backend.scan("*", None, 100)
    assert sorted(info.key for info in page.keys) == ["a", "b", "c"]
    assert page.cursor is None
    assert page.scanned == 3
    assert page.total == 3


async def test_scan_count_is_at_least_one(harness: Harness) -> None:
    for key in ("a", "b"):
        await harness.backend.set(key, b"v")
    page = await harness.backend.scan("*", None, 0)
    assert page.scanned == 1
    assert len(page.keys) == 1


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ("*", {"ns:1", "ns:22", "other:1", "a1", "b2", "c3", "ab"}),
        ("", {"ns:1", "ns:22", "other:1", "a1", "b2", "c3", "ab"}),
        ("ns:*", {"ns:1", "ns:22"}),
        ("ns:?", {"ns:1"}),
        ("?1", {"a1"}),
        ("[ab]*", {"a1", "b2", "ab"}),
        ("[ab]?", {"a1", "b2", "ab"}),
        ("*1", {"ns:1", "other:1", "a1"}),
        ("c3", {"c3"}),
        ("C3", set()),  # case-sensitive, like Redis
        ("zzz*", set()),
    ],
)
async def test_scan_glob(harness: Harness, match: str, expected: set[str]) -> None:
    backend = harness.backend
    all_keys = ["ns:1", "ns:22", "other:1", "a1", "b2", "c3", "ab"]
    for key in all_keys:
        await backend.set(key, b"v")
    pages = await _scan_all(backend, match, count=3)
    keys = _keys(pages)
    assert len(keys) == len(set(keys))
    assert set(keys) == expected
    # A filtered scan still examines every entry, and says so.
    assert sum(page.scanned for page in pages) == len(all_keys)
    assert all(page.total == len(all_keys) for page in pages)


async def test_scan_glob_negation_and_escape(harness: Harness) -> None:
    backend = harness.backend
    for key in ("a1", "b1", "n*1", "nx1"):
        await backend.set(key, b"v")
    assert sorted(_keys(await _scan_all(backend, "[^a]1"))) == ["b1"]
    assert _keys(await _scan_all(backend, "n\\*1")) == ["n*1"]
    assert sorted(_keys(await _scan_all(backend, "n*1"))) == ["n*1", "nx1"]


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("*", "", True),
        ("*", "a\nb", True),
        ("ns:*", "ns:abc", True),
        ("ns:*", "xns:abc", False),  # anchored at the start
        ("ns", "ns:abc", False),  # and at the end
        ("h?llo", "hello", True),
        ("h?llo", "hllo", False),
        ("h[ae]llo", "hallo", True),
        ("h[ae]llo", "hillo", False),
        ("h[^e]llo", "hallo", True),  # Redis negation
        ("h[^e]llo", "hello", False),
        ("h[a-c]llo", "hbllo", True),
        ("h[c-a]llo", "hbllo", True),  # Redis accepts a reversed range
        ("[!a]*", "!x", True),  # '!' is an ordinary character in Redis classes
        ("[!a]*", "bx", False),
        ("a\\*", "a*", True),  # backslash escapes
        ("a\\*", "ab", False),
        ("a\\?", "a?", True),
        ("a[\\]]", "a]", True),
        ("a[", "a[", True),  # an unclosed class is a literal '['
        ("a.b", "axb", False),  # regex characters are literal
        ("a+", "aa", False),
        ("(x)", "(x)", True),
        ("[]x", "x", False),  # an empty class matches nothing
    ],
)
def test_glob_matcher_is_redis_style(pattern: str, key: str, matches: bool) -> None:
    assert bool(glob_matcher(pattern).match(key)) is matches


@pytest.mark.parametrize("text", ["team*", "a[b]", "x?y", "a]b", "back\\slash", "a^b", "plain"])
def test_glob_escape_matches_literally(text: str) -> None:
    pattern = glob_escape(text)
    assert glob_matcher(pattern).match(text)
    assert not glob_matcher(pattern).match(text + "x")
    assert not glob_matcher(pattern).match("Z" + text[1:])


async def test_scan_namespace_with_glob_characters(harness: Harness) -> None:
    backend = harness.backend
    for key in ("team*:1", "team*:2", "teamX:3", "a[b]:4", "ab:5", "a]b:6"):
        await backend.set(key, b"v")
    assert sorted(_keys(await _scan_all(backend, namespace_pattern("team*")))) == [
        "team*:1",
        "team*:2",
    ]
    assert _keys(await _scan_all(backend, namespace_pattern("a[b]"))) == ["a[b]:4"]
    assert _keys(await _scan_all(backend, namespace_pattern("a]b"))) == ["a]b:6"]


async def test_scan_key_info(harness: Harness) -> None:
    backend = harness.backend
    await backend.set("forever", b"12345")
    await backend.set("brief", b"123", 100)
    infos = {info.key: info for info in _flatten(await _scan_all(backend))}
    assert infos["forever"].ttl is None
    assert infos["forever"].size == 5
    brief_ttl = infos["brief"].ttl
    assert brief_ttl is not None
    assert 0 < brief_ttl <= 100
    assert infos["brief"].size == 3


async def test_scan_is_stable_while_keys_are_read(harness: Harness) -> None:
    """Reads (which refresh LRU order) during a paged scan never skip or repeat a key."""
    backend = harness.backend
    expected = [f"k{i}" for i in range(12)]
    for key in expected:
        await backend.set(key, b"v")
    first = await backend.scan("*", None, 4)
    seen = [info.key for info in first.keys]
    for key in seen:
        assert await backend.get(key) == b"v"
    cursor = first.cursor
    for _ in range(100):
        if cursor is None:
            break
        page = await backend.scan("*", cursor, 4)
        seen.extend(info.key for info in page.keys)
        cursor = page.cursor
    assert sorted(seen) == sorted(expected)


async def test_scan_is_stable_while_keys_are_deleted(harness: Harness) -> None:
    """Deleting keys already returned never makes a scan skip keys it has not reached."""
    backend = harness.backend
    expected = [f"k{i:02d}" for i in range(12)]
    for key in expected:
        await backend.set(key, b"v")
    first = await backend.scan("*", None, 4)
    seen = [info.key for info in first.keys]
    assert await backend.delete(seen) == len(seen)
    cursor = first.cursor
    for _ in range(100):
        if cursor is None:
            break
        page = await backend.scan("*", cursor, 4)
        seen.extend(info.key for info in page.keys)
        cursor = page.cursor
    assert sorted(seen) == expected


# -------------------------------------------------------------------------------- stats


async def test_stats_entries_and_bytes(harness: Harness) -> None:
    backend = harness.backend
    empty = await backend.stats()
    assert empty.entries == 0
    values = {"a": b"x" * 10, "b": b"y" * 20, "c": b"z" * 30}
    for key, value in values.items():
        await backend.set(key, value)
    stats = await backend.stats()
    assert stats.entries == 3
    assert stats.bytes_used is not None
    assert stats.bytes_used >= 60
    await backend.delete(["a"])
    assert (await backend.stats()).entries == 2


async def test_local_stats_bytes_exact() -> None:
    backend = LocalBackend(clock=FakeClock())
    await backend.set("a", b"x" * 10)
    await backend.set("b", b"y" * 20)
    await backend.set("a", b"x" * 4)  # overwrite replaces the old size
    stats = await backend.stats()
    assert stats.entries == 2
    assert stats.bytes_used == held_bytes("a", b"x" * 4) + held_bytes("b", b"y" * 20)
    await backend.delete(["b"])
    assert (await backend.stats()).bytes_used == held_bytes("a", b"x" * 4)


async def test_local_stats_drops_expired() -> None:
    clock = FakeClock()
    backend = LocalBackend(clock=clock)
    await backend.set("a", b"xx", 5)
    await backend.set("b", b"yyy")
    clock.advance(6)
    stats = await backend.stats()
    assert stats.entries == 1
    assert stats.bytes_used == held_bytes("b", b"yyy")


# --------------------------------------------------------------------------- local only


async def test_local_lru_by_entry_count() -> None:
    backend = LocalBackend(max_entries=3, clock=FakeClock())
    for key in ("a", "b", "c"):
        await backend.set(key, b"v")
    assert await backend.get("a") == b"v"  # a is now the most recently used
    await backend.set("d", b"v")
    assert await backend.get("b") is None  # least recently used goes first
    for key in ("a", "c", "d"):
        assert await backend.get(key) == b"v"
    assert backend.evictions == 1
    assert (await backend.stats()).entries == 3


async def test_local_lru_by_bytes() -> None:
    one = held_bytes("a", b"aaaa")
    backend = LocalBackend(max_bytes=2 * one + 1, clock=FakeClock())
    await backend.set("a", b"aaaa")
    await backend.set("b", b"bbbb")
    assert await backend.get("a") == b"aaaa"
    await backend.set("c", b"cccc")  # three do not fit: evict the least recently used (b)
    assert await backend.get("b") is None
    assert await backend.get("a") == b"aaaa"
    assert await backend.get("c") == b"cccc"
    stats = await backend.stats()
    assert stats.bytes_used == 2 * one
    assert stats.entries == 2


async def test_local_value_bigger_than_max_bytes_is_not_stored() -> None:
    backend = LocalBackend(max_bytes=held_bytes("huge", b"x" * 10), clock=FakeClock())
    await backend.set("small", b"12345")
    await backend.set("huge", b"x" * 11)
    assert await backend.get("huge") is None
    assert await backend.get("small") == b"12345"  # nothing was flushed to make room
    assert backend.evictions == 0


async def test_local_oversized_rewrite_drops_the_old_value() -> None:
    backend = LocalBackend(max_bytes=held_bytes("k", b"x" * 10), clock=FakeClock())
    await backend.set("k", b"old")
    await backend.set("k", b"x" * 11)  # not kept, and the old value is outdated
    assert await backend.get("k") is None


async def test_local_overwrite_does_not_evict_others() -> None:
    backend = LocalBackend(max_entries=2, clock=FakeClock())
    await backend.set("a", b"1")
    await backend.set("b", b"2")
    await backend.set("a", b"3")
    assert await backend.get("a") == b"3"
    assert await backend.get("b") == b"2"


async def test_local_memory_stays_bounded_without_scans() -> None:
    """Writes to a small cache that nobody browses must not accumulate bookkeeping.

    (A headless proxy never scans; memory may not grow with the number of writes.)
    """
    backend = LocalBackend(max_entries=10, clock=FakeClock())
    await backend.set("warm-up", b"v")
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(30_000):
            await backend.set(f"key-{i}", b"v")
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (await backend.stats()).entries == 10
    # ~150 bytes per write would be 4.5 MB if each write left something behind.
    assert after - before < 1_000_000


async def test_local_scan_survives_heavy_churn_mid_scan() -> None:
    """Thousands of writes and deletes between two pages (compacting the bookkeeping)
    never make a scan skip or repeat a key that was there all along."""
    backend = LocalBackend(clock=FakeClock())
    stable = [f"stable:{i:02d}" for i in range(20)]
    for key in stable:
        await backend.set(key, b"v")
    first = await backend.scan("*", None, 5)
    seen = [info.key for info in first.keys]
    for i in range(3000):
        await backend.set(f"temp:{i}", b"v")
        await backend.delete([f"temp:{i}"])
        if i % 100 == 0:
            await backend.get(stable[i % 20])  # LRU reordering as well
    cursor = first.cursor
    for _ in range(100):
        if cursor is None:
            break
        page = await backend.scan("*", cursor, 5)
        seen.extend(info.key for info in page.keys)
        cursor = page.cursor
    assert sorted(seen) == stable


async def test_local_backend_flags() -> None:
    assert LocalBackend.process_local is True
    assert DiskBackend.process_local is False


# ------------------------------------------------------------------- memory really held


def _answer(number: int, size: int) -> CacheEntry:
    text = f"{number} " + "x" * size
    return CacheEntry(
        response={"id": f"chatcmpl-{number}", "choices": [{"message": {"content": text}}]},
        route="chat",
        model="m",
        prompt_preview="p",
        created_at=0.0,
    )


def _traced(before: int) -> int:
    return tracemalloc.get_traced_memory()[0] - before


@pytest.mark.parametrize(("size", "count"), [(20_000, 400), (40, 6_000)])
async def test_local_counted_bytes_track_held_memory(size: int, count: int) -> None:
    """The byte bound counts what the process holds for its entries.

    Entries come straight from ``CacheEntry.encode`` (orjson over-allocates its output,
    4 KiB for a small answer, 256 KiB for 20 KB); the backend keeps exact copies and
    counts keys and bookkeeping, so held memory is close to the counted bytes and never
    well above the bound, whether entries are large or tiny.
    """
    bound = 2 * 1024 * 1024  # a quarter of what is written
    backend = LocalBackend(max_entries=1_000_000, max_bytes=bound, clock=FakeClock())
    await backend.set("warm-up", b"v")
    await backend.delete(["warm-up"])
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            await backend.set(f"ns:{i:064x}", _answer(i, size).encode())
        held = _traced(before)  # only what the backend keeps is left
    finally:
        tracemalloc.stop()
    stats = await backend.stats()
    assert backend.evictions > 0
    assert stats.bytes_used is not None
    assert stats.bytes_used <= bound
    assert held <= 1.1 * stats.bytes_used
    assert held >= 0.5 * stats.bytes_used  # the count is not a wild overestimate either


async def test_memory_tier_serves_its_own_compact_copy(tmp_path: Path) -> None:
    """A read that fills the memory tier answers with the tier's copy, so the next read
    returns the very same object (the decoded-entry cache keeps no second copy)."""
    shared = DiskBackend(tmp_path / "c")
    memory = LocalBackend(clock=FakeClock())
    tiered = TieredBackend(memory, shared, memory_ttl=30)
    value = _answer(1, 20_000).encode()
    try:
        await shared.set("k", value)
        first = await tiered.get("k")
        assert first == value
        assert await tiered.get("k") is first
        assert (await memory.stats()).bytes_used == held_bytes("k", value)
        details = (await tiered.stats()).details
        assert details["memory_tier_bytes"] == held_bytes("k", value)
    finally:
        await tiered.close()


async def test_decoded_entries_stay_within_their_budget() -> None:
    """Hits on many distinct 20 KB entries: the decoded entries kept for fast hits stay
    within ``DECODED_BUDGET`` (their bodies come from orjson and are kept compact)."""
    backend = LocalBackend(max_entries=1_000, max_bytes=64 * 1024 * 1024, clock=FakeClock())
    cache = ResponseCache(backend, clock=FakeClock())
    count = 600  # 12 MB of entries, more than the budget
    for i in range(count):
        assert await cache.store(f"k{i}", _answer(i, 20_000), None)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            found = await cache.lookup(f"k{i}", "chat", "m", None)
            assert found.fwd == "hit"
        del found
        held = _traced(before)
    finally:
        tracemalloc.stop()
    assert held <= 1.25 * DECODED_BUDGET
    again = await cache.lookup(f"k{count - 1}", "chat", "m", None)  # kept: the newest
    assert again.body == _answer(count - 1, 20_000).response_bytes()


# ---------------------------------------------------------------------------- disk only


async def test_disk_persists_across_instances(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    first = DiskBackend(directory)
    await first.set("ns:k", b"kept", 300)
    await first.set("plain", b"forever")
    await first.close()

    second = DiskBackend(directory)
    try:
        assert await second.get("ns:k") == b"kept"
        assert await second.get("plain") == b"forever"
        remaining = await second.ttl("ns:k")
        assert remaining is not None
        assert 0 < remaining <= 300
        assert sorted(_keys(await _scan_all(second))) == ["ns:k", "plain"]
    finally:
        await second.close()


async def test_disk_two_open_instances_share_entries(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    one, two = DiskBackend(directory), DiskBackend(directory)
    try:
        await one.set("k", b"v")
        assert await two.get("k") == b"v"
        assert await two.delete(["k"]) == 1
        assert await one.get("k") is None
    finally:
        await one.close()
        await two.close()


async def test_disk_file_in_place_of_directory(tmp_path: Path) -> None:
    path = tmp_path / "not-a-dir"
    path.write_text("I am a file")
    with pytest.raises(CacheBackendError) as caught:
        DiskBackend(path)
    message = str(caught.value)
    assert str(path) in message
    assert "cannot be used" in message
    assert "not a directory" in message


async def test_disk_directory_under_a_file(tmp_path: Path) -> None:
    path = tmp_path / "a-file"
    path.write_text("x")
    with pytest.raises(CacheBackendError) as caught:
        DiskBackend(path / "cache")
    assert str(path / "cache") in str(caught.value)


@pytest.mark.parametrize("name", ["with space", "hash#1", "query?x", "percent%20", "ünï"])
async def test_disk_directory_names_that_need_quoting(tmp_path: Path, name: str) -> None:
    backend = DiskBackend(tmp_path / name)
    try:
        await backend.set("k", b"v")
        assert _keys(await _scan_all(backend)) == ["k"]
    finally:
        await backend.close()


async def test_disk_directory_is_created(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b" / "c"
    backend = DiskBackend(directory)
    try:
        await backend.set("k", b"v")
    finally:
        await backend.close()
    assert (directory / "cache.db").is_file()


async def test_disk_after_close_raises_backend_error(tmp_path: Path) -> None:
    backend = DiskBackend(tmp_path / "c")
    await backend.close()
    with pytest.raises(CacheBackendError, match="disk get failed"):
        await backend.get("k")
    with pytest.raises(CacheBackendError):
        await backend.set("k", b"v")
    assert backend.errors == 2


# ------------------------------------------------------------------------ build_backend


def _settings_cache(params: str) -> Any:
    text = "litellm_settings:\n  cache: true\n  cache_params:\n"
    text += "".join(f"    {line}\n" for line in params.splitlines())
    cache = parse_settings(text).cache
    assert cache is not None
    return cache


async def test_build_local_backend() -> None:
    backend = build_backend(
        _settings_cache("type: local\nttl: 42\nmax_size_in_memory: 7\nmax_bytes_in_memory: 99")
    )
    assert isinstance(backend, LocalBackend)
    assert backend.default_ttl == 42
    assert backend.max_entries == 7
    assert backend.max_bytes == 99


async def test_build_local_backend_default_ttl() -> None:
    backend = build_backend(_settings_cache("type: local"))
    assert isinstance(backend, LocalBackend)
    assert backend.default_ttl == 600  # LiteLLM's in-memory default
    in_memory = build_backend(_settings_cache("type: local\ndefault_in_memory_ttl: 9"))
    assert in_memory.default_ttl == 9


async def test_build_disk_backend(tmp_path: Path) -> None:
    directory = tmp_path / "from-config"
    backend = build_backend(_settings_cache(f"type: disk\ndisk_cache_dir: '{directory}'\nttl: 30"))
    try:
        assert isinstance(backend, DiskBackend)
        assert backend.default_ttl == 30
        assert backend.directory == directory
        assert backend.describe()["disk_cache_dir"] == str(directory)
    finally:
        await backend.close()


# ------------------------------------------------------------------------- ResponseCache

CHAT_RESPONSE = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-3.5-turbo-0125",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
}


def _entry(clock: FakeClock, route: str = "chat", model: str = "gpt-3.5-turbo") -> CacheEntry:
    return CacheEntry(
        response=CHAT_RESPONSE,
        route=route,
        model=model,
        prompt_preview="hello",
        created_at=clock(),
    )


@pytest.fixture
async def service(harness: Harness) -> ResponseCache:
    return ResponseCache(harness.backend, clock=harness.clock)


async def test_service_hit_and_age(harness: Harness, service: ResponseCache) -> None:
    assert await service.store("k", _entry(harness.clock), 300) is True
    hit = await service.lookup("k", "chat", "gpt-3.5-turbo", None)
    assert hit.fwd == "hit"
    assert hit.entry is not None
    assert hit.entry.response == CHAT_RESPONSE
    assert hit.age == 0
    assert not hit.failed
    harness.clock.advance(30)
    later = await service.lookup("k", "chat", "gpt-3.5-turbo", None)
    assert later.fwd == "hit"
    assert later.age == 30


async def test_service_miss(service: ResponseCache) -> None:
    miss = await service.lookup("absent", "chat", "gpt-3.5-turbo", None)
    assert miss.entry is None
    assert miss.fwd == "miss"
    assert not miss.failed


async def test_service_stale_with_max_age(harness: Harness, service: ResponseCache) -> None:
    await service.store("k", _entry(harness.clock), None)
    harness.clock.advance(61)
    stale = await service.lookup("k", "chat", "gpt-3.5-turbo", 60)
    assert stale.entry is None
    assert stale.fwd == "stale"
    fresh_enough = await service.lookup("k", "chat", "gpt-3.5-turbo", 61)
    assert fresh_enough.fwd == "hit"
    assert (await service.lookup("k", "chat", "gpt-3.5-turbo", None)).fwd == "hit"


async def test_service_max_age_zero_only_accepts_brand_new(
    harness: Harness, service: ResponseCache
) -> None:
    await service.store("k", _entry(harness.clock), None)
    assert (await service.lookup("k", "chat", "gpt-3.5-turbo", 0)).fwd == "hit"
    harness.clock.advance(1)
    assert (await service.lookup("k", "chat", "gpt-3.5-turbo", 0)).fwd == "stale"


async def test_service_other_model_or_route_is_a_miss(
    harness: Harness, service: ResponseCache
) -> None:
    await service.store("k", _entry(harness.clock), None)
    assert (await service.lookup("k", "chat", "gpt-4o", None)).fwd == "miss"
    assert (await service.lookup("k", "embedding", "gpt-3.5-turbo", None)).fwd == "miss"
    assert (await service.lookup("k", "chat", "gpt-3.5-turbo", None)).fwd == "hit"


async def test_service_never_serves_foreign_entries(
    harness: Harness, service: ResponseCache
) -> None:
    litellm_entry = orjson.dumps(
        {"timestamp": harness.clock(), "response": orjson.dumps(CHAT_RESPONSE).decode()}
    )
    await harness.backend.set("litellm-key", litellm_entry)
    found = await service.lookup("litellm-key", "chat", "gpt-3.5-turbo-0125", None)
    assert found.entry is None
    assert found.fwd == "miss"
    assert service.errors == 0


async def test_service_ignores_unreadable_entries(harness: Harness, service: ResponseCache) -> None:
    await harness.backend.set("junk", b"\x00\x01 not json")
    found = await service.lookup("junk", "chat", "gpt-3.5-turbo", None)
    assert found.entry is None
    assert found.fwd == "miss"
    assert not found.failed


async def test_service_treats_malformed_entry_as_miss(
    harness: Harness, service: ResponseCache
) -> None:
    bad = {"v": 1, "response": CHAT_RESPONSE, "call_type": "chat", "created_at": "yesterday"}
    await harness.backend.set("bad", orjson.dumps(bad))
    found = await service.lookup("bad", "chat", "gpt-3.5-turbo", None)
    assert found.entry is None
    assert found.fwd == "miss"


async def test_service_store_uses_ttl(harness: Harness, service: ResponseCache) -> None:
    await service.store("k", _entry(harness.clock), 45)
    remaining = await harness.backend.ttl("k")
    assert remaining is not None
    assert 0 < remaining <= 45


async def test_service_swallows_backend_errors(tmp_path: Path) -> None:
    backend = DiskBackend(tmp_path / "c")
    clock = FakeClock()
    service = ResponseCache(backend, clock=clock)
    await backend.close()  # every operation now fails for real
    lookup = await service.lookup("k", "chat", "gpt-3.5-turbo", None)
    assert lookup.entry is None
    assert lookup.failed is True
    assert service.errors == 1
    assert await service.store("k", _entry(clock), 10) is False
    assert service.errors == 2
    assert backend.errors == 2


async def test_service_serves_but_does_not_keep_an_answer_it_cannot_encode(
    harness: Harness, service: ResponseCache
) -> None:
    """JSON up to 1024 levels parses, but orjson writes at most 254: such an answer is
    not stored, and that is no cache failure."""
    deep: Any = "leaf"
    for _ in range(300):
        deep = [deep]
    entry = _entry(harness.clock)
    entry.response = {**CHAT_RESPONSE, "deep": deep}
    assert await service.store("k", entry, 300) is False
    assert await harness.backend.get("k") is None
    assert service.errors == 0
    assert harness.backend.errors == 0


# -------------------------------------------------------------------------------- probe


async def test_probe_healthy_and_leaves_nothing(harness: Harness) -> None:
    result = await probe_backend(harness.backend)
    assert result.healthy
    assert result.ping and result.write and result.read_back and result.deleted
    assert result.error is None
    assert result.ping_ms is not None
    assert result.ping_ms >= 0
    assert (await harness.backend.stats()).entries == 0
    assert _keys(await _scan_all(harness.backend, f"{PROBE_NAMESPACE}:*")) == []


async def test_probe_unhealthy_backend(tmp_path: Path) -> None:
    backend = DiskBackend(tmp_path / "c")
    await backend.close()
    result = await probe_backend(backend)
    assert not result.healthy
    assert result.ping is False
    assert result.error is not None
    assert "disk ping failed" in result.error
