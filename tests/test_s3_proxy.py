"""The proxy end to end on S3 (moto's server over HTTP): the OpenAI SDK and raw HTTP as
clients, the bucket read with a plain boto3 client to see what the proxy stored (the object
name, its JSON, its ``expires-at`` metadata).

Expiry is tested without waiting: an object is rewritten with an ``expires-at`` in the past
(or an entry with an older ``created_at``), as another process sharing the bucket could.
S3 going away is an endpoint nothing listens on, or a moto server of the test's own that it
stops and starts again; recovery is awaited by bounded polling, never timed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from llmcache_tui.cache.backends.breaker import CircuitBreaker
from llmcache_tui.cache.backends.s3 import EXPIRES_AT, S3Backend
from llmcache_tui.cache.entry import CacheEntry
from tests.conftest import ProxyFactory
from tests.fake_upstream import FakeUpstreamServer
from tests.redis_support import CACHE_ERROR, DOCS_NAMESPACE, HIT, MISS_STORED, chat, poll
from tests.s3_server import ClosedPort, S3Bucket, S3Server
from tests.servers import RunningProxy

pytestmark = pytest.mark.usefixtures("no_aws_env")

MESSAGES: list[Any] = [{"role": "user", "content": "write a poem about litellm!"}]
KEY = re.compile(rf"{re.escape(DOCS_NAMESPACE)}:[0-9a-f]{{64}}")
MS = 0.001  # expires-at is written to the millisecond


def _expires_at(bucket: S3Bucket, name: str) -> float | None:
    head = bucket.head(name)
    assert head is not None, f"no object {name}"
    value = head["Metadata"].get(EXPIRES_AT)
    return None if value is None else float(value)


def _rewrite(bucket: S3Bucket, name: str, **changes: Any) -> None:
    """Change fields of the stored entry, keeping the object's metadata."""
    head = bucket.head(name)
    assert head is not None
    document = orjson.loads(bucket.body(name))
    document.update(changes)
    bucket.put(name, orjson.dumps(document), head["Metadata"])


def _expire_now(bucket: S3Bucket, name: str) -> None:
    """Give the object an expiry in the past, keeping its body (as ``expire`` does)."""
    bucket.client.copy_object(
        Bucket=bucket.name,
        Key=name,
        CopySource={"Bucket": bucket.name, "Key": name},
        Metadata={EXPIRES_AT: f"{time.time() - 1:.3f}"},
        MetadataDirective="REPLACE",
    )


def sdk_chat(client: Any, cache: dict[str, Any] | None = None) -> Any:
    return client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        extra_body=None if cache is None else {"cache": cache},
    )


# --------------------------------------------------------------------------- store and hit


