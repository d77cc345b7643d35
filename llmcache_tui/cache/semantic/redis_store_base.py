"""What the Redis vector stores share: one connection, float32 packing, reply shapes, errors.

The connection is a :class:`RedisBackend`'s (so single server, URL, TLS, Cluster, Sentinel
and GCP IAM are built in one place): either the exact cache's own, shared (the store does
not close it), or one the store builds from :class:`RedisOptions` and owns. Constructing a
store sends nothing over the network. redis-py is imported only with this module, which
only the redis-semantic cache type loads.

Replies are read in either protocol: redis-py 8 speaks RESP3 unless told ``protocol: 2``,
so a map may arrive as a dict or as a flat list of pairs, and text as bytes or str.
"""

from __future__ import annotations

import sys
from abc import abstractmethod
from array import array
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, TypeVar

from redis.asyncio.cluster import RedisCluster

from llmcache_tui.cache.backends.base import CacheBackendError, ScanPage
from llmcache_tui.cache.backends.redis import Client, RedisBackend
from llmcache_tui.cache.backends.redis_options import RedisOptions
from llmcache_tui.cache.semantic.store import (
    StoreHealth,
    Vector,
    VectorDimensionError,
    VectorStore,
    VectorStoreError,
)

T = TypeVar("T")
# How Redis words a vector of the wrong length (Vector Sets: "Vector dimension mismatch -
# got 4 but set has 3"; the query engine: "... dimension ... does not match ...").
DIMENSION_WORDS = ("dimension mismatch", "vector dimension")
# Glob characters that SCAN MATCH would read in a key prefix.
GLOB_SPECIAL = "*?[]\\"
#: Keys a listing's SCAN examines per call, and calls it makes at most per page.
LIST_SCAN_COUNT = 500
LIST_SCANS = 20


class RedisStoreBase(VectorStore):
    """A vector store over one Redis connection; subclasses hold the data model."""

    #: What health says this kind of store cannot do.
    limits: ClassVar[tuple[str, ...]] = (
        "the encoded entry is not kept with its vector: the exact cache in the same Redis holds it",
    )

    def __init__(self, connection: RedisBackend | RedisOptions, dimension: int) -> None:
        super().__init__(dimension)
        self.redis, self._owns_connection = connect(connection)

    @property
    def client(self) -> Client:
        return self.redis.client

    @property
    def is_cluster(self) -> bool:
        return isinstance(self.redis.client, RedisCluster)

    async def _call(self, what: str, command: Callable[[], Awaitable[T]]) -> T:
        """Run ``command`` (idempotent), every failure a VectorStoreError saying ``what``."""
        try:
            return await self.redis.run(command)
        except VectorStoreError:
            raise
        except Exception as exc:
            raise self._error(what, exc) from exc

    def _error(self, what: str, exc: Exception) -> VectorStoreError:
        if isinstance(exc, CacheBackendError):  # already explained (a scan of the backend's)
            reason = self.redis.redactor.scrub(str(exc))
        else:
            reason = self.redis.explain(exc)
        message = f"{self.kind} {what} failed: {reason}"
        if any(words in reason.lower() for words in DIMENSION_WORDS):
            return VectorDimensionError(message)
        return VectorStoreError(message)

    def _pack(self, vector: Vector) -> bytes:
        """``vector`` as little-endian float32 bytes, checked against the dimension."""
        if hasattr(vector, "astype"):  # a numpy row: convert without a Python loop
            blob: bytes = vector.astype("<f4", copy=False).tobytes()
            count = len(blob) // 4
        else:
            values = array("f", vector)
            if sys.byteorder == "big":
                values.byteswap()
            blob, count = values.tobytes(), len(values)
        if count != self.dimension:
            raise VectorDimensionError(
                f"{self.kind}: a vector of {count} values for a store of dimension {self.dimension}"
            )
        return blob

    def location(self) -> str:
        return self.redis.location()

    async def _scan_names(
        self, what: str, match: str, cursor: str | None, limit: int
    ) -> tuple[list[str], str | None]:
        """Up to about ``limit`` key names matching ``match`` from ``cursor``, from at most
        LIST_SCANS SCAN calls (every primary in turn on a cluster), and the next cursor."""
        names: list[str] = []
        for _ in range(LIST_SCANS):
            try:
                page: ScanPage = await self.redis.scan(
                    match, cursor, max(limit, LIST_SCAN_COUNT), details=False
                )
            except Exception as exc:
                raise self._error(what, exc) from exc
            names += [info.key for info in page.keys]
            cursor = page.cursor
            if cursor is None or len(names) >= limit:
                break
        return names, cursor

    async def health(self) -> StoreHealth:
        details = self._settings()
        try:
            await self.redis.run(lambda: self.client.ping())
        except Exception as exc:
            return self._health(False, False, problem=str(self._error("ping", exc)))
        version = await self._server_version()
        if version:
            details["redis_version"] = version
        try:
            return await self._state(details)
        except Exception as exc:
            problem = str(self._error("health check", exc))
            return self._health(True, False, problem=problem, details=details)

    @abstractmethod
    async def _state(self, details: dict[str, Any]) -> StoreHealth:
        """Health of a reachable server: the index or sets, their dimension and size."""

    def _settings(self) -> dict[str, Any]:
        """The store's own settings, shown in health details."""
        return {}

    def _health(self, reachable: bool, ready: bool, **fields: Any) -> StoreHealth:
        return StoreHealth(
            self.kind, reachable, ready, location=self.location(), limits=self.limits, **fields
        )

    async def _server_version(self) -> str | None:
        try:
            version = (await self.redis.server_info()).get("redis_version")
        except Exception:
            return None
        return None if version is None else str(version)

    async def close(self) -> None:
        if self._owns_connection:
            await self.redis.close()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self._settings(), "location": self.location()}


def connect(connection: RedisBackend | RedisOptions) -> tuple[RedisBackend, bool]:
    """The backend whose connection to use, and whether the caller owns (closes) it."""
    if isinstance(connection, RedisBackend):
        return connection, False
    backend = RedisBackend(connection)
    backend.redactor = backend.redactor.extended(connection.secrets())
    return backend, True


def text(value: Any) -> str:
    """A reply's bytes or str as str."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def as_map(reply: Any) -> dict[str, Any]:
    """A RESP3 map or a RESP2 flat list of pairs as a dict with str keys."""
    if isinstance(reply, Mapping):
        return {text(k): v for k, v in reply.items()}
    if isinstance(reply, list | tuple):
        return {text(reply[i]): reply[i + 1] for i in range(0, len(reply) - 1, 2)}
    return {}


def number(value: float) -> str:
    """A float as query text, exactly: the shortest text that reads back as the same
    double, so a bound equal to a stored time compares equal (both query languages read
    Python's exponent form too)."""
    return repr(float(value))


def glob_escape(text_: str) -> str:
    """``text_`` matched literally by SCAN MATCH."""
    return "".join("\\" + char if char in GLOB_SPECIAL else char for char in text_)
