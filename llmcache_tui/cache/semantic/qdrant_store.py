"""Qdrant as the semantic tier's vector store: a Qdrant server, or qdrant-client's embedded
mode in a local directory.

One collection holds one point per cached entry. The point id is a UUID derived from the
entry's storage key, so writing a key again replaces its point and deleting by key needs
no lookup. The payload carries what the search filters on (``scope``, ``created_at``,
``expires_at``), what the guards read (``text``, ``key``) and, optionally, the encoded
entry itself (``entry``, base64), so a process that shares only the Qdrant server can
still serve a hit.

The collection is created on the first write, with cosine distance, the configured
quantization and (on a server) payload indexes on the filtered fields. Searching a store
that has no collection yet finds nothing; an existing collection of another dimension or
distance is an error, never silently used.

Embedded mode is synchronous inside qdrant-client (a brute-force scan, filters checked in
Python, one SQLite commit per write), so every embedded call runs on this store's own
worker thread, never on the event loop. qdrant-client itself is imported on first use,
also off the event loop: the import alone takes seconds.

Embedded, the collection is the durable copy and searches are answered from an in-memory
mirror of it (:class:`VectorMirror`: per-scope numpy matrices), since qdrant-client's own
filtered search takes hundreds of milliseconds at 10,000 points. The mirror is loaded by
scrolling the collection on the worker thread, on the first search (or in :meth:`open`).
Every write, delete and sweep updates it in the same worker job as the collection, so the
two change in one order; only this process can have the directory open (qdrant-client
locks it), so nothing else changes the collection behind the mirror. Where a collection
call fails part-way, the mirror drops the record rather than keep one the collection may
have lost. Searching takes about 0.25 µs per vector of the scope (one memory-bound pass
over its matrix): small scopes are searched on the event loop, large ones on a search
thread of their own (never the worker, which may be busy with disk commits for seconds),
both under a lock the worker holds only while it changes the mirror.

``records`` pages through the collection with Qdrant's scroll (payloads, no vectors), the
cursor being the next point id. A collection LiteLLM's proxy wrote (points whose payload is
only ``text`` and ``response``) is recognised from a few of its points: listed and ranked
by the unscoped search as LiteLLM's, never written into.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar
from urllib.parse import urlsplit

from llmcache_tui.cache.semantic import litellm_formats
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
    VectorStore,
    VectorStoreError,
)
from llmcache_tui.cache.semantic.vector_mirror import decode_entry
from llmcache_tui.redact import Redactor

if TYPE_CHECKING:
    from qdrant_client import AsyncQdrantClient, models

    from llmcache_tui.cache.semantic.vector_mirror import VectorMirror

log = logging.getLogger("llmcache_tui.cache.semantic")

T = TypeVar("T")
Operation = Callable[["AsyncQdrantClient"], Coroutine[Any, Any, T]]

QUANTIZATIONS: Final = ("binary", "scalar", "product")
DEFAULT_COLLECTION: Final = "llmcache"
DEFAULT_TIMEOUT: Final = 5.0
INSTALL_HINT: Final = "pip install 'llmcache-tui[semantic]'"
# Stored as expires_at for "never", so the search filter stays one range on an indexed
# field; about 31 million years from now, beyond any real expiry.
NEVER: Final = 1e15
# qdrant-client warns when an embedded collection holds more points than this.
EMBEDDED_ADVISED_POINTS: Final = 20_000
# Changing this orphans every point already stored: their ids would no longer match.
_KEY_NAMESPACE: Final = uuid.UUID("3bcbbf2a-a0a8-47d4-bdc0-3c6e22ba0859")
# Candidates fetched with the quantized vectors per result, then rescored with the
# original ones: the coarser the code, the more candidates it takes to keep the true top.
_OVERSAMPLING: Final = {"binary": 3.0, "scalar": 2.0, "product": 4.0}
_DELETE_CHUNK: Final = 256
# A server's points scrolled at most for the similarity statistics, and per call.
SAMPLE_SCAN: Final = 5_000
_SAMPLE_PAGE: Final = 500
# Points looked at to tell a collection of LiteLLM's from ours.
_SAMPLE_POINTS: Final = 16
# Payload fields a listing reads: never the encoded entries, which may be large.
_LISTED_FIELDS: Final = ["key", "scope", "text", "created_at", "expires_at", "response"]
# Points per scroll call when loading the mirror. The embedded client sorts every id on
# each call, so pages are large: a few calls for the largest advised collection.
_LOAD_PAGE: Final = 5_000
# Scopes of up to this many rows are searched on the event loop (up to about 4 ms on a
# quiet core); larger ones on a thread of their own, where the loop runs on meanwhile.
# The hop costs the search itself 1 ms or more on a busy machine, so it is kept for
# scopes where the loop would otherwise stall longest. Not the worker: it may be busy for
# seconds (a sweep).
_INLINE_ROWS: Final = 16_384

EMBEDDED_LIMITS: Final = (
    "Embedded Qdrant: only one process at a time can open its directory; a second one"
    " (another proxy, or the terminal app while a proxy has it open) gets an error instead"
    " of sharing it.",
    "Embedded Qdrant is meant for small collections: qdrant-client holds every point in"
    " memory and this store a second copy of the vectors and entries to search, loaded from"
    " the directory on the first search (about two seconds per 10,000 points); qdrant-client"
    f" warns above {EMBEDDED_ADVISED_POINTS:,} points. Set qdrant_api_base"
    " (QDRANT_API_BASE) to use a Qdrant server for more.",
    "Embedded Qdrant commits every write to disk on its own, and has no quantization or"
    " payload indexes (the settings are kept for a server).",
)


def point_id(key: str) -> str:
    """The point id of an entry key: the same key always gives the same UUID."""
    return str(uuid.uuid5(_KEY_NAMESPACE, key))


def parse_quantization(name: str | None) -> str | None:
    """``binary``, ``scalar``, ``product`` (any case) or None; ValueError otherwise."""
    if name is None:
        return None
    cleaned = str(name).strip().lower()
    if cleaned in ("", "none"):
        return None
    if cleaned not in QUANTIZATIONS:
        raise ValueError(
            f"unknown Qdrant quantization {name!r}: use binary, scalar or product,"
            " or leave it unset for none"
        )
    return cleaned


class QdrantStore(VectorStore):
    """Vectors in one Qdrant collection, on a server (``url``) or embedded (``path``).

    ``url`` is the server's base URL as written (``https://host`` means port 443, not
    6333); ``api_key`` is sent as Qdrant's ``api-key`` header and never shown. Without
    ``url``, ``path`` is the directory of an embedded store (created if missing), which
    only one process can open at a time. ``quantization`` is ``binary``, ``scalar``
    (int8), ``product`` (x16) or None. ``timeout`` bounds every call in seconds.

    Nothing is imported, opened or connected here: that happens on first use, or in
    :meth:`open`, which a caller may await at startup to pay for it early.
    """

    kind: ClassVar[str] = "qdrant"

    def __init__(
        self,
        dimension: int,
        *,
        collection: str = DEFAULT_COLLECTION,
        url: str | None = None,
        api_key: str | None = None,
        path: str | Path | None = None,
        quantization: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(dimension)
        if not collection or not collection.strip():
            raise ValueError("the Qdrant collection name must not be empty")
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        if url and path:
            raise ValueError("give either a Qdrant server URL or an embedded path, not both")
        if not url and not path:
            raise ValueError("give a Qdrant server URL, or a directory path for embedded Qdrant")
        self.quantization = parse_quantization(quantization)
        if importlib.util.find_spec("qdrant_client") is None:
            raise VectorStoreError(f"the Qdrant vector store needs qdrant-client: {INSTALL_HINT}")
        self.collection = collection
        self.timeout = float(timeout)
        self.embedded = not url
        self._api_key = api_key or None
        self._redactor = Redactor([api_key] if api_key else [])
        if url:
            self._url = _server_url(url)
            self.location = self._url
        else:
            self.path = Path(str(path)).expanduser()
            self.location = str(self.path)
        self._client: AsyncQdrantClient | None = None  # the server's; the worker owns embedded
        self._open_lock = asyncio.Lock()
        self._collection_lock = asyncio.Lock()
        self._collection_ready = False
        self._closed = False
        # Embedded mode: one worker thread owns the client (opened there, used only there),
        # which also serialises calls, as the embedded client is not thread-safe.
        self._worker: ThreadPoolExecutor | None = None
        self._worker_loop: asyncio.AbstractEventLoop | None = None
        self._embedded_client: AsyncQdrantClient | None = None
        # Embedded mode: the in-memory copy searches are answered from (None until loaded).
        # Changed only on the worker thread, searched on the event loop, both under the lock.
        self._mirror: VectorMirror | None = None
        self._mirror_lock = threading.Lock()
        self._mirror_load_seconds: float | None = None
        self._searcher: ThreadPoolExecutor | None = None  # searches of large scopes
        # Whether the collection is LiteLLM's, once a non-empty one has been looked at.
        self._litellm: bool | None = None

    # -- the VectorStore interface ------------------------------------------------------

    async def add(self, record: VectorRecord) -> None:
        values = self._values(record.vector)
        payload: dict[str, Any] = {
            "key": record.key,
            "scope": record.scope,
            "text": record.text,
            "created_at": float(record.created_at),
            "expires_at": NEVER if record.expires_at is None else float(record.expires_at),
        }
        if record.entry is not None:
            payload["entry"] = base64.b64encode(record.entry).decode("ascii")
        if record.parts is not None:
            payload["parts"] = record.parts  # for the probe only: neither filtered nor indexed

        mirrored = replace(record, vector=values)  # the caller's array may change later

        async def upsert(client: AsyncQdrantClient) -> bool:
            from qdrant_client import models

            try:
                await client.upsert(
                    self.collection,
                    points=[
                        models.PointStruct(id=point_id(record.key), vector=values, payload=payload)
                    ],
                    wait=True,
                )
            except Exception as exc:
                if _collection_missing(exc):
                    self._forget_mirror()
                    return False
                # The old record may be gone from the collection, or the new one in it.
                self._change_mirror(lambda mirror: mirror.remove(record.key))
                raise
            self._change_mirror(lambda mirror: mirror.put(mirrored))
            return True

        await self._ensure_collection(create=True)
        if await self._is_litellm():
            raise litellm_formats.refused_add(self._where(f"collection {self.collection!r}"))
        if not await self._call(upsert, "store a vector"):
            # Deleted behind our back (by an operator, say): create it again, once.
            self._collection_ready = False
            await self._ensure_collection(create=True)
            if not await self._call(upsert, "store a vector"):
                raise VectorStoreError(self._where(f"collection {self.collection!r} vanished"))

    async def search(
        self,
        vector: Vector,
        scope: str | None,
        *,
        limit: int,
        now: float,
        created_after: float | None = None,
    ) -> list[Neighbour]:
        values = self._values(vector)
        if limit <= 0:
            return []
        if not await self._ensure_collection(create=False):
            return []
        if scope is None and await self._is_litellm():
            # No LiteLLM point has a scope, so only the probe's unscoped search meets them.
            return await self._search_litellm(values, limit)
        if self.embedded:
            return await self._search_mirror(
                values, scope, limit=limit, now=now, created_after=created_after
            )
        rescoring = self.quantization

        async def query(client: AsyncQdrantClient) -> list[models.ScoredPoint] | None:
            from qdrant_client import models

            params = None
            if rescoring is not None:
                params = models.SearchParams(
                    quantization=models.QuantizationSearchParams(
                        rescore=True, oversampling=_OVERSAMPLING[rescoring]
                    )
                )
            try:
                response = await client.query_points(
                    self.collection,
                    query=values,
                    query_filter=search_filter(scope, now, created_after),
                    search_params=params,
                    limit=limit,
                    with_payload=True,
                    with_vectors=False,
                )
            except Exception as exc:
                if _collection_missing(exc):
                    return None
                raise
            return response.points

        points = await self._call(query, "search")
        if points is None:
            self._collection_ready = False
            return []
        found = (_neighbour(point) for point in points)
        return [neighbour for neighbour in found if neighbour is not None]

    async def delete(self, keys: Sequence[str]) -> int:
        unique = list(dict.fromkeys(keys))
        ids = [point_id(key) for key in unique]
        if not ids or not await self._ensure_collection(create=False):
            return 0

        def unmirror(mirror: VectorMirror) -> None:
            for key in unique:
                mirror.remove(key)

        async def remove(client: AsyncQdrantClient) -> int:
            from qdrant_client import models

            # First, so that a delete failing part-way leaves nothing searchable that the
            # collection may no longer have.
            self._change_mirror(unmirror)
            removed = 0
            for start in range(0, len(ids), _DELETE_CHUNK):
                chunk = ids[start : start + _DELETE_CHUNK]
                try:
                    existing = await client.retrieve(
                        self.collection, ids=chunk, with_payload=False, with_vectors=False
                    )
                    if existing:
                        await client.delete(
                            self.collection,
                            points_selector=models.PointIdsList(
                                points=[point.id for point in existing]
                            ),
                            wait=True,
                        )
                except Exception as exc:
                    if _collection_missing(exc):
                        self._forget_mirror()
                        return removed
                    raise
                removed += len(existing)
            return removed

        return await self._call(remove, "delete vectors")

    async def sample_vectors(
        self, limit: int, *, now: float, keys: Callable[[str], bool] | None = None
    ) -> VectorSample:
        """Embedded: from the in-memory mirror (every record looked at). On a server: the
        first ``SAMPLE_SCAN`` unexpired points scrolled, filtered by key here."""
        if limit <= 0 or not await self._ensure_collection(create=False):
            return VectorSample([], 0, True)
        if self.embedded:
            if self._mirror is None:
                await self._call(self._load_mirror, "load the collection into memory")
            with self._mirror_lock:
                if self._mirror is None:
                    return VectorSample([], 0, True)
                records, matched = self._mirror.sample_records(limit, now=now, keys=keys)
            return VectorSample(records, matched, True)

        async def scroll(client: AsyncQdrantClient) -> tuple[list[VectorRecord], bool]:
            found: list[VectorRecord] = []
            offset: Any = None
            scanned = 0
            while scanned < SAMPLE_SCAN:
                points, offset = await client.scroll(
                    self.collection,
                    scroll_filter=search_filter(None, now, None),
                    limit=min(_SAMPLE_PAGE, SAMPLE_SCAN - scanned),
                    offset=offset,
                    with_payload=True,
                    with_vectors=True,
                )
                scanned += len(points)
                rows = _mirror_rows(points, self.dimension)
                found += [record for record, _ in rows if keys is None or keys(record.key)]
                if offset is None:
                    return found, True
            return found, False

        records, complete = await self._call(scroll, "list vectors")
        matched = len(records)
        if matched > limit:
            records = random.sample(records, limit)
        return VectorSample(records, matched, complete)

    async def records(self, cursor: str | None, limit: int) -> RecordPage:
        offset = None if cursor is None else json.loads(cursor)

        async def scroll(client: AsyncQdrantClient) -> RecordPage:
            try:
                if not await client.collection_exists(self.collection):
                    return RecordPage([], None, 0)
                points, following = await client.scroll(
                    self.collection,
                    limit=max(1, limit),
                    offset=offset,
                    with_payload=_LISTED_FIELDS,
                    with_vectors=False,
                )
                total = None
                if cursor is None:
                    total = (await client.count(self.collection, exact=self.embedded)).count
            except Exception as exc:
                if _collection_missing(exc):
                    return RecordPage([], None, 0)
                raise
            listed = (_record_info(point.id, point.payload) for point in points)
            return RecordPage(
                [info for info in listed if info is not None],
                None if following is None else json.dumps(following),
                total,
            )

        return await self._call(scroll, "list vectors")

    async def delete_foreign(self, ids: Sequence[str]) -> int:
        wanted = [_point_ref(point) for point in dict.fromkeys(ids)]
        if not wanted:
            return 0

        async def remove(client: AsyncQdrantClient) -> int:
            from qdrant_client import models

            try:
                existing = await client.retrieve(
                    self.collection, ids=wanted, with_payload=True, with_vectors=False
                )
                # Only LiteLLM's points: ours go through delete() with their entries.
                theirs = [p.id for p in existing if litellm_formats.is_qdrant_payload(p.payload)]
                if theirs:
                    await client.delete(
                        self.collection,
                        points_selector=models.PointIdsList(points=theirs),
                        wait=True,
                    )
            except Exception as exc:
                if _collection_missing(exc):
                    return 0
                raise
            return len(theirs)

        return await self._call(remove, "delete LiteLLM's points")

    async def _is_litellm(self) -> bool:
        """Whether the collection holds LiteLLM's points (and none of ours), judged from
        the first few; an empty or missing collection is not (asked again later)."""
        if self._litellm is not None:
            return self._litellm

        async def sample(client: AsyncQdrantClient) -> bool | None:
            try:
                points, _ = await client.scroll(
                    self.collection,
                    limit=_SAMPLE_POINTS,
                    with_payload=_LISTED_FIELDS,
                    with_vectors=False,
                )
            except Exception as exc:
                if _collection_missing(exc):
                    return None
                raise
            if not points:
                return None
            payloads = [point.payload or {} for point in points]
            if any(isinstance(payload.get("key"), str) for payload in payloads):
                return False
            return any(litellm_formats.is_qdrant_payload(payload) for payload in payloads)

        found = await self._call(sample, "read the collection")
        if found is not None:
            self._litellm = found
        return bool(found)

    async def _search_litellm(self, values: list[float], limit: int) -> list[Neighbour]:
        """The nearest of LiteLLM's points, unfiltered (they carry nothing to filter on);
        embedded, by qdrant-client's own scan: the mirror holds only our points."""

        async def query(client: AsyncQdrantClient) -> list[models.ScoredPoint]:
            response = await client.query_points(
                self.collection, query=values, limit=limit, with_payload=True, with_vectors=False
            )
            return response.points

        points = await self._call(query, "search")
        return [
            Neighbour(
                key=str(point.id),
                similarity=float(point.score),
                text=str((point.payload or {}).get("text", "")),
                created_at=math.nan,  # LiteLLM records no time
                origin=LITELLM,
                response=str((point.payload or {}).get("response", "")),
            )
            for point in points
            if litellm_formats.is_qdrant_payload(point.payload)
        ]

    async def sweep(self, now: float) -> int:
        """Remove the vectors expired at ``now``; how many were removed.

        Meant to be called periodically by the semantic tier. On a server it is two calls
        answered from the ``expires_at`` index (a count, then a delete by filter, so the
        count is known without listing ids). Embedded, both scan every point and each
        removal is a disk commit of its own, so sweep an embedded store rarely; the mirror
        drops the same records (searches skip expired ones anyway).
        """
        if not await self._ensure_collection(create=False):
            return 0

        async def expire(client: AsyncQdrantClient) -> int:
            from qdrant_client import models

            expired = models.Filter(
                must=[models.FieldCondition(key="expires_at", range=models.Range(lte=now))]
            )
            self._change_mirror(lambda mirror: mirror.remove_expired(now))
            try:
                count = (
                    await client.count(self.collection, count_filter=expired, exact=True)
                ).count
                if count:
                    await client.delete(
                        self.collection,
                        points_selector=models.FilterSelector(filter=expired),
                        wait=True,
                    )
            except Exception as exc:
                if _collection_missing(exc):
                    self._forget_mirror()
                    return 0
                raise
            return count

        return await self._call(expire, "sweep expired vectors")

    async def health(self) -> StoreHealth:
        details: dict[str, Any] = {
            "mode": "embedded" if self.embedded else "server",
            "collection": self.collection,
            "quantization": self.quantization,
            "expected_dimension": self.dimension,
        }
        limits = EMBEDDED_LIMITS if self.embedded else self._server_limits()
        try:
            info = await self._call(self._read_collection, "read the collection")
        except Exception as exc:  # never raise from health, whatever the client does
            problem = str(exc) if isinstance(exc, VectorStoreError) else self._problem(exc, "read")
            return StoreHealth(
                kind=self.kind,
                reachable=False,
                ready=False,
                dimension=self.dimension,
                location=self.location,
                problem=problem,
                limits=limits,
                details=details,
            )
        details["collection_exists"] = info is not None
        mirrored: int | None = None
        if self.embedded:
            with self._mirror_lock:
                if self._mirror is not None:
                    mirrored = len(self._mirror)
                    details["mirror_scopes"] = self._mirror.scopes
            details["mirror"] = "loads on the first search" if mirrored is None else "loaded"
            if mirrored is not None and self._mirror_load_seconds is not None:
                details["mirror_load_seconds"] = round(self._mirror_load_seconds, 3)
        if info is None:
            details["note"] = "the collection is created on the first write"
            return StoreHealth(
                kind=self.kind,
                reachable=True,
                ready=False,
                dimension=self.dimension,
                vectors=0,
                location=self.location,
                limits=limits,
                details=details,
            )
        size, distance = _vector_params(info)
        details["distance"] = distance
        if self._litellm:
            details["format"] = "LiteLLM's semantic cache: listed and probed, never written"
        if not self.embedded:
            details["collection_quantization"] = _quantization_name(info)
            details["status"] = str(info.status)
        trouble: str | None = None
        try:
            self._check_collection(info)
        except VectorStoreError as exc:
            trouble = str(exc)
        else:
            self._collection_ready = True
        return StoreHealth(
            kind=self.kind,
            reachable=True,
            ready=trouble is None,
            dimension=size if size is not None else self.dimension,
            vectors=info.points_count if mirrored is None else mirrored,
            location=self.location,
            problem=trouble,
            limits=limits,
            details=details,
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._client is not None:
            client, self._client = self._client, None
            try:
                await asyncio.wait_for(client.close(), self.timeout)
            except Exception as exc:
                log.debug("closing the Qdrant client: %s", self._problem(exc, "close"))
        if self._worker is not None:
            worker, self._worker = self._worker, None
            try:
                # Queued behind any running call, so the client closes after it.
                await asyncio.wait_for(
                    asyncio.wrap_future(worker.submit(self._close_embedded)), self.timeout
                )
            except Exception as exc:
                log.debug("closing embedded Qdrant: %s", self._problem(exc, "close"))
            worker.shutdown(wait=False, cancel_futures=True)
        if self._searcher is not None:
            searcher, self._searcher = self._searcher, None
            searcher.shutdown(wait=False, cancel_futures=True)

    def _server_limits(self) -> tuple[str, ...]:
        if self._api_key is not None and self._url.startswith("http://"):
            return ("The API key is sent unencrypted over plain http: use an https URL.",)
        return ()

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "mode": "embedded" if self.embedded else "server",
            "collection": self.collection,
            "location": self.location,
            "quantization": self.quantization,
            "timeout": self.timeout,
            "authenticated": self._api_key is not None,
        }

    # -- opening --------------------------------------------------------------------------

    async def open(self) -> None:
        """Import qdrant-client and open the client (embedded: load the directory, take its
        lock and load the in-memory mirror), off the event loop and without the call
        deadline. Optional: the first call does it anyway, under its deadline, which a
        large embedded collection on a busy machine may not meet (about two seconds per
        10,000 points for the mirror, as much again for the directory)."""
        if self._closed:
            raise VectorStoreError(self._where("the store is closed"))
        try:
            if self.embedded:
                await asyncio.wrap_future(self._executor().submit(self._open_embedded))
                await asyncio.wrap_future(
                    self._executor().submit(self._run_embedded, self._preload_mirror)
                )
            else:
                await self._server_client()
        except VectorStoreError:
            raise
        except Exception as exc:
            raise VectorStoreError(self._problem(exc, "open")) from None

    async def _server_client(self) -> AsyncQdrantClient:
        if self._client is None:
            async with self._open_lock:
                if self._client is None:
                    self._client = await asyncio.to_thread(self._build_server_client)
        return self._client

    def _build_server_client(self) -> AsyncQdrantClient:
        from qdrant_client import AsyncQdrantClient

        return AsyncQdrantClient(
            url=self._url,
            port=None,  # the URL's own port, or its scheme's default
            api_key=self._api_key,
            # qdrant-client takes whole seconds; our own deadline in _call is exact.
            timeout=max(1, math.ceil(self.timeout)),
            # The version check is a request from a thread of its own at construction.
            check_compatibility=False,
        )

    def _executor(self) -> ThreadPoolExecutor:
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-embedded")
        return self._worker

    def _open_embedded(self) -> AsyncQdrantClient:
        """On the worker thread: the embedded client, opened on first use."""
        if self._embedded_client is not None:
            return self._embedded_client
        if self._worker_loop is None:
            self._worker_loop = asyncio.new_event_loop()
        self.path.mkdir(parents=True, exist_ok=True)
        # qdrant-client loads every collection before it tries the lock; checking the lock
        # first makes a refused open cheap, which matters when every request retries it.
        if _lock_taken(self.path):
            raise VectorStoreError(self._locked_message())
        from qdrant_client import AsyncQdrantClient

        try:
            client = AsyncQdrantClient(path=str(self.path))
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise VectorStoreError(self._locked_message()) from None
            raise
        self._embedded_client = client
        return client

    def _run_embedded(self, operation: Operation[T]) -> T:
        """On the worker thread: run one operation on the embedded client."""
        client = self._open_embedded()
        assert self._worker_loop is not None
        return self._worker_loop.run_until_complete(operation(client))

    def _close_embedded(self) -> None:
        self._forget_mirror()
        client, self._embedded_client = self._embedded_client, None
        loop, self._worker_loop = self._worker_loop, None
        try:
            if client is not None and loop is not None:
                loop.run_until_complete(client.close())
        finally:
            if loop is not None:
                loop.close()

    def _locked_message(self) -> str:
        return (
            f"embedded Qdrant at {self.path} is already open in another process (or by"
            " another client in this one); only one process at a time can open an embedded"
            " path. Stop the other one, give each process its own path, or use a Qdrant"
            " server (qdrant_api_base / QDRANT_API_BASE)"
        )

    # -- calls ----------------------------------------------------------------------------

    async def _call(self, operation: Operation[T], what: str) -> T:
        """Run ``operation`` on the client under the deadline; every failure becomes a
        VectorStoreError whose message names the store and never a secret."""
        if self._closed:
            raise VectorStoreError(self._where("the store is closed"))
        try:
            if self.embedded:
                job = self._executor().submit(self._run_embedded, operation)
                # On timeout the wait is cancelled, which cancels the job if it has not
                # started; one already running finishes on the worker (it cannot be
                # interrupted), and later calls queue behind it.
                async with asyncio.timeout(self.timeout):
                    return await asyncio.wrap_future(job)
            client = await self._server_client()
            async with asyncio.timeout(self.timeout):
                return await operation(client)
        except VectorStoreError:
            raise
        except Exception as exc:
            raise VectorStoreError(self._problem(exc, what)) from None

    # -- the embedded mirror ------------------------------------------------------------

    async def _search_mirror(
        self,
        values: list[float],
        scope: str | None,
        *,
        limit: int,
        now: float,
        created_after: float | None,
    ) -> list[Neighbour]:
        """Search the mirror, loading it first if need be: on the event loop, or for a large
        scope on the search thread (numpy lets go of the GIL meanwhile, so the loop runs)."""
        if self._closed:  # the mirror outlives a close whose worker job never ran
            raise VectorStoreError(self._where("the store is closed"))
        if self._mirror is None:
            await self._call(self._load_mirror, "load the collection into memory")
        mirror = self._mirror
        try:
            rows = 0
            if mirror is not None:
                rows = len(mirror) if scope is None else mirror.scope_size(scope)
            if rows > _INLINE_ROWS:
                if self._searcher is None:
                    self._searcher = ThreadPoolExecutor(
                        max_workers=1, thread_name_prefix="qdrant-search"
                    )
                job = self._searcher.submit(
                    self._search_mirror_now, values, scope, limit, now, created_after
                )
                found = await asyncio.wrap_future(job)
            else:
                found = self._search_mirror_now(values, scope, limit, now, created_after)
        except Exception as exc:
            raise VectorStoreError(self._problem(exc, "search")) from None
        if found is None:
            self._collection_ready = False  # the collection vanished meanwhile
            return []
        return found

    def _search_mirror_now(
        self, values: list[float], scope: str | None, limit: int, now: float, after: float | None
    ) -> list[Neighbour] | None:
        with self._mirror_lock:
            if self._mirror is None:
                return None
            return self._mirror.search(values, scope, limit=limit, now=now, created_after=after)

    async def _load_mirror(self, client: AsyncQdrantClient) -> bool:
        """On the worker thread: fill the mirror from the collection, unless it is loaded;
        False when there is no collection."""
        from llmcache_tui.cache.semantic.vector_mirror import VectorMirror

        if self._mirror is not None:
            return True  # another search loaded it while this one waited
        started = time.perf_counter()
        records: list[tuple[VectorRecord, str | None]] = []
        offset: Any = None
        try:
            while True:
                points, offset = await client.scroll(
                    self.collection,
                    limit=_LOAD_PAGE,
                    offset=offset,
                    with_payload=True,
                    with_vectors=True,
                )
                records.extend(_mirror_rows(points, self.dimension))
                if offset is None:
                    break
        except Exception as exc:
            if _collection_missing(exc):
                return False
            raise
        mirror = VectorMirror.build(self.dimension, records)
        with self._mirror_lock:
            self._mirror = mirror
        self._mirror_load_seconds = time.perf_counter() - started
        log.info(
            "embedded Qdrant at %s: %d vectors in %d scopes loaded into memory in %.2f s",
            self.location,
            len(mirror),
            mirror.scopes,
            self._mirror_load_seconds,
        )
        return True

    async def _preload_mirror(self, client: AsyncQdrantClient) -> None:
        """On the worker thread, for :meth:`open`: load the mirror if the collection exists
        and fits; a collection that does not fit is left for the first call to report."""
        info = await self._read_collection(client)
        if info is None:
            return
        try:
            self._check_collection(info)
        except VectorStoreError:
            return
        await self._load_mirror(client)

    def _change_mirror(self, change: Callable[[VectorMirror], object]) -> None:
        """On the worker thread: apply ``change`` to the mirror, if it is loaded. Should it
        fail, the mirror is dropped (and loaded again by the next search) rather than left
        out of step with the collection."""
        with self._mirror_lock:
            if self._mirror is None:
                return
            try:
                change(self._mirror)
            except Exception as exc:
                self._mirror = None
                log.warning(
                    "%s", self._where(f"in-memory copy dropped, to be reloaded: {_short(str(exc))}")
                )

    def _forget_mirror(self) -> None:
        with self._mirror_lock:
            self._mirror = None

    async def _read_collection(self, client: AsyncQdrantClient) -> models.CollectionInfo | None:
        if not await client.collection_exists(self.collection):
            return None
        try:
            return await client.get_collection(self.collection)
        except Exception as exc:
            if _collection_missing(exc):
                return None
            raise

    async def _create_collection(self, client: AsyncQdrantClient) -> None:
        from qdrant_client import models
        from qdrant_client.http.exceptions import UnexpectedResponse

        vectors = models.VectorParams(size=self.dimension, distance=models.Distance.COSINE)
        try:
            if self.embedded:
                # The embedded client ignores quantization and payload storage settings.
                await client.create_collection(self.collection, vectors_config=vectors)
                return
            await client.create_collection(
                self.collection,
                vectors_config=vectors,
                quantization_config=_quantization_config(self.quantization),
                # Payloads hold whole entries; keep them out of RAM (the indexes are not).
                on_disk_payload=True,
            )
        except UnexpectedResponse as exc:
            if exc.status_code != 409:  # 409: another process created it first
                raise
        # Payload indexes are what keep filtered search fast on a server (the embedded
        # client ignores them and warns). Creating an existing one is harmless.
        for field, schema in (
            ("scope", models.PayloadSchemaType.KEYWORD),
            ("expires_at", models.PayloadSchemaType.FLOAT),
            ("created_at", models.PayloadSchemaType.FLOAT),
        ):
            await client.create_payload_index(
                self.collection, field_name=field, field_schema=schema, wait=True
            )

    async def _ensure_collection(self, *, create: bool) -> bool:
        """Whether the collection exists with our dimension; create it when asked."""
        if self._collection_ready:
            return True
        async with self._collection_lock:
            if self._collection_ready:
                return True
            info = await self._call(self._read_collection, "read the collection")
            if info is None:
                if not create:
                    return False
                await self._call(self._create_collection, "create the collection")
                info = await self._call(self._read_collection, "read the collection")
                if info is None:
                    raise VectorStoreError(
                        self._where(f"collection {self.collection!r} is missing after creation")
                    )
            self._check_collection(info)
            self._collection_ready = True
            return True

    def _check_collection(self, info: models.CollectionInfo) -> None:
        vectors = info.config.params.vectors
        if not _is_single_vector(vectors):
            raise VectorStoreError(
                self._where(
                    f"collection {self.collection!r} has named vectors or none; this store"
                    " needs one unnamed vector per point: set another qdrant_collection_name"
                )
            )
        size, distance = _vector_params(info)
        if size != self.dimension:
            raise VectorDimensionError(
                self._where(
                    f"collection {self.collection!r} holds {size}-dimensional vectors, but"
                    f" the embedder makes {self.dimension}-dimensional ones: set another"
                    " qdrant_collection_name, or use the embedder the collection was built with"
                )
            )
        if distance != "Cosine":
            raise VectorStoreError(
                self._where(
                    f"collection {self.collection!r} uses {distance} distance, but similarities"
                    " here are cosines: set another qdrant_collection_name"
                )
            )

    def _values(self, vector: Vector) -> list[float]:
        tolist = getattr(vector, "tolist", None)
        values = [float(x) for x in (tolist() if callable(tolist) else vector)]
        if len(values) != self.dimension:
            raise VectorDimensionError(
                f"a vector of {len(values)} values for a {self.dimension}-dimensional store"
            )
        if not all(map(math.isfinite, values)):
            raise VectorStoreError("a vector with a non-finite value (NaN or infinity)")
        return values

    # -- messages -------------------------------------------------------------------------

    def _where(self, text: str) -> str:
        mode = "embedded Qdrant" if self.embedded else "Qdrant"
        return self._redactor.scrub(f"{mode} at {self.location}: {text}")

    def _problem(self, exc: BaseException, what: str) -> str:
        """A one-line, secret-free reason for a failed ``what``."""
        return self._where(f"could not {what}: {self._reason(exc)}")

    def _reason(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return f"no answer within {self.timeout:g} s"
        if self.embedded:
            if isinstance(exc, OSError):
                return exc.strerror or type(exc).__name__
            return _short(f"{type(exc).__name__}: {exc}")
        import httpx  # qdrant-client's own HTTP client, imported with it
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        if isinstance(exc, ResponseHandlingException):
            source = exc.source
            if isinstance(source, httpx.TimeoutException):
                return f"no answer within {self.timeout:g} s"
            if isinstance(source, httpx.ConnectError):
                return f"cannot connect ({_os_reason(source) or _short(str(source))})"
            return _short(f"{type(source).__name__}: {source}")
        if isinstance(exc, UnexpectedResponse):
            status = f"HTTP {exc.status_code} {exc.reason_phrase}".strip()
            if exc.status_code in (401, 403):
                return f"{status}: the server refused the API key (qdrant_api_key)"
            detail = _server_error(exc.content)
            return f"{status}: {detail}" if detail else status
        return _short(f"{type(exc).__name__}: {exc}")


# -- helpers ------------------------------------------------------------------------------


def _server_url(url: str) -> str:
    """The base URL without userinfo, query or fragment: what is shown and connected to."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("a Qdrant server URL must look like http(s)://host[:port][/prefix]")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("a Qdrant server URL must have a numeric port") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host if port is None else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def _lock_taken(path: Path) -> bool:
    """Whether another client holds the embedded directory's lock (the same lock file and
    locking calls qdrant-client uses, so the answer is its own)."""
    try:
        import portalocker
    except ImportError:
        return False  # let qdrant-client decide
    with open(path / ".lock", "a") as handle:
        try:
            portalocker.lock(
                handle, portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING
            )
        except portalocker.exceptions.LockException:
            return True
        portalocker.unlock(handle)
    return False


def search_filter(scope: str | None, now: float, created_after: float | None) -> models.Filter:
    """The filter every search runs before ranking: this scope (every scope for None),
    unexpired at ``now``, created at or after ``created_after`` when given."""
    from qdrant_client import models

    must: list[Any] = [
        # Unexpired: a later expiry (NEVER included), or none at all (a point written
        # without the field means "never" as well).
        models.Filter(
            should=[
                models.FieldCondition(key="expires_at", range=models.Range(gt=now)),
                models.IsEmptyCondition(is_empty=models.PayloadField(key="expires_at")),
            ]
        ),
    ]
    if scope is not None:
        must.append(models.FieldCondition(key="scope", match=models.MatchValue(value=scope)))
    if created_after is not None:
        must.append(models.FieldCondition(key="created_at", range=models.Range(gte=created_after)))
    return models.Filter(must=must)


def _quantization_config(name: str | None) -> models.QuantizationConfig | None:
    from qdrant_client import models

    # always_ram: the quantized codes are what every search scans first, so they stay in
    # memory (they are small); the originals, read only to rescore, may live on disk.
    if name == "binary":
        return models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
    if name == "scalar":
        return models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(
                type=models.ScalarType.INT8, quantile=0.99, always_ram=True
            )
        )
    if name == "product":
        return models.ProductQuantization(
            product=models.ProductQuantizationConfig(
                compression=models.CompressionRatio.X16, always_ram=True
            )
        )
    return None


def _is_single_vector(vectors: Any) -> bool:
    from qdrant_client import models

    return isinstance(vectors, models.VectorParams)


def _vector_params(info: models.CollectionInfo) -> tuple[int | None, str | None]:
    from qdrant_client import models

    vectors = info.config.params.vectors
    if isinstance(vectors, models.VectorParams):
        distance = vectors.distance
        return vectors.size, getattr(distance, "value", str(distance))
    return None, None


def _quantization_name(info: models.CollectionInfo) -> str | None:
    config = info.config.quantization_config
    if config is None:
        return None
    for name in QUANTIZATIONS:
        if getattr(config, name, None) is not None:
            return name
    return type(config).__name__


def _neighbour(point: models.ScoredPoint) -> Neighbour | None:
    payload = point.payload or {}
    key = payload.get("key")
    if not isinstance(key, str):
        return None  # not one of ours
    return Neighbour(
        key=key,
        similarity=float(point.score),
        text=str(payload.get("text", "")),
        created_at=float(payload.get("created_at", 0.0)),
        expires_at=_expiry(payload.get("expires_at")),
        entry=decode_entry(payload.get("entry")),
        parts=_parts(payload),
    )


def _record_info(point_id: Any, payload: dict[str, Any] | None) -> VectorRecordInfo | None:
    """A scrolled point as the browser lists it: ours, LiteLLM's, or None (neither)."""
    payload = payload or {}
    key, scope = payload.get("key"), payload.get("scope")
    if isinstance(key, str) and isinstance(scope, str):
        created_at = payload.get("created_at")
        return VectorRecordInfo(
            key=key,
            text=str(payload.get("text", "")),
            created_at=float(created_at) if isinstance(created_at, int | float) else None,
            expires_at=_expiry(payload.get("expires_at")),
            scope=scope,
        )
    if litellm_formats.is_qdrant_payload(payload):
        return litellm_formats.qdrant_record(point_id, payload)
    return None


