"""End to end: upstream failures pass through uncached, and a failing cache fails open.

Upstream errors come from the real fake provider (queued statuses, delays) or from a port
nobody listens on; cache failures are real ones: a disk cache whose SQLite table another
process dropped, and a disk cache directory that cannot be created.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import ProxyFactory
from tests.fake_upstream import FakeUpstreamServer
from tests.ports import free_port
from tests.servers import RunningProxy

MESSAGES: list[Any] = [{"role": "user", "content": "Hello"}]
CHAT = {"model": "gpt-4o-mini", "messages": MESSAGES}


def assert_openai_error(reply: httpx.Response, status: int) -> dict[str, Any]:
    assert reply.status_code == status
    assert reply.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = reply.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert "Traceback" not in reply.text
    return error


@pytest.mark.parametrize("status", [429, 500, 503, 400])
def test_upstream_error_passes_through_and_is_not_cached(
    proxy_http: httpx.Client, upstream: FakeUpstreamServer, status: int
) -> None:
    body = {
        "error": {"message": f"upstream says {status}", "type": "x", "param": None, "code": "c"}
    }
    upstream.app.queue_error(status, body=body, headers={"retry-after": "7", "x-other": "no"})

    failed = proxy_http.post("/v1/chat/completions", json=CHAT)
    recovered = proxy_http.post("/v1/chat/completions", json=CHAT)
    cached = proxy_http.post("/v1/chat/completions", json=CHAT)

    assert failed.status_code == status
    assert failed.json() == body
    assert failed.headers["retry-after"] == "7"
    assert "x-other" not in failed.headers
    assert failed.headers["cache-status"] == "llmcache; fwd=miss"
    assert recovered.status_code == 200
    assert recovered.headers["cache-status"] == "llmcache; fwd=miss; stored"
    assert cached.headers["cache-status"] == "llmcache; hit"
    assert upstream.app.call_count() == 2


def test_sdk_sees_upstream_rate_limit_as_its_own_exception(
    proxy_sdk: openai.OpenAI, upstream: FakeUpstreamServer
) -> None:
    upstream.app.queue_error(429)
    with pytest.raises(openai.RateLimitError) as caught:
        proxy_sdk.embeddings.create(model="text-embedding-3-small", input="x")
    assert caught.value.status_code == 429
    assert caught.value.code == "rate_limit_exceeded"
    upstream.app.queue_error(500)
    with pytest.raises(openai.InternalServerError):
        proxy_sdk.embeddings.create(model="text-embedding-3-small", input="x")
    assert proxy_sdk.embeddings.create(model="text-embedding-3-small", input="x").data
    assert upstream.app.call_count() == 3


def test_stream_upstream_error_passes_through(
    proxy_http: httpx.Client, upstream: FakeUpstreamServer
) -> None:
    upstream.app.queue_error(429)
    reply = proxy_http.post("/v1/chat/completions", json={**CHAT, "stream": True})

    assert reply.status_code == 429
    assert reply.json()["error"]["code"] == "rate_limit_exceeded"


def test_unreachable_upstream_is_a_502(make_proxy: ProxyFactory) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    proxy = make_proxy(api_base=closed)
    with proxy.http() as http:
        reply = http.post("/v1/chat/completions", json=CHAT)
        stream = http.post("/v1/chat/completions", json={**CHAT, "stream": True})

    error = assert_openai_error(reply, 502)
    assert "unreachable" in error["message"]
    assert f"127.0.0.1:{closed.split(':')[2].split('/')[0]}" in error["message"]
    assert "sk-test" not in reply.text
    assert "unreachable" in assert_openai_error(stream, 502)["message"]


def test_upstream_timeout_is_a_504(make_proxy: ProxyFactory, upstream: FakeUpstreamServer) -> None:
    entry = {
        "model_name": "slow",
        "litellm_params": {
            "model": "openai/slow",
            "api_base": upstream.url,
            "api_key": "sk-test",
            "timeout": 0.2,
        },
    }
    proxy = make_proxy(extra_models=[entry])
    upstream.app.delay = 3
    with proxy.http() as http:
        reply = http.post("/v1/chat/completions", json={**CHAT, "model": "slow"})

    error = assert_openai_error(reply, 504)
    assert "did not answer in time" in error["message"]
    assert "0.2s" in error["message"]


def test_broken_cache_fails_open(
    proxy: RunningProxy, upstream: FakeUpstreamServer, tmp_path: Path
) -> None:
    with proxy.sdk() as client:
        before = client.chat.completions.with_raw_response.create(**CHAT)
        with sqlite3.connect(tmp_path / "disk-cache" / "cache.db") as database:
            database.execute("DROP TABLE Cache")
        during = [client.chat.completions.with_raw_response.create(**CHAT) for _ in range(2)]

    assert before.headers["cache-status"] == "llmcache; fwd=miss; stored"
    for reply in during:
        assert reply.http_response.status_code == 200
        assert reply.headers["cache-status"] == "llmcache; fwd=miss; detail=cache-error"
        assert reply.parse().choices[0].message.content == "echo: Hello"
    assert upstream.app.call_count() == 3

    with proxy.http() as http:
        metrics = http.get("/metrics").text
        ping = http.get("/cache/ping")
    assert 'llmcache_errors_total{kind="cache"} 4' in metrics
    assert ping.status_code == 503
    assert ping.json()["status"] == "unhealthy"
    assert "disk" in ping.json()["error"]


def test_cache_that_cannot_start_leaves_the_proxy_serving(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    proxy = make_proxy({"disk_cache_dir": str(blocker / "cache")})
    with proxy.http() as http:
        replies = [http.post("/v1/chat/completions", json=CHAT) for _ in range(2)]
        ping = http.get("/cache/ping")
        health = http.get("/health")

    for reply in replies:
        assert reply.status_code == 200
        assert reply.headers["cache-status"] == "llmcache; fwd=bypass; detail=cache-unavailable"
    assert upstream.app.call_count() == 2
    assert ping.status_code == 503
    assert ping.json()["cache_type"] == "disk"
    assert str(blocker / "cache") in ping.json()["error"]
    assert health.status_code == 200
    assert health.json()["cache_status"].startswith("unavailable: ")
