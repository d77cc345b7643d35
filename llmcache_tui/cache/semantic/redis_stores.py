"""Pick the Redis vector store a server can hold: the query engine, else Vector Sets.

``open_redis_vector_store`` returns at once, without a network call; the first call that
needs the server asks it what it has (``COMMAND INFO FT.SEARCH VADD _FT.SEARCH``, or
``MODULE LIST`` where COMMAND is refused) and builds the matching store:

* ``FT.SEARCH`` present: :class:`RedisSearchStore` (RediSearch, Redis Stack, Redis 8 with
  the query engine). On a cluster only with the query engine's coordinator (its
  shard-local ``_FT.SEARCH`` is there too): without one, FT.SEARCH sees one shard's data.
* else ``VADD`` present: :class:`RedisVectorSetStore` (Redis 8).
* else :class:`VectorStoreUnsupported`, naming what is needed; asked again after
  RECHECK_SECONDS, in case the server was upgraded meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster

from llmcache_tui.cache.backends.redis import RedisBackend
from llmcache_tui.cache.backends.redis_options import RedisOptions
from llmcache_tui.cache.semantic.redis_search_store import DEFAULT_INDEX, RedisSearchStore
from llmcache_tui.cache.semantic.redis_store_base import RedisStoreBase, connect, text
from llmcache_tui.cache.semantic.redis_vset_store import Quantization, RedisVectorSetStore
from llmcache_tui.cache.semantic.store import (
    Neighbour,
    RecordPage,
    StoreHealth,
    UnscopedSearch,
    Vector,
    VectorRecord,
    VectorSample,
    VectorStore,
    VectorStoreError,
    VectorStoreUnsupported,
)

Support = Literal["search", "vectorset"]
#: How long a "this server holds no vectors" verdict stands before the server is asked again.
RECHECK_SECONDS = 60.0
NEEDED = (
    "neither the query engine (RediSearch / Redis Stack / Redis 8 with the query engine)"
    " nor Vector Sets (Redis 8): redis-semantic needs one of them; the exact cache still works"
)


async def detect_redis_vector_support(client: Any) -> Support | None:
    """What this server can hold vectors with: "search", "vectorset" or None.

    ``client`` is a redis-py asyncio client (single server or cluster). Redis errors
    propagate (the caller words them).
    """
    cluster = isinstance(client, RedisCluster)
    try:
        reply = await client.execute_command("COMMAND INFO", "FT.SEARCH", "VADD", "_FT.SEARCH")
        search, vadd, coordinator = (entry is not None for entry in reply)
    except redis_errors.ResponseError:  # COMMAND refused (some managed services)
        modules = await client.execute_command("MODULE LIST")
        names = {text(_field(module, "name")).lower() for module in modules or []}
        search, vadd, coordinator = bool(names & {"search", "ft"}), "vectorset" in names, False
    if search and (coordinator or not cluster):
        return "search"
    if vadd:
        return "vectorset"
    return None


def _field(module: Any, name: str) -> Any:
    if isinstance(module, dict):
        return module.get(name.encode(), module.get(name, ""))
    items = list(module)
    pairs = {text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}
    return pairs.get(name, "")


def open_redis_vector_store(
    connection: RedisBackend | RedisOptions,
    dimension: int,
    *,
    index_name: str = DEFAULT_INDEX,
    prefix: str | None = None,
    quantization: Quantization = "Q8",
) -> AutoRedisVectorStore:
    """The store the server at ``connection`` supports, chosen on first use.

    ``index_name`` names the query engine's index (``redis_semantic_cache_index_name``);
    ``prefix`` (default ``"<index_name>:"``) starts every key either store writes;
    ``quantization`` applies to Vector Sets only.
    """
    return AutoRedisVectorStore(
        connection, dimension, index_name=index_name, prefix=prefix, quantization=quantization
    )


class AutoRedisVectorStore(VectorStore):
    """A :class:`RedisSearchStore` or a :class:`RedisVectorSetStore`, whichever the server
    supports, built on first use over one shared connection (see the module)."""

    kind: ClassVar[str] = "redis"

    def __init__(
        self,
        connection: RedisBackend | RedisOptions,
        dimension: int,
        *,
        index_name: str = DEFAULT_INDEX,
        prefix: str | None = None,
        quantization: Quantization = "Q8",
    ) -> None:
        super().__init__(dimension)
        self.redis, self._owns_connection = connect(connection)
        self.index_name = index_name
        self.prefix = prefix if prefix is not None else f"{index_name}:"
        self.quantization: Quantization = quantization
        self.store: RedisStoreBase | None = None
        self._unsupported: tuple[float, str] | None = None  # (when, message)
        self._lock = asyncio.Lock()

    async def _chosen(self) -> RedisStoreBase:
        if self.store is not None:
            return self.store
        async with self._lock:
            if self.store is not None:
                return self.store
            if self._unsupported is not None:
                when, message = self._unsupported
                if time.monotonic() - when < RECHECK_SECONDS:
                    raise VectorStoreUnsupported(message)
            try:
                support = await self.redis.run(
                    lambda: detect_redis_vector_support(self.redis.client)
                )
            except Exception as exc:
                reason = self.redis.explain(exc)
                raise VectorStoreError(f"redis-semantic: cannot ask the server: {reason}") from exc
            if support is None:
                message = await self._unsupported_message()
                self._unsupported = (time.monotonic(), message)
                raise VectorStoreUnsupported(message)
            self.store = self._build(support)
            return self.store

    def _build(self, support: Support) -> RedisStoreBase:
        if support == "search":
            return RedisSearchStore(
                self.redis, self.dimension, index_name=self.index_name, prefix=self.prefix
            )
        return RedisVectorSetStore(
            self.redis, self.dimension, prefix=self.prefix, quantization=self.quantization
        )

    async def _unsupported_message(self) -> str:
        try:
            version = (await self.redis.server_info()).get("redis_version")
        except Exception:
            version = None
        what = "Redis Cluster" if isinstance(self.redis.client, RedisCluster) else "Redis"
        at = f"{what} ({version})" if version else what
        message = f"this {at} at {self.redis.location()} has {NEEDED}"
        if isinstance(self.redis.client, RedisCluster):
            message += " (on a cluster the query engine needs its coordinator)"
        return message

    async def add(self, record: VectorRecord) -> None:
        await (await self._chosen()).add(record)

    async def search(
        self,
        vector: Vector,
        scope: str | None,
        *,
        limit: int,
        now: float,
        created_after: float | None = None,
    ) -> list[Neighbour]:
        store = await self._chosen()
        return await store.search(vector, scope, limit=limit, now=now, created_after=created_after)

    async def search_everywhere(
        self,
        vector: Vector,
        *,
        limit: int,
        now: float,
        created_after: float | None = None,
    ) -> UnscopedSearch:
        store = await self._chosen()
        return await store.search_everywhere(
            vector, limit=limit, now=now, created_after=created_after
        )

    async def delete(self, keys: Sequence[str]) -> int:
        return await (await self._chosen()).delete(keys)

    async def sweep(self, now: float) -> int:
        return await (await self._chosen()).sweep(now)

    async def sample_vectors(
        self, limit: int, *, now: float, keys: Callable[[str], bool] | None = None
    ) -> VectorSample:
        return await (await self._chosen()).sample_vectors(limit, now=now, keys=keys)

    async def records(self, cursor: str | None, limit: int) -> RecordPage:
        return await (await self._chosen()).records(cursor, limit)

    async def delete_foreign(self, ids: Sequence[str]) -> int:
        return await (await self._chosen()).delete_foreign(ids)

    async def health(self) -> StoreHealth:
        try:
            store = await self._chosen()
        except VectorStoreUnsupported as exc:
            return StoreHealth(
                self.kind, True, False, location=self.redis.location(), problem=str(exc)
            )
        except Exception as exc:
            return StoreHealth(
                self.kind, False, False, location=self.redis.location(), problem=str(exc)
            )
        return await store.health()

    async def close(self) -> None:
        if self._owns_connection:
            await self.redis.close()

    def describe(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            **super().describe(),
            "index": self.index_name,
            "prefix": self.prefix,
            "location": self.redis.location(),
        }
        if self.store is not None:
            shown["store"] = self.store.kind
        return shown
