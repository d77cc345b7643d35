"""The semantic tier: embed the question, search its scope, let the guards judge.

It never raises into a request. The embedder or the store failing is counted, logged at
most once a minute, and makes the breaker skip the tier for a cool-down; the exact cache
goes on as before. The vector store is opened on first use, once the embedder's
dimension is known (a remote model's is learned from its first answer).

A candidate is served only while its exact entry still exists: deleting an entry, its TTL
running out, or a purge therefore also ends its semantic hits, in every store; a vector
whose entry is gone is dropped when a search meets it, and expired vectors are swept in
the background (Qdrant and Vector Sets have no per-record TTL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmcache_tui.cache.backends.base import CacheBackendError
from llmcache_tui.cache.backends.breaker import CircuitBreaker, CircuitOpen
from llmcache_tui.cache.log_limit import RepeatedWarnings
from llmcache_tui.cache.semantic.embedder import Embedder, EmbedderError
from llmcache_tui.cache.semantic.guards import DEFAULT_THRESHOLD, Verdict, judge
from llmcache_tui.cache.semantic.scope import SemanticQuery
from llmcache_tui.cache.semantic.store import (
    Neighbour,
    StoreHealth,
    UnscopedSearch,
    VectorRecord,
    VectorStore,
)

if TYPE_CHECKING:
    from llmcache_tui.cache.semantic.embedder import Vectors

log = logging.getLogger("llmcache_tui.cache.semantic")

StoreFactory = Callable[[int], VectorStore]
# Entry bytes by key from the exact store; None when the entry is gone.
EntryReader = Callable[[str], Awaitable[bytes | None]]

# Neighbours judged per lookup: the nearest may be refused by a guard while the second
# is the true paraphrase.
DEFAULT_CANDIDATES = 4
SWEEP_INTERVAL = 60.0  # seconds between sweeps of expired vectors
PROBE_TEXT = "llmcache-tui health probe"


@dataclass(frozen=True, slots=True)
class Judged:
    """One neighbour and the guards' verdict on it (for the terminal app's probe)."""

    neighbour: Neighbour
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class SemanticMatch:
    """A candidate that passed every guard and whose exact entry still exists."""

    key: str
    similarity: float
    raw: bytes  # the exact entry's bytes, as the exact store returned them


@dataclass(slots=True)
class SemanticOutcome:
    """What one semantic lookup found: a match, or why none (``failed``: an error)."""

    match: SemanticMatch | None = None
    failed: bool = False
    judged: list[Judged] = field(default_factory=list)


@dataclass(slots=True)
class SemanticStats:
    """Counters for ``/metrics`` and the terminal app."""

    lookups: int = 0
    hits: int = 0
    refused: int = 0  # a neighbour was there but every guard verdict said no
    stored: int = 0
    errors: int = 0
    skipped: int = 0  # lookups or stores skipped while the breaker was open
    stale_vectors: int = 0  # neighbours whose exact entry was gone


class SemanticTier:
    """Semantic lookup and store over one embedder and one vector store.

    ``store_factory(dimension)`` builds the vector store once the dimension is known.
    ``threshold`` is the cosine similarity a candidate must reach before the guards look.
    """

    def __init__(
        self,
        embedder: Embedder,
        store_factory: StoreFactory,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        candidates: int = DEFAULT_CANDIDATES,
        clock: Callable[[], float] = time.time,
        sweep_interval: float = SWEEP_INTERVAL,
        drop_stale: bool = True,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be a cosine similarity in [0, 1]")
        self.embedder = embedder
        self.threshold = threshold
        self.candidates = candidates
        self.clock = clock
        self.sweep_interval = sweep_interval
        # Whether a vector whose entry is missing here is gone for every reader: not so for
        # a Qdrant server shared by proxies that each keep their entries on their own disk.
        self.drop_stale = drop_stale
        self.stats = SemanticStats()
        self.breaker = CircuitBreaker()
        self.warnings = RepeatedWarnings(log, clock=clock)
        self._store_factory = store_factory
        self._store: VectorStore | None = None
        self._store_lock = asyncio.Lock()
        self._sweeper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # -- the request path ------------------------------------------------------------
    async def lookup(
        self, query: SemanticQuery, read_entry: EntryReader, *, max_age: float | None = None
    ) -> SemanticOutcome:
        """The best candidate in ``query``'s scope that the guards accept, if any."""
        outcome = SemanticOutcome()
        try:
            self.breaker.before_call()
        except CircuitOpen:
            self.stats.skipped += 1
            return outcome
        self.stats.lookups += 1
        try:
            neighbours = await self.neighbours(query, self.candidates, max_age=max_age)
            match = await self._first_acceptable(query, neighbours, read_entry, outcome)
        except (EmbedderError, CacheBackendError) as exc:
            self._failed(exc)
            outcome.failed = True
            return outcome
        self._succeeded()
        if match is None:
            if outcome.judged:
                self.stats.refused += 1
            return outcome
        self.stats.hits += 1
        outcome.match = match
        return outcome

    async def _first_acceptable(
        self,
        query: SemanticQuery,
        neighbours: Sequence[Neighbour],
        read_entry: EntryReader,
        outcome: SemanticOutcome,
    ) -> SemanticMatch | None:
        gone: list[str] = []
        try:
            for neighbour in neighbours:
                verdict = judge(query.text, neighbour.text, neighbour.similarity, self.threshold)
                outcome.judged.append(Judged(neighbour, verdict))
                if not verdict.hit:
                    continue
                raw = await read_entry(neighbour.key)
                if raw is None:
                    gone.append(neighbour.key)
                    continue
                return SemanticMatch(neighbour.key, neighbour.similarity, raw)
            return None
        finally:
            if gone:
                self.stats.stale_vectors += len(gone)
                if self.drop_stale:
                    self._in_background(self._drop(gone))

    async def remember(
        self, query: SemanticQuery, key: str, created_at: float, ttl: float | None
    ) -> bool:
        """Add the vector of an entry just stored under ``key``; False if that failed."""
        try:
            self.breaker.before_call()
        except CircuitOpen:
            self.stats.skipped += 1
            return False
        try:
            store, vector = await self._vector_store(query)
            record = VectorRecord(
                key=key,
                vector=vector,
                scope=query.scope,
                text=query.text,
                created_at=created_at,
                expires_at=None if ttl is None else created_at + ttl,
                parts=None if query.parts is None else query.parts.json(),
            )
            await store.add(record)
        except (EmbedderError, CacheBackendError) as exc:
            self._failed(exc)
            return False
        self._succeeded()
        self.stats.stored += 1
        return True

    async def forget_deleted(self, keys: list[str]) -> None:
        """A delete listener of the entries' backend: :meth:`forget`, result unused."""
        await self.forget(keys)

    async def forget(self, keys: Sequence[str]) -> int:
        """Remove the vectors of deleted entries (their hits end anyway: no entry, no hit).

        Opens the store if this tier has not yet, so an entry deleted before any lookup
        loses its vector too; with a remote embedder whose dimension is not known yet the
        store cannot be opened, and such a vector is dropped when a search meets it.
        """
        if not keys:
            return 0
        try:
            store = self._store
            dimension = self.embedder.dimension
            if store is None and dimension is not None:
                store = await self._open_store(dimension)
            return 0 if store is None else await store.delete(keys)
        except CacheBackendError as exc:
            self._failed(exc)
            return 0

    async def neighbours(
        self,
        query: SemanticQuery,
        limit: int,
        *,
        scoped: bool = True,
        max_age: float | None = None,
    ) -> list[Neighbour]:
        """The ``limit`` nearest unexpired vectors to ``query``, best first, unjudged.

        In ``query``'s scope, or with ``scoped`` False in every scope (the probe's view of
        what the filter keeps out; VectorStoreUnsupported where the store cannot). No
        breaker and no counting: errors (EmbedderError, CacheBackendError) are raised.
        """
        now = self.clock()
        store, vector = await self._vector_store(query)
        created_after = None if max_age is None else now - max_age
        scope = query.scope if scoped else None
        return await store.search(vector, scope, limit=limit, now=now, created_after=created_after)

    async def neighbours_everywhere(self, query: SemanticQuery, limit: int) -> UnscopedSearch:
        """The ``limit`` nearest unexpired vectors to ``query`` in every scope the store
        searches (the probe's view), and whether a bound cut that search short. Errors
        are raised as by :meth:`neighbours`."""
        now = self.clock()
        store, vector = await self._vector_store(query)
        return await store.search_everywhere(vector, limit=limit, now=now)

    async def open_store(self) -> VectorStore:
        """The vector store, opened if need be (embedding a probe text first when the
        embedder's dimension is not known yet), for the terminal app's listing and
        statistics. Raises EmbedderError or CacheBackendError."""
        dimension = self.embedder.dimension
        if self._store is not None:
            return self._store
        if dimension is not None:
            return await self._open_store(dimension)
        store, _ = await self._vector_store(SemanticQuery(text=PROBE_TEXT, scope="terminal"))
        return store

    def warm_up(self) -> None:
        """Load the embedder and open the store in the background, so the first request
        does not pay for them (or miss its deadline over them)."""
        self._in_background(self._warm_up())

    async def _warm_up(self) -> None:
        try:
            store, _ = await self._vector_store(SemanticQuery(text=PROBE_TEXT, scope="warm-up"))
            await store.open()
        except (EmbedderError, CacheBackendError) as exc:
            self.warnings.warning(f"semantic cache could not warm up: {exc}")

    # -- health ----------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        """The embedder (one probe embedding) and the store, for --check and /cache/ping."""
        report: dict[str, Any] = {
            "embedder": {"name": self.embedder.name, "ok": False},
            "similarity_threshold": self.threshold,
        }
        query = SemanticQuery(text=PROBE_TEXT, scope="health")
        try:
            vector = await self._embed(query)
            report["embedder"].update(ok=True, dimension=len(vector))
        except EmbedderError as exc:
            report["embedder"]["error"] = str(exc)
            return report
        try:
            store, _ = await self._vector_store(query)
        except CacheBackendError as exc:
            report["store"] = {"reachable": False, "problem": str(exc)}
            return report
        report["store"] = _health_dict(await store.health())
        return report

    async def aclose(self) -> None:
        for task in [*self._background, *([self._sweeper] if self._sweeper else [])]:
            task.cancel()
        for task in [*self._background, *([self._sweeper] if self._sweeper else [])]:
            with contextlib.suppress(BaseException):
                await task
        self._sweeper = None
        if self._store is not None:
            await self._store.close()
            self._store = None
        await self.embedder.aclose()

    # -- internals -------------------------------------------------------------------
    async def _embed(self, query: SemanticQuery) -> Vectors:
        if query.vector is None:
            if query.partition:
                vectors = await self.embedder.embed([query.text], partition=query.partition)
            else:  # the common case, and the one every embedder stand-in takes
                vectors = await self.embedder.embed([query.text])
            query.vector = vectors[0]
        return query.vector

    async def _vector_store(self, query: SemanticQuery) -> tuple[VectorStore, Vectors]:
        """Embed ``query`` if not yet done; the store (opened on first use) and the vector."""
        vector = await self._embed(query)
        return self._store or await self._open_store(len(vector)), vector

    async def _open_store(self, dimension: int) -> VectorStore:
        async with self._store_lock:
            if self._store is None:
                self._store = self._store_factory(dimension)
                self._start_sweeper()
            return self._store

    def _start_sweeper(self) -> None:
        if self.sweep_interval > 0 and self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="semantic-sweep")

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            if self._store is None:
                continue
            try:
                removed = await self._store.sweep(self.clock())
            except CacheBackendError as exc:
                self.warnings.warning(f"semantic cache: sweeping expired vectors failed: {exc}")
                continue
            if removed:
                log.debug("semantic cache: swept %d expired vectors", removed)

    async def _drop(self, keys: list[str]) -> None:
        with contextlib.suppress(CacheBackendError):
            if self._store is not None:
                await self._store.delete(keys)

    def _in_background(self, job: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(job)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _failed(self, exc: Exception) -> None:
        self.stats.errors += 1
        self.breaker.failed()
        kind = "embedder" if isinstance(exc, EmbedderError) else "vector store"
        self.warnings.warning(f"semantic cache {kind} unavailable, answering without it: {exc}")

    def _succeeded(self) -> None:
        if self.breaker.succeeded():
            log.info("semantic cache available again")
        if self.warnings.pending:
            self.warnings.flush()


def _health_dict(health: StoreHealth) -> dict[str, Any]:
    report: dict[str, Any] = {
        "kind": health.kind,
        "reachable": health.reachable,
        "ready": health.ready,
        "dimension": health.dimension,
        "vectors": health.vectors,
        "location": health.location,
    }
    if health.problem:
        report["problem"] = health.problem
    if health.limits:
        report["limits"] = list(health.limits)
    report.update(health.details)
    return report
