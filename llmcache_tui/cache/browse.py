"""Browsing and bulk operations over any backend: what the terminal app shows and does.

A cache may share its server with other applications, so a purge deletes only keys whose
value is a cache entry (ours or LiteLLM's, told apart by how the value starts) and leaves
every other key alone; the browser shows those as "not a cache entry", with their type and
size. Kept free of the UI so that it is tested on its own and usable from scripts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from llmcache_tui import humanize
from llmcache_tui.cache.backends.base import CacheBackend, KeyInfo, ValueShape
from llmcache_tui.cache.entry import (
    ENTRY_HEAD_BYTES,
    ENTRY_HEAD_LUA_PATTERNS,
    CacheEntry,
    EntryFormatError,
    entry_origin,
)
from llmcache_tui.cache.keys import NAMESPACE_SEPARATOR

PURGE_BATCH = 500
#: keys a dry run examines before it stops and gives its count as a lower bound
COUNT_BUDGET = 50_000
#: ``KeyRow.origin`` of a value that starts like an entry but does not decode
UNREADABLE = "unknown"
#: ``KeyRow.origin`` of a key that is not a cache entry (another application's data)
NOT_AN_ENTRY = "other"


@dataclass(frozen=True, slots=True)
class KeyRow:
    """One row of the key table: the key plus what its entry says about itself."""

    key: str
    ttl: float | None
    size: int | None
    model: str = ""
    route: str = ""
    created_at: float | None = None
    #: "llmcache", "litellm", UNREADABLE (a damaged entry) or NOT_AN_ENTRY
    origin: str = "llmcache"
    #: what a key that is not a cache entry holds; None for a plain value
    shape: ValueShape | None = None
    #: the start of what was asked, for filtering the loaded rows by prompt
    prompt: str = ""

    @property
    def is_entry(self) -> bool:
        """A cache entry (perhaps a damaged one): what a purge deletes."""
        return self.origin != NOT_AN_ENTRY


async def describe_keys(backend: CacheBackend, infos: list[KeyInfo]) -> list[KeyRow]:
    """Read the entries behind a page of keys in one batch and summarise each."""
    values = await backend.get_many([info.key for info in infos])
    # No plain value: gone since the scan, or (on Redis) a list, hash... of another app.
    valueless = [info.key for info, raw in zip(infos, values, strict=True) if raw is None]
    shapes = dict(zip(valueless, await backend.value_shapes(valueless), strict=True))
    rows = []
    for info, raw in zip(infos, values, strict=True):
        if raw is None:
            shape = shapes.get(info.key)
            if shape is not None:
                rows.append(KeyRow(info.key, info.ttl, info.size, origin=NOT_AN_ENTRY, shape=shape))
            continue
        size = info.size if info.size is not None else len(raw)
        if not _counts_as_entry(backend, raw[:ENTRY_HEAD_BYTES]):
            rows.append(KeyRow(info.key, info.ttl, size, origin=NOT_AN_ENTRY))
            continue
        try:
            entry = CacheEntry.decode(raw)
        except EntryFormatError:
            rows.append(KeyRow(info.key, info.ttl, size, origin=UNREADABLE))
            continue
        rows.append(
            KeyRow(
                info.key,
                info.ttl,
                size,
                model=entry.model,
                route=entry.route,
                created_at=entry.created_at or None,
                origin="litellm" if entry.foreign else "llmcache",
                prompt=entry.prompt_preview,
            )
        )
    return rows


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 key``, ``2 keys``, ``1,200 keys``."""
    return f"{count:,} {noun if count == 1 else nouns or noun + 's'}"


def describe_shape(shape: ValueShape) -> str:
    """A key that is not a plain value, for people: ``list, 3 items``."""
    if shape.items is None:
        return shape.type
    return f"{shape.type}, {plural(shape.items, 'item')}"


def namespaces_of(key: str) -> list[str]:
    """Every namespace prefix of a key: ``a:b:hash`` -> ``["a", "a:b"]``."""
    parts = key.split(NAMESPACE_SEPARATOR)[:-1]
    return [NAMESPACE_SEPARATOR.join(parts[: i + 1]) for i in range(len(parts))]


@dataclass(slots=True)
class NamespaceTally:
    """Keys seen under one namespace and their bytes (``sized`` False: no size known)."""

    keys: int = 0
    size: int = 0
    sized: bool = False


class NamespaceCounts:
    """Key counts (and sizes) per namespace, from the keys scans have returned so far.

    Only what was scanned is counted, so a count is a lower bound until a scan of the whole
    keyspace has finished (``complete``)."""

    def __init__(self) -> None:
        self._sizes: dict[str, int | None] = {}
        self.tallies: dict[str, NamespaceTally] = {}
        self.complete = False

    def clear(self) -> None:
        self._sizes.clear()
        self.tallies.clear()
        self.complete = False

    def add(self, key: str, size: int | None) -> list[str]:
        """Count ``key`` (once however often it is seen); the namespaces whose tally changed."""
        if key in self._sizes:
            return []
        self._sizes[key] = size
        return self._change(key, size, +1)

    def remove(self, key: str) -> list[str]:
        if key not in self._sizes:
            return []
        return self._change(key, self._sizes.pop(key), -1)

    def _change(self, key: str, size: int | None, sign: int) -> list[str]:
        namespaces = namespaces_of(key)
        for namespace in namespaces:
            tally = self.tallies.setdefault(namespace, NamespaceTally())
            tally.keys += sign
            if size is not None:
                tally.size += sign * size
                tally.sized = True
        return namespaces

    def describe(self, namespace: str) -> str:
        """``≥12 · 3.4 KiB`` (``12 · ...`` once complete); empty when nothing was counted."""
        tally = self.tallies.get(namespace)
        if tally is None or tally.keys <= 0:
            return ""
        count = f"{tally.keys:,}" if self.complete else f"≥{tally.keys:,}"
        return f"{count} · {humanize.size(tally.size)}" if tally.sized else count


