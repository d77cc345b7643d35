"""Entry-level cache operations for the proxy: decode, check freshness, and fail open.

A backend that fails never fails a request: errors are logged and counted here and the
request is served from upstream. The same failure over and over is logged once a minute,
with a count, whichever backend it comes from.

With ``key_format: litellm`` entries are read and written in LiteLLM's format (see
:mod:`llmcache_tui.cache.litellm_entry`), an embedding request as one entry per input.

With a semantic tier, a request the exact key misses is looked up by meaning, within its
scope; the caller cannot tell which tier answered but by the ``Lookup``'s ``similarity``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from llmcache_tui.cache import litellm_entry
from llmcache_tui.cache.backends.base import (
    CacheBackend,
    CacheBackendError,
    CacheDataError,
    CacheSkipped,
    compact,
)
from llmcache_tui.cache.entry import CacheEntry, EntryFormatError
from llmcache_tui.cache.log_limit import RepeatedWarnings

if TYPE_CHECKING:
    from llmcache_tui.cache.semantic.scope import SemanticQuery
    from llmcache_tui.cache.semantic.tier import SemanticTier

log = logging.getLogger("llmcache_tui.cache")


@dataclass(frozen=True, slots=True)
class Lookup:
    """The result of a cache read: an entry to serve, or the RFC 9211 reason for none.

    A semantic hit also names the entry served (``key``, another request's) and its
    cosine ``similarity``; ``semantic_failed`` says the semantic tier was down.
    """

    entry: CacheEntry | None
    fwd: str = "miss"
    age: float = 0.0
    failed: bool = False
    body: bytes = b""  # the response exactly as the client receives it, on a hit
    key: str | None = None
    similarity: float | None = None
    semantic_failed: bool = False


MISS = Lookup(None)
# Decoded entries kept per key, so a hot entry is not parsed and re-serialised on every hit.
# Each is reused only while the backend returns the very same bytes; large ones are not kept,
# and all of them together stay under a byte budget: a kept entry may outlive its backend
# copy, so this memory comes on top of the backend's bound.
DECODED_ENTRIES = 512
DECODED_MAX_BYTES = 32 * 1024
DECODED_BUDGET = 8 * 1024 * 1024


class ResponseCache:
    """Reads and writes :class:`CacheEntry` records through a backend, never raising."""

    def __init__(
        self,
        backend: CacheBackend,
        clock: Callable[[], float] = time.time,
        semantic: SemanticTier | None = None,
        key_format: str = "llmcache",
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.semantic = semantic
        self.litellm = key_format == "litellm"
        self.errors = 0
        self.warnings = RepeatedWarnings(log, clock=clock)
        self._decoded: dict[str, tuple[bytes, CacheEntry, bytes]] = {}
        self._decoded_bytes = 0

    async def lookup(
        self,
        key: str,
        route: str,
        model: str,
        max_age: float | None,
        query: SemanticQuery | None = None,
    ) -> Lookup:
        """The entry under ``key``; failing that, with ``query``, a semantic match."""
        try:
            raw = await self.backend.get(key)
        except CacheBackendError as exc:
            self._failed(exc)
            return Lookup(None, failed=True)  # the semantic tier reads entries from it too
        if raw is None:
            if query is not None and self.semantic is not None:
                return await self._semantic_lookup(query, route, model, max_age)
            return MISS
        return self._serve(key, raw, route, model, max_age)

    def _serve(
        self,
        key: str,
        raw: bytes,
        route: str,
        model: str,
        max_age: float | None,
        similarity: float | None = None,
    ) -> Lookup:
        known = self._decoded.get(key)
        body = None
        if known is not None and (known[0] is raw or known[0] == raw):
            _, entry, body = known
        else:
            try:
                entry = CacheEntry.decode(raw)
            except EntryFormatError as exc:
                log.warning("ignoring unreadable cache entry %s: %s", key, exc)
                return MISS
            if entry.foreign:
                if not self.litellm:
                    return MISS
                shared = self._shared_answer(entry, route, model)
                if shared is None:
                    return MISS
                entry = shared
        # A digest collision is not a realistic risk, but a shared keyspace is: only ever
        # serve an entry we wrote for this very route and model (LiteLLM's key holds them).
        if entry.route != route or entry.model != model:
            return MISS
        age = max(0.0, self.clock() - entry.created_at)
        if max_age is not None and age > max_age:
            return Lookup(None, fwd="stale")
        if body is None:
            body = entry.response_bytes()
            self._remember(key, raw, entry, body)
        if similarity is None:
            return Lookup(entry, fwd="hit", age=age, body=body)
        return Lookup(entry, fwd="hit", age=age, body=body, key=key, similarity=similarity)

    @staticmethod
    def _shared_answer(entry: CacheEntry, route: str, model: str) -> CacheEntry | None:
        """A LiteLLM entry as one of ours for ``route``, if it answers such a request."""
        answer = litellm_entry.answer_for(route, entry)
        if answer is None:
            return None
        usage = answer.get("usage")
        return CacheEntry(
            response=answer,
            route=route,
            model=model,
            prompt_preview="",
            created_at=entry.created_at,
            usage=usage if isinstance(usage, dict) else None,
        )

    async def lookup_embeddings(self, keys: list[str], model: str, max_age: float | None) -> Lookup:
        """An embedding answer joined from LiteLLM's entries, one per input: a hit only
        when every input is found, fresh; its age is the oldest input's."""
        if not keys:
            return MISS  # no input, nothing LiteLLM would have stored
        try:
            raws = await self.backend.get_many(keys)
        except CacheBackendError as exc:
            self._failed(exc)
            return Lookup(None, failed=True)
        items = []
        oldest = self.clock()
        for key, raw in zip(keys, raws, strict=True):
            if raw is None:
                return MISS
            try:
                stored = CacheEntry.decode(raw)
            except EntryFormatError as exc:
                log.warning("ignoring unreadable cache entry %s: %s", key, exc)
                return MISS
            item = litellm_entry.embedding_item(stored)
            if item is None:
                return MISS
            items.append(item)
            oldest = min(oldest, stored.created_at)
        age = max(0.0, self.clock() - oldest)
        if max_age is not None and age > max_age:
            return Lookup(None, fwd="stale")
        answer = litellm_entry.join_embeddings(items, model)
        entry = CacheEntry(
            response=answer,
            route="embedding",
            model=model,
            prompt_preview="",
            created_at=oldest,
            usage=answer["usage"],
        )
        return Lookup(entry, fwd="hit", age=age, body=entry.response_bytes())

    async def _semantic_lookup(
        self, query: SemanticQuery, route: str, model: str, max_age: float | None
    ) -> Lookup:
        assert self.semantic is not None
        outcome = await self.semantic.lookup(query, self.backend.get, max_age=max_age)
        match = outcome.match
        if match is None:
            return Lookup(None, semantic_failed=outcome.failed)
        found = self._serve(match.key, match.raw, route, model, max_age, match.similarity)
        return found if found.entry is not None else MISS

    def _remember(self, key: str, raw: bytes, entry: CacheEntry, body: bytes) -> None:
        if len(raw) > DECODED_MAX_BYTES:
            return
        self._forget(key)
        size = _decoded_size(raw, body)
        while self._decoded and (
            len(self._decoded) >= DECODED_ENTRIES or self._decoded_bytes + size > DECODED_BUDGET
        ):
            self._forget(next(iter(self._decoded)))  # oldest first
        # The body comes from orjson.dumps, whose buffer is larger than the JSON in it.
        self._decoded[key] = (raw, entry, compact(body))
        self._decoded_bytes += size

    def _forget(self, key: str) -> None:
        known = self._decoded.pop(key, None)
        if known is not None:
            self._decoded_bytes -= _decoded_size(known[0], known[2])

    async def store(
        self,
        key: str,
        entry: CacheEntry,
        ttl: float | None,
        query: SemanticQuery | None = None,
    ) -> bool:
        """Write ``entry`` (and, with ``query``, its vector); False if the backend failed.

        Failures are logged and counted here. A vector that cannot be added leaves the
        exact entry in place: it is still an exact hit.
        """
        try:
            value = litellm_entry.encode_answer(entry) if self._shared(entry) else entry.encode()
        except orjson.JSONEncodeError as exc:
            # An answer JSON can carry but orjson cannot write back (nested too deep): it
            # is served, just not kept. Not a cache failure.
            log.warning("not caching the answer for %s: %s", key, exc)
            return False
        try:
            await self.backend.set(key, value, ttl)
        except CacheBackendError as exc:
            self._failed(exc)
            return False
        if self.warnings.pending:
            self.warnings.flush()  # writes work again: say how many failed meanwhile
        if query is not None and self.semantic is not None:
            lifetime = ttl if ttl is not None else self.backend.default_ttl
            await self.semantic.remember(query, key, entry.created_at, lifetime)
        return True

    async def store_embeddings(self, keys: list[str], entry: CacheEntry, ttl: float | None) -> bool:
        """Write an embedding answer as LiteLLM does, one entry per input (``keys`` in input
        order); False if the backend failed or the answer has not one vector per input."""
        try:
            values = litellm_entry.encode_embeddings(entry, len(keys))
        except orjson.JSONEncodeError as exc:
            log.warning("not caching the answer for %s: %s", keys[0], exc)
            return False
        if values is None:
            return False
        try:
            for key, value in zip(keys, values, strict=True):
                await self.backend.set(key, value, ttl)
        except CacheBackendError as exc:
            self._failed(exc)
            return False
        if self.warnings.pending:
            self.warnings.flush()
        return True

    def _shared(self, entry: CacheEntry) -> bool:
        # Transcriptions keep our format: LiteLLM keys an upload by its file name. An
        # embedding answer comes here only where LiteLLM keeps it whole (S3); elsewhere
        # store_embeddings writes one entry per input.
        return self.litellm and entry.route in ("chat", "text_completion", "embedding")

    async def aclose(self) -> None:
        if self.semantic is not None:
            await self.semantic.aclose()

    def _failed(self, exc: CacheBackendError) -> None:
        self.errors += 1
        if isinstance(exc, CacheSkipped):
            return  # the failure that opened the breaker was logged already
        if isinstance(exc, CacheDataError):
            self.warnings.warning(f"cache refused one request, serving it from upstream: {exc}")
            return
        self.warnings.warning(f"cache unavailable, serving from upstream: {exc}")


def _decoded_size(raw: bytes, body: bytes) -> int:
    # The stored bytes, the body, and the decoded entry (about as large as its JSON).
    return len(raw) + 2 * len(body)