def test_sdk_miss_then_hit_with_the_docs_namespace_ttl_and_delete(
    s3_bucket: S3Bucket, make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    proxy = make_proxy(s3_bucket.params(namespace=DOCS_NAMESPACE, ttl=600), cache_type="s3")
    with proxy.sdk() as client, proxy.http() as http:
        before = time.time()
        first = sdk_chat(client)
        after = time.time()
        second = sdk_chat(client)
        assert first.headers["cache-status"] == MISS_STORED
        assert second.headers["cache-status"] == HIT
        assert second.parse().id == first.parse().id
        key = first.headers["x-litellm-cache-key"]
        assert KEY.fullmatch(key)  # litellm.caching.caching:<hash>, as the docs say

        assert s3_bucket.names() == [key]  # one object, named by the key
        expires_at = _expires_at(s3_bucket, key)
        assert expires_at is not None
        assert before + 600 - MS <= expires_at <= after + 600 + MS
        entry = CacheEntry.decode(s3_bucket.body(key))
        assert entry.response["id"] == first.parse().id
        assert (entry.route, entry.model) == ("chat", "gpt-4o-mini")
        assert entry.ttl is None  # a request's own ttl is recorded; the config's is the expiry

        deleted = http.post("/cache/delete", json={"keys": [key]})
        assert deleted.json() == {"status": "success", "deleted": 1}
        assert s3_bucket.head(key) is None
        third = sdk_chat(client)
        assert third.headers["cache-status"] == MISS_STORED
    assert upstream.app.call_count("chat/completions") == 2


def test_per_request_ttl_and_namespace_under_s3_path(
    s3_bucket: S3Bucket, make_proxy: ProxyFactory
) -> None:
    proxy = make_proxy(s3_bucket.params(s3_path="litellm/cache", ttl=600), cache_type="s3")
    with proxy.http() as http:
        before = time.time()
        short = chat(http, "brief", ttl=30, namespace="team-a")
        after = time.time()
        key = short.headers["x-litellm-cache-key"]
        assert key.startswith("team-a:")
        name = f"litellm/cache/{key}"
        assert s3_bucket.names() == [name]
        expires_at = _expires_at(s3_bucket, name)
        assert expires_at is not None
        assert before + 30 - MS <= expires_at <= after + 30 + MS
        assert orjson.loads(s3_bucket.body(name))["ttl"] == 30
        assert chat(http, "brief", namespace="team-a").headers["cache-status"] == HIT

    plain = make_proxy(s3_bucket.params(s3_path="litellm/cache"), cache_type="s3")
    with plain.http() as http:
        key = chat(http, "forever").headers["x-litellm-cache-key"]
        assert _expires_at(s3_bucket, f"litellm/cache/{key}") is None  # no ttl: no expiry


def test_an_expired_object_is_served_as_a_miss_and_replaced(
    s3_bucket: S3Bucket, make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    proxy = make_proxy(s3_bucket.params(), cache_type="s3")
    with proxy.sdk() as client:
        first = sdk_chat(client, {"ttl": 300})
        key = first.headers["x-litellm-cache-key"]
        assert sdk_chat(client).headers["cache-status"] == HIT

        _expire_now(s3_bucket, key)
        again = sdk_chat(client)
        assert again.headers["cache-status"] == MISS_STORED
        assert again.parse().id != first.parse().id
        assert _expires_at(s3_bucket, key) is None  # the new entry: no ttl asked for
        assert CacheEntry.decode(s3_bucket.body(key)).response["id"] == again.parse().id
        assert sdk_chat(client).headers["cache-status"] == HIT
    assert upstream.app.call_count("chat/completions") == 2


# --------------------------------------------------------------------------- controls


def test_s_maxage_judges_the_stored_created_at(
    s3_bucket: S3Bucket, make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    proxy = make_proxy(s3_bucket.params(), cache_type="s3")
    with proxy.sdk() as client:
        first = sdk_chat(client)
        key = first.headers["x-litellm-cache-key"]
        fresh = sdk_chat(client, {"s-maxage": 0})
        assert fresh.headers["cache-status"] == "llmcache; fwd=stale; stored"
        assert fresh.parse().id != first.parse().id

        stored_at = orjson.loads(s3_bucket.body(key))["created_at"]
        _rewrite(s3_bucket, key, created_at=stored_at - 100)  # written 100 s earlier
        young_enough = sdk_chat(client, {"s-maxage": 6000})
        assert young_enough.headers["cache-status"] == HIT
        assert young_enough.parse().id == fresh.parse().id
        assert int(young_enough.headers["age"]) >= 100
        too_old = sdk_chat(client, {"s-maxage": 50})
        assert too_old.headers["cache-status"] == "llmcache; fwd=stale; stored"
    assert upstream.app.call_count("chat/completions") == 3


CONTROLS: list[tuple[dict[str, Any], str, bool]] = [
    ({"no-cache": True}, "llmcache; fwd=request; stored", True),
    ({"no-store": True}, "llmcache; fwd=miss", False),
    ({"ttl": 0}, "llmcache; fwd=miss", False),
    ({"use-cache": False}, "llmcache; fwd=bypass", False),
]


def test_controls_behave_as_on_the_other_backends(
    s3_bucket: S3Bucket, make_proxy: ProxyFactory
) -> None:
    proxy = make_proxy(s3_bucket.params(), cache_type="s3")
    with proxy.http() as http:
        for cache, status, stored in CONTROLS:
            text = f"asked with {cache}"
            answered = chat(http, text, **cache)
            assert answered.headers["cache-status"] == status, cache
            key = answered.headers.get("x-litellm-cache-key")
            assert (key in s3_bucket.names()) is stored, cache
            following = chat(http, text).headers["cache-status"]
            assert following == (HIT if stored else MISS_STORED), cache


def test_a_stream_is_stored_on_s3_and_replayed(
    s3_bucket: S3Bucket, make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    proxy = make_proxy(s3_bucket.params(namespace="streams"), cache_type="s3")
    replies = []
    with proxy.sdk() as client:
        for _ in range(2):
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "stream me three words"}],
                stream=True,
            )
            chunks = list(raw.parse())
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            replies.append((raw.headers["cache-status"], text, [c.id for c in chunks]))
        key = raw.headers["x-litellm-cache-key"]
        plain = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "stream me three words"}]
        )

    # A stream's headers leave before it is stored, so its miss cannot say "stored".
    assert [status for status, _, _ in replies] == ["llmcache; fwd=miss", HIT]
    assert replies[0][1] == replies[1][1] == "echo: stream me three words"
    assert replies[0][2] == replies[1][2]  # the very chunks, ids and all
    assert key.startswith("streams:")
    assert s3_bucket.names() == [key]
    entry = CacheEntry.decode(s3_bucket.body(key))
    assert entry.chunks is not None
    assert len(entry.chunks) == len(replies[0][2])
    assert plain.headers["cache-status"] == HIT
    assert plain.parse().choices[0].message.content == "echo: stream me three words"
    assert upstream.app.call_count("chat/completions") == 1


