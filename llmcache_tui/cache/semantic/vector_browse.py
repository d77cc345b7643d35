"""Browsing the semantic tier's vectors: rows for the terminal app, deletes and purges.

A row joins a stored vector with its exact entry (read in one batch), which says the model;
a vector whose entry is gone is shown as such (the proxy drops it when a search meets it).
Deleting one of our rows deletes its entry and its vector together; LiteLLM's records have
no entry of ours and are deleted only when the operator allowed it (``allow_litellm``),
otherwise :class:`LiteLLMReadOnly` says how. Kept free of the UI.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmcache_tui.cache.backends.base import CacheBackend
from llmcache_tui.cache.entry import CacheEntry, EntryFormatError
from llmcache_tui.cache.keys import NAMESPACE_SEPARATOR
from llmcache_tui.cache.semantic.litellm_formats import refused_delete
from llmcache_tui.cache.semantic.store import VectorRecordInfo, VectorStore

#: Records a purge lists per call.
PURGE_PAGE = 200


@dataclass(frozen=True, slots=True)
class VectorRow:
    """A vector as the browser shows it: the record, its entry's model, whether the entry
    still exists (None: not ours to ask, a LiteLLM record)."""

    record: VectorRecordInfo
    model: str = ""
    entry_exists: bool | None = None

    @property
    def key(self) -> str:
        return self.record.key

    @property
    def namespace(self) -> str | None:
        if self.record.foreign:
            return None  # a point id or a hash name, not a namespaced entry key
        namespace, _, _ = self.record.key.rpartition(NAMESPACE_SEPARATOR)
        return namespace or None

    def remaining(self, now: float) -> float | None:
        """Seconds the vector (and its entry) have left; None: no expiry."""
        expires = self.record.expires_at
        return None if expires is None else max(0.0, expires - now)


async def describe_vectors(
    backend: CacheBackend | None, records: Sequence[VectorRecordInfo]
) -> list[VectorRow]:
    """Rows for a page of records, their entries read in one batch."""
    ours = [record.key for record in records if not record.foreign]
    values = await backend.get_many(ours) if backend is not None and ours else []
    entries = dict(zip(ours, values, strict=True))
    rows = []
    for record in records:
        if record.foreign:
            rows.append(VectorRow(record))
            continue
        raw = entries.get(record.key)
        model = ""
        if raw is not None:
            try:
                model = CacheEntry.decode(raw).model
            except EntryFormatError:
                model = "(unreadable)"
        rows.append(VectorRow(record, model, raw is not None))
    return rows


@dataclass(frozen=True, slots=True)
class VectorDeletion:
    """What a delete removed: exact entries, our vectors, LiteLLM's records."""

    entries: int = 0
    vectors: int = 0
    foreign: int = 0

    def __add__(self, other: VectorDeletion) -> VectorDeletion:
        return VectorDeletion(
            self.entries + other.entries, self.vectors + other.vectors, self.foreign + other.foreign
        )

    @property
    def records(self) -> int:
        return self.vectors + self.foreign


async def delete_vectors(
    store: VectorStore,
    backend: CacheBackend | None,
    records: Sequence[VectorRecordInfo],
    *,
    allow_litellm: bool = False,
) -> VectorDeletion:
    """Delete these records: ours with their exact entries, LiteLLM's only if allowed
    (else LiteLLMReadOnly, before anything is deleted)."""
    foreign = [record.key for record in records if record.foreign]
    if foreign and not allow_litellm:
        raise refused_delete()
    ours = [record.key for record in records if not record.foreign]
    entries = vectors = 0
    if ours:
        # Vectors first, counted here: the backend's delete listener would drop those of
        # the entries it deletes, but never hears of entries that were already gone.
        vectors = await store.delete(ours)
        if backend is not None:
            entries = await backend.delete(ours)
    removed = await store.delete_foreign(foreign) if foreign else 0
    return VectorDeletion(entries, vectors, removed)


@dataclass(slots=True)
class VectorPurgeProgress:
    """How far a purge of vectors has got."""

    listed: int = 0
    deleted: VectorDeletion = VectorDeletion()
    done: bool = False


async def purge_vectors(
    store: VectorStore,
    backend: CacheBackend | None,
    match: str,
    *,
    allow_litellm: bool = False,
    on_progress: Callable[[VectorPurgeProgress], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> VectorPurgeProgress:
    """Delete every record whose key matches the glob ``match`` (and our records' entries),
    page by page; LiteLLM's only if allowed (LiteLLMReadOnly on the first one met)."""
    matcher = glob_regex(match)
    progress = VectorPurgeProgress()
    cursor: str | None = None
    while not cancelled():
        page = await store.records(cursor, PURGE_PAGE)
        progress.listed += len(page.records)
        chosen = [record for record in page.records if matcher.fullmatch(record.key)]
        if chosen:
            progress.deleted += await delete_vectors(
                store, backend, chosen, allow_litellm=allow_litellm
            )
        if on_progress is not None:
            on_progress(progress)
        cursor = page.cursor
        if cursor is None:
            progress.done = True
            break
        await asyncio.sleep(0)  # let the UI draw and take a cancel
    return progress


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A Redis-style glob (``*``, ``?``, ``[...]``, backslash escapes) as a regex, so a
    filter means the same over vectors as over keys."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1 : end]
                if not body:
                    out.append("(?!)")  # "[]" matches nothing, as in Redis
                    i = end + 1
                    continue
                negate = body.startswith("^")
                body = body[1:] if negate else body
                escaped = "".join("\\" + c if c in "\\]^[" else c for c in body)
                out.append(f"[{'^' if negate else ''}{escaped}]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)
