"""The vector store interface the semantic tier searches, and the records it holds.

A store keeps one vector per cached entry, tagged with the entry's storage key, the scope
digest no similarity may cross, the text that was embedded (for the guards), and absolute
creation and expiry times. ``search`` filters on scope and freshness *before* ranking, so
a neighbour from another model, namespace, parameter set or conversation is never even a
candidate. Implementations: Qdrant (server or embedded), Redis with the query engine
(``FT.*``), Redis 8 Vector Sets.

Similarities are cosine similarities in [-1, 1], whatever the store's own score scale.
Every failure is a :class:`VectorStoreError`, which the semantic tier absorbs (fail-open).

``records`` pages through what a store holds for the terminal app's browser, a bounded
page at a time. A store may also hold records another program wrote (LiteLLM's own
semantic caches, :mod:`~llmcache_tui.cache.semantic.litellm_formats`): they are listed and
ranked by the unscoped search with their ``origin``, never served, and changed only by
``delete_foreign``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from llmcache_tui.cache.backends.base import CacheBackendError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# Stores hold vectors as float32; callers pass a numpy row or any sequence of floats.
Vector: TypeAlias = "npt.NDArray[np.float32] | Sequence[float]"


class VectorStoreError(CacheBackendError):
    """A vector store call failed (unreachable, refused, timed out); the message says why."""


class VectorStoreUnsupported(VectorStoreError):
    """The server cannot hold vectors at all (say, a Redis without the query engine or
    Vector Sets); the message names what is needed."""


class VectorDimensionError(VectorStoreError):
    """The collection or index holds vectors of another dimension than the embedder's."""


#: ``origin`` of a record this program wrote (one per cached entry)
OURS = "llmcache"
#: ``origin`` of a record of LiteLLM's own semantic cache (no scope, no entry of ours)
LITELLM = "litellm"