# --------------------------------------------------------------------------- /cache/delete


def test_cache_delete_accepts_the_key_without_the_configured_namespace(
    s3_bucket: S3Bucket, make_proxy: ProxyFactory
) -> None:
    proxy = make_proxy(s3_bucket.params(namespace=DOCS_NAMESPACE), cache_type="s3")
    with proxy.http() as http:
        key = chat(http, "bare").headers["x-litellm-cache-key"]
        bare = key.removeprefix(DOCS_NAMESPACE + ":")
        answer = http.post("/cache/delete", json={"keys": [bare]}).json()
        assert answer["status"] == "success"
        assert answer["deleted"] == 1
        assert s3_bucket.names() == []


def test_cache_delete_counts_one_entry_once(s3_bucket: S3Bucket, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(s3_bucket.params(namespace=DOCS_NAMESPACE), cache_type="s3")
    with proxy.http() as http:
        key = chat(http, "bare").headers["x-litellm-cache-key"]
        bare = key.removeprefix(DOCS_NAMESPACE + ":")
        assert http.post("/cache/delete", json={"keys": [bare]}).json()["deleted"] == 1


# --------------------------------------------------------------------------- S3 down


def _breaker(proxy: RunningProxy) -> CircuitBreaker:
    backend = proxy.app.backend
    assert isinstance(backend, S3Backend)
    assert backend.breaker is not None
    return backend.breaker


def test_unreachable_endpoint_fails_open(
    s3_bucket: S3Bucket, s3_unreachable: ClosedPort, make_proxy: ProxyFactory
) -> None:
    proxy = make_proxy(
        s3_bucket.params(s3_endpoint_url=s3_unreachable.endpoint_url), cache_type="s3"
    )
    breaker = _breaker(proxy)
    with proxy.http() as http:
        for _ in range(3):
            answered = chat(http, "while down")  # 200 from upstream, every time
            assert answered.headers["cache-status"] == f"llmcache; fwd=miss; {CACHE_ERROR}"
            assert answered.json()["choices"][0]["message"]["content"] == "echo: while down"
        assert breaker.skipped > 0  # the dead endpoint is skipped, not waited for
        metrics = http.get("/metrics").text
        assert re.search(r'llmcache_errors_total\{kind="cache"\} [1-9]', metrics), metrics
        assert http.get("/health/readiness").status_code == 200
        ping = http.get("/cache/ping")
        assert ping.status_code == 503
        assert "cannot reach S3 for bucket" in ping.json()["error"]


def test_s3_stopped_mid_traffic_then_back(
    s3_bucket: S3Bucket,
    make_s3_server: Callable[[], S3Server],
    make_proxy: ProxyFactory,
    upstream: FakeUpstreamServer,
) -> None:
    """A server of the test's own (moto's store outlives it, as a bucket outlives an
    outage): stopped, the proxy answers from upstream; started again, the cache is back."""
    own = make_s3_server()
    proxy = make_proxy(s3_bucket.params(s3_endpoint_url=own.endpoint_url), cache_type="s3")
    breaker = _breaker(proxy)
    with proxy.http() as http:
        assert chat(http, "before").headers["cache-status"] == MISS_STORED
        assert chat(http, "before").headers["cache-status"] == HIT

        own.stop()
        for text in ("before", "during", "during"):
            status = chat(http, text).headers["cache-status"]
            assert CACHE_ERROR in status
            assert "stored" not in status
        assert upstream.app.call_count("chat/completions") == 4
        assert breaker.open

        own.start()  # same port

        def stored() -> bool:
            return "; stored" in chat(http, "after").headers["cache-status"]

        poll(stored, what="a write to the restarted S3 endpoint", pause=0.1)
        assert chat(http, "after").headers["cache-status"] == HIT
        assert chat(http, "before").headers["cache-status"] == HIT  # kept through the outage
    assert not breaker.open
