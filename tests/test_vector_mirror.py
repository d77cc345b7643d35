"""The in-memory vector mirror on its own: rows, scopes, filters and ranking.

Searches are checked against a plain-Python cosine ranking of the same records, so every
move, swap-remove, growth and compaction is checked by what a search returns.
"""

from __future__ import annotations

import base64
import math
import random
from collections.abc import Sequence

import pytest

np = pytest.importorskip("numpy")

from llmcache_tui.cache.semantic.store import VectorRecord  # noqa: E402
from llmcache_tui.cache.semantic.vector_mirror import (  # noqa: E402
    INITIAL_CAPACITY,
    VectorMirror,
    decode_entry,
)

NOW = 1_000_000.0
DIMENSION = 6


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def rec(
    key: str,
    vector: Sequence[float],
    scope: str = "s",
    *,
    created_at: float = NOW - 10,
    expires_at: float | None = None,
    entry: bytes | None = None,
) -> VectorRecord:
    return VectorRecord(key, vector, scope, f"text of {key}", created_at, expires_at, entry)


def ranking(
    records: dict[str, VectorRecord], query: Sequence[float], scope: str, now: float
) -> list[tuple[str, float]]:
    """What a search must return, computed the slow, obvious way."""
    found = [
        (record.key, cosine(query, record.vector))
        for record in records.values()
        if record.scope == scope and (record.expires_at is None or record.expires_at > now)
    ]
    return sorted(found, key=lambda item: -item[1])


def assert_search_matches(
    mirror: VectorMirror,
    records: dict[str, VectorRecord],
    query: Sequence[float],
    scope: str,
    *,
    limit: int = 1000,
    now: float = NOW,
) -> None:
    expected = ranking(records, query, scope, now)[:limit]
    found = mirror.search(query, scope, limit=limit, now=now)
    assert [n.key for n in found] == [key for key, _ in expected]
    for neighbour, (_, similarity) in zip(found, expected, strict=True):
        assert neighbour.similarity == pytest.approx(similarity, abs=1e-5)


def random_vector(rng: random.Random) -> list[float]:
    return [rng.gauss(0.0, 1.0) for _ in range(DIMENSION)]


def test_search_ranks_by_cosine_and_returns_the_record() -> None:
    mirror = VectorMirror(DIMENSION)
    entry = b"\x00\xffentry"
    mirror.put(rec("a", [3, 0, 0, 0, 0, 0], expires_at=NOW + 5, entry=entry))
    mirror.put(rec("b", [1, 1, 0, 0, 0, 0]))
    mirror.put(rec("c", [0, 0, 0, 0, 0, 2]))

    found = mirror.search([1, 0.2, 0, 0, 0, 0], "s", limit=2, now=NOW)

    assert [n.key for n in found] == ["a", "b"]
    first = found[0]
    assert first.similarity == pytest.approx(cosine([1, 0.2, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]))
    assert (first.text, first.created_at, first.expires_at, first.entry) == (
        "text of a",
        NOW - 10,
        NOW + 5,
        entry,
    )
    assert found[1].expires_at is None and found[1].entry is None
    assert mirror.search([1, 0, 0, 0, 0, 0], "s", limit=0, now=NOW) == []
    assert mirror.search([1, 0, 0, 0, 0, 0], "other", limit=5, now=NOW) == []


def test_expiry_and_created_after_filter_before_ranking() -> None:
    mirror = VectorMirror(DIMENSION)
    query = [1, 0, 0, 0, 0, 0]
    mirror.put(rec("expired", query, expires_at=NOW))
    mirror.put(rec("old", query, created_at=NOW - 100))
    mirror.put(rec("far", [0, 1, 0, 0, 0, 0], created_at=NOW - 1, expires_at=NOW + 1))

    assert [n.key for n in mirror.search(query, "s", limit=1, now=NOW)] == ["old"]
    found = mirror.search(query, "s", limit=5, now=NOW, created_after=NOW - 50)
    assert [n.key for n in found] == ["far"]
    assert [n.key for n in mirror.search(query, "s", limit=5, now=NOW + 1)] == ["old"]
    assert mirror.search(query, "s", limit=5, now=NOW + 1, created_after=NOW) == []


def test_a_record_without_a_creation_time_fails_every_created_after() -> None:
    mirror = VectorMirror(DIMENSION)
    mirror.put(rec("untimed", [1, 0, 0, 0, 0, 0], created_at=math.nan))

    assert mirror.search([1, 0, 0, 0, 0, 0], "s", limit=5, now=NOW, created_after=-1e300) == []
    [found] = mirror.search([1, 0, 0, 0, 0, 0], "s", limit=5, now=NOW)
    assert found.created_at == 0.0


def test_equal_similarities_come_in_insertion_order() -> None:
    mirror = VectorMirror(DIMENSION)
    for key in "pqrst":
        mirror.put(rec(key, [0, 1, 0, 0, 0, 0]))

    assert [n.key for n in mirror.search([0, 1, 0, 0, 0, 0], "s", limit=3, now=NOW)] == list("pqr")


