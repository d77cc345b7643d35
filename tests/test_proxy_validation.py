"""End to end: malformed requests get a 4xx OpenAI-style error naming the problem.

None of these may reach the upstream, answer 500, or leak a traceback.
"""

from __future__ import annotations

import gzip
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
    body = {**CHAT, "tools": [_nested(300)], **extra}  # a parameter the proxy does not check
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


# --------------------------------------------------------------------------- prompt shapes


def accepted(http: httpx.Client, upstream: FakeUpstreamServer, path: str, body: Any) -> None:
    """``body`` is forwarded (a 200 from the fake upstream), unlike everything refused here."""
    reply = http.post(path, json=body)
    assert reply.status_code == 200, reply.text
    upstream.app.reset()  # this request may reach upstream (or be a hit)


@pytest.mark.parametrize(
    ("messages", "param", "message"),
    [
        (None, "messages", "missing required parameter 'messages'"),
        ("Hello", "messages", "non-empty array of message objects, got a string"),
        ([], "messages", "got an empty array"),
        (["Hello"], "messages[0]", "must be an object with a 'role', got a string"),
        ([{"content": "Hello"}], "messages[0].role", "must be a string such as 'user'"),
        ([*MESSAGES, {"role": 7}], "messages[1].role", "got an integer"),
        ([{"role": ""}], "messages[0].role", "must be a string"),
        ([{"role": "user", "content": 5}], "messages[0].content", "got an integer"),
        ([{"role": "user", "content": ["hi"]}], "messages[0].content", "content part objects"),
    ],
)
def test_malformed_messages(http: httpx.Client, messages: Any, param: str, message: str) -> None:
    body: dict[str, Any] = {"model": "gpt-4o-mini"}
    if messages is not None:
        body["messages"] = messages
    error = assert_client_error(http.post("/v1/chat/completions", json=body))
    assert error["param"] == param
    assert message in error["message"]


@pytest.mark.parametrize(
    ("route", "param", "value"),
    [
        ("/v1/completions", "prompt", None),
        ("/v1/completions", "prompt", 5),
        ("/v1/completions", "prompt", {"text": "hi"}),
        ("/v1/completions", "prompt", []),
        ("/v1/completions", "prompt", [1, "a"]),
        ("/v1/completions", "prompt", [True, False]),
        ("/v1/completions", "prompt", [1.5]),
        ("/v1/completions", "prompt", [[1, 2], []]),
        ("/v1/completions", "prompt", [[1, 2], 3]),
        ("/v1/embeddings", "input", None),
        ("/v1/embeddings", "input", ""),
        ("/v1/embeddings", "input", ["a", ""]),
        ("/v1/embeddings", "input", []),
        ("/v1/embeddings", "input", [None]),
        ("/v1/embeddings", "input", [[]]),
        ("/v1/embeddings", "input", [["a"]]),
    ],
)
def test_malformed_prompt_or_input(http: httpx.Client, route: str, param: str, value: Any) -> None:
    model = "gpt-3.5-turbo-instruct" if param == "prompt" else "text-embedding-3-small"
    body: dict[str, Any] = {"model": model}
    if value is not None:
        body[param] = value
    error = assert_client_error(http.post(route, json=body))
    assert error["param"] == param
    assert f"'{param}'" in error["message"]


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/completions", {"prompt": ""}),
        ("/v1/completions", {"prompt": ["first", "second"]}),
        ("/v1/completions", {"prompt": [1, 2, 3]}),
        ("/v1/completions", {"prompt": [[1, 2], [3]]}),
        ("/v1/embeddings", {"input": "x"}),
        ("/v1/embeddings", {"input": ["a", "b"]}),
        ("/v1/embeddings", {"input": [1, 2]}),
        ("/v1/embeddings", {"input": [[1, 2], [3]]}),
        ("/v1/chat/completions", {"messages": [{"role": "assistant", "content": None}, *MESSAGES]}),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]},
        ),
    ],
)
def test_well_formed_prompts_are_forwarded(
    http: httpx.Client, upstream: FakeUpstreamServer, route: str, body: dict[str, Any]
) -> None:
    model = {
        "/v1/completions": "gpt-3.5-turbo-instruct",
        "/v1/embeddings": "text-embedding-3-small",
    }
    accepted(http, upstream, route, {"model": model.get(route, "gpt-4o-mini"), **body})


