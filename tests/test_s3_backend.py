"""The backend contract on S3 (moto's server over HTTP), plus what is S3's own: objects,
metadata, listing and batching.

The portable contract tests of tests/test_backends.py are imported and collected here (of
the ResponseCache ones, those whose outcome depends on what the backend stores), where
``harness`` builds the S3 backend from ``cache_params`` (as the proxy does) with an ``s3_path``,
so every object name is prefixed (the bucket root is what the proxy, ``--check`` and terminal
app tests use; ``test_s3_path_...`` below has both side by side). What differs on
S3 by design is tested below against the bucket itself, read with a plain boto3 client: an
entry is one JSON object with its expiry in the ``expires-at`` metadata; listings are
ListObjectsV2 pages (1,000 keys at most, continuation tokens) filtered by the glob's literal
prefix; namespaces are common prefixes on ``:``; deletes go 1,000 keys per DeleteObjects.
Call counts come from the backend's own boto3 client (``ApiCalls``: its event hooks).
An "already expired" object is written with an ``expires-at`` in the distant past, so no
test waits for a TTL to run out; where time must pass, the backend gets a ``FakeClock``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)

from llmcache_tui.cache.backends import CacheBackend, CacheBackendError
from llmcache_tui.cache.backends.base import CacheDataError
from llmcache_tui.cache.backends.s3 import DELETE_BATCH, EXPIRES_AT, S3Backend
from llmcache_tui.cache.backends.tiered import TieredBackend
from llmcache_tui.cache.browse import PurgeProgress, namespace_pattern, purge
from llmcache_tui.cache.entry import CacheEntry
from llmcache_tui.cache.health import probe_backend
from llmcache_tui.cache.service import ResponseCache
from tests.redis_support import build, scan_all, scanned_keys
from tests.s3_server import ApiCalls, S3Bucket
from tests.test_backends import (  # noqa: F401 - collected here, run on S3 by `harness`
    CHAT_RESPONSE,
    FakeClock,
    Harness,
    service,
    test_binary_and_large_values,
    test_close_twice_is_safe,
    test_default_ttl_applies,
    test_expire_changes_ttl,
    test_expire_missing_key_is_false,
    test_expire_rejects_non_positive,
    test_expired_entry_is_gone,
    test_get_many_in_order,
    test_get_set_overwrite,
    test_no_ttl_means_no_expiry,
    test_ping,
    test_scan_count_is_at_least_one,
    test_scan_glob_negation_and_escape,
    test_scan_is_stable_while_keys_are_deleted,
    test_scan_is_stable_while_keys_are_read,
    test_scan_key_info,
    test_scan_names_only_lists_the_same_keys,
    test_scan_namespace_with_glob_characters,
    test_service_hit_and_age,
    test_service_never_serves_foreign_entries,
    test_service_store_uses_ttl,
    test_service_treats_malformed_entry_as_miss,
    test_ttl_is_within_bounds,
    test_ttl_missing_key_raises_key_error,
    test_unicode_keys,
)

S3_PATH = "llm/cache/"
LONG_AGO = "1.000"  # an expires-at one second after the epoch
MS = 0.001  # expires-at is written to the millisecond


@dataclass
class S3Harness(Harness):
    """The S3 backend under test plus the bucket, to look at it with a plain client."""

    bucket: S3Bucket | None = None

    @property
    def s3(self) -> S3Backend:
        assert isinstance(self.backend, S3Backend)
        return self.backend

    @property
    def raw(self) -> S3Bucket:
        assert self.bucket is not None
        return self.bucket

    def name(self, key: str) -> str:
        """The object name of ``key`` (under the configured ``s3_path``)."""
        return self.s3.prefix + key

    async def put_expired(self, key: str, value: bytes) -> None:
        """Written by another process, with an expiry long past (the backend keeps time)."""
        self.raw.put(self.name(key), value, {EXPIRES_AT: LONG_AGO})


async def _harness(bucket: S3Bucket, extra: dict[str, Any]) -> AsyncIterator[S3Harness]:
    backend = build(bucket.params(s3_path=S3_PATH, **extra))
    try:
        yield S3Harness("s3", backend, FakeClock(), bucket=bucket)
    finally:
        await backend.close()


@pytest.fixture
async def harness(s3_bucket: S3Bucket) -> AsyncIterator[S3Harness]:
    async for made in _harness(s3_bucket, {}):
        yield made


@pytest.fixture
async def ttl_harness(s3_bucket: S3Bucket) -> AsyncIterator[S3Harness]:
    """``ttl: 60`` in cache_params: the default expiry of every write."""
    async for made in _harness(s3_bucket, {"ttl": 60}):
        yield made


def _expires_at(bucket: S3Bucket, name: str) -> float | None:
    head = bucket.head(name)
    assert head is not None, f"no object {name}"
    value = head["Metadata"].get(EXPIRES_AT)
    return None if value is None else float(value)


# --------------------------------------------------------------------------- objects


async def test_an_entry_is_one_json_object_with_its_expiry_in_metadata(
    harness: S3Harness,
) -> None:
    backend, bucket = harness.s3, harness.raw
    entry = CacheEntry(
        response=CHAT_RESPONSE,
        route="chat",
        model="gpt-4o-mini",
        prompt_preview="hello",
        created_at=time.time(),
        ttl=100,
    )
    before = time.time()
    assert await ResponseCache(backend).store("team:entry", entry, 100) is True
    await backend.set("team:forever", b"{}")
    after = time.time()

    assert sorted(bucket.names()) == [harness.name("team:entry"), harness.name("team:forever")]
    head = bucket.head(harness.name("team:entry"))
    assert head is not None
    assert head["ContentType"] == "application/json"
    expires_at = float(head["Metadata"][EXPIRES_AT])
    assert before + 100 - MS <= expires_at <= after + 100 + MS
    document = orjson.loads(bucket.body(harness.name("team:entry")))
    assert document["response"] == CHAT_RESPONSE
    assert (document["call_type"], document["model"], document["ttl"]) == (
        "chat",
        "gpt-4o-mini",
        100,
    )
    assert CacheEntry.decode(bucket.body(harness.name("team:entry"))) == entry
    assert _expires_at(bucket, harness.name("team:forever")) is None  # no ttl: no metadata


async def test_an_expired_object_is_a_miss_and_reading_it_removes_it(harness: S3Harness) -> None:
    backend, bucket = harness.s3, harness.raw
    bucket.put(harness.name("gone"), b"old", {EXPIRES_AT: LONG_AGO})
    bucket.put(harness.name("live"), b"new", {EXPIRES_AT: f"{time.time() + 600:.3f}"})
    bucket.put(harness.name("odd"), b"odd", {EXPIRES_AT: "soon"})  # unreadable: no expiry

    assert bucket.head(harness.name("gone")) is not None
    assert await backend.get("gone") is None
    assert bucket.head(harness.name("gone")) is None  # the read removed it
    assert await backend.get("live") == b"new"
    assert await backend.get("odd") == b"odd"
    assert sorted(bucket.names()) == [harness.name("live"), harness.name("odd")]


async def test_time_passing_expires_an_entry(harness: S3Harness) -> None:
    """With the backend's clock moved by hand: listed and readable until the expiry, then
    hidden from TTL and scans, and removed by the first read."""
    backend, bucket, clock = harness.s3, harness.raw, FakeClock(time.time())
    backend.clock = clock
    await backend.set("brief", b"v", 5)
    clock.advance(4.5)
    assert await backend.ttl("brief") == pytest.approx(0.5, abs=0.01)
    assert scanned_keys(await scan_all(backend)) == ["brief"]
    assert await backend.get("brief") == b"v"

    clock.advance(1)
    with pytest.raises(KeyError):
        await backend.ttl("brief")
    assert scanned_keys(await scan_all(backend)) == []
    assert await backend.expire("brief", 60) is False
    assert bucket.head(harness.name("brief")) is not None  # looking did not delete it ...
    assert await backend.get("brief") is None
    assert bucket.head(harness.name("brief")) is None  # ... reading did


async def test_expire_copies_the_object_onto_itself_with_new_metadata(harness: S3Harness) -> None:
    backend, bucket = harness.s3, harness.raw
    await backend.set("k", b'{"x": 1}')
    name = harness.name("k")
    with ApiCalls(backend._client) as calls:
        before = time.time()
        assert await backend.expire("k", 50) is True
        after = time.time()
        copies = calls.of("CopyObject")
        assert len(copies) == 1
        assert copies[0]["MetadataDirective"] == "REPLACE"
        assert copies[0]["CopySource"] == f"{bucket.name}/{name}"  # as botocore sends it
        assert calls.of("PutObject") == []  # not rewritten through this process

        expires_at = _expires_at(bucket, name)
        assert expires_at is not None
        assert before + 50 - MS <= expires_at <= after + 50 + MS
        head = bucket.head(name)
        assert head is not None
        assert head["ContentType"] == "application/json"
        assert bucket.body(name) == b'{"x": 1}'

        assert await backend.expire("k", None) is True
        assert _expires_at(bucket, name) is None
        assert await backend.ttl("k") is None
        calls.clear()
        bucket.put(harness.name("dead"), b"v", {EXPIRES_AT: LONG_AGO})
        assert await backend.expire("dead", 60) is False
        assert calls.of("CopyObject") == []  # an expired object is not revived


async def test_s3_path_is_the_prefix_of_every_object_and_nothing_outside_is_seen(
    s3_bucket: S3Bucket,
) -> None:
    s3_bucket.put("other/team:x", b"{}")
    s3_bucket.put("llm/cachex:y", b"{}")  # shares the text, not the folder
    s3_bucket.put("outside:z", b"{}")
    backend = build(s3_bucket.params(s3_path="/llm/cache/"))
    try:
        assert isinstance(backend, S3Backend)
        assert backend.prefix == "llm/cache/"
        assert backend.describe()["s3_path"] == "llm/cache/"
        await backend.set("team:k", b"v", 60)
        await backend.set("plain", b"v")
        assert sorted(s3_bucket.names("llm/cache/")) == ["llm/cache/plain", "llm/cache/team:k"]
        assert sorted(scanned_keys(await scan_all(backend))) == ["plain", "team:k"]
        assert await backend.list_namespaces(None) == ["team"]
        assert await backend.get("outside:z") is None
        assert await backend.delete(["team:k", "plain"]) == 2
        assert sorted(s3_bucket.names()) == ["llm/cachex:y", "other/team:x", "outside:z"]
    finally:
        await backend.close()


# --------------------------------------------------------------------------- listing


async def test_list_namespaces_pages_through_common_prefixes(harness: S3Harness) -> None:
    """1,000 namespaces and three more entries at the top: more than one ListObjectsV2
    page holds (1,000 at most), so the listing must follow the continuation token."""
    backend, bucket = harness.s3, harness.raw
    tops = [f"ns-{i:04d}" for i in range(1000)]
    names = [f"{top}:digest" for top in tops]
    names += ["team:eu:1", "team:eu:2", "team:us:1", "team:3", "plain-key", "a::x"]
    bucket.seed(harness.name(name) for name in names)

    with ApiCalls(backend._client) as calls:
        found = await backend.list_namespaces(None)
        listings = calls.of("ListObjectsV2")
    assert found is not None  # S3 lists namespaces itself: no scan needed
    assert len(found) == len(set(found))
    assert set(found) == {*tops, "team", "a"}
    assert len(listings) == 2
    for listing in listings:
        assert listing["Delimiter"] == ":"
        assert listing["Prefix"] == harness.name("")
    assert "ContinuationToken" not in listings[0]
    assert listings[1]["ContinuationToken"]

    assert await backend.list_namespaces("team") == ["team:eu", "team:us"]
    assert await backend.list_namespaces("team:eu") == []
    assert await backend.list_namespaces("a") == ["a:"]  # "a::x": the namespace "a:"
    assert await backend.list_namespaces("missing") == []


async def test_names_only_scan_pages_with_continuation_tokens_and_no_heads(
    harness: S3Harness,
) -> None:
    backend, bucket = harness.s3, harness.raw
    bulk = [f"bulk:{i:05d}" for i in range(1100)]
    bucket.seed(harness.name(key) for key in [*bulk, "other:1", "other:2"])

    with ApiCalls(backend._client) as calls:
        pages = []
        cursor: str | None = None
        for _ in range(10):
            page = await backend.scan("bulk:*", cursor, 5000, details=False)  # capped at 1,000
            pages.append(page)
            cursor = page.cursor
            if cursor is None:
                break
        listings = calls.of("ListObjectsV2")
        assert calls.of("HeadObject") == []  # names only: no request per key
    assert [len(page.keys) for page in pages] == [1000, 100]
    assert [page.scanned for page in pages] == [1000, 100]
    assert all(page.total is None for page in pages)  # S3 keeps no count
    assert scanned_keys(pages) == bulk  # S3 lists in key order, each key once
    assert all(info.size == 2 and info.ttl is None for page in pages for info in page.keys)
    assert [listing["MaxKeys"] for listing in listings] == [1000, 1000]
    assert all(listing["Prefix"] == harness.name("bulk:") for listing in listings)
    assert [listing.get("ContinuationToken") for listing in listings] == [None, pages[0].cursor]


async def test_detailed_scan_heads_each_listed_key_for_its_ttl(harness: S3Harness) -> None:
    backend = harness.s3
    for i in range(10):
        await backend.set(f"k:{i}", b"x" * i, None if i % 2 else 100)
    with ApiCalls(backend._client) as calls:
        pages = await scan_all(backend, "k:*", count=4)
        heads = calls.of("HeadObject")
    assert [len(page.keys) for page in pages] == [4, 4, 2]
    assert len(heads) == 10
    for info in (info for page in pages for info in page.keys):
        index = int(info.key.removeprefix("k:"))
        assert info.size == index
        if index % 2:
            assert info.ttl is None
        else:
            assert info.ttl is not None
            assert 0 < info.ttl <= 100


@pytest.mark.parametrize(
    ("match", "prefix", "expected"),
    [
        ("*", "", {"ns:1", "ns:22", "nsx:3", "other:1", "a1", "b2"}),
        ("ns:*", "ns:", {"ns:1", "ns:22"}),
        ("ns:?", "ns:", {"ns:1"}),
        ("ns*", "ns", {"ns:1", "ns:22", "nsx:3"}),
        ("[ab]?", "", {"a1", "b2"}),
        ("other:1", "other:1", {"other:1"}),
        ("zzz*", "zzz", set()),
    ],
)
async def test_a_glob_lists_only_under_its_literal_prefix(
    harness: S3Harness, match: str, prefix: str, expected: set[str]
) -> None:
    """What ``scanned`` counts on S3: the objects under the glob's literal prefix, not the
    whole bucket (the other backends examine every key)."""
    keys = ["ns:1", "ns:22", "nsx:3", "other:1", "a1", "b2"]
    harness.raw.seed(harness.name(key) for key in keys)
    with ApiCalls(harness.s3._client) as calls:
        pages = await scan_all(harness.s3, match, count=2)
        listings = calls.of("ListObjectsV2")
    found = scanned_keys(pages)
    assert len(found) == len(set(found))
    assert set(found) == expected
    assert {listing["Prefix"] for listing in listings} == {harness.name(prefix)}
    under = [key for key in keys if key.startswith(prefix)]
    assert sum(page.scanned for page in pages) == len(under)


async def test_empty_bucket_scan_and_single_page(harness: S3Harness) -> None:
    backend = harness.s3
    empty = await backend.scan()
    assert (empty.keys, empty.cursor, empty.scanned, empty.total) == ([], None, 0, None)
    assert await backend.list_namespaces(None) == []
    for key in ("a", "b", "c"):
        await backend.set(key, b"v")
    page = await backend.scan("*", None, 100)
    assert [info.key for info in page.keys] == ["a", "b", "c"]
    assert (page.cursor, page.scanned, page.total) == (None, 3, None)


# --------------------------------------------------------------------------- deleting


async def test_delete_sends_at_most_1000_keys_per_delete_objects_call(harness: S3Harness) -> None:
    backend, bucket = harness.s3, harness.raw
    keys = [f"bulk:{i:05d}" for i in range(2001)]
    bucket.seed(harness.name(key) for key in [*keys, "keep:1"])
    with ApiCalls(backend._client) as calls:
        assert await backend.delete(keys) == 2001
        batches = calls.of("DeleteObjects")
    assert [len(batch["Delete"]["Objects"]) for batch in batches] == [1000, 1000, 1]
    sent = [item["Key"] for batch in batches for item in batch["Delete"]["Objects"]]
    assert sent == [harness.name(key) for key in keys]
    assert DELETE_BATCH == 1000
    assert bucket.names() == [harness.name("keep:1")]


async def test_delete_of_a_missing_key_counts_nothing(harness: S3Harness) -> None:
    """S3's DeleteObjects reports every key it is given as deleted; the backend counts what
    existed for the few keys a person or /cache/delete names."""
    await harness.s3.set("a", b"1")
    assert await harness.s3.delete(["a"]) == 1
    assert await harness.s3.delete(["never-there"]) == 0
    assert harness.raw.names() == []


async def test_delete_returns_how_many_existed(harness: S3Harness) -> None:
    await harness.s3.set("a", b"1")
    assert await harness.s3.delete(["a", "missing"]) == 1


async def test_purge_deletes_exactly_the_namespace_in_1000_key_calls(harness: S3Harness) -> None:
    backend, bucket = harness.s3, harness.raw
    doomed = [f"team-a:{i:05d}" for i in range(1100)]
    kept = [f"team-b:{i:03d}" for i in range(300)]
    kept += [f"team-a-x:{i}" for i in range(40)]  # a longer name, not the namespace
    kept += ["team-a", "team-ab:1", "plain"]
    bucket.seed(harness.name(key) for key in [*doomed, *kept])
    progress: list[tuple[int, int, bool]] = []

    def record(state: PurgeProgress) -> None:
        progress.append((state.scanned, state.deleted, state.done))

    with ApiCalls(backend._client) as calls:
        result = await purge(backend, namespace_pattern("team-a"), on_progress=record)
        batches = calls.of("DeleteObjects")
        listings = calls.of("ListObjectsV2")
    assert (result.deleted, result.scanned, result.done, result.total) == (1100, 1100, True, None)
    assert progress == [(1000, 1000, False), (1100, 1100, False)]
    assert [len(batch["Delete"]["Objects"]) for batch in batches] == [1000, 100]
    assert all(listing["Prefix"] == harness.name("team-a:") for listing in listings)
    # Names-only listings; only the last, short batch is looked at, to count it exactly.
    assert len(calls.of("HeadObject")) == 100
    assert sorted(bucket.names()) == sorted(harness.name(key) for key in kept)


async def test_a_cancelled_purge_stops_after_the_batch_in_hand(harness: S3Harness) -> None:
    harness.raw.seed(harness.name(f"bulk:{i:05d}") for i in range(1001))
    batches: list[int] = []

    def record(state: PurgeProgress) -> None:
        batches.append(state.deleted)

    result = await purge(
        harness.s3, "bulk:*", on_progress=record, cancelled=lambda: len(batches) >= 1
    )
    assert (result.deleted, result.done) == (1000, False)
    assert harness.raw.names() == [harness.name("bulk:01000")]


# --------------------------------------------------------------------------- health, stats


async def test_probe_is_healthy_and_leaves_no_object(harness: S3Harness) -> None:
    with ApiCalls(harness.s3._client) as calls:
        result = await probe_backend(harness.s3)
        operations = [name for name, _ in calls.calls]
    assert result.healthy, result.error
    # The delete looks at the object first so that it can count what existed.
    assert operations == ["HeadBucket", "PutObject", "GetObject", "HeadObject", "DeleteObjects"]
    assert harness.raw.names() == []


async def test_stats_name_the_bucket_and_count_nothing(harness: S3Harness) -> None:
    await harness.s3.set("a", b"x" * 10)
    stats = await harness.s3.stats()
    assert (stats.entries, stats.bytes_used) == (None, None)  # counting = listing everything
    assert stats.details == {"bucket": harness.raw.name, "prefix": harness.s3.prefix or None}


async def test_a_missing_bucket_is_named_in_every_error(s3_bucket: S3Bucket) -> None:
    backend = build(s3_bucket.params(s3_bucket_name="no-such-bucket"))
    try:
        failures: list[str] = []
        # The read first: after a failure, the breaker skips reads and writes for a while.
        for call in (
            lambda: backend.get("k"),
            backend.ping,
            backend.scan,
            lambda: backend.list_namespaces(None),
        ):
            with pytest.raises(CacheBackendError) as caught:
                await call()
            failures.append(str(caught.value))
        with pytest.raises(CacheBackendError, match="s3 unavailable \\(skipped"):
            await backend.set("k", b"v")
    finally:
        await backend.close()
    assert failures == [
        f"s3 {operation} failed: bucket 'no-such-bucket' does not exist"
        for operation in ("get", "ping", "scan", "list")
    ]
    assert backend.errors == 4


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (ClientError({"Error": {"Code": "NoSuchBucket"}}, "PutObject"), True),
        (ClientError({"Error": {"Code": "AccessDenied"}}, "GetObject"), True),
        (ClientError({"Error": {"Code": "SlowDown"}}, "PutObject"), True),
        (ClientError({"Error": {"Code": "503"}}, "HeadObject"), True),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), True),
        (ClientError({"Error": {"Code": "InvalidArgument"}}, "PutObject"), False),
        (ClientError({"Error": {"Code": "MetadataTooLarge"}}, "PutObject"), False),
        (ClientError({"Error": {"Code": "EntityTooLarge"}}, "PutObject"), False),
        (ParamValidationError(report="Invalid type for parameter Metadata"), False),
    ],
)
async def test_only_outages_open_the_breaker(
    s3_bucket: S3Bucket, error: Exception, outage: bool
) -> None:
    backend = build(s3_bucket.params())
    try:
        assert isinstance(backend, S3Backend)
        assert backend._outage(error) is outage
        failure = backend._failure("set", error)
        assert isinstance(failure, CacheDataError) is not outage
        assert backend.breaker is not None
        assert backend.breaker.open is outage
    finally:
        await backend.close()


ERROR_REASONS = [
    ("NotFound", "HeadBucket", "bucket 'b' does not exist"),
    ("404", "HeadBucket", "bucket 'b' does not exist"),
    ("NoSuchBucket", "PutObject", "bucket 'b' does not exist"),
    ("NotFound", "HeadObject", "S3 refused the request on bucket 'b': NotFound"),
    ("InvalidAccessKeyId", "HeadBucket", "access to bucket 'b' was refused"),
    ("SlowDown", "PutObject", "S3 refused the request on bucket 'b': SlowDown"),
]


def test_error_codes_become_reasons(no_aws_env: pytest.MonkeyPatch) -> None:
    """The reason for each S3 error code, including codes moto never sends (a HeadBucket
    answered ``NotFound`` by some S3-compatible stores); no request is made."""
    backend = S3Backend(bucket="b", client_options={"region_name": "us-east-1"})
    try:
        for code, operation, reason in ERROR_REASONS:
            error = ClientError({"Error": {"Code": code, "Message": "..."}}, operation)
            assert backend._explain(error).startswith(reason), (code, operation)
    finally:
        backend._pool.shutdown()
        backend._client.close()


# --------------------------------------------------------------------------- memory tier


async def test_memory_tier_in_front_of_s3(s3_bucket: S3Bucket) -> None:
    backend: CacheBackend = build(s3_bucket.params(ttl=600, default_in_memory_ttl=5))
    try:
        assert isinstance(backend, TieredBackend)
        assert isinstance(backend.shared, S3Backend)
        before = time.time()
        await backend.set("k", b"v")
        after = time.time()
        expires_at = _expires_at(s3_bucket, "k")
        assert expires_at is not None
        assert before + 600 - MS <= expires_at <= after + 600 + MS  # S3 keeps the long TTL ...
        memory_ttl = await backend.memory.ttl("k")
        assert memory_ttl is not None
        assert 0 < memory_ttl <= 5  # ... memory the short one

        s3_bucket.client.delete_object(Bucket=s3_bucket.name, Key="k")  # behind its back
        assert await backend.get("k") == b"v"  # memory first
        s3_bucket.put("from-elsewhere", b"w")
        assert await backend.get("from-elsewhere") == b"w"  # filled from S3
        assert await backend.memory.get("from-elsewhere") == b"w"
        await backend.delete(["k", "from-elsewhere"])
        assert await backend.get("k") is None
        assert s3_bucket.names() == []
    finally:
        await backend.close()
