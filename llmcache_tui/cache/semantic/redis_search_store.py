"""Vectors in Redis hashes searched with the query engine (``FT.*``: RediSearch, Redis Stack,
Redis 8 with the query engine).

One index per configured name, created on first use::

    FT.CREATE <index> ON HASH PREFIX 1 <prefix> SCHEMA scope TAG
        vector VECTOR HNSW 6 TYPE FLOAT32 DIM <d> DISTANCE_METRIC COSINE
        expires_at NUMERIC created_at NUMERIC

Each record is the hash ``<prefix><digest of the entry key>`` holding key, scope, text,
created_at, expires_at ("inf" for never) and the float32 vector, with PEXPIREAT at its
expiry, so Redis removes it by itself. The key holds no scope: ``delete`` is given entry
keys only, and the query engine spreads documents over shards whatever their slot.

A search is one pre-filtered KNN query: scope, freshness and creation time select the
candidates, then the nearest are ranked (``=>[KNN k @vector $vec AS dist]``), so a record of
another scope or an expired one is never a candidate. Cosine similarity is 1 - distance.
The query engine returns numeric fields to 12 significant digits: a neighbour's times are
exact to 10 ms (the filters compare the exact values).

``records`` lists the hashes with SCAN over the prefix (a true cursor, unlike FT.SEARCH's
offsets, which shift as records are deleted). An index that is a RedisVL SemanticCache
(LiteLLM's redis-semantic) is recognised from its schema: its hashes are listed and ranked
by the unscoped search as LiteLLM's, and nothing is written into it.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import re
import sys
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from redis import exceptions as redis_errors

from llmcache_tui.cache.backends.redis import RedisBackend
from llmcache_tui.cache.backends.redis_options import RedisOptions
from llmcache_tui.cache.semantic import litellm_formats as litellm
from llmcache_tui.cache.semantic.redis_store_base import (
    RedisStoreBase,
    as_map,
    glob_escape,
    number,
    text,
)
from llmcache_tui.cache.semantic.store import (
    LITELLM,
    Neighbour,
    RecordPage,
    StoreHealth,
    Vector,
    VectorDimensionError,
    VectorRecord,
    VectorRecordInfo,
    VectorSample,
    VectorStoreError,
)

#: LiteLLM's default ``redis_semantic_cache_index_name`` is its own; this is ours.
DEFAULT_INDEX = "llmcache_semantic"
# Fields read back for a neighbour ("dist" is the KNN score's name in the query).
RETURNED = ("key", "text", "created_at", "expires_at", "dist")
# The unscoped search (the probe's) also reads the scope parts, which no query filters on.
RETURNED_UNSCOPED = (*RETURNED, "parts")
# How the query engine says an index does not exist (FT.INFO, FT.SEARCH; over versions).
NO_INDEX = ("unknown index name", "no such index", "not found")
# Every character but these is backslash-escaped in a TAG value.
TAG_SAFE = re.compile(r"[^A-Za-z0-9_]")
#: Expired records a sweep unlinks at most per call (Redis removes them anyway).
SWEEP_BATCH = 1000
# Records read at most (one FT.SEARCH) for the similarity statistics, and their fields.
SAMPLE_SCAN = 5000
SAMPLED = ("key", "scope", "text", "created_at", "expires_at", "vector")
#: Hash fields a listing reads of our records (never the vector).
LISTED = ("key", "scope", "text", "created_at", "expires_at")


@dataclass(frozen=True, slots=True)
class ForeignIndex:
    """A RedisVL SemanticCache index (LiteLLM's): its key prefix and vector dimension."""

    prefix: str
    dimension: int | None
    cache_key_field: bool  # whether it has LiteLLM's litellm_cache_key filter field

    @property
    def keys(self) -> str:
        """How its keys start: RedisVL joins prefix and entry id with ":" (so that
        ``<name>_isolated:...``, another index, is not taken for this one's)."""
        return self.prefix if self.prefix.endswith(":") else self.prefix + ":"


class RedisSearchStore(RedisStoreBase):
    """Records as hashes under ``prefix``, found through the index ``index_name``.

    ``prefix`` defaults to ``"<index_name>:"``. An existing index of another dimension is a
    :class:`VectorDimensionError`; one created by another program with another schema fails
    its searches with a :class:`VectorStoreError` naming the index.
    """

    kind: ClassVar[str] = "redis-search"

    def __init__(
        self,
        connection: RedisBackend | RedisOptions,
        dimension: int,
        *,
        index_name: str = DEFAULT_INDEX,
        prefix: str | None = None,
    ) -> None:
        super().__init__(connection, dimension)
        if not index_name:
            raise ValueError("index_name must not be empty")
        self.index_name = index_name
        self.prefix = prefix if prefix is not None else f"{index_name}:"
        self._ready = False
        self._lock = asyncio.Lock()
        #: set once the index is found to be LiteLLM's (a RedisVL SemanticCache)
        self.litellm: ForeignIndex | None = None

    def record_key(self, key: str) -> str:
        """The hash that holds the record of entry ``key``."""
        return self.prefix + hashlib.sha256(key.encode()).hexdigest()[:32]

    # -- the index --------------------------------------------------------------------
    async def _index_info(self) -> dict[str, Any] | None:
        """FT.INFO of the index, or None when there is none."""
        try:
            reply = await self.redis.run(
                lambda: self.client.execute_command("FT.INFO", self.index_name)
            )
        except redis_errors.ResponseError as exc:
            if any(words in str(exc).lower() for words in NO_INDEX):
                return None
            raise
        return as_map(reply)

    async def _ensure_index(self) -> None:
        if self._ready:
            return
        async with self._lock:
            if self._ready:
                return
            info = await self._call("index check", self._index_info)
            if info is None:
                try:
                    await self._call("index creation", self._create_index)
                except Exception:
                    # Another process may have created it meanwhile: then its dimension
                    # decides; if there is still none, the creation's error stands.
                    info = await self._call("index check", self._index_info)
                    if info is None:
                        raise
            if info is not None:
                self._check_dimension(info)
            self._ready = True

    async def _create_index(self) -> Any:
        return await self.client.execute_command(
            "FT.CREATE", self.index_name, "ON", "HASH", "PREFIX", 1, self.prefix,
            "SCHEMA",
            "scope", "TAG",
            "vector", "VECTOR", "HNSW", 6,
            "TYPE", "FLOAT32", "DIM", self.dimension, "DISTANCE_METRIC", "COSINE",
            "expires_at", "NUMERIC",
            "created_at", "NUMERIC",
        )  # fmt: skip

    def _check_dimension(self, info: dict[str, Any]) -> None:
        self.litellm = foreign_index(info, self.index_name)
        if self.litellm is not None:
            if self.litellm.dimension not in (None, self.dimension):
                raise VectorDimensionError(
                    f"{self.kind}: LiteLLM's index {self.index_name!r} holds vectors of"
                    f" dimension {self.litellm.dimension}, the embedder makes"
                    f" {self.dimension}: embed with the model LiteLLM used"
                    " (redis_semantic_cache_embedding_model) to probe it"
                )
            return
        found = index_dimension(info)
        if found is None:
            raise VectorDimensionError(
                f"{self.kind}: index {self.index_name!r} exists without a vector field"
                " 'vector': it belongs to something else; name another index"
                " (redis_semantic_cache_index_name)"
            )
        if found != self.dimension:
            raise VectorDimensionError(
                f"{self.kind}: index {self.index_name!r} holds vectors of dimension {found},"
                f" the embedder makes {self.dimension}: drop it (FT.DROPINDEX"
                f" {self.index_name}) or name another index (redis_semantic_cache_index_name)"
            )

    async def _with_index(self, what: str, command: Any) -> Any:
        """Run ``command`` against the index, creating it first; once more if the index
        vanished meanwhile (FLUSHALL and FT.DROPINDEX drop it)."""
        await self._ensure_index()
        try:
            return await self.redis.run(command)
        except redis_errors.ResponseError as exc:
            if not any(words in str(exc).lower() for words in NO_INDEX):
                raise self._error(what, exc) from exc
        except Exception as exc:
            raise self._error(what, exc) from exc
        self._ready = False
        await self._ensure_index()
        return await self._call(what, command)

    # -- the interface ----------------------------------------------------------------
    async def add(self, record: VectorRecord) -> None:
        blob = self._pack(record.vector)
        await self._ensure_index()
        if self.litellm is not None:
            raise litellm.refused_add(f"{self.kind}: index {self.index_name!r}")
        key = self.record_key(record.key)
        fields = {
            "key": record.key,
            "scope": record.scope,
            "text": record.text,
            "created_at": repr(float(record.created_at)),
            "expires_at": "inf" if record.expires_at is None else repr(float(record.expires_at)),
            "vector": blob,
        }
        if record.parts is not None:
            fields["parts"] = record.parts  # for the probe: in the hash, not in the index

        async def write() -> Any:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
            if record.expires_at is None:
                pipe.persist(key)  # a replaced record may have had an expiry
            else:
                pipe.pexpireat(key, int(record.expires_at * 1000))
            return await pipe.execute()

        await self._call("add", write)

    async def search(
        self,
        vector: Vector,
        scope: str | None,
        *,
        limit: int,
        now: float,
        created_after: float | None = None,
    ) -> list[Neighbour]:
        blob = self._pack(vector)
        if limit <= 0:
            return []
        await self._ensure_index()
        if self.litellm is not None:
            # LiteLLM's hashes carry no scope: only the probe's unscoped search meets them.
            return [] if scope is not None else await self._search_litellm(blob, limit)
        filters = [f"@expires_at:[({number(now)} +inf]"]
        if scope is not None:
            filters.insert(0, f"@scope:{{{tag_value(scope)}}}")
        if created_after is not None:
            filters.append(f"@created_at:[{number(created_after)} +inf]")
        query = f"({' '.join(filters)})=>[KNN {limit} @vector $vec AS dist]"
        returned = RETURNED if scope is not None else RETURNED_UNSCOPED
        args: list[Any] = [
            "FT.SEARCH", self.index_name, query, "PARAMS", 2, "vec", blob,
            "SORTBY", "dist", "RETURN", len(returned), *returned,
            "LIMIT", 0, limit, "DIALECT", 2,
        ]  # fmt: skip
        reply = await self._with_index("search", lambda: self.client.execute_command(*args))
        return [_neighbour(fields) for _, fields in search_results(reply)]

    async def _search_litellm(self, blob: bytes, limit: int) -> list[Neighbour]:
        returned = (litellm.REDIS_PROMPT, litellm.REDIS_RESPONSE, litellm.REDIS_INSERTED, "dist")
        query = f"*=>[KNN {limit} @{litellm.REDIS_VECTOR} $vec AS dist]"
        args: list[Any] = [
            "FT.SEARCH", self.index_name, query, "PARAMS", 2, "vec", blob,
            "SORTBY", "dist", "RETURN", len(returned), *returned,
            "LIMIT", 0, limit, "DIALECT", 2,
        ]  # fmt: skip
        reply = await self._with_index("search", lambda: self.client.execute_command(*args))
        found = search_results(reply)
        expiries = await self._expiries([name for name, _ in found])
        return [
            Neighbour(
                key=name,
                similarity=1.0 - float(text(fields.get("dist", "1"))),
                text=text(fields.get(litellm.REDIS_PROMPT, "")),
                created_at=_float(fields.get(litellm.REDIS_INSERTED)) or math.nan,
                expires_at=expires,
                origin=LITELLM,
                response=text(fields.get(litellm.REDIS_RESPONSE, "")),
            )
            for (name, fields), expires in zip(found, expiries, strict=True)
        ]

    async def _expiries(self, names: list[str]) -> list[float | None]:
        """Each key's expiry as a Unix time (None: none, or gone), one round trip."""
        if not names:
            return []

        async def read() -> Any:
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.execute_command("PEXPIRETIME", name)
            return await pipe.execute()

        replies = await self._call("expiry", read)
        return [int(ms) / 1000 if int(ms) > 0 else None for ms in replies]

    async def records(self, cursor: str | None, limit: int) -> RecordPage:
        info = await self._call("listing", self._index_info)
        total = None
        if info is not None:
            self.litellm = foreign_index(info, self.index_name)
            total = _int(info.get("num_docs"))
        foreign = self.litellm
        prefix = foreign.keys if foreign is not None else self.prefix
        names, following = await self._scan_names(
            "listing", glob_escape(prefix) + "*", cursor, limit
        )
        if not names:
            return RecordPage([], following, total)
        wanted = litellm.REDIS_LISTED if foreign is not None else LISTED

        async def read() -> Any:
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.hmget(name, list(wanted))
                if foreign is not None:
                    pipe.execute_command("PEXPIRETIME", name)
            return await pipe.execute(raise_on_error=False)

        replies = await self._call("listing", read)
        listed: list[VectorRecordInfo] = []
        step = 2 if foreign is not None else 1
        for index, name in enumerate(names):
            values = replies[index * step]
            if not isinstance(values, list):
                continue  # not a hash: some other program's key under the prefix
            fields = {
                field: None if value is None else text(value)
                for field, value in zip(wanted, values, strict=True)
            }
            if foreign is not None:
                if fields[litellm.REDIS_PROMPT] is None:
                    continue
                ms = replies[index * step + 1]
                expires = int(ms) / 1000 if isinstance(ms, int) and ms > 0 else None
                listed.append(litellm.redis_record(name, fields, expires))
            elif fields["key"] is not None and fields["scope"] is not None:
                expires_at = _float(fields["expires_at"])
                listed.append(
                    VectorRecordInfo(
                        key=fields["key"],
                        text=fields["text"] or "",
                        created_at=_float(fields["created_at"]),
                        expires_at=None if expires_at == float("inf") else expires_at,
                        scope=fields["scope"],
                    )
                )
        return RecordPage(listed, following, total)

    async def delete_foreign(self, ids: Sequence[str]) -> int:
        if self.litellm is None:
            info = await self._call("index check", self._index_info)
            self.litellm = None if info is None else foreign_index(info, self.index_name)
        if self.litellm is None:
            raise VectorStoreError(f"{self.kind}: index {self.index_name!r} is not LiteLLM's")
        prefix = self.litellm.keys
        # Never a key outside the index's prefix, whatever the caller passes.
        names = [name for name in dict.fromkeys(ids) if name.startswith(prefix)]
        return await self._unlink("delete", names)

    async def delete(self, keys: Sequence[str]) -> int:
        names = [self.record_key(key) for key in keys]
        if not names:
            return 0

        async def unlink() -> int:
            if self.is_cluster:  # keys of many slots: each to its own node, one round trip
                pipe = self.client.pipeline()
                for name in names:
                    pipe.execute_command("UNLINK", name)
                return sum(int(n) for n in await pipe.execute())
            return int(await self.client.unlink(*names))

        return await self._call("delete", unlink)

    async def sample_vectors(
        self, limit: int, *, now: float, keys: Callable[[str], bool] | None = None
    ) -> VectorSample:
        """The first SAMPLE_SCAN unexpired records of the index (one FT.SEARCH, vectors
        included), filtered by key here."""
        if limit <= 0:
            return VectorSample([], 0, True)
        query = f"@expires_at:[({number(now)} +inf]"
        args: list[Any] = [
            "FT.SEARCH", self.index_name, query, "RETURN", len(SAMPLED), *SAMPLED,
            "LIMIT", 0, SAMPLE_SCAN, "DIALECT", 2,
        ]  # fmt: skip
        reply = await self._with_index("list vectors", lambda: self.client.execute_command(*args))
        results = search_results(reply)
        records = [
            record
            for record in (self._record(fields) for _, fields in results)
            if record is not None and (keys is None or keys(record.key))
        ]
        matched = len(records)
        if matched > limit:
            records = random.sample(records, limit)
        return VectorSample(records, matched, len(results) < SAMPLE_SCAN)

    def _record(self, fields: dict[str, Any]) -> VectorRecord | None:
        """A sampled document as a record; None if it is not one of ours."""
        blob = fields.get("vector")
        if not isinstance(blob, bytes) or len(blob) != 4 * self.dimension:
            return None  # or a client that decodes replies as text: no vector to read
        expires = float(text(fields.get("expires_at", "inf")))
        return VectorRecord(
            key=text(fields.get("key", "")),
            vector=array("f", blob).tolist() if sys.byteorder == "little" else _swapped(blob),
            scope=text(fields.get("scope", "")),
            text=text(fields.get("text", "")),
            created_at=float(text(fields.get("created_at", "0"))),
            expires_at=None if expires == float("inf") else expires,
        )

    async def sweep(self, now: float) -> int:
        """Unlink up to SWEEP_BATCH records expired at ``now``. Redis removes each at its
        expiry anyway (PEXPIREAT); this only frees sooner the ones it has not reached."""
        query = f"@expires_at:[-inf {number(now)}]"
        args: list[Any] = [
            "FT.SEARCH", self.index_name, query, "NOCONTENT", "LIMIT", 0, SWEEP_BATCH,
            "DIALECT", 2,
        ]  # fmt: skip
        reply = await self._with_index("sweep", lambda: self.client.execute_command(*args))
        names = [name for name, _ in search_results(reply, content=False)]
        return await self._unlink("sweep", names)

    async def _unlink(self, operation: str, names: list[str]) -> int:
        """UNLINK ``names`` in one pipeline (one key a command: cluster slots differ);
        how many existed."""
        if not names:
            return 0

        async def unlink() -> int:
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.execute_command("UNLINK", name)
            return sum(int(n) for n in await pipe.execute())

        return await self._call(operation, unlink)

    async def _state(self, details: dict[str, Any]) -> StoreHealth:
        info = await self._index_info()
        if info is None:
            details["note"] = "the index is created on the first write"
            return self._health(True, False, details=details)
        problem = None
        try:
            self._check_dimension(info)
        except VectorDimensionError as exc:
            problem = str(exc)
        if self.litellm is not None:
            details["format"] = (
                "LiteLLM's semantic cache (RedisVL): listed and probed, never written"
            )
        return self._health(
            True,
            problem is None,
            dimension=index_dimension(info),
            vectors=_int(info.get("num_docs")),
            problem=problem,
            details=details,
        )

    def _settings(self) -> dict[str, Any]:
        return {"index": self.index_name, "prefix": self.prefix}


def tag_value(value: str) -> str:
    """``value`` escaped for a TAG query (``@field:{...}``)."""
    return TAG_SAFE.sub(lambda match: "\\" + match.group(0), value)


def index_dimension(info: dict[str, Any]) -> int | None:
    """The DIM of the index's ``vector`` field, from FT.INFO (either protocol)."""
    for attribute in info.get("attributes") or []:
        fields = {k: v for k, v in as_map(attribute).items()}
        if text(fields.get("identifier", "")) == "vector" and "dim" in fields:
            return _int(fields["dim"])
    return None


def search_results(reply: Any, *, content: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """(document id, returned fields) pairs of an FT.SEARCH reply, in its order.

    RESP3: a map with ``results``, each ``{"id", "extra_attributes"}``. RESP2: the total,
    then each id followed (unless NOCONTENT) by a flat list of field, value.
    """
    if isinstance(reply, dict):
        results = as_map(reply).get("results") or []
        found = []
        for result in results:
            item = as_map(result)
            found.append((text(item.get("id")), as_map(item.get("extra_attributes") or {})))
        return found
    rows = list(reply[1:]) if isinstance(reply, list) else []
    if not content:
        return [(text(name), {}) for name in rows]
    return [(text(rows[i]), as_map(rows[i + 1])) for i in range(0, len(rows) - 1, 2)]


def foreign_index(info: dict[str, Any], name: str) -> ForeignIndex | None:
    """The index as LiteLLM's (a RedisVL SemanticCache), from FT.INFO; None if it is not."""
    fields: dict[str, str] = {}
    dimension = None
    for attribute in info.get("attributes") or []:
        described = as_map(attribute)
        identifier = text(described.get("identifier", ""))
        fields[identifier] = text(described.get("type", "")).lower()
        if identifier == litellm.REDIS_VECTOR and "dim" in described:
            dimension = _int(described["dim"])
    if not litellm.is_redisvl_cache(fields):
        return None
    definition = as_map(info.get("index_definition") or {})
    prefixes = [text(p) for p in definition.get("prefixes") or []]
    # RedisVL's prefix defaults to the index name, its keys are "<prefix>:<entry id>".
    prefix = prefixes[0] if prefixes else name
    return ForeignIndex(prefix, dimension, litellm.REDIS_CACHE_KEY in fields)


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(text(value))
    except ValueError:
        return None


def _neighbour(fields: dict[str, Any]) -> Neighbour:
    expires = float(text(fields.get("expires_at", "inf")))
    return Neighbour(
        key=text(fields.get("key", "")),
        similarity=1.0 - float(text(fields.get("dist", "1"))),
        text=text(fields.get("text", "")),
        created_at=float(text(fields.get("created_at", "0"))),
        expires_at=None if expires == float("inf") else expires,
        parts=text(fields["parts"]) if fields.get("parts") is not None else None,
    )


def _swapped(blob: bytes) -> list[float]:
    """Little-endian float32 bytes as floats on a big-endian machine."""
    values = array("f", blob)
    values.byteswap()
    return values.tolist()


def _int(value: Any) -> int | None:
    try:
        return int(float(text(value)))
    except (TypeError, ValueError):
        return None