# --------------------------------------------------------------------------- media types


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain; charset=utf-8",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
        "application/json; charset=utf-16",
        "application/xml",
    ],
)
def test_json_route_refuses_a_body_that_is_not_json(http: httpx.Client, content_type: str) -> None:
    reply = http.post(
        "/v1/chat/completions", content=orjson.dumps(CHAT), headers={"content-type": content_type}
    )
    error = assert_client_error(reply, 415)
    assert "application/json" in error["message"]


@pytest.mark.parametrize(
    "content_type",
    [
        None,  # raw clients that send none: read as JSON, as LiteLLM does
        "application/json",
        'Application/JSON; Charset="UTF-8"',
        "application/vnd.example+json",
        "application/x-www-form-urlencoded",  # curl -d without -H: read as JSON if it is
    ],
)
def test_json_route_reads_json_under_lenient_content_types(
    http: httpx.Client, upstream: FakeUpstreamServer, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    request = http.build_request("POST", "/v1/chat/completions", content=orjson.dumps(CHAT))
    if content_type is None:
        request.headers.pop("content-type", None)  # httpx sends none for bytes; be sure
    request.headers.update(headers)
    reply = http.send(request)
    assert reply.status_code == 200, reply.text
    upstream.app.reset()


def test_form_encoded_body_that_is_not_json(http: httpx.Client) -> None:
    reply = http.post("/v1/chat/completions", data={"model": "gpt-4o-mini", "messages": "hi"})
    assert "form-encoded" in assert_client_error(reply, 415)["message"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "gzip, identity", "x-unknown"])
def test_encoded_body_is_refused(http: httpx.Client, encoding: str) -> None:
    body = gzip.compress(orjson.dumps(CHAT)) if encoding.startswith("gzip") else b"\x00\x01"
    headers = {"content-type": "application/json", "content-encoding": encoding}
    reply = http.post("/v1/chat/completions", content=body, headers=headers)
    assert "Content-Encoding" in assert_client_error(reply, 415)["message"]
    assert reply.headers["accept-encoding"] == "identity"


def test_encoded_upload_is_refused(http: httpx.Client) -> None:
    request = http.build_request(
        "POST",
        "/v1/audio/transcriptions",
        data={"model": "whisper-1"},
        files={"file": ("a.wav", b"abc")},
    )
    request.headers["content-encoding"] = "gzip"
    assert_client_error(http.send(request), 415)


def test_identity_encoding_is_plain(http: httpx.Client, upstream: FakeUpstreamServer) -> None:
    headers = {"content-type": "application/json", "content-encoding": "identity"}
    reply = http.post("/v1/chat/completions", content=orjson.dumps(CHAT), headers=headers)
    assert reply.status_code == 200, reply.text
    upstream.app.reset()


# --------------------------------------------------------------------------- multipart, echoes


def upload_request(http: httpx.Client) -> httpx.Request:
    return http.build_request(
        "POST",
        "/v1/audio/transcriptions",
        data={"model": "whisper-1"},
        files={"file": ("a.wav", b"RIFF" + b"\x01" * 300, "audio/wav")},
    )


@pytest.mark.parametrize("cut", [3, 4, 40, 200])  # 1, 2: only the optional final CRLF
def test_truncated_upload_is_refused(http: httpx.Client, cut: int) -> None:
    whole = upload_request(http)
    body = whole.read()[:-cut]
    headers = {"content-type": whole.headers["content-type"]}
    reply = http.post("/v1/audio/transcriptions", content=body, headers=headers)
    assert "malformed multipart body" in assert_client_error(reply)["message"]


