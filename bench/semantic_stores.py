"""The three vector stores the semantic benchmarks run on, and realistic data to fill them.

* ``corpus``: real all-MiniLM-L6-v2 vectors of QQP questions, grown to any size by small
  perturbations of them (renormalised), so every vector keeps the real ones' geometry (they
  crowd into a cone, unlike random unit vectors) while each stays distinct; and queries,
  held-out real questions that were never stored.
* ``StoreSite``: one kind of store (embedded Qdrant, Redis 8 with the query engine, Redis 8
  Vector Sets) with its server started from the test extra's wheels, as the tests start
  them, or the reason it cannot run here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmcache_tui.cache.semantic.store import VectorRecord, VectorStore

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Matrix = npt.NDArray[np.float32]

DIMENSION = 384
# Norm of the noise added to a real vector to make a new one: cosine about 0.85 to its
# source, well apart from it and from its siblings, as distinct questions are.
PERTURBATION = 0.6
KINDS = ("qdrant-embedded", "redis-search", "redis-vectorset")
QDRANT_BATCH = 512  # points per qdrant-client upsert when filling (one SQLite commit each)
REDIS_CONCURRENCY = 64  # adds in flight when filling a Redis store


@dataclass(frozen=True, slots=True)
class Corpus:
    """Stored vectors with their scope, and query vectors of questions never stored."""

    vectors: Matrix
    scopes: list[str]
    texts: list[str]
    queries: Matrix
    big_scopes: list[str]
    small_scopes: list[str]  # only those that hold at least one entry


def real_vectors(texts: Sequence[str]) -> Matrix:
    """MiniLM vectors of ``texts``, embedded in batches."""
    import numpy as np

    from llmcache_tui.cache.semantic.local_embedder import LocalEmbedder

    embedder = LocalEmbedder(cache_size=0, timeout=None)
    rows = [embedder.embed_sync(list(texts[i : i + 64])) for i in range(0, len(texts), 64)]
    embedder.close()
    return np.concatenate(rows).astype(np.float32)


def grow(base: Matrix, count: int, seed: int) -> Matrix:
    """``count`` unit vectors: ``base`` itself first, then perturbed copies of its rows."""
    import numpy as np

    if count <= len(base):
        return base[:count].copy()
    rng = np.random.default_rng(seed)
    extra = count - len(base)
    noise = rng.standard_normal((extra, base.shape[1])).astype(np.float32)
    noise *= PERTURBATION / np.linalg.norm(noise, axis=1, keepdims=True)
    grown = base[np.arange(extra) % len(base)] + noise
    grown /= np.linalg.norm(grown, axis=1, keepdims=True)
    return np.concatenate([base, grown]).astype(np.float32)


def spread_scopes(
    count: int, seed: int, *, big: int = 10, small: int = 1000, big_share: float = 0.9
) -> tuple[list[str], list[str], list[str]]:
    """A scope per entry: ``big_share`` of them in ``big`` scopes, the rest over ``small``
    (as one busy app's few models and parameter sets, next to many conversations)."""
    import random

    rng = random.Random(seed)
    big_names = [f"{'b' * 8}{n:056d}" for n in range(big)]
    small_names = [f"{'s' * 8}{n:056d}" for n in range(small)]
    scopes = [
        rng.choice(big_names) if rng.random() < big_share else rng.choice(small_names)
        for _ in range(count)
    ]
    used = set(scopes)
    return scopes, big_names, [name for name in small_names if name in used]


def corpus(base: Matrix, base_texts: Sequence[str], queries: Matrix, count: int) -> Corpus:
    vectors = grow(base, count, seed=count)
    scopes, big, small = spread_scopes(count, seed=count)
    texts = [base_texts[i % len(base_texts)] for i in range(count)]
    return Corpus(vectors, scopes, texts, queries, big, small)


def records(data: Corpus, now: float) -> Iterator[VectorRecord]:
    """The corpus as the tier stores it: created in the last hour, a third never expiring,
    the rest with a day's TTL (all still fresh at ``now``)."""
    for i, vector in enumerate(data.vectors):
        created = now - (i % 3600)
        yield VectorRecord(
            key=f"chat:{i:08x}",
            vector=vector,
            scope=data.scopes[i],
            text=data.texts[i],
            created_at=created,
            expires_at=None if i % 3 == 0 else created + 86_400,
        )


# --------------------------------------------------------------------------- stores


class StoreUnavailable(RuntimeError):
    """A store cannot run here (its server binary, module or client is missing)."""


class StoreSite:
    """One kind of store, its server if it needs one, and a fresh store per fill."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self.directory = directory
        self.server: Any = None
        self._count = 0

    def start(self) -> None:
        """Start the server this kind needs; StoreUnavailable saying why it cannot."""
        if self.kind == "qdrant-embedded":
            try:
                import qdrant_client  # noqa: F401
            except ImportError:
                raise StoreUnavailable("qdrant-client is not installed") from None
            return
        from tests import redis_servers as rs

        try:
            executable = rs.redis8_binary()
            modules = [rs.redisearch_module()] if self.kind == "redis-search" else []
        except rs.ServerUnavailable as exc:
            raise StoreUnavailable(str(exc)) from None
        self.server = rs.redis_server(
            self.directory / self.kind, executable=executable, modules=modules
        ).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def options(self) -> Any:
        """Client options for the Redis server, as the config layer builds them."""
        from llmcache_tui.cache.backends.redis_options import redis_options
        from tests.redis_support import cache_settings

        params = {"host": self.server.host, "port": self.server.port}
        return redis_options(cache_settings(params), env={})

    def new_store(self) -> VectorStore:
        """An empty store of this kind (a new directory, or a flushed server)."""
        self._count += 1
        if self.kind == "qdrant-embedded":
            from llmcache_tui.cache.semantic.qdrant_store import QdrantStore

            path = self.directory / f"qdrant-{self._count}"
            return QdrantStore(DIMENSION, path=path)
        self.server.flushall()
        if self.kind == "redis-search":
            from llmcache_tui.cache.semantic.redis_search_store import RedisSearchStore

            return RedisSearchStore(self.options(), DIMENSION)
        from llmcache_tui.cache.semantic.redis_vset_store import RedisVectorSetStore

        return RedisVectorSetStore(self.options(), DIMENSION)


async def fill(store: VectorStore, data: Corpus, now: float) -> VectorStore:
    """Write the corpus into ``store``; the store to search (embedded Qdrant: reopened).

    Redis stores are filled through ``add``, many at once. Embedded Qdrant is written
    through qdrant-client's own upsert in batches (``add`` goes through the store's worker
    thread one point at a time), in exactly the shape ``QdrantStore.add`` writes, and the
    store is then opened on that directory as a restarted proxy would open it.
    """
    import asyncio

    from llmcache_tui.cache.semantic.qdrant_store import QdrantStore

    if isinstance(store, QdrantStore) and store.embedded:
        await store.close()
        await _fill_embedded_qdrant(store.path, data, now)
        return QdrantStore(DIMENSION, path=store.path)
    pending: set[asyncio.Task[None]] = set()
    for record in records(data, now):
        if len(pending) >= REDIS_CONCURRENCY:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        pending.add(asyncio.create_task(store.add(record)))
    for task in pending:
        await task
    return store


async def _fill_embedded_qdrant(path: Path, data: Corpus, now: float) -> None:
    from qdrant_client import AsyncQdrantClient, models

    from llmcache_tui.cache.semantic.qdrant_store import DEFAULT_COLLECTION, NEVER, point_id

    client = AsyncQdrantClient(path=str(path))
    # Its advice to use a server above 20,000 points is what this measures; once is enough.
    warnings.filterwarnings("ignore", message="Local mode is not recommended")
    try:
        await client.create_collection(
            DEFAULT_COLLECTION,
            vectors_config=models.VectorParams(size=DIMENSION, distance=models.Distance.COSINE),
        )
        batch: list[models.PointStruct] = []
        for record in records(data, now):
            payload = {
                "key": record.key,
                "scope": record.scope,
                "text": record.text,
                "created_at": record.created_at,
                "expires_at": NEVER if record.expires_at is None else record.expires_at,
            }
            vector = record.vector.tolist()  # type: ignore[union-attr]
            batch.append(
                models.PointStruct(id=point_id(record.key), vector=vector, payload=payload)
            )
            if len(batch) == QDRANT_BATCH:
                await client.upsert(DEFAULT_COLLECTION, points=batch)
                batch = []
        if batch:
            await client.upsert(DEFAULT_COLLECTION, points=batch)
    finally:
        await client.close()


@contextmanager
def scratch(*, memory: bool = True) -> Iterator[Path]:
    """A temporary directory, removed afterwards; with ``memory``, on /dev/shm where it
    exists. Embedded Qdrant commits every point to SQLite on its own, batch or not (10,000
    take minutes on a disk), while it searches in memory: a RAM disk changes its fill
    time, not its search time. Redis runs without persistence either way."""
    shm = Path("/dev/shm")
    where = str(shm) if memory and shm.is_dir() and os.access(shm, os.W_OK) else None
    directory = Path(tempfile.mkdtemp(prefix="llmcache-bench-", dir=where))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def seconds_since(started: float) -> float:
    return time.perf_counter() - started