def _point_ref(point: str) -> str | int:
    """A listed point id back as Qdrant takes it: a UUID string, or an unsigned integer."""
    return int(point) if point.isdigit() else point


def _mirror_rows(
    points: Sequence[models.Record], dimension: int
) -> list[tuple[VectorRecord, str | None]]:
    """Scrolled points as the mirror takes them, with each entry's base64 text (the very
    string qdrant-client holds, kept undecoded). Points this store did not write (no key
    or scope: no search could return them) or without a usable vector are left out.

    The vectors of the page become one float32 matrix at once: as lists of Python floats
    they take eight times the memory, so no more than a page of them is alive at a time.
    """
    import numpy as np

    kept: list[tuple[dict[str, Any], list[float]]] = []
    for point in points:
        payload = point.payload or {}
        vector: Any = point.vector
        if isinstance(vector, dict):
            vector = vector.get("")
        if (
            isinstance(payload.get("key"), str)
            and isinstance(payload.get("scope"), str)
            and isinstance(vector, list)
            and len(vector) == dimension
        ):
            kept.append((payload, vector))
    if not kept:
        return []
    matrix = np.asarray([vector for _, vector in kept], dtype=np.float32)
    rows: list[tuple[VectorRecord, str | None]] = []
    for row, (payload, _) in enumerate(kept):
        created_at = payload.get("created_at")
        encoded = payload.get("entry")
        record = VectorRecord(
            key=payload["key"],
            vector=matrix[row],
            scope=payload["scope"],
            text=str(payload.get("text", "")),
            # No creation time fails every created_after, as the filter on the field would.
            created_at=(
                float(created_at)
                if isinstance(created_at, int | float) and not isinstance(created_at, bool)
                else math.nan
            ),
            expires_at=_expiry(payload.get("expires_at")),
            parts=_parts(payload),
        )
        rows.append((record, encoded if isinstance(encoded, str) else None))
    return rows