def test_replacing_a_key_in_place_and_across_scopes() -> None:
    mirror = VectorMirror(DIMENSION)
    mirror.put(rec("k", [1, 0, 0, 0, 0, 0], "a"))
    mirror.put(rec("other", [0, 1, 0, 0, 0, 0], "a"))
    mirror.put(rec("k", [0, 0, 1, 0, 0, 0], "a", expires_at=NOW + 9))

    [found] = mirror.search([0, 0, 1, 0, 0, 0], "a", limit=1, now=NOW)
    assert (found.key, found.expires_at) == ("k", NOW + 9)
    assert found.similarity == pytest.approx(1.0)

    mirror.put(rec("k", [0, 0, 1, 0, 0, 0], "b"))
    assert [n.key for n in mirror.search([0, 0, 1, 0, 0, 0], "a", limit=5, now=NOW)] == ["other"]
    assert [n.key for n in mirror.search([0, 0, 1, 0, 0, 0], "b", limit=5, now=NOW)] == ["k"]
    assert (len(mirror), mirror.scopes) == (2, 2)


def test_removing_keeps_the_other_keys_findable() -> None:
    mirror = VectorMirror(DIMENSION)
    rng = random.Random(1)
    records = {f"k{i}": rec(f"k{i}", random_vector(rng)) for i in range(9)}
    for record in records.values():
        mirror.put(record)

    for key in ("k0", "k8", "k4", "k1"):  # first, last, middle: every swap-remove case
        assert mirror.remove(key)
        del records[key]
        assert_search_matches(mirror, records, random_vector(rng), "s")
    assert not mirror.remove("k0")
    assert "k0" not in mirror and "k2" in mirror
    for key in list(records):
        mirror.remove(key)
    assert (len(mirror), mirror.scopes) == (0, 0)  # an empty scope is dropped
    assert mirror.search([1, 0, 0, 0, 0, 0], "s", limit=5, now=NOW) == []


def test_a_scope_grows_past_its_first_allocation_and_shrinks_back() -> None:
    mirror = VectorMirror(DIMENSION)
    rng = random.Random(2)
    count = INITIAL_CAPACITY * 40 + 3
    records = {f"k{i}": rec(f"k{i}", random_vector(rng)) for i in range(count)}
    for record in records.values():
        mirror.put(record)

    assert mirror.scope_size("s") == count
    for _ in range(3):
        assert_search_matches(mirror, records, random_vector(rng), "s")
        assert_search_matches(mirror, records, random_vector(rng), "s", limit=4)
    for key in list(records)[: count - 3]:
        mirror.remove(key)
        del records[key]
    assert mirror.scope_size("s") == 3
    assert_search_matches(mirror, records, random_vector(rng), "s")


def test_remove_expired_removes_exactly_the_expired_rows() -> None:
    mirror = VectorMirror(DIMENSION)
    rng = random.Random(3)
    records: dict[str, VectorRecord] = {}
    for i in range(60):
        expires = None if i % 3 == 0 else NOW + (i % 5) * 10
        records[f"k{i}"] = rec(f"k{i}", random_vector(rng), f"scope-{i % 4}", expires_at=expires)
        mirror.put(records[f"k{i}"])

    gone = mirror.remove_expired(NOW + 20)

    expected = {
        key
        for key, record in records.items()
        if record.expires_at is not None and record.expires_at <= NOW + 20
    }
    assert set(gone) == expected and len(gone) == len(expected)
    for key in expected:
        del records[key]
        assert key not in mirror
    assert len(mirror) == len(records)
    query = random_vector(rng)
    for scope in ("scope-0", "scope-1", "scope-2", "scope-3"):
        # An earlier "now" proves the rows are gone, not just filtered out.
        assert_search_matches(mirror, records, query, scope, now=NOW - 1000)
    assert mirror.remove_expired(NOW + 20) == []
    # Replacing and removing still find the right rows after compaction.
    survivor = next(iter(records))
    mirror.put(rec(survivor, query, records[survivor].scope))
    records[survivor] = rec(survivor, query, records[survivor].scope)
    assert_search_matches(mirror, records, query, records[survivor].scope)


def test_many_scopes_stay_apart() -> None:
    mirror = VectorMirror(DIMENSION)
    query = [1, 0, 0, 0, 0, 0]
    for scope in range(200):
        mirror.put(rec(f"same-{scope}", query, f"scope-{scope}"))
        mirror.put(rec(f"near-{scope}", [1, 0.1 * scope, 0, 0, 0, 0], f"scope-{scope}"))

    assert mirror.scopes == 200
    for scope in (0, 57, 199):
        found = mirror.search(query, f"scope-{scope}", limit=5, now=NOW)
        assert [n.key for n in found] == [f"same-{scope}", f"near-{scope}"]


