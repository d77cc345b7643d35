"""Every error path of the proxy answers in one shape: OpenAI's ``{"error": {...}}`` body.

``type`` follows the status (OpenAI's names), ``code`` is the status as a string (as
LiteLLM's proxy sends it), ``param`` names the parameter at fault or is null. An upstream's
own OpenAI-shaped error is passed on as it came; any other upstream error body is wrapped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from llmcache_tui.proxy.errors import error_body, error_type
from tests.conftest import ProxyFactory
from tests.fake_upstream import FakeUpstreamServer
from tests.ports import free_port

MASTER_KEY = "sk-shape-1234"
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
CHAT: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "server_error",
}

Call = Callable[[httpx.Client], httpx.Response]
# (name, status, call) with the master key set and the disk cache on
LOCKED_PATHS: list[tuple[str, int, Call]] = [
    (
        "bad JSON",
        400,
        lambda http: http.post(
            "/v1/chat/completions",
            content=b"{not json",
            headers={**AUTH, "content-type": "application/json"},
        ),
    ),
    (
        "body not an object",
        400,
        lambda http: http.post("/v1/chat/completions", json=[1], headers=AUTH),
    ),
    (
        "missing messages",
        400,
        lambda http: http.post("/v1/chat/completions", json={"model": "gpt-4o-mini"}, headers=AUTH),
    ),
    (
        "unknown model",
        400,
        lambda http: http.post(
            "/v1/chat/completions", json={**CHAT, "model": "gpt-9"}, headers=AUTH
        ),
    ),
    ("no key", 401, lambda http: http.post("/v1/chat/completions", json=CHAT)),
    (
        "wrong key",
        401,
        lambda http: http.get("/v1/models", headers={"Authorization": "Bearer sk-wrong"}),
    ),
    ("wrong key on /health", 401, lambda http: http.get("/health")),
    ("wrong method", 405, lambda http: http.get("/v1/chat/completions", headers=AUTH)),
    ("wrong method on a model", 405, lambda http: http.delete("/v1/models/x", headers=AUTH)),
    ("unknown route", 404, lambda http: http.get("/v1/nowhere", headers=AUTH)),
    ("unknown model id", 404, lambda http: http.get("/v1/models/gpt-9", headers=AUTH)),
    (
        "payload too large",
        413,
        lambda http: http.post(
            "/v1/chat/completions",
            json={**CHAT, "messages": [{"role": "user", "content": "x" * 4096}]},
            headers=AUTH,
        ),
    ),
    (
        "unsupported media type",
        415,
        lambda http: http.post(
            "/v1/chat/completions",
            content=b"model=gpt-4o-mini",
            headers={**AUTH, "content-type": "text/plain"},
        ),
    ),
    (
        "cache delete: bad JSON",
        400,
        lambda http: http.post(
            "/cache/delete",
            content=b"{",
            headers={**AUTH, "content-type": "application/json"},
        ),
    ),
    (
        "cache delete: no keys",
        400,
        lambda http: http.post("/cache/delete", json={"keys": "abc"}, headers=AUTH),
    ),
    ("cache delete: wrong method", 405, lambda http: http.get("/cache/delete", headers=AUTH)),
    ("cache ping: wrong method", 405, lambda http: http.post("/cache/ping", headers=AUTH)),
]


def assert_error_shape(reply: httpx.Response, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    document = reply.json()
    assert set(document) == {"error"}
    error: dict[str, Any] = document["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["type"] == TYPES[status]
    assert error["code"] == str(status)
    assert error["param"] is None or isinstance(error["param"], str)
    return error


@pytest.mark.parametrize(("name", "status", "call"), LOCKED_PATHS, ids=[p[0] for p in LOCKED_PATHS])
def test_every_client_error_has_the_shape(
    make_proxy: ProxyFactory, name: str, status: int, call: Call
) -> None:
    proxy = make_proxy(general_settings={"master_key": MASTER_KEY, "max_request_size_mb": 0.002})
    with proxy.http() as http:
        reply = call(http)
    error = assert_error_shape(reply, status)
    if name in ("unknown model", "unknown model id", "missing messages"):
        assert error["param"] in ("model", "messages")
    assert MASTER_KEY not in reply.text


def test_cache_delete_without_a_cache_has_the_shape(make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(cache=False)
    with proxy.http() as http:
        reply = http.post("/cache/delete", json={"keys": ["abc"]})
    assert "caching is not enabled" in assert_error_shape(reply, 503)["message"]


def test_cache_delete_too_large_has_the_shape(make_proxy: ProxyFactory) -> None:
    proxy = make_proxy()
    with proxy.http() as http:
        reply = http.post("/cache/delete", content=b"x" * (4 * 1024 * 1024 + 1))
    assert_error_shape(reply, 413)


def test_unreachable_upstream_has_the_shape(make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(api_base=f"http://127.0.0.1:{free_port()}")
    with proxy.http() as http:
        reply = http.post("/v1/chat/completions", json=CHAT)
    assert "unreachable" in assert_error_shape(reply, 502)["message"]


def test_upstream_timeout_has_the_shape(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    entry = {
        "model_name": "slow",
        "litellm_params": {"model": "openai/slow", "api_base": upstream.url, "timeout": 0.2},
    }
    proxy = make_proxy(extra_models=[entry])
    upstream.app.delay = 3
    with proxy.http() as http:
        reply = http.post("/v1/chat/completions", json={**CHAT, "model": "slow"})
    assert_error_shape(reply, 504)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("status", "body"),
    [
        (502, b"<html><body>Bad Gateway</body></html>"),
        (503, b""),
        (429, b"slow down"),
        (500, b'{"detail": "not openai"}'),
    ],
)
def test_upstream_error_not_in_openais_shape_is_wrapped(
    proxy_http: httpx.Client, upstream: FakeUpstreamServer, status: int, body: bytes, stream: bool
) -> None:
    upstream.app.queue_error(status, body=body)
    reply = proxy_http.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    error = assert_error_shape(reply, status)
    assert f"upstream answered HTTP {status}" in error["message"]
    if body:
        assert body.decode()[:20] in error["message"]


def test_upstream_openai_error_passes_on_as_it_came(
    proxy_http: httpx.Client, upstream: FakeUpstreamServer
) -> None:
    upstream.app.queue_error(429)
    reply = proxy_http.post("/v1/chat/completions", json=CHAT)
    assert reply.status_code == 429
    assert reply.json()["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 413, 422, 429, 431, 500, 502, 503])
def test_the_builder_types_every_status(status: int) -> None:
    body = error_body(status, "m", param="p")["error"]
    assert body == {"message": "m", "type": error_type(status), "param": "p", "code": str(status)}
    if status in TYPES:
        assert body["type"] == TYPES[status]
    elif status == 403:
        assert body["type"] == "permission_error"
    else:
        assert body["type"] == ("server_error" if status >= 500 else "invalid_request_error")