def test_whole_upload_with_an_epilogue_is_read(
    http: httpx.Client, upstream: FakeUpstreamServer
) -> None:
    whole = upload_request(http)
    body = whole.read() + b"\r\nan epilogue, which RFC 2046 allows"
    headers = {"content-type": whole.headers["content-type"]}
    reply = http.post("/v1/audio/transcriptions", content=body, headers=headers)
    assert reply.status_code == 200, reply.text
    upstream.app.reset()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**CHAT, "model": "m" * 1_000_000}, "model"),
        ({**CHAT, "cache": {"namespace": ["n" * 1_000_000]}}, "cache.namespace"),
        ({**CHAT, "cache": {"ttl": "t" * 1_000_000}}, "cache.ttl"),
        ({**CHAT, "cache": {"k" * 1_000_000: 1}}, None),
    ],
    ids=["model", "namespace", "ttl", "control-name"],
)
def test_long_input_is_not_echoed_whole(
    http: httpx.Client, body: dict[str, Any], param: str | None
) -> None:
    reply = http.post("/v1/chat/completions", json=body)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert len(reply.content) < 5000
    assert "…" in error["message"]
    if param is not None:
        assert error["param"] == param


def test_long_path_is_not_echoed_whole(http: httpx.Client) -> None:
    reply = http.get("/v1/" + "p" * 8000)
    assert reply.status_code == 404
    assert len(reply.content) < 1000
    assert "(8004 characters)" in reply.json()["error"]["message"]


# --------------------------------------------------------------------------- namespaces


@pytest.mark.parametrize(
    "namespace",
    [
        "a\x00b",
        "tab\there",
        "a\x1fb",
        "del\x7f",
        "c1\x85",
        "zero\u200bwidth",
        "line\u2028",
        "n" * 257,
    ],
    ids=["nul", "tab", "unit-sep", "del", "c1", "zero-width", "line-sep", "too-long"],
)
def test_namespace_that_cannot_go_in_a_header(http: httpx.Client, namespace: str) -> None:
    reply = http.post("/v1/chat/completions", json={**CHAT, "cache": {"namespace": namespace}})
    assert assert_client_error(reply)["param"] == "cache.namespace"
    # and every repeat says the same: nothing was stored
    again = http.post("/v1/chat/completions", json={**CHAT, "cache": {"namespace": namespace}})
    assert again.status_code == 400


def test_printable_unicode_namespace_is_served(
    http: httpx.Client, upstream: FakeUpstreamServer
) -> None:
    body = {**CHAT, "cache": {"namespace": "équipe-日本"}}
    first = http.post("/v1/chat/completions", json=body)
    second = http.post("/v1/chat/completions", json=body)
    assert first.status_code == second.status_code == 200
    assert second.headers["cache-status"] == "llmcache; hit"
    assert second.content == first.content
    upstream.app.reset()


@pytest.mark.parametrize(
    ("part_headers", "param"),
    [
        (b'Content-Disposition: form-data; name="\x1f"', "\x1f"),
        (b'Content-Disposition: form-data; name="caf\xc3\xa9"', "café"),
        (b'Content-Disposition: form-data; name="\xc2\x80"', "\x80"),
    ],
    ids=["control", "non-ascii", "c1-control"],
)
def test_upload_field_name_that_cannot_be_forwarded(
    http: httpx.Client, part_headers: bytes, param: str
) -> None:
    parts = [
        b'Content-Disposition: form-data; name="model"\r\n\r\nwhisper-1',
        part_headers + b"\r\n\r\nvalue",
        b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nabc',
    ]
    body = b"".join(b"--b\r\n" + part + b"\r\n" for part in parts) + b"--b--\r\n"
    headers = {"content-type": "multipart/form-data; boundary=b"}
    reply = http.post("/v1/audio/transcriptions", content=body, headers=headers)
    error = assert_client_error(reply)
    assert error["param"] == param
    assert "printable ASCII" in error["message"]


def test_upload_file_type_with_a_control_character(http: httpx.Client) -> None:
    parts = [
        b'Content-Disposition: form-data; name="model"\r\n\r\nwhisper-1',
        b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        b"Content-Type: audio/\x01wav\r\n\r\nabc",
    ]
    body = b"".join(b"--b\r\n" + part + b"\r\n" for part in parts) + b"--b--\r\n"
    headers = {"content-type": "multipart/form-data; boundary=b"}
    reply = http.post("/v1/audio/transcriptions", content=body, headers=headers)
    assert assert_client_error(reply)["param"] == "file"