def test_a_random_mix_of_operations_matches_the_obvious_model() -> None:
    mirror = VectorMirror(DIMENSION)
    rng = random.Random(4)
    records: dict[str, VectorRecord] = {}
    for step in range(600):
        key = f"k{rng.randrange(80)}"
        action = rng.random()
        if action < 0.6:
            expires = rng.choice([None, NOW + rng.uniform(-50, 50)])
            record = rec(key, random_vector(rng), f"s{rng.randrange(5)}", expires_at=expires)
            mirror.put(record)
            records[key] = record
        elif action < 0.9:
            assert mirror.remove(key) == (key in records)
            records.pop(key, None)
        else:
            now = NOW + rng.uniform(-50, 50)
            mirror.remove_expired(now)
            records = {
                k: r for k, r in records.items() if r.expires_at is None or r.expires_at > now
            }
        if step % 20 == 0:
            scope = f"s{rng.randrange(5)}"
            assert_search_matches(mirror, records, random_vector(rng), scope, now=NOW - 100)
    assert len(mirror) == len(records)


def test_build_fills_scopes_at_once_and_keeps_the_last_record_of_a_key() -> None:
    rng = random.Random(5)
    entry = b"stored entry"
    items: list[tuple[VectorRecord, str | None]] = [
        (rec("a", random_vector(rng), "x"), base64.b64encode(entry).decode("ascii")),
        (rec("b", random_vector(rng), "x"), None),
        (rec("a", [0, 0, 0, 0, 1, 0], "y"), None),  # a later record of "a" wins
        (rec("bad", [math.nan] * DIMENSION, "x"), None),  # left out
        (rec("c", np.asarray(random_vector(rng), dtype=np.float32), "y"), "not base64!"),
    ]

    mirror = VectorMirror.build(DIMENSION, items)

    assert (len(mirror), mirror.scopes) == (3, 2)
    assert "bad" not in mirror
    assert [n.key for n in mirror.search([0, 0, 0, 0, 1, 0], "x", limit=5, now=NOW)] == ["b"]
    found = {n.key: n for n in mirror.search([0, 0, 0, 0, 1, 0], "y", limit=5, now=NOW)}
    assert found["a"].similarity == pytest.approx(1.0)
    assert found["c"].entry is None  # unreadable: no entry rather than a wrong one
    built = VectorMirror.build(DIMENSION, [(rec("e", [1, 0, 0, 0, 0, 0]), "c3RvcmVk")])
    assert built.search([1, 0, 0, 0, 0, 0], "s", limit=1, now=NOW)[0].entry == b"stored"
    # A mirror that was built takes later writes like any other.
    mirror.put(rec("d", [0, 0, 0, 0, 1, 0], "x"))
    assert [n.key for n in mirror.search([0, 0, 0, 0, 1, 0], "x", limit=1, now=NOW)] == ["d"]


def test_vectors_are_normalised_and_bad_ones_refused() -> None:
    mirror = VectorMirror(DIMENSION)
    mirror.put(rec("long", [100, 0, 0, 0, 0, 0]))
    mirror.put(rec("zero", [0] * DIMENSION))

    found = {n.key: n.similarity for n in mirror.search([5, 0, 0, 0, 0, 0], "s", limit=5, now=NOW)}
    assert found == {"long": pytest.approx(1.0), "zero": 0.0}
    with pytest.raises(ValueError, match="non-finite"):
        mirror.put(rec("nan", [math.nan, 0, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="5 values for a 6-dimensional"):
        mirror.put(rec("short", [1, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="non-finite"):
        mirror.search([math.inf, 0, 0, 0, 0, 0], "s", limit=1, now=NOW)
    assert "nan" not in mirror and "short" not in mirror


def test_decode_entry() -> None:
    assert decode_entry(b"raw") == b"raw"
    assert decode_entry(base64.b64encode(b"\x00\x01").decode()) == b"\x00\x01"
    assert decode_entry("é") is None
    assert decode_entry("***") is None
    assert decode_entry(None) is None
    assert decode_entry(3) is None


def test_each_scope_keeps_its_parts_for_every_record_of_it() -> None:
    """The parts are a function of the scope: a record written before they were kept is
    returned with its scope's, once a newer record of that scope brought them."""
    old = rec("old", [1, 0, 0, 0, 0, 0], "s")
    new = VectorRecord("new", [0.9, 0.1, 0, 0, 0, 0], "s", "t", NOW - 10, parts='{"d":{}}')
    bare = rec("bare", [1, 0, 0, 0, 0, 0], "t")
    mirror = VectorMirror.build(DIMENSION, [(old, None), (bare, None)])
    assert [n.parts for n in mirror.search([1, 0, 0, 0, 0, 0], None, limit=5, now=NOW)] == [
        None,
        None,
    ]

    mirror.put(new)

    found = {n.key: n.parts for n in mirror.search([1, 0, 0, 0, 0, 0], None, limit=5, now=NOW)}
    assert found == {"old": '{"d":{}}', "new": '{"d":{}}', "bare": None}
    built = VectorMirror.build(DIMENSION, [(old, None), (new, None)])
    assert {n.parts for n in built.search([1, 0, 0, 0, 0, 0], "s", limit=5, now=NOW)} == {
        '{"d":{}}'
    }
    records, _ = built.sample_records(5, now=NOW)
    assert {r.parts for r in records} == {'{"d":{}}'}
