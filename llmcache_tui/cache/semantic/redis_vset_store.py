"""Vectors in Redis 8 Vector Sets, one set per scope.

Keys, all under ``prefix``:

* ``<prefix>{<scope>}``: the Vector Set of a scope; each element is an entry key, its
  attributes the JSON ``{"text", "created_at", "expires_at", "parts"}`` ("parts": the
  scope's parts JSON, for the probe; absent from records written before it was kept).
  The hash tag keeps a scope on one cluster slot, so a search is one command on one node.
* ``<prefix>{<scope>}:expiry``: a sorted set of that scope's entry keys by expiry time (same
  slot). Elements of a Vector Set never expire by themselves: ``sweep`` takes the due ones
  from here, a bounded number per call.
* ``<prefix>entry:<entry key>``: the scope of an entry, expiring with it, so ``delete``
  (given entry keys only) knows which set to remove it from.
* ``<prefix>dimension``: the vector dimension, set by the first writer; another dimension
  is a :class:`VectorDimensionError` (a Vector Set also refuses a vector of another length).

A search is ``VSIM <set> FP32 <blob> WITHSCORES WITHATTRIBS COUNT k FILTER '<freshness>'``:
the filter runs inside the graph walk, before ranking. "Never expires" is stored as
NEVER_EXPIRES (1e18, beyond any Unix time), which the filter's arithmetic handles.
VSIM scores are (1 + cos) / 2: similarity is ``2 * score - 1``.

No command searches every set at once: the unscoped search (the probe's, never a
request's) SCANs for the sets, at most UNSCOPED_SETS of them from UNSCOPED_PAGES pages,
runs one VSIM per set in a pipeline and merges the results; it says when that bound left
sets out.

``records`` lists by SCAN over the ``entry:`` keys (a Vector Set has no cursor of its own:
VRANDMEMBER samples, VLINKS walks the graph), then reads each element's attributes with
VGETATTR from its scope's set.

Vectors are int8-quantised by default (Q8): measured on 384-dimension vectors, it moves a
cosine by under 0.001, halves the memory of NOQUANT and adds nothing to search time;
``quantization="NOQUANT"`` keeps exact float32. A set's quantisation is fixed at its creation.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

from llmcache_tui.cache.backends.base import ScanPage
from llmcache_tui.cache.backends.redis import RedisBackend
from llmcache_tui.cache.backends.redis_options import RedisOptions
from llmcache_tui.cache.semantic.redis_store_base import (
    RedisStoreBase,
    as_map,
    glob_escape,
    number,
    text,
)
from llmcache_tui.cache.semantic.store import (
    Neighbour,
    RecordPage,
    StoreHealth,
    UnscopedSearch,
    Vector,
    VectorDimensionError,
    VectorRecord,
    VectorRecordInfo,
    VectorSample,
)

DEFAULT_PREFIX = "llmcache_semantic:"
NEVER_EXPIRES = 1e18
Quantization = Literal["Q8", "NOQUANT", "BIN"]
#: Elements a sweep removes at most per call, and SCAN pages it reads at most.
SWEEP_BATCH = 1000
SWEEP_PAGES = 20
#: Sets whose sizes health adds up at most (a SCAN of the prefix, bounded).
HEALTH_SETS = 1000
SCAN_COUNT = 200
#: Elements read at most for the similarity statistics, and SCAN pages of sets for them.
SAMPLE_SCAN = 5000
SAMPLE_PAGES = 50
#: Sets the unscoped search reads at most, and SCAN pages it reads to find them.
UNSCOPED_SETS = 64
UNSCOPED_PAGES = 10


class RedisVectorSetStore(RedisStoreBase):
    """One Vector Set per scope under ``prefix`` (see the module's description)."""

    kind: ClassVar[str] = "redis-vectorset"
    limits: ClassVar[tuple[str, ...]] = (
        *RedisStoreBase.limits,
        "vectors of expired entries stay in their sets (never found) until a sweep removes them",
    )

    def __init__(
        self,
        connection: RedisBackend | RedisOptions,
        dimension: int,
        *,
        prefix: str = DEFAULT_PREFIX,
        quantization: Quantization = "Q8",
    ) -> None:
        super().__init__(connection, dimension)
        if quantization not in ("Q8", "NOQUANT", "BIN"):
            raise ValueError(f"quantization must be Q8, NOQUANT or BIN, not {quantization!r}")
        self.prefix = prefix
        self.quantization = quantization
        self._dimension_checked = False
        self._lock = asyncio.Lock()
        self._sweep_cursor: str | None = None

    # -- key names ----------------------------------------------------------------------
    def set_key(self, scope: str) -> str:
        return f"{self.prefix}{{{scope}}}"

    def expiry_key(self, scope: str) -> str:
        return f"{self.prefix}{{{scope}}}:expiry"

    def entry_key(self, key: str) -> str:
        return f"{self.prefix}entry:{key}"

    @property
    def dimension_key(self) -> str:
        return f"{self.prefix}dimension"

    # -- the dimension ------------------------------------------------------------------
    async def _check_dimension(self) -> None:
        if self._dimension_checked:
            return
        async with self._lock:
            if self._dimension_checked:
                return

            async def claim() -> Any:
                pipe = self.client.pipeline(transaction=False)
                pipe.set(self.dimension_key, self.dimension, nx=True)
                pipe.get(self.dimension_key)
                return (await pipe.execute())[1]

            found = await self._call("dimension check", claim)
            if found is not None and text(found) != str(self.dimension):
                raise VectorDimensionError(self._mismatch(text(found)))
            self._dimension_checked = True

    def _mismatch(self, found: str) -> str:
        return (
            f"{self.kind}: the vector sets under {self.prefix!r} hold vectors of dimension"
            f" {found}, the embedder makes {self.dimension}: delete them (and"
            f" {self.dimension_key}) or use another prefix"
        )

    # -- the interface ------------------------------------------------------------------
    async def add(self, record: VectorRecord) -> None:
        blob = self._pack(record.vector)
        await self._check_dimension()
        scope, element = record.scope, record.key
        expires = record.expires_at
        attributes = json.dumps(
            {
                "text": record.text,
                "created_at": float(record.created_at),
                "expires_at": NEVER_EXPIRES if expires is None else float(expires),
                **({} if record.parts is None else {"parts": record.parts}),
            },
            ensure_ascii=False,
        )
        entry_key, set_key, expiry_key = (
            self.entry_key(element),
            self.set_key(scope),
            self.expiry_key(scope),
        )

        async def write() -> Any:
            pipe = self.client.pipeline(transaction=False)
            pipe.get(entry_key)  # the scope of an earlier record of this key, if any
            if expires is None:
                pipe.set(entry_key, scope)
            else:
                pipe.set(entry_key, scope, pxat=max(1, int(expires * 1000)))
            pipe.execute_command(
                "VADD", set_key, "FP32", blob, element, self.quantization,
                "SETATTR", attributes,
            )  # fmt: skip
            if expires is None:
                pipe.zrem(expiry_key, element)
            else:
                pipe.zadd(expiry_key, {element: float(expires)})
            return await pipe.execute()

        replies = await self._call("add", write)
        previous = None if replies[0] is None else text(replies[0])
        if previous is not None and previous != scope:
            # The same key under another scope: its old vector must not answer there.
            await self._remove({previous: [element]})

    async def search(
        self,
        vector: Vector,
        scope: str | None,
        *,
        limit: int,
        now: float,
        created_after: float | None = None,
    ) -> list[Neighbour]:
        if scope is None:
            found = await self.search_everywhere(
                vector, limit=limit, now=now, created_after=created_after
            )
            return found.neighbours
        blob = self._pack(vector)
        if limit <= 0:
            return []
        await self._check_dimension()
        args = self._vsim(self.set_key(scope), blob, limit, now, created_after)
        reply = await self._call("search", lambda: self.client.execute_command(*args))
        neighbours = [_neighbour(element, score, attrs) for element, score, attrs in vsim(reply)]
        neighbours.sort(key=lambda n: n.similarity, reverse=True)
        return neighbours[:limit]

    async def search_everywhere(
        self,
        vector: Vector,
        *,
        limit: int,
        now: float,
        created_after: float | None = None,
    ) -> UnscopedSearch:
        """The best ``limit`` of each of at most UNSCOPED_SETS sets (found in at most
        UNSCOPED_PAGES pages of a SCAN), merged (the probe only: a request searches its
        scope's set alone)."""
        blob = self._pack(vector)
        if limit <= 0:
            return UnscopedSearch([])
        await self._check_dimension()
        match = glob_escape(self.prefix) + "{*}"  # the sets, not their ":expiry" lists
        cursor: str | None = None
        sets: list[str] = []
        for _ in range(UNSCOPED_PAGES):
            page = await self._scan("search", match, cursor)
            sets += [info.key for info in page.keys]
            cursor = page.cursor
            if cursor is None or len(sets) >= UNSCOPED_SETS:
                break
        cut_short = None
        if len(sets) > UNSCOPED_SETS or cursor is not None:
            sets = sets[:UNSCOPED_SETS]
            cut_short = (
                f"Vector Sets: searched {len(sets)} scopes' sets only (at most"
                f" {UNSCOPED_SETS}, from {UNSCOPED_PAGES} SCAN pages), there are more"
            )
        if not sets:
            return UnscopedSearch([], cut_short)

        async def search() -> Any:
            pipe = self.client.pipeline(transaction=False)
            for name in sets:
                pipe.execute_command(*self._vsim(name, blob, limit, now, created_after))
            return await pipe.execute(raise_on_error=False)

        neighbours = [
            _neighbour(element, score, attrs)
            for reply in await self._call("search", search)
            if not isinstance(reply, Exception)  # gone meanwhile, or not a set of ours
            for element, score, attrs in vsim(reply)
        ]
        neighbours.sort(key=lambda n: n.similarity, reverse=True)
        return UnscopedSearch(neighbours[:limit], cut_short)

    @staticmethod
    def _vsim(
        name: str, blob: bytes, limit: int, now: float, created_after: float | None
    ) -> list[Any]:
        """A VSIM of set ``name``, filtered on freshness inside the graph walk."""
        condition = f".expires_at > {number(now)}"
        if created_after is not None:
            condition += f" and .created_at >= {number(created_after)}"
        return [
            "VSIM", name, "FP32", blob, "WITHSCORES", "WITHATTRIBS",
            "COUNT", limit, "FILTER", condition,
        ]  # fmt: skip

    async def records(self, cursor: str | None, limit: int) -> RecordPage:
        start = self.entry_key("")
        names, following = await self._scan_names(
            "listing", glob_escape(start) + "*", cursor, limit
        )
        if not names:
            return RecordPage([], following)

        async def scopes() -> Any:
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.get(name)
            return await pipe.execute()

        found = [
            (name[len(start) :], text(scope))
            for name, scope in zip(names, await self._call("listing", scopes), strict=True)
            if scope is not None
        ]
        if not found:
            return RecordPage([], following)

        async def attributes() -> Any:
            pipe = self.client.pipeline(transaction=False)
            for element, scope in found:
                pipe.execute_command("VGETATTR", self.set_key(scope), element)
            return await pipe.execute(raise_on_error=False)

        listed = []
        replies = await self._call("listing", attributes)
        for (element, scope), attrs in zip(found, replies, strict=True):
            if attrs is None or isinstance(attrs, Exception):
                continue  # the vector went (swept, or removed meanwhile)
            data = as_map(json.loads(text(attrs)))
            expires = float(data.get("expires_at", NEVER_EXPIRES))
            listed.append(
                VectorRecordInfo(
                    key=element,
                    text=str(data.get("text", "")),
                    created_at=float(data["created_at"]) if "created_at" in data else None,
                    expires_at=None if expires >= NEVER_EXPIRES else expires,
                    scope=scope,
                )
            )
        return RecordPage(listed, following)

    async def delete(self, keys: Sequence[str]) -> int:
        keys = list(dict.fromkeys(keys))
        if not keys:
            return 0

        async def scopes() -> Any:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.get(self.entry_key(key))
            return await pipe.execute()

        by_scope: dict[str, list[str]] = {}
        for key, scope in zip(keys, await self._call("delete", scopes), strict=True):
            if scope is not None:
                by_scope.setdefault(text(scope), []).append(key)
        return await self._remove(by_scope, entry_keys=True)

    async def _remove(self, by_scope: dict[str, list[str]], *, entry_keys: bool = False) -> int:
        """VREM the elements from their scopes' sets (and expiry lists, and with
        ``entry_keys`` their scope records); how many were in a set."""
        if not by_scope:
            return 0

        async def remove() -> int:
            pipe = self.client.pipeline(transaction=False)
            vrems: list[int] = []  # where the VREM replies are among the pipeline's
            queued = 0
            for scope, elements in by_scope.items():
                for element in elements:
                    pipe.execute_command("VREM", self.set_key(scope), element)
                    vrems.append(queued)
                    queued += 1
                pipe.zrem(self.expiry_key(scope), *elements)
                queued += 1
                if entry_keys:
                    for element in elements:
                        pipe.execute_command("UNLINK", self.entry_key(element))
                        queued += 1
            replies = await pipe.execute()
            return sum(int(replies[i]) for i in vrems)

        return await self._call("delete", remove)

    async def sweep(self, now: float) -> int:
        """Remove up to SWEEP_BATCH elements expired at ``now``, reading at most
        SWEEP_PAGES pages of the prefix's expiry lists; the next call goes on from where
        this one stopped (from the same page when it ran out of budget there). An entry
        stored again between a sweep's read and its removal loses its vector (the exact
        cache keeps it): the steps are not atomic."""
        budget, removed = SWEEP_BATCH, 0
        match = glob_escape(self.prefix) + "{*}:expiry"
        cursor = self._sweep_cursor
        # A cursor from before a failure (or a cluster change) may no longer be valid.
        self._sweep_cursor = None
        for _ in range(SWEEP_PAGES):
            page = await self._scan("sweep", match, cursor)
            lists = [info.key for info in page.keys]
            if lists:
                removed += await self._sweep_lists(lists, now, budget - removed)
            if removed >= budget:
                break  # this page may hold more: start from it next time
            cursor = page.cursor
            if cursor is None:
                break
        self._sweep_cursor = cursor
        return removed

    async def sample_vectors(
        self, limit: int, *, now: float, keys: Callable[[str], bool] | None = None
    ) -> VectorSample:
        """Elements of the prefix's sets (at most SAMPLE_SCAN, from SAMPLE_PAGES pages of a
        SCAN), filtered by key and expiry here; then the chosen ones' vectors (VEMB)."""
        if limit <= 0:
            return VectorSample([], 0, True)
        await self._check_dimension()
        match = glob_escape(self.prefix) + "{*}"  # the sets, not their ":expiry" lists
        cursor: str | None = None
        found: list[tuple[str, str, Any]] = []  # (scope, element, attributes)
        complete = False
        for _ in range(SAMPLE_PAGES):
            page = await self._scan("list vectors", match, cursor)
            sets = [info.key for info in page.keys]
            if sets:
                found += await self._set_elements(sets, SAMPLE_SCAN - len(found))
            cursor = page.cursor
            if len(found) >= SAMPLE_SCAN:
                break
            if cursor is None:
                complete = True
                break
        chosen = [
            (scope, element, data)
            for scope, element, attributes in found
            if (keys is None or keys(element))
            and float((data := _attributes(attributes)).get("expires_at", NEVER_EXPIRES)) > now
        ]
        matched = len(chosen)
        if matched > limit:
            chosen = random.sample(chosen, limit)

        async def vectors() -> Any:
            pipe = self.client.pipeline(transaction=False)
            for scope, element, _ in chosen:
                pipe.execute_command("VEMB", self.set_key(scope), element)
            return await pipe.execute()

        records = []
        embeddings = await self._call("list vectors", vectors) if chosen else []
        for (scope, element, data), values in zip(chosen, embeddings, strict=True):
            if not values or len(values) != self.dimension:
                continue  # removed meanwhile
            expires = float(data.get("expires_at", NEVER_EXPIRES))
            records.append(
                VectorRecord(
                    key=element,
                    vector=[float(text(value)) for value in values],
                    scope=scope,
                    text=str(data.get("text", "")),
                    created_at=float(data.get("created_at", 0.0)),
                    expires_at=None if expires >= NEVER_EXPIRES else expires,
                    parts=parts if isinstance(parts := data.get("parts"), str) else None,
                )
            )
        return VectorSample(records, matched, complete)

    async def _set_elements(self, sets: list[str], budget: int) -> list[tuple[str, str, Any]]:
        """Up to ``budget`` (scope, element, attributes) of these sets."""

        async def members() -> Any:
            pipe = self.client.pipeline(transaction=False)
            for name in sets:
                pipe.execute_command("VRANDMEMBER", name, max(1, budget))
            return await pipe.execute()

        pairs: list[tuple[str, str]] = []
        for name, elements in zip(sets, await self._call("list vectors", members), strict=True):
            scope = name[len(self.prefix) + 1 : -1]
            pairs += [(scope, text(element)) for element in elements or []]
        pairs = pairs[: max(0, budget)]
        if not pairs:
            return []

        async def attributes() -> Any:
            pipe = self.client.pipeline(transaction=False)
            for scope, element in pairs:
                pipe.execute_command("VGETATTR", self.set_key(scope), element)
            return await pipe.execute()

        replies = await self._call("list vectors", attributes)
        return [
            (scope, element, reply) for (scope, element), reply in zip(pairs, replies, strict=True)
        ]

    async def _scan(self, what: str, match: str, cursor: str | None) -> ScanPage:
        """One page of key names (every primary in turn on a cluster)."""
        try:
            return await self.redis.scan(match, cursor, SCAN_COUNT, details=False)
        except Exception as exc:
            raise self._error(what, exc) from exc

    async def _sweep_lists(self, lists: list[str], now: float, budget: int) -> int:
        async def due() -> Any:
            pipe = self.client.pipeline(transaction=False)
            for name in lists:
                pipe.zrangebyscore(name, "-inf", now, start=0, num=max(1, budget))
            return await pipe.execute()

        by_scope: dict[str, list[str]] = {}
        taken = 0
        for name, elements in zip(lists, await self._call("sweep", due), strict=True):
            if not elements or taken >= budget:
                continue
            chosen = [text(e) for e in elements][: budget - taken]
            taken += len(chosen)
            by_scope[_scope_of(name, self.prefix)] = chosen
        return await self._remove(by_scope)

    async def _state(self, details: dict[str, Any]) -> StoreHealth:
        found = await self.redis.run(lambda: self.client.get(self.dimension_key))
        vectors, sets, complete = await self._count_vectors()
        details["sets"] = sets
        if not complete:
            details["vectors_counted_in_first_sets"] = sets
        dimension = None if found is None else int(text(found))
        problem = None
        if dimension is None:
            details["note"] = "the sets are created on the first write"
        elif dimension != self.dimension:
            problem = self._mismatch(str(dimension))
        return self._health(
            True,
            dimension == self.dimension,
            dimension=dimension,
            vectors=vectors,
            problem=problem,
            details=details,
        )

    async def _count_vectors(self) -> tuple[int, int, bool]:
        """VCARD summed over at most HEALTH_SETS sets: (vectors, sets, all sets seen)."""
        match = glob_escape(self.prefix) + "{*}"
        cursor: str | None = None
        names: list[str] = []
        while len(names) < HEALTH_SETS:
            page = await self._scan("health", match, cursor)
            names += [info.key for info in page.keys]
            cursor = page.cursor
            if cursor is None:
                break
        names = names[:HEALTH_SETS]
        if not names:
            return 0, 0, cursor is None

        async def sizes() -> Any:
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.execute_command("VCARD", name)
            return await pipe.execute(raise_on_error=False)

        counts = [int(n) for n in await self.redis.run(sizes) if isinstance(n, int)]
        return sum(counts), len(names), cursor is None

    def _settings(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "quantization": self.quantization}


def vsim(reply: Any) -> list[tuple[str, float, Any]]:
    """(element, score, attributes) of a VSIM WITHSCORES WITHATTRIBS reply.

    RESP3 (or redis-py's parsing): a map of element to [score, attributes]. RESP2: a flat
    list of element, score, attributes.
    """
    if isinstance(reply, dict):
        found = []
        for element, value in reply.items():
            score, attributes = (value[0], value[1]) if isinstance(value, list) else (value, None)
            found.append((text(element), float(text(score)), attributes))
        return found
    rows = list(reply or [])
    return [
        (text(rows[i]), float(text(rows[i + 1])), rows[i + 2]) for i in range(0, len(rows) - 2, 3)
    ]


def _neighbour(element: str, score: float, attributes: Any) -> Neighbour:
    data = as_map(json.loads(text(attributes))) if attributes else {}
    expires = float(data.get("expires_at", NEVER_EXPIRES))
    return Neighbour(
        key=element,
        similarity=2.0 * score - 1.0,
        text=str(data.get("text", "")),
        created_at=float(data.get("created_at", 0.0)),
        expires_at=None if expires >= NEVER_EXPIRES else expires,
        parts=parts if isinstance(parts := data.get("parts"), str) else None,
    )


def _attributes(attributes: Any) -> dict[str, Any]:
    """An element's JSON attributes as a dict ({} when missing or unreadable)."""
    try:
        return as_map(json.loads(text(attributes))) if attributes else {}
    except ValueError:
        return {}


def _scope_of(expiry_key: str, prefix: str) -> str:
    """The scope in ``<prefix>{<scope>}:expiry``."""
    return expiry_key[len(prefix) + 1 : -len("}:expiry")]
