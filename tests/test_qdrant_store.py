"""The Qdrant vector store on qdrant-client's embedded mode, in a temporary directory.

Every test runs the real embedded client; the server-mode tests use addresses on this
machine where no Qdrant answers (a closed port, a socket that never replies), since no
Qdrant server runs in the test environment. Times passed to the store (``now``,
``created_at``, ``expires_at``) are explicit numbers: nothing sleeps.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("qdrant_client")

from llmcache_tui.cache.semantic.qdrant_store import (
    NEVER,
    QdrantStore,
    parse_quantization,
    point_id,
)
from llmcache_tui.cache.semantic.store import (
    Neighbour,
    VectorDimensionError,
    VectorRecord,
    VectorStoreError,
)
from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_000_000.0
# A bound for calls that must fail fast; generous, so a loaded machine does not fail them.
GUARD = 10.0

MakeStore = Callable[..., QdrantStore]


def same_neighbours(found: Sequence[Neighbour], expected: Sequence[Neighbour]) -> bool:
    """Equal in every field, similarities to float32 rounding (a reopened collection holds
    the vectors as qdrant-client normalised them, a hair from this store's own rounding)."""
    return len(found) == len(expected) and all(
        replace(a, similarity=0.0) == replace(b, similarity=0.0)
        and a.similarity == pytest.approx(b.similarity, abs=1e-6)
        for a, b in zip(found, expected, strict=True)
    )


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def record(
    key: str,
    vector: Sequence[float],
    *,
    scope: str = "s",
    created_at: float = NOW - 10,
    expires_at: float | None = None,
    entry: bytes | None = None,
) -> VectorRecord:
    return VectorRecord(
        key=key,
        vector=vector,
        scope=scope,
        text=f"text of {key}",
        created_at=created_at,
        expires_at=expires_at,
        entry=entry,
    )


@pytest.fixture
async def make_store(tmp_path: Path) -> AsyncIterator[MakeStore]:
    """Stores on ``tmp_path / "qdrant"`` (or as given), all closed after the test."""
    made: list[QdrantStore] = []

    def make(dimension: int = 4, **options: Any) -> QdrantStore:
        if "url" not in options:
            options.setdefault("path", tmp_path / "qdrant")
        store = QdrantStore(dimension, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


# --------------------------------------------------------------------------- round trip


async def test_search_returns_cosine_similarities_best_first(make_store: MakeStore) -> None:
    store = make_store()
    vectors = {"a": [1.0, 0.0, 0.0, 0.0], "b": [1.0, 1.0, 0.0, 0.0], "c": [0.0, 0.0, 1.0, 0.2]}
    for key, vector in vectors.items():
        await store.add(record(key, vector))
    query = [0.9, 0.3, 0.1, 0.0]

    found = await store.search(query, "s", limit=3, now=NOW)

    assert [n.key for n in found] == ["a", "b", "c"]
    for neighbour in found:
        assert neighbour.similarity == pytest.approx(cosine(query, vectors[neighbour.key]), 1e-5)
        assert neighbour.text == f"text of {neighbour.key}"
        assert neighbour.created_at == NOW - 10
        assert neighbour.expires_at is None
    assert [n.key for n in await store.search(query, "s", limit=1, now=NOW)] == ["a"]


async def test_entry_bytes_and_expiry_come_back_as_written(make_store: MakeStore) -> None:
    store = make_store()
    entry = bytes(range(256)) + '{"v": 1, "text": "é"}'.encode()
    await store.add(record("k", [0.0, 1.0, 0.0, 0.0], expires_at=NOW + 60, entry=entry))
    await store.add(record("bare", [0.0, 1.0, 0.1, 0.0]))

    found = {n.key: n for n in await store.search([0, 1, 0, 0], "s", limit=5, now=NOW)}

    assert found["k"].entry == entry
    assert found["k"].expires_at == NOW + 60
    assert found["bare"].entry is None
    assert found["bare"].expires_at is None


async def test_numpy_rows_are_accepted(make_store: MakeStore) -> None:
    np = pytest.importorskip("numpy")
    store = make_store()
    rows = np.eye(4, dtype=np.float32)
    for i, row in enumerate(rows):
        await store.add(record(f"k{i}", row))

    found = await store.search(rows[2], "s", limit=1, now=NOW)

    assert found[0].key == "k2"
    assert found[0].similarity == pytest.approx(1.0, abs=1e-6)


async def test_a_vector_of_the_wrong_length_is_a_dimension_error(make_store: MakeStore) -> None:
    store = make_store()
    with pytest.raises(VectorDimensionError, match="3 values for a 4-dimensional"):
        await store.add(record("k", [1.0, 0.0, 0.0]))
    with pytest.raises(VectorDimensionError):
        await store.search([1.0] * 5, "s", limit=1, now=NOW)


# --------------------------------------------------------------------------- filters


async def test_a_closer_vector_in_another_scope_is_never_returned(make_store: MakeStore) -> None:
    store = make_store()
    query = [1.0, 0.0, 0.0, 0.0]
    await store.add(record("other", query, scope="tenant-b"))  # identical to the query
    await store.add(record("mine", [0.2, 1.0, 0.0, 0.0], scope="tenant-a"))

    found = await store.search(query, "tenant-a", limit=10, now=NOW)

    assert [n.key for n in found] == ["mine"]
    assert await store.search(query, "tenant-c", limit=10, now=NOW) == []


async def test_an_expired_record_is_never_returned_even_when_nearest(
    make_store: MakeStore,
) -> None:
    store = make_store()
    query = [1.0, 0.0, 0.0, 0.0]
    await store.add(record("expired", query, expires_at=NOW - 1))
    await store.add(record("at-now", query, expires_at=NOW))  # expired at its expiry time
    await store.add(record("live", [0.5, 1.0, 0.0, 0.0], expires_at=NOW + 1))
    await store.add(record("forever", [0.0, 1.0, 1.0, 0.0]))

    found = await store.search(query, "s", limit=10, now=NOW)
    assert [n.key for n in found] == ["live", "forever"]

    earlier = await store.search(query, "s", limit=10, now=NOW - 2)
    assert [n.key for n in earlier][:2] in (["expired", "at-now"], ["at-now", "expired"])
    later = await store.search(query, "s", limit=10, now=NOW + 10)
    assert [n.key for n in later] == ["forever"]


async def test_created_after_keeps_only_records_at_or_after_it(make_store: MakeStore) -> None:
    store = make_store()
    query = [1.0, 0.0, 0.0, 0.0]
    await store.add(record("old", query, created_at=NOW - 100))
    await store.add(record("edge", [1.0, 0.1, 0.0, 0.0], created_at=NOW - 50))
    await store.add(record("new", [1.0, 0.5, 0.0, 0.0], created_at=NOW - 10))

    found = await store.search(query, "s", limit=10, now=NOW, created_after=NOW - 50)
    assert [n.key for n in found] == ["edge", "new"]
    assert len(await store.search(query, "s", limit=10, now=NOW)) == 3


async def test_a_point_written_without_expires_at_never_expires(
    make_store: MakeStore, tmp_path: Path
) -> None:
    """Points stored without the field (an older or another writer) mean "never": the
    search finds them and sweep leaves them."""
    from qdrant_client import AsyncQdrantClient, models

    path = tmp_path / "qdrant"
    client = AsyncQdrantClient(path=str(path))
    await client.create_collection(
        "llmcache", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE)
    )
    payload = {"key": "legacy", "scope": "s", "text": "old", "created_at": NOW - 5}
    await client.upsert(
        "llmcache",
        points=[models.PointStruct(id=point_id("legacy"), vector=[1, 0, 0, 0], payload=payload)],
    )
    await client.close()
    store = make_store(path=path)

    found = await store.search([1, 0, 0, 0], "s", limit=5, now=NOW)

    assert [(n.key, n.expires_at) for n in found] == [("legacy", None)]
    assert await store.sweep(NEVER * 2) == 0
    assert await store.delete(["legacy"]) == 1


# --------------------------------------------------------------------------- writes


async def test_adding_a_key_again_replaces_its_vector(make_store: MakeStore) -> None:
    store = make_store()
    await store.add(record("k", [1.0, 0.0, 0.0, 0.0]))
    await store.add(VectorRecord("k", [0.0, 1.0, 0.0, 0.0], "s", "second text", NOW - 1, NOW + 5))

    found = await store.search([0.0, 1.0, 0.0, 0.0], "s", limit=10, now=NOW)

    assert len(found) == 1
    assert (found[0].text, found[0].created_at, found[0].expires_at) == (
        "second text",
        NOW - 1,
        NOW + 5,
    )
    assert found[0].similarity == pytest.approx(1.0, abs=1e-6)
    assert (await store.health()).vectors == 1


async def test_delete_by_key_counts_what_existed(make_store: MakeStore) -> None:
    store = make_store()
    assert await store.delete(["k1"]) == 0  # no collection yet
    await store.add(record("k1", [1.0, 0.0, 0.0, 0.0]))
    await store.add(record("k2", [0.9, 0.1, 0.0, 0.0]))

    assert await store.delete(["k1", "missing", "k1"]) == 1
    assert await store.delete([]) == 0
    assert await store.delete(["k1"]) == 0
    found = await store.search([1.0, 0.0, 0.0, 0.0], "s", limit=10, now=NOW)
    assert [n.key for n in found] == ["k2"]


async def test_sweep_removes_what_expired_and_counts_it(make_store: MakeStore) -> None:
    store = make_store()
    assert await store.sweep(NOW) == 0  # no collection yet
    await store.add(record("soon", [1.0, 0.0, 0.0, 0.0], expires_at=NOW + 100))
    await store.add(record("later", [0.0, 1.0, 0.0, 0.0], expires_at=NOW + 200))
    await store.add(record("never", [0.0, 0.0, 1.0, 0.0]))

    assert await store.sweep(NOW) == 0
    assert await store.sweep(NOW + 100) == 1
    assert await store.sweep(NOW + 100) == 0
    assert await store.sweep(NOW + 10_000) == 1
    assert (await store.health()).vectors == 1
    found = await store.search([0.0, 0.0, 1.0, 0.0], "s", limit=10, now=NOW + 10_000)
    assert [n.key for n in found] == ["never"]


# --------------------------------------------------------------------------- mirror
# Embedded searches are answered from an in-memory copy; the collection is the durable
# one. These tests check that both see every change, by searching before and after the
# directory is reopened (which loads the copy from disk again).


async def test_the_mirror_is_loaded_from_disk_on_reopen(
    make_store: MakeStore, tmp_path: Path
) -> None:
    entry = b"\x00entry\xff" * 50
    first = make_store()
    await first.add(record("a", [1.0, 0.0, 0.0, 0.0], scope="x", expires_at=NOW + 60, entry=entry))
    await first.add(record("b", [0.6, 0.8, 0.0, 0.0], scope="x", created_at=NOW - 30))
    await first.add(record("c", [1.0, 0.0, 0.0, 0.0], scope="y"))
    before = await first.search([1.0, 0.2, 0.0, 0.0], "x", limit=5, now=NOW)
    await first.close()

    second = make_store()
    health = await second.health()
    assert health.details["mirror"] == "loads on the first search"
    assert health.vectors == 3  # from the collection, before the mirror is loaded
    after = await second.search([1.0, 0.2, 0.0, 0.0], "x", limit=5, now=NOW)

    assert [n.key for n in after] == ["a", "b"]
    assert same_neighbours(after, before)
    assert after[0].entry == entry and after[0].expires_at == NOW + 60
    assert after[1].created_at == NOW - 30 and after[1].entry is None
    loaded = await second.health()
    assert (loaded.details["mirror"], loaded.vectors, loaded.details["mirror_scopes"]) == (
        "loaded",
        3,
        2,
    )
    assert loaded.details["mirror_load_seconds"] >= 0


async def test_open_loads_the_mirror(make_store: MakeStore) -> None:
    first = make_store()
    await first.open()  # no collection yet: nothing to load
    assert (await first.health()).details["mirror"] == "loads on the first search"
    await first.add(record("k", [1.0, 0.0, 0.0, 0.0]))
    await first.close()

    second = make_store()
    await second.open()
    assert (await second.health()).details["mirror"] == "loaded"
    assert [n.key for n in await second.search([1, 0, 0, 0], "s", limit=1, now=NOW)] == ["k"]


async def test_writes_after_the_mirror_loads_are_searched_and_kept(
    make_store: MakeStore,
) -> None:
    store = make_store()
    await store.add(record("early", [1.0, 0.0, 0.0, 0.0]))
    await store.search([1.0, 0.0, 0.0, 0.0], "s", limit=1, now=NOW)  # loads the mirror
    await store.add(record("late", [0.0, 1.0, 0.0, 0.0]))

    found = await store.search([0.0, 1.0, 0.0, 0.0], "s", limit=5, now=NOW)
    assert [n.key for n in found] == ["late", "early"]
    await store.close()

    reopened = make_store()
    assert same_neighbours(
        await reopened.search([0.0, 1.0, 0.0, 0.0], "s", limit=5, now=NOW), found
    )


async def test_adding_a_key_with_another_scope_moves_it(make_store: MakeStore) -> None:
    store = make_store()
    await store.add(record("k", [1.0, 0.0, 0.0, 0.0], scope="a"))
    await store.add(record("stay", [0.9, 0.1, 0.0, 0.0], scope="a"))
    await store.search([1.0, 0.0, 0.0, 0.0], "a", limit=5, now=NOW)  # loads the mirror
    await store.add(record("k", [1.0, 0.0, 0.0, 0.0], scope="b"))

    async def keys(scope: str, on: QdrantStore) -> list[str]:
        return [n.key for n in await on.search([1.0, 0.0, 0.0, 0.0], scope, limit=5, now=NOW)]

    assert await keys("a", store) == ["stay"]
    assert await keys("b", store) == ["k"]
    assert (await store.health()).vectors == 2
    await store.close()
    reopened = make_store()
    assert (await keys("a", reopened), await keys("b", reopened)) == (["stay"], ["k"])


async def test_a_deleted_key_is_not_found_now_or_after_reopening(make_store: MakeStore) -> None:
    store = make_store()
    for i in range(4):
        await store.add(record(f"k{i}", [1.0, 0.1 * i, 0.0, 0.0]))
    await store.search([1.0, 0.0, 0.0, 0.0], "s", limit=1, now=NOW)  # loads the mirror

    assert await store.delete(["k0", "k2"]) == 2

    found = await store.search([1.0, 0.0, 0.0, 0.0], "s", limit=5, now=NOW)
    assert [n.key for n in found] == ["k1", "k3"]
    assert (await store.health()).vectors == 2
    await store.close()
    reopened = make_store()
    assert same_neighbours(
        await reopened.search([1.0, 0.0, 0.0, 0.0], "s", limit=5, now=NOW), found
    )


async def test_swept_records_leave_the_mirror_and_the_collection(make_store: MakeStore) -> None:
    store = make_store()
    await store.add(record("short", [1.0, 0.0, 0.0, 0.0], scope="a", expires_at=NOW + 10))
    await store.add(record("long", [0.9, 0.1, 0.0, 0.0], scope="a", expires_at=NOW + 1000))
    await store.add(record("other", [1.0, 0.0, 0.0, 0.0], scope="b", expires_at=NOW + 5))
    await store.add(record("never", [0.8, 0.2, 0.0, 0.0], scope="b"))
    await store.search([1.0, 0.0, 0.0, 0.0], "a", limit=1, now=NOW)  # loads the mirror

    assert await store.sweep(NOW + 10) == 2

    async def keys(scope: str, on: QdrantStore) -> list[str]:
        # An earlier "now": the swept records would pass the filter, so finding none of
        # them shows they are gone, not just filtered out.
        found = await on.search([1.0, 0.0, 0.0, 0.0], scope, limit=5, now=NOW)
        return [n.key for n in found]

    assert (await keys("a", store), await keys("b", store)) == (["long"], ["never"])
    assert (await store.health()).vectors == 2
    await store.close()
    reopened = make_store()
    assert (await keys("a", reopened), await keys("b", reopened)) == (["long"], ["never"])


async def test_many_scopes_each_find_only_their_own(make_store: MakeStore) -> None:
    store = make_store()
    query = [1.0, 0.0, 0.0, 0.0]
    for scope in range(30):
        await store.add(record(f"same-{scope}", query, scope=f"scope-{scope}"))
        await store.add(
            record(f"near-{scope}", [1.0, 0.05 * scope, 0.1, 0.0], scope=f"scope-{scope}")
        )

    for scope in (0, 13, 29):
        found = await store.search(query, f"scope-{scope}", limit=5, now=NOW)
        assert [n.key for n in found] == [f"same-{scope}", f"near-{scope}"]
    assert (await store.health()).details["mirror_scopes"] == 30


async def test_a_scope_larger_than_its_first_allocation(make_store: MakeStore) -> None:
    from llmcache_tui.cache.semantic.vector_mirror import INITIAL_CAPACITY

    store = make_store()
    count = INITIAL_CAPACITY * 16 + 5
    vectors = {
        f"k{i}": [math.sin(i * 1.3), math.cos(i * 0.7), math.sin(i * 0.3 + 1), 0.5]
        for i in range(count)
    }
    await store.add(record("k0", vectors["k0"]))
    await store.search([1.0, 0.0, 0.0, 0.0], "s", limit=1, now=NOW)  # loads the mirror
    for key, vector in list(vectors.items())[1:]:
        await store.add(record(key, vector))
    query = [0.3, -0.5, 0.8, 0.1]
    expected = sorted(vectors, key=lambda key: -cosine(query, vectors[key]))

    found = await store.search(query, "s", limit=count, now=NOW)
    assert [n.key for n in found] == expected
    top = await store.search(query, "s", limit=7, now=NOW)
    assert [n.key for n in top] == expected[:7]
    for neighbour in top:
        assert neighbour.similarity == pytest.approx(cosine(query, vectors[neighbour.key]), 1e-5)
    await store.close()
    reopened = make_store()
    assert [n.key for n in await reopened.search(query, "s", limit=7, now=NOW)] == expected[:7]


@pytest.mark.parametrize("searched_on", ["loop", "search thread"])
async def test_the_mirror_answers_as_qdrant_does(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch, searched_on: str
) -> None:
    """After a random mix of writes, replacements, deletes and sweeps, the mirror's answers
    equal qdrant-client's own filtered search over the same directory, whether a search
    runs on the event loop or (as a large scope's does) on the search thread."""
    from qdrant_client import AsyncQdrantClient

    from llmcache_tui.cache.semantic import qdrant_store
    from llmcache_tui.cache.semantic.qdrant_store import search_filter

    if searched_on == "search thread":
        monkeypatch.setattr(qdrant_store, "_INLINE_ROWS", 0)

    rng = random.Random(11)
    store = make_store(8)
    await store.add(record("seed", [1.0] * 8, scope="s0"))
    await store.search([1.0] * 8, "s0", limit=1, now=NOW)  # loads the mirror
    for _ in range(120):
        key = f"k{rng.randrange(40)}"
        action = rng.random()
        if action < 0.75:
            await store.add(
                record(
                    key,
                    [rng.gauss(0, 1) for _ in range(8)],
                    scope=f"s{rng.randrange(3)}",
                    created_at=NOW - rng.uniform(0, 100),
                    expires_at=rng.choice([None, NOW + rng.uniform(-50, 50)]),
                )
            )
        elif action < 0.95:
            await store.delete([key])
        else:
            await store.sweep(NOW - rng.uniform(0, 50))
    queries = [([rng.gauss(0, 1) for _ in range(8)], f"s{i % 3}") for i in range(9)]
    cases = [(NOW - 60, None), (NOW, None), (NOW - 60, NOW - 50)]
    ours = [
        await store.search(q, scope, limit=6, now=now, created_after=after)
        for q, scope in queries
        for now, after in cases
    ]
    searchers = [t for t in threading.enumerate() if t.name.startswith("qdrant-search")]
    assert bool(searchers) == (searched_on == "search thread")
    await store.close()

    client = AsyncQdrantClient(path=str(store.path))
    try:
        theirs = [
            (
                await client.query_points(
                    "llmcache",
                    query=q,
                    query_filter=search_filter(scope, now, after),
                    limit=6,
                    with_payload=True,
                )
            ).points
            for q, scope in queries
            for now, after in cases
        ]
    finally:
        await client.close()
    assert any(ours)
    for mine, points in zip(ours, theirs, strict=True):
        assert [n.key for n in mine] == [point.payload["key"] for point in points if point.payload]
        for neighbour, point in zip(mine, points, strict=True):
            assert neighbour.similarity == pytest.approx(point.score, abs=1e-5)


async def test_a_closed_store_answers_no_search_from_its_mirror(make_store: MakeStore) -> None:
    store = make_store()
    await store.add(record("k", [1.0, 0.0, 0.0, 0.0]))
    assert await store.search([1.0, 0.0, 0.0, 0.0], "s", limit=1, now=NOW)
    await store.close()
    with pytest.raises(VectorStoreError, match="closed"):
        await store.search([1.0, 0.0, 0.0, 0.0], "s", limit=1, now=NOW)


async def test_a_non_finite_vector_is_refused_before_it_is_stored(make_store: MakeStore) -> None:
    store = make_store()
    with pytest.raises(VectorStoreError, match="non-finite"):
        await store.add(record("nan", [math.nan, 0.0, 0.0, 0.0]))
    with pytest.raises(VectorStoreError, match="non-finite"):
        await store.search([math.inf, 0.0, 0.0, 0.0], "s", limit=1, now=NOW)
    assert (await store.health()).vectors == 0


# --------------------------------------------------------------------------- collection


async def test_reopening_with_another_dimension_is_an_error(
    make_store: MakeStore, tmp_path: Path
) -> None:
    first = make_store(4)
    await first.add(record("k", [1.0, 0.0, 0.0, 0.0]))
    await first.close()

    second = make_store(8, collection="llmcache")
    with pytest.raises(VectorDimensionError) as raised:
        await second.search([1.0] * 8, "s", limit=1, now=NOW)
    message = str(raised.value)
    assert "'llmcache'" in message and "4-dimensional" in message and "8-dimensional" in message
    with pytest.raises(VectorDimensionError):
        await second.add(record("k", [1.0] * 8))
    health = await second.health()
    assert (health.reachable, health.ready, health.dimension) == (True, False, 4)
    assert health.problem is not None and "8-dimensional" in health.problem
    await second.close()

    # Another collection in the same directory is independent.
    third = make_store(8, collection="wide")
    await third.add(record("k", [1.0] * 8))
    assert [n.key for n in await third.search([1.0] * 8, "s", limit=1, now=NOW)] == ["k"]


@pytest.mark.parametrize("quantization", ["binary", "scalar", "product", None])
async def test_each_quantization_gives_a_working_collection(
    make_store: MakeStore, tmp_path: Path, quantization: str | None
) -> None:
    store = make_store(8, path=tmp_path / f"q-{quantization}", quantization=quantization)
    vectors = [[math.sin(i * 0.7 + j) for j in range(8)] for i in range(6)]
    for i, vector in enumerate(vectors):
        await store.add(record(f"k{i}", vector))
    query = [v + 0.01 for v in vectors[3]]

    found = await store.search(query, "s", limit=3, now=NOW)

    assert found[0].key == "k3"
    assert found[0].similarity == pytest.approx(cosine(query, vectors[3]), abs=1e-5)
    assert store.describe()["quantization"] == quantization
    assert (await store.health()).ready


def test_quantization_names_are_checked() -> None:
    assert parse_quantization(" Binary ") == "binary"
    assert parse_quantization(None) is None
    with pytest.raises(ValueError, match="binary, scalar or product"):
        parse_quantization("float16")
    with pytest.raises(ValueError, match="'turbo'"):
        QdrantStore(4, path="/nonexistent", quantization="turbo")


async def test_health_before_and_after_the_first_write(make_store: MakeStore) -> None:
    store = make_store()

    before = await store.health()
    assert (before.kind, before.reachable, before.ready, before.vectors) == (
        "qdrant",
        True,
        False,
        0,
    )
    assert before.problem is None
    assert before.details["mode"] == "embedded"
    assert before.location == str(store.path)
    limits = " ".join(before.limits)
    assert "one process" in limits and "20,000" in limits and "QDRANT_API_BASE" in limits
    assert await store.search([1.0, 0.0, 0.0, 0.0], "s", limit=1, now=NOW) == []
    assert not (await store.health()).ready  # searching creates nothing

    await store.add(record("k1", [1.0, 0.0, 0.0, 0.0]))
    await store.add(record("k2", [0.0, 1.0, 0.0, 0.0]))
    after = await store.health()
    assert (after.reachable, after.ready, after.dimension, after.vectors) == (True, True, 4, 2)
    assert after.details["distance"] == "Cosine"


async def test_the_constructor_touches_nothing(tmp_path: Path) -> None:
    path = tmp_path / "not-yet"
    store = QdrantStore(4, path=path)
    assert not path.exists()
    await store.close()
    with pytest.raises(VectorStoreError, match="closed"):
        await store.search([1.0, 0.0, 0.0, 0.0], "s", limit=1, now=NOW)
    with pytest.raises(ValueError, match="URL"):
        QdrantStore(4)
    with pytest.raises(ValueError, match="not both"):
        QdrantStore(4, url="http://127.0.0.1:6333", path=path)
    with pytest.raises(ValueError, match="http"):
        QdrantStore(4, url="ftp://127.0.0.1")


def test_importing_and_constructing_loads_no_qdrant_client_or_numpy(tmp_path: Path) -> None:
    program = textwrap.dedent(
        f"""
        import sys
        from llmcache_tui.cache.semantic.qdrant_store import QdrantStore
        QdrantStore(4, path={str(tmp_path / "q")!r})
        QdrantStore(4, url="http://127.0.0.1:6333", api_key="k")
        print(sorted(
            m for m in sys.modules if m.split(".")[0] in ("qdrant_client", "httpx", "numpy")
        ))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- one process


async def test_a_second_client_on_the_same_path_gets_a_clear_error(
    make_store: MakeStore,
) -> None:
    first = make_store()
    await first.add(record("k", [1.0, 0.0, 0.0, 0.0]))
    second = make_store()

    health = await second.health()
    assert not health.reachable
    assert health.problem is not None and "already open in another process" in health.problem
    with pytest.raises(VectorStoreError, match="only one process at a time"):
        await second.add(record("k2", [0.0, 1.0, 0.0, 0.0]))
    assert [n.key for n in await first.search([1, 0, 0, 0], "s", limit=5, now=NOW)] == ["k"]

    await first.close()  # releases the directory
    assert [n.key for n in await second.search([1, 0, 0, 0], "s", limit=5, now=NOW)] == ["k"]


async def test_a_second_process_on_the_same_path_gets_a_clear_error(
    make_store: MakeStore,
) -> None:
    first = make_store()
    await first.add(record("k", [1.0, 0.0, 0.0, 0.0]))
    program = textwrap.dedent(
        f"""
        import asyncio, json
        from llmcache_tui.cache.semantic.qdrant_store import QdrantStore
        from llmcache_tui.cache.semantic.store import VectorStoreError

        async def main():
            store = QdrantStore(4, path={str(first.path)!r})
            health = await store.health()
            try:
                await store.search([1.0, 0.0, 0.0, 0.0], "s", limit=1, now=0.0)
                error = None
            except VectorStoreError as exc:
                error = str(exc)
            await store.close()
            print(json.dumps({{"reachable": health.reachable, "problem": health.problem,
                               "error": error}}))

        asyncio.run(main())
        """
    )
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", program],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["reachable"] is False
    assert "already open in another process" in report["problem"]
    assert "only one process at a time" in report["error"]
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- server mode


async def test_an_unreachable_server_fails_fast_and_says_so(make_store: MakeStore) -> None:
    port = free_port()  # closed again: nothing listens there
    secret = "qdrant-key-do-not-show"
    store = make_store(
        url=f"http://admin:hunter22@127.0.0.1:{port}/base?api_key=zzz", api_key=secret, timeout=2
    )

    async with asyncio.timeout(GUARD):
        health = await store.health()
        with pytest.raises(VectorStoreError) as raised:
            await store.search([1.0, 0.0, 0.0, 0.0], "s", limit=1, now=NOW)
        with pytest.raises(VectorStoreError):
            await store.add(record("k", [1.0, 0.0, 0.0, 0.0]))

    assert (health.reachable, health.ready, health.details["mode"]) == (False, False, "server")
    assert health.location == f"http://127.0.0.1:{port}/base"
    assert health.problem is not None
    assert "cannot connect" in health.problem and f"127.0.0.1:{port}" in health.problem
    assert "unencrypted" in " ".join(health.limits)
    shown = " ".join([health.problem, str(raised.value), repr(store.describe())])
    for hidden in (secret, "hunter22", "zzz", "Traceback"):
        assert hidden not in shown
    assert store.describe()["authenticated"] is True


async def test_a_server_that_never_answers_times_out(
    make_store: MakeStore, silent_port: int
) -> None:
    store = make_store(url=f"http://127.0.0.1:{silent_port}", timeout=0.5)
    await store.open()  # the import and client, outside the call's deadline

    async with asyncio.timeout(GUARD):
        health = await store.health()
        with pytest.raises(VectorStoreError, match=r"no answer within 0\.5 s"):
            await store.sweep(NOW)

    assert not health.reachable
    assert health.problem is not None and "no answer within 0.5 s" in health.problem