def _parts(payload: dict[str, Any]) -> str | None:
    """A payload's scope parts JSON (None: a point written before they were kept)."""
    parts = payload.get("parts")
    return parts if isinstance(parts, str) else None


def _expiry(expires_at: Any) -> float | None:
    """A payload's ``expires_at`` as records hold it: None for never (missing or NEVER)."""
    if not isinstance(expires_at, int | float) or expires_at >= NEVER:
        return None
    return float(expires_at)


def _collection_missing(exc: BaseException) -> bool:
    """Whether a points call failed because the collection does not exist."""
    status = getattr(exc, "status_code", None)
    if status == 404:
        return True
    # The embedded client says so with a ValueError.
    return isinstance(exc, ValueError) and "not found" in str(exc).lower()


def _os_reason(exc: BaseException) -> str | None:
    """The operating system's reason ("Connection refused") behind a connection error;
    httpx's own message is a vaguer "All connection attempts failed"."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return current.strerror or "the host name does not resolve"
        if isinstance(current, OSError) and current.errno:
            # asyncio puts the address in strerror; the errno's own text is plainer.
            return os.strerror(current.errno)
        current = current.__cause__ or current.__context__
    return None


def _server_error(content: bytes) -> str:
    """Qdrant's own error sentence from an error response, if it has one."""
    try:
        document = json.loads(content)
    except ValueError:
        return _short(content.decode("utf-8", "replace"))
    status = document.get("status") if isinstance(document, dict) else None
    error = status.get("error") if isinstance(status, dict) else None
    return _short(str(error)) if error else ""


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