@dataclass(frozen=True, slots=True)
class VectorRecord:
    """One entry's vector and what the search filters and the guards need about it.

    ``expires_at`` and ``created_at`` are Unix times; ``expires_at`` None means never.
    ``entry`` optionally carries the encoded entry itself, for stores that are the only
    place a remote process can read it from (Qdrant). ``parts`` is the JSON of the scope's
    parts (:mod:`~llmcache_tui.cache.semantic.scope_parts`), kept for the probe to say
    why a neighbour is outside a request's scope; never filtered on. None: not known.
    """

    key: str
    vector: Vector
    scope: str
    text: str
    created_at: float
    expires_at: float | None = None
    entry: bytes | None = field(default=None, repr=False)
    parts: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A search result: the entry's key, its cosine similarity, and its record's data.

    For a record of another program (``origin`` not OURS), ``key`` is the record's own id
    in the store and ``response`` the answer stored with it. ``parts`` is the record's
    scope parts JSON where an unscoped search returned it (None: not read, or a record
    written before they were kept).
    """

    key: str
    similarity: float
    text: str
    created_at: float
    expires_at: float | None = None
    entry: bytes | None = field(default=None, repr=False)
    origin: str = OURS
    response: str | None = field(default=None, repr=False)
    parts: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class UnscopedSearch:
    """What :meth:`VectorStore.search_everywhere` found: the nearest neighbours of every
    scope it searched, best first, and ``cut_short``, a sentence on what it left out
    when a bound stopped it before every scope (None: it searched them all)."""

    neighbours: list[Neighbour]
    cut_short: str | None = None


@dataclass(frozen=True, slots=True)
class VectorRecordInfo:
    """One stored vector as the browser lists it (without its values).

    ``key`` is the entry key for our records, and for another program's (``origin``
    LITELLM) the record's own id in the store (a point id, a hash key). ``created_at`` is
    None when the record does not say; ``expires_at`` None means never. ``response`` is
    the answer a foreign record keeps beside its vector; ``details`` what else it says
    (LiteLLM's cache key, metadata), for the detail pane.
    """

    key: str
    text: str
    created_at: float | None
    expires_at: float | None
    scope: str | None = None
    origin: str = OURS
    response: str | None = field(default=None, repr=False)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def foreign(self) -> bool:
        return self.origin != OURS


@dataclass(frozen=True, slots=True)
class RecordPage:
    """A page of :meth:`VectorStore.records`: the records, and the cursor of the next page
    (None: the listing is complete). ``total`` is the store's count of records where it
    knows one cheaply."""

    records: list[VectorRecordInfo]
    cursor: str | None
    total: int | None = None


@dataclass(frozen=True, slots=True)
class VectorSample:
    """Records a store picked for the probe's similarity statistics.

    ``matched`` is how many records the scan found that the caller's key filter kept (at
    least ``len(records)``); ``complete`` whether the scan covered the whole store, so
    ``matched`` is every such record there is.
    """

    records: list[VectorRecord]
    matched: int
    complete: bool


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """What ``--check`` and ``/cache/ping`` report about a store.

    ``ready`` means the collection or index exists with the expected dimension (it is
    created on first write, so a fresh store is reachable but not ready). ``limits`` are
    plain sentences on what this kind of store cannot do (embedded Qdrant: one process).
    """

    kind: str
    reachable: bool
    ready: bool
    dimension: int | None = None
    vectors: int | None = None
    location: str = ""
    problem: str | None = None
    limits: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)


class VectorStore(ABC):
    """Vectors of cached entries, searched within one scope at a time.

    ``dimension`` is fixed at construction (the embedder's); the collection or index is
    created on first use with it, and an existing one of another dimension is a
    :class:`VectorDimensionError`, never silently mixed.
    """

    kind: ClassVar[str]
    #: whether ``search(..., scope=None)`` can rank vectors of every scope together (the
    #: terminal app's probe shows neighbours the scope filter keeps out)
    searches_unscoped: ClassVar[bool] = True

    def __init__(self, dimension: int) -> None:
        if dimension <= 0:
            raise ValueError("dimension must be positive")
        self.dimension = dimension

    @abstractmethod
    async def add(self, record: VectorRecord) -> None:
        """Insert or replace the vector of ``record.key``."""

    @abstractmethod
    async def search(
        self,
        vector: Vector,
        scope: str | None,
        *,
        limit: int,
        now: float,
        created_after: float | None = None,
    ) -> list[Neighbour]:
        """The ``limit`` nearest vectors in ``scope``, best first.

        ``scope`` None searches every scope (never on the request path: only the probe
        uses it, to show what the filter keeps out); a store that cannot
        (``searches_unscoped`` False) raises :class:`VectorStoreUnsupported`.

        Only records unexpired at ``now`` (``expires_at`` None or later than ``now``) and,
        when ``created_after`` is given, created at or after it are candidates: the filter
        runs before ranking, not on the ranked list.
        """

    async def search_everywhere(
        self,
        vector: Vector,
        *,
        limit: int,
        now: float,
        created_after: float | None = None,
    ) -> UnscopedSearch:
        """``search(vector, None, ...)``, saying whether a bound cut it short (the probe
        only). A store whose unscoped search is bounded overrides this."""
        found = await self.search(vector, None, limit=limit, now=now, created_after=created_after)
        return UnscopedSearch(found)

    @abstractmethod
    async def delete(self, keys: Sequence[str]) -> int:
        """Remove the vectors of these entry keys; how many existed."""

    @abstractmethod
    async def sweep(self, now: float) -> int:
        """Remove vectors expired at ``now``; how many were removed."""

    @abstractmethod
    async def health(self) -> StoreHealth:
        """Reachability, collection or index state, dimension; never raises."""

    async def sample_vectors(
        self, limit: int, *, now: float, keys: Callable[[str], bool] | None = None
    ) -> VectorSample:
        """Up to ``limit`` records unexpired at ``now`` whose entry key ``keys`` keeps,
        chosen at random when there are more, vectors included (never on the request
        path: the terminal app's similarity statistics). A store scans a bounded number of
        records for them; one that cannot list its records raises
        :class:`VectorStoreUnsupported`."""
        raise VectorStoreUnsupported(f"the {self.kind} store cannot list its vectors")

    async def records(self, cursor: str | None, limit: int) -> RecordPage:
        """About ``limit`` records from ``cursor`` (None: the start), never a full listing.

        A page may hold fewer (even none) with a cursor still to follow: the store stops
        after a bounded amount of work. Records written during a listing may or may not
        appear; none present throughout is skipped.
        """
        raise VectorStoreUnsupported(f"a {self.kind} store cannot list its vectors")

    async def delete_foreign(self, ids: Sequence[str]) -> int:
        """Remove records another program wrote (``VectorRecordInfo.key`` of a foreign
        record); how many existed. Callers check that the operator allowed it."""
        raise VectorStoreUnsupported(f"a {self.kind} store holds no other program's records")

    async def open(self) -> None:  # noqa: B027 - most stores connect on first use anyway
        """Connect and load now, without a call's deadline (a warm-up; optional)."""

    async def close(self) -> None:  # noqa: B027 - not every store holds a connection
        """Release connections and files."""

    def describe(self) -> dict[str, Any]:
        """Settings safe to show (no secrets)."""
        return {"kind": self.kind, "dimension": self.dimension}
