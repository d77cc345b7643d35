"""End to end: malformed requests get a 4xx OpenAI-style error naming the problem.

None of these may reach the upstream, answer 500, or leak a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.fake_upstream import FakeUpstreamServer
from tests.servers import RunningProxy, litellm_config, start_proxy

MESSAGES: list[Any] = [{"role": "user", "content": "Hello"}]
CHAT: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES}


def assert_client_error(reply: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert "Traceback" not in reply.text
    error: dict[str, Any] = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == str(status)
    return error


def serve_module_proxy(
    upstream: FakeUpstreamServer, directory: Path, **config: Any
) -> RunningProxy:
    cache_params = {"type": "disk", "disk_cache_dir": str(directory / "cache")}
    return start_proxy(directory, litellm_config(upstream.url, cache_params=cache_params, **config))


@pytest.fixture(scope="module")
def http(
    fake_upstream: FakeUpstreamServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    """A client for one proxy shared by the module: refused requests leave no state."""
    proxy = serve_module_proxy(fake_upstream, tmp_path_factory.mktemp("validation"))
    with proxy.http() as client:
        yield client
    proxy.server.stop()


@pytest.fixture(scope="module")
def tiny_http(
    fake_upstream: FakeUpstreamServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    """A client for a proxy that accepts request bodies up to 0.001 MB (1048 bytes)."""
    proxy = serve_module_proxy(
        fake_upstream,
        tmp_path_factory.mktemp("validation-tiny"),
        general_settings={"max_request_size_mb": 0.001},
    )
    with proxy.http() as client:
        yield client
    proxy.server.stop()


@pytest.fixture(autouse=True)
def nothing_reaches_upstream(upstream: FakeUpstreamServer) -> Iterator[None]:
    yield
    assert upstream.app.call_count() == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"model": "gpt-4o-mini", "messages": [', "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "not valid JSON"),
        (b'[{"model": "gpt-4o-mini"}]', "must be a JSON object"),
        (b'"gpt-4o-mini"', "must be a JSON object"),
    ],
    ids=["truncated", "empty", "not-utf8", "too-deep", "array", "string"],
)
def test_body_that_is_not_a_json_object(http: httpx.Client, body: bytes, message: str) -> None:
    reply = http.post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert message in assert_client_error(reply)["message"]


@pytest.mark.parametrize("model", [None, "", 42, ["gpt-4o-mini"]])
def test_missing_or_malformed_model(http: httpx.Client, model: Any) -> None:
    body: dict[str, Any] = {"messages": MESSAGES}
    if model is not None:
        body["model"] = model
    error = assert_client_error(http.post("/v1/embeddings", json=body))
    assert error["param"] == "model"
    assert "'model'" in error["message"]


@pytest.mark.parametrize(
    ("cache", "param", "message"),
    [
        ("yes", "cache", "'cache' must be an object"),
        ([{"ttl": 1}], "cache", "'cache' must be an object"),
        ({"ttl": -5}, "cache.ttl", "must not be negative"),
        ({"ttl": "abc"}, "cache.ttl", "must be a number of seconds"),
        ({"ttl": True}, "cache.ttl", "must be a number of seconds"),
        ({"s-maxage": "10"}, "cache.s-maxage", "must be a number of seconds"),
        ({"no-cache": "yes"}, "cache.no-cache", "must be true or false"),
        ({"no-store": 1}, "cache.no-store", "must be true or false"),
        ({"use-cache": "true"}, "cache.use-cache", "must be true or false"),
        ({"namespace": ""}, "cache.namespace", "non-empty string"),
        ({"namespace": 7}, "cache.namespace", "non-empty string"),
        ({"namespace": "a*"}, "cache.namespace", "glob characters"),
        ({"ttl": 1, "max-age": 5}, "cache.max-age", "unknown cache control 'cache.max-age'"),
        ({"ttl": 1e300}, "cache.ttl", "at most 315360000 seconds (10 years)"),
        ({"ttl": 315360001}, "cache.ttl", "at most 315360000 seconds"),
        ({"s-maxage": 1e300}, "cache.s-maxage", "at most 315360000 seconds"),
    ],
)
def test_malformed_cache_controls(http: httpx.Client, cache: Any, param: str, message: str) -> None:
    error = assert_client_error(http.post("/v1/chat/completions", json={**CHAT, "cache": cache}))
    assert error["param"] == param
    assert message in error["message"]


def test_malformed_stream_flag(http: httpx.Client) -> None:
    error = assert_client_error(http.post("/v1/chat/completions", json={**CHAT, "stream": "yes"}))
    assert error["param"] == "stream"


def test_body_over_the_size_limit_with_content_length(tiny_http: httpx.Client) -> None:
    body = {**CHAT, "messages": [{"role": "user", "content": "x" * 2000}]}
    error = assert_client_error(tiny_http.post("/v1/chat/completions", json=body), 413)
    assert "1048 bytes" in error["message"]
    assert "max_request_size_mb" in error["message"]


def test_body_over_the_size_limit_when_chunked(tiny_http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "text-embedding-3-small", "input": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}'

    reply = tiny_http.post("/v1/embeddings", content=chunks())
    assert "max_request_size_mb" in assert_client_error(reply, 413)["message"]


def test_body_under_the_size_limit_is_served(
    tiny_http: httpx.Client, upstream: FakeUpstreamServer
) -> None:
    assert tiny_http.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert upstream.app.call_count() == 1
    upstream.app.reset()  # the one request here that must reach upstream


def test_oversized_upload_is_refused(tiny_http: httpx.Client) -> None:
    reply = tiny_http.post(
        "/v1/audio/transcriptions",
        data={"model": "whisper-1"},
        files={"file": ("a.wav", b"\x00" * 4000, "audio/wav")},
    )
    assert_client_error(reply, 413)


def test_transcription_without_a_file(http: httpx.Client) -> None:
    reply = http.post(
        "/v1/audio/transcriptions",
        data={"model": "whisper-1"},
        files={"attachment": ("a.wav", b"abc", "audio/wav")},
    )
    error = assert_client_error(reply)
    assert error["param"] == "file"
    assert "'file'" in error["message"]


def test_transcription_that_is_not_multipart(http: httpx.Client) -> None:
    reply = http.post("/v1/audio/transcriptions", json={"model": "whisper-1"})
    assert "multipart/form-data" in assert_client_error(reply)["message"]


def test_transcription_without_a_model(http: httpx.Client) -> None:
    reply = http.post("/v1/audio/transcriptions", files={"file": ("a.wav", b"abc")})
    assert assert_client_error(reply)["param"] == "model"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"cache": "{not json"}, "cache"),
        ({"cache": '"a string"'}, "cache"),
        ({"cache[ttl]": "soon"}, "cache.ttl"),
        ({"cache[no-cache]": "maybe"}, "cache.no-cache"),
        ({"cache[bogus]": "1"}, "cache.bogus"),
        ({"cache[ttl]": "nan"}, "cache.ttl"),
        ({"cache[ttl]": "inf"}, "cache.ttl"),
        ({"cache[ttl]": "-Infinity"}, "cache.ttl"),
        ({"cache[ttl]": "1e999"}, "cache.ttl"),
        ({"cache[ttl]": "1e300"}, "cache.ttl"),
        ({"cache[ttl]": "1_000"}, "cache.ttl"),
        ({"cache[s-maxage]": "NaN"}, "cache.s-maxage"),
        ({"cache": '{"ttl": 1e300}'}, "cache.ttl"),
    ],
)
def test_transcription_with_malformed_cache_field(
    http: httpx.Client, fields: dict[str, str], param: str
) -> None:
    reply = http.post(
        "/v1/audio/transcriptions",
        data={"model": "whisper-1", **fields},
        files={"file": ("a.wav", b"abc")},
    )
    assert assert_client_error(reply)["param"] == param


def _nested(depth: int) -> Any:
    value: Any = "Hello"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"cache": {"use-cache": False}},
        {"stream": True},
        {"stream": True, "cache": {"no-store": True, "no-cache": True}},
    ],
    ids=["cached", "bypass", "stream", "stream-no-cache"],
)
def test_body_nested_too_deep_to_write_back_is_a_400(
    http: httpx.Client, extra: dict[str, Any]
) -> None:
    """orjson reads 1024 levels but writes 254: the key and the upstream body both need
    writing, and whichever comes first says why, never a 500."""
    body = {**CHAT, "messages": [{"role": "user", "content": _nested(300)}], **extra}
    content = json.dumps(body).encode()  # orjson cannot write it either
    error = assert_client_error(http.post("/v1/chat/completions", content=content))
    assert "more than 254 levels deep" in error["message"]


@pytest.mark.parametrize(
    "number",
    [b"18446744073709551616", b"1e300", b"-1e300", b"9223372036854775808", b"1.7e308"],
)
def test_numbers_beyond_64_bits_are_served_and_cached(
    http: httpx.Client, upstream: FakeUpstreamServer, number: bytes
) -> None:
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "big %s"}],' % number
    body += b' "seed": %s, "logit_bias": {"1": %s}}' % (number, number)
    headers = {"content-type": "application/json"}
    first = http.post("/v1/chat/completions", content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert "stored" in first.headers["cache-status"]
    again = http.post("/v1/chat/completions", content=body, headers=headers)
    assert again.headers["cache-status"] == "llmcache; hit"
    assert again.json() == first.json()
    assert upstream.app.call_count() == 1
    upstream.app.reset()  # the one call here that must reach upstream


def test_unknown_route_and_wrong_method(http: httpx.Client) -> None:
    missing = http.post("/v1/images/generations", json={"model": "x"})
    assert missing.status_code == 404
    assert "/v1/images/generations" in missing.json()["error"]["message"]
    wrong = http.get("/v1/chat/completions")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert orjson.loads(wrong.content)["error"]["message"].endswith("not GET")
