"""Browsing and bulk operations over any backend: what the terminal app shows and does.

Kept free of the UI so that it is tested on its own and usable from scripts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from llmcache_tui.cache.backends.base import CacheBackend, KeyInfo
from llmcache_tui.cache.entry import CacheEntry, EntryFormatError
from llmcache_tui.cache.keys import NAMESPACE_SEPARATOR

PURGE_BATCH = 500


@dataclass(frozen=True, slots=True)
class KeyRow:
    """One row of the key table: the key plus what its entry says about itself."""

    key: str
    ttl: float | None
    size: int | None
    model: str = ""
    route: str = ""
    created_at: float | None = None
    origin: str = "llmcache"  # "llmcache", "litellm", or "unknown" (unreadable value)


async def describe_keys(backend: CacheBackend, infos: list[KeyInfo]) -> list[KeyRow]:
    """Read the entries behind a page of keys in one batch and summarise each."""
    values = await backend.get_many([info.key for info in infos])
    rows = []
    for info, raw in zip(infos, values, strict=True):
        if raw is None:
            continue  # expired or deleted since the scan
        try:
            entry = CacheEntry.decode(raw)
        except EntryFormatError:
            rows.append(KeyRow(info.key, info.ttl, info.size, origin="unknown"))
            continue
        rows.append(
            KeyRow(
                info.key,
                info.ttl,
                info.size if info.size is not None else len(raw),
                model=entry.model,
                route=entry.route,
                created_at=entry.created_at or None,
                origin="litellm" if entry.foreign else "llmcache",
            )
        )
    return rows


def namespaces_of(key: str) -> list[str]:
    """Every namespace prefix of a key: ``a:b:hash`` -> ``["a", "a:b"]``."""
    parts = key.split(NAMESPACE_SEPARATOR)[:-1]
    return [NAMESPACE_SEPARATOR.join(parts[: i + 1]) for i in range(len(parts))]


def namespace_pattern(namespace: str | None) -> str:
    """The glob that matches every key under a namespace (``None``: everything)."""
    return f"{glob_escape(namespace)}{NAMESPACE_SEPARATOR}*" if namespace else "*"


def glob_escape(text: str) -> str:
    """Escape glob metacharacters so ``text`` matches literally.

    Backslash escapes, as Redis ``SCAN MATCH`` reads them (``[]]`` is an empty class there,
    matching nothing, so bracket-style escaping cannot express ``]``).
    """
    return "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in text)


@dataclass(slots=True)
class PurgeProgress:
    """How far a purge has got; ``total`` is the backend's estimate of all keys."""

    scanned: int = 0
    deleted: int = 0
    total: int | None = None
    done: bool = False


async def purge(
    backend: CacheBackend,
    match: str,
    *,
    on_progress: Callable[[PurgeProgress], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    batch: int | None = None,
) -> PurgeProgress:
    """Delete every key matching ``match``, in batches, reporting progress; stoppable."""
    batch = batch or backend.purge_batch or PURGE_BATCH
    progress = PurgeProgress()
    cursor: str | None = None
    while not cancelled():
        page = await backend.scan(match, cursor, batch, details=False)
        progress.scanned += page.scanned
        if page.total is not None:  # a backend may count only on the first page
            progress.total = page.total
        if page.keys:
            progress.deleted += await backend.delete([info.key for info in page.keys])
        if on_progress is not None:
            on_progress(progress)
        cursor = page.cursor
        if cursor is None:
            progress.done = True
            break
        # An in-memory backend never waits on I/O: yield so the UI draws and can cancel.
        await asyncio.sleep(0)
    return progress
