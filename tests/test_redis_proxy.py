"""The proxy end to end on real Redis: one server (host/port, a URL with a password, an ACL
user, TLS) and a cluster; the memory tier in front; Redis down at start-up or mid-traffic.

Clients are the OpenAI SDK and raw HTTP; what the proxy stored is checked in Redis itself
(the key, its namespace, its expiry). Recovery is awaited by bounded polling, never timed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from llmcache_tui.cache.backends.breaker import CircuitBreaker
from llmcache_tui.cache.backends.redis import RedisBackend
from tests import redis_servers as rs
from tests.conftest import ProxyFactory
from tests.fake_upstream import FakeUpstreamServer
from tests.redis_support import (
    CACHE_ERROR,
    DOCS_NAMESPACE,
    HIT,
    MISS_STORED,
    chat,
    cluster_params,
    poll,
    server_params,
)
from tests.servers import RunningProxy

pytestmark = pytest.mark.usefixtures("no_redis_env")

MESSAGES: list[Any] = [{"role": "user", "content": "write a poem about litellm!"}]
KEY = re.compile(rf"{re.escape(DOCS_NAMESPACE)}:[0-9a-f]{{64}}")
RawClient = redis.Redis | redis.RedisCluster


def _single(request: pytest.FixtureRequest) -> tuple[dict[str, Any], RawClient]:
    server: rs.RedisProcess = request.getfixturevalue("redis_plain")
    return server_params(server), server.client()


def _url_with_password(request: pytest.FixtureRequest) -> tuple[dict[str, Any], RawClient]:
    server: rs.RedisProcess = request.getfixturevalue("redis_password")
    return {"url": server.url}, server.client()


def _acl_user(request: pytest.FixtureRequest) -> tuple[dict[str, Any], RawClient]:
    server: rs.RedisProcess = request.getfixturevalue("redis_acl")
    return server_params(server), server.client()


def _tls(request: pytest.FixtureRequest) -> tuple[dict[str, Any], RawClient]:
    server: rs.RedisProcess = request.getfixturevalue("redis_tls")
    return {"url": server.url, "ssl_ca_certs": str(server.ca_cert)}, server.client()


def _cluster(request: pytest.FixtureRequest) -> tuple[dict[str, Any], RawClient]:
    cluster: rs.RedisClusterNodes = request.getfixturevalue("redis_cluster")
    return cluster_params(cluster), cluster.client()


@pytest.mark.parametrize(
    "setup",
    [_single, _url_with_password, _acl_user, _tls, _cluster],
    ids=["single", "url-password", "acl-user", "tls", "cluster"],
)
def test_sdk_miss_then_hit_with_the_docs_namespace_ttl_and_delete(
    request: pytest.FixtureRequest,
    make_proxy: ProxyFactory,
    upstream: FakeUpstreamServer,
    setup: Callable[[pytest.FixtureRequest], tuple[dict[str, Any], RawClient]],
) -> None:
    params, raw = setup(request)
    proxy = make_proxy({**params, "namespace": DOCS_NAMESPACE, "ttl": 600}, cache_type="redis")
    with raw, proxy.sdk() as client, proxy.http() as http:
        first = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        second = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        assert first.headers["cache-status"] == MISS_STORED
        assert second.headers["cache-status"] == HIT
        assert second.parse().id == first.parse().id
        key = first.headers["x-litellm-cache-key"]
        assert KEY.fullmatch(key)  # litellm.caching.caching:<hash>, as the docs say

        assert raw.exists(key) == 1  # in Redis itself, under that name
        assert 0 < raw.pttl(key) <= 600_000  # ttl: a real Redis expiry
        assert raw.get(key) is not None

        deleted = http.post("/cache/delete", json={"keys": [key]})
        assert deleted.json() == {"status": "success", "deleted": 1}
        assert raw.exists(key) == 0
        third = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        assert third.headers["cache-status"] == MISS_STORED
    assert upstream.app.call_count("chat/completions") == 2


def test_per_request_ttl_and_namespace_reach_redis(
    redis_plain: rs.RedisProcess, make_proxy: ProxyFactory
) -> None:
    proxy = make_proxy({**server_params(redis_plain), "ttl": 600}, cache_type="redis")
    with proxy.http() as http, redis_plain.client() as raw:
        short = chat(http, "brief", ttl=30, namespace="team-a")
        key = short.headers["x-litellm-cache-key"]
        assert key.startswith("team-a:")
        assert 0 < raw.pttl(key) <= 30_000
        # /cache/delete also accepts the key without the configured namespace
    proxy_ns = make_proxy(
        {**server_params(redis_plain), "namespace": DOCS_NAMESPACE}, cache_type="redis"
    )
    with proxy_ns.http() as http, redis_plain.client() as raw:
        key = chat(http, "forever").headers["x-litellm-cache-key"]
        assert raw.pttl(key) == -1  # no ttl configured: no expiry
        bare = key.removeprefix(DOCS_NAMESPACE + ":")
        assert http.post("/cache/delete", json={"keys": [bare]}).json()["deleted"] == 1
        assert raw.exists(key) == 0


# --------------------------------------------------------------------------- memory tier


def test_memory_tier_reads_memory_first_and_deletes_clear_both(
    redis_plain: rs.RedisProcess, make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    params = {**server_params(redis_plain), "ttl": 600, "default_in_memory_ttl": 60}
    writer, reader = make_proxy(params, cache_type="redis"), make_proxy(params, cache_type="redis")
    with writer.http() as w, reader.http() as r, redis_plain.client() as raw:
        stored = chat(w, "tiered")
        key = stored.headers["x-litellm-cache-key"]
        assert stored.headers["cache-status"] == MISS_STORED
        assert raw.exists(key) == 1  # written to Redis as well as to memory

        # The other process has it only in Redis: a hit from there, which fills its memory.
        assert chat(r, "tiered").headers["cache-status"] == HIT
        raw.delete(key)  # gone from Redis, behind both processes' backs ...
        assert chat(r, "tiered").headers["cache-status"] == HIT  # ... memory answers
        assert chat(w, "tiered").headers["cache-status"] == HIT

        # Through the proxy, a delete clears both tiers: the next request is a miss
        # even though memory had the entry a moment ago.
        raw.set(key, raw_value := b"{}")  # put a copy back in Redis too
        assert raw.get(key) == raw_value
        assert w.post("/cache/delete", json={"keys": [key]}).json()["deleted"] == 1
        assert raw.exists(key) == 0
        assert chat(w, "tiered").headers["cache-status"] == MISS_STORED
    assert upstream.app.call_count("chat/completions") == 2


# --------------------------------------------------------------------------- one client's input


def test_requests_with_unbounded_ttls_cannot_turn_the_cache_off(
    redis_plain: rs.RedisProcess, make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    """Such TTLs once reached Redis, which refused them, and each refusal opened the
    breaker: a hot prompt then went upstream. Now they are 400s that never touch Redis."""
    proxy = make_proxy(server_params(redis_plain), cache_type="redis")
    backend, breaker = _backend(proxy)
    with proxy.http() as http:
        assert chat(http, "hot").headers["cache-status"] == MISS_STORED
        for round_ in range(40):
            body = {"model": "gpt-4o-mini", "messages": MESSAGES, "cache": {"ttl": 1e300}}
            refused = http.post("/v1/chat/completions", json=body)
            assert refused.status_code == 400
            assert refused.json()["error"]["param"] == "cache.ttl"
            if round_ % 10 == 0:
                form = http.post(
                    "/v1/audio/transcriptions",
                    data={"model": "whisper-1", "cache[ttl]": "nan"},
                    files={"file": ("a.wav", b"abc", "audio/wav")},
                )
                assert form.status_code == 400
                assert form.json()["error"]["param"] == "cache.ttl"
            assert chat(http, "hot").headers["cache-status"] == HIT
    assert upstream.app.call_count() == 1  # the hot prompt, once
    assert not breaker.open
    assert backend.errors == 0


def test_a_key_redis_cannot_read_does_not_turn_the_cache_off_for_others(
    redis_plain: rs.RedisProcess, make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    """A key of another type under one request's key is a miss for that request (and the
    answer replaces it); it says nothing about the server: other prompts keep hitting."""
    proxy = make_proxy(server_params(redis_plain), cache_type="redis")
    _, breaker = _backend(proxy)
    raw = redis_plain.client()
    with raw, proxy.http() as http:
        assert chat(http, "hot").headers["cache-status"] == MISS_STORED
        key = chat(http, "odd").headers["x-litellm-cache-key"]
        for _ in range(5):
            raw.delete(key)
            raw.lpush(key, "not an entry")  # e.g. written by another application
            odd = chat(http, "odd")
            assert odd.headers["cache-status"] == MISS_STORED
            assert odd.json()["choices"][0]["message"]["content"] == "echo: odd"
            assert chat(http, "hot").headers["cache-status"] == HIT
        assert not breaker.open
        assert raw.type(key) == b"string"  # the answer replaced the list
    assert upstream.app.call_count() == 1 + 1 + 5


# --------------------------------------------------------------------------- Redis down


def _backend(proxy: RunningProxy) -> tuple[RedisBackend, CircuitBreaker]:
    backend = proxy.app.backend
    assert isinstance(backend, RedisBackend)
    assert backend.breaker is not None
    return backend, backend.breaker


def _cache_errors(http: httpx.Client) -> int:
    metrics = http.get("/metrics").text
    match = re.search(r'llmcache_errors_total\{kind="cache"\} (\d+)', metrics)
    assert match is not None
    return int(match.group(1))


def _wait_until_cached(http: httpx.Client, text: str) -> None:
    """Send ``text`` until it is stored (the breaker let a trial through and Redis took it),
    then once more: a hit. Bounded: ~15 s, three times the breaker's longest cool-down.

    The trial may be the write of a request whose read was still skipped: that answer says
    ``stored`` with ``detail=cache-error``."""

    def stored() -> bool:
        return "; stored" in chat(http, text).headers["cache-status"]

    poll(stored, what="a write to the restarted Redis", pause=0.1)
    assert chat(http, text).headers["cache-status"] == HIT


def test_redis_down_at_start_up_then_back(
    redis_restartable: rs.RedisProcess, make_proxy: ProxyFactory
) -> None:
    redis_restartable.stop()
    proxy = make_proxy(server_params(redis_restartable), cache_type="redis")
    _, breaker = _backend(proxy)
    with proxy.http() as http:
        for _ in range(3):
            answered = chat(http, "while down")  # 200 from upstream, every time
            assert answered.headers["cache-status"] == f"llmcache; fwd=miss; {CACHE_ERROR}"
            assert answered.json()["choices"][0]["message"]["content"] == "echo: while down"
        assert breaker.skipped > 0  # the dead server is skipped, not waited for
        assert _cache_errors(http) >= 3
        assert http.get("/health/readiness").status_code == 200
        status = http.get("/cache/ping")
        assert status.status_code == 503
        assert "cannot connect to 127.0.0.1" in status.json()["error"]

        redis_restartable.start()
        _wait_until_cached(http, "after start")
    assert not breaker.open


def test_redis_stopped_mid_traffic_then_restarted(
    redis_restartable: rs.RedisProcess, make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    proxy = make_proxy(server_params(redis_restartable), cache_type="redis")
    backend, breaker = _backend(proxy)
    with proxy.http() as http:
        assert chat(http, "before").headers["cache-status"] == MISS_STORED
        assert chat(http, "before").headers["cache-status"] == HIT

        redis_restartable.stop()
        skipped = breaker.skipped
        for text in ("before", "during", "during"):
            status = chat(http, text).headers["cache-status"]
            assert CACHE_ERROR in status
            assert "stored" not in status
        assert breaker.skipped > skipped
        calls = upstream.app.call_count("chat/completions")
        assert calls == 4  # before (miss), then all three from upstream

        redis_restartable.start()  # empty: no persistence
        _wait_until_cached(http, "after restart")
        assert chat(http, "before").headers["cache-status"] == MISS_STORED
    assert backend.errors > 0