def namespace_pattern(namespace: str | None) -> str:
    """The glob that matches every key under a namespace (``None``: everything)."""
    return f"{glob_escape(namespace)}{NAMESPACE_SEPARATOR}*" if namespace else "*"


def glob_escape(text: str) -> str:
    """Escape glob metacharacters so ``text`` matches literally.

    Backslash escapes, as Redis ``SCAN MATCH`` reads them (``[]]`` is an empty class there,
    matching nothing, so bracket-style escaping cannot express ``]``).
    """
    return "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in text)


def _counts_as_entry(backend: CacheBackend, head: bytes) -> bool:
    """Whether a purge of ``backend`` would delete a key whose value starts with ``head``."""
    return not backend.purge_reads_values or entry_origin(head) is not None


async def cache_entry_keys(backend: CacheBackend, keys: list[str]) -> list[str]:
    """The keys, of ``keys``, that hold cache entries: what a purge may delete.

    Judged from the first bytes of each value, read in one batch; a backend that holds only
    our entries and would pay a request per key to look (S3) is taken at its word."""
    if not backend.purge_reads_values or not keys:
        return keys
    heads = await backend.value_heads(keys, ENTRY_HEAD_BYTES)
    return [
        key
        for key, head in zip(keys, heads, strict=True)
        if head is not None and entry_origin(head) is not None
    ]


async def _sweep(backend: CacheBackend, keys: list[str], *, delete: bool) -> tuple[int, int]:
    """(cache entries among ``keys``, how many of them were deleted): on the server in one
    call where it can judge values itself, else from the start of each value read here."""
    if not keys:
        return 0, 0
    if backend.purge_reads_values:
        swept = await backend.sweep_entries(
            keys, ENTRY_HEAD_LUA_PATTERNS, ENTRY_HEAD_BYTES, delete=delete
        )
        if swept is not None:
            return swept
    entries = await cache_entry_keys(backend, keys)
    deleted = await backend.delete(entries) if delete and entries else 0
    return len(entries), deleted


@dataclass(frozen=True, slots=True)
class PurgeEstimate:
    """What a purge of a pattern would delete, from a bounded dry run.

    ``complete`` False: the run stopped after examining its budget of keys, so ``entries``
    is a lower bound (the purge itself goes through every key)."""

    entries: int
    others: int  # matching keys that are not cache entries: a purge leaves them alone
    scanned: int
    complete: bool


async def count_purge(
    backend: CacheBackend,
    match: str,
    *,
    budget: int = COUNT_BUDGET,
    batch: int | None = None,
) -> PurgeEstimate:
    """Count the cache entries a purge of ``match`` would delete, deleting nothing; stops
    after examining about ``budget`` keys."""
    batch = batch or backend.purge_batch or PURGE_BATCH
    entries = others = scanned = 0
    cursor: str | None = None
    while True:
        page = await backend.scan(
            match, cursor, min(batch, max(1, budget - scanned)), details=False
        )
        scanned += page.scanned
        keys = [info.key for info in page.keys]
        found, _ = await _sweep(backend, keys, delete=False)
        entries += found
        others += len(keys) - found
        cursor = page.cursor
        if cursor is None or scanned >= budget:
            return PurgeEstimate(entries, others, scanned, complete=cursor is None)
        await asyncio.sleep(0)  # an in-memory backend never waits on I/O: let the UI draw


@dataclass(slots=True)
class PurgeProgress:
    """How far a purge has got; ``total`` is the backend's estimate of all keys.

    ``skipped`` counts matching keys that are not cache entries, which a purge leaves alone
    unless asked to delete ``everything`` matching.
    """

    scanned: int = 0
    deleted: int = 0
    skipped: int = 0
    total: int | None = None
    done: bool = False
    everything: bool = False


async def purge(
    backend: CacheBackend,
    match: str,
    *,
    on_progress: Callable[[PurgeProgress], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    batch: int | None = None,
    everything: bool = False,
) -> PurgeProgress:
    """Delete every cache entry matching ``match``, in batches, reporting progress; keys
    that are not cache entries stay, unless ``everything`` (a person's explicit choice)
    deletes every matching key whatever it holds. Stoppable between batches."""
    batch = batch or backend.purge_batch or PURGE_BATCH
    progress = PurgeProgress(everything=everything)
    cursor: str | None = None
    while not cancelled():
        page = await backend.scan(match, cursor, batch, details=False)
        progress.scanned += page.scanned
        if page.total is not None:  # a backend may count only on the first page
            progress.total = page.total
        keys = [info.key for info in page.keys]
        if everything:
            found, deleted = len(keys), (await backend.delete(keys) if keys else 0)
        else:
            found, deleted = await _sweep(backend, keys, delete=True)
        progress.skipped += len(keys) - found
        progress.deleted += deleted
        if on_progress is not None:
            on_progress(progress)
        cursor = page.cursor
        if cursor is None:
            progress.done = True
            break
        # An in-memory backend never waits on I/O: yield so the UI draws and can cancel.
        await asyncio.sleep(0)
    return progress
