"""Fuzzing the proxy's HTTP API: whatever a client sends, it gets a well-formed answer.

Generated JSON bodies (wrong types for every known parameter, unicode, nesting, numbers),
``cache`` controls, headers (odd bytes, authorization variants) and multipart uploads
(odd boundaries, ``cache[...]`` fields, cut short) go over raw sockets to a real proxy in
front of the fake upstream. Every answer must have a status below 500 and a body that
matches its framing and content type; a request sent twice in a row must never get a
different answer from the cache than the one it stored.

Bounded: ``LLMCACHE_FUZZ_EXAMPLES`` examples per test (default 100), no deadline, no
example database. Big numbers, deep nesting and non-finite form TTLs have tests of their
own, since each once found a defect.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import ProxyFactory
from tests.servers import RunningProxy

EXAMPLES = int(os.environ.get("LLMCACHE_FUZZ_EXAMPLES", "100"))
MASTER_KEY = "sk-fuzz-Key_1"

fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one proxy serves every example of a test
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

ROUTES = {
    "/v1/chat/completions": ("gpt-4o-mini", "messages"),
    "/v1/completions": ("gpt-3.5-turbo-instruct", "prompt"),
    "/v1/embeddings": ("text-embedding-3-small", "input"),
}
# Answer-changing parameters of the OpenAI API and a valid value of each.
KNOWN_PARAMS: dict[str, Any] = {
    "temperature": 0.5,
    "top_p": 1,
    "n": 1,
    "max_tokens": 16,
    "max_completion_tokens": 16,
    "stop": ["\n"],
    "presence_penalty": 0,
    "frequency_penalty": 0.1,
    "logit_bias": {"50256": -100},
    "logprobs": False,
    "top_logprobs": 2,
    "seed": 7,
    "user": "fuzz",
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    "tool_choice": "auto",
    "response_format": {"type": "text"},
    "stream": True,
    "stream_options": {"include_usage": True},
    "metadata": {"k": "v"},
    "dimensions": 8,
    "encoding_format": "float",
    "suffix": "!",
    "echo": False,
    "best_of": 1,
}
CONTROL_KEYS = ("ttl", "s-maxage", "no-cache", "no-store", "namespace", "use-cache")
CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f]")  # not allowed in header values
FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"connection", b"host"})

# --------------------------------------------------------------------------- raw HTTP


@dataclass
class Reply:
    """One HTTP response as read off the socket, its framing checked."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)

    @property
    def cache_status(self) -> str:
        return self.header("cache-status") or ""


def request_bytes(
    method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"host: 127.0.0.1", b"connection: close"]
    lines += [name + b": " + value for name, value in headers]
    if body or method == "POST":
        lines.append(b"content-length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def exchange(proxy: RunningProxy, raw: bytes) -> Reply:
    """Send one request on a new connection; read the whole response until the server closes.

    Fails the test on an empty or malformed reply.
    """
    with socket.create_connection(("127.0.0.1", proxy.server.port), timeout=20) as sock:
        sock.sendall(raw)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    assert data, "empty reply: the connection closed without a response"
    head, separator, body = data.partition(b"\r\n\r\n")
    assert separator, f"reply without the end of its headers: {data[:200]!r}"
    status_line, *header_lines = head.split(b"\r\n")
    version, status, *_ = status_line.split(b" ", 2)
    assert version == b"HTTP/1.1", status_line
    reply = Reply(int(status))
    for line in header_lines:
        name, _, value = line.partition(b":")
        reply.headers.append((name.decode("latin-1").lower(), value.strip().decode("latin-1")))
    if reply.header("transfer-encoding") == "chunked":
        reply.body = _unchunk(body)
    else:
        length = reply.header("content-length")
        assert length is not None, "reply without a content-length or chunked body"
        assert len(body) == int(length), f"body of {len(body)} bytes, content-length {length}"
        reply.body = body
    return reply


def _unchunk(data: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, separator, rest = data.partition(b"\r\n")
        assert separator, "chunked body cut off"
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += rest[:size]
        assert rest[size : size + 2] == b"\r\n", "chunk without its CRLF"
        data = rest[size + 2 :]


def check(reply: Reply) -> None:
    """No 5xx, and a body its content type can read: JSON errors in OpenAI's shape."""
    assert reply.status < 500, (reply.status, reply.body[:500])
    content_type = reply.header("content-type") or ""
    if content_type.startswith("application/json"):
        document = orjson.loads(reply.body)
        if reply.status >= 400:
            assert isinstance(document["error"]["message"], str)
            assert len(reply.body) < 10_000, "error body echoes too much input"
    elif content_type.startswith("text/event-stream"):
        for line in reply.body.split(b"\n"):
            if line.startswith(b"data: ") and line != b"data: [DONE]":
                orjson.loads(line[6:])
    if reply.status >= 400:
        assert "Traceback" not in reply.body.decode("utf-8", "replace")


def check_repeat(first: Reply, second: Reply, *, plain: bool) -> None:
    """A hit answers what the first request stored (or was answered from the cache).

    ``plain``: the request has no cache controls, so a stored answer must be hit next.
    """
    check(first)
    check(second)
    event(f"first: {first.status} {first.cache_status or '-'}")
    came_from_cache = "hit" in first.cache_status or "stored" in first.cache_status
    if plain and first.status == 200 and "stored" in first.cache_status:
        assert second.cache_status == "llmcache; hit", second.cache_status
    if came_from_cache and second.cache_status == "llmcache; hit":
        assert second.status == first.status == 200
        if "event-stream" not in (first.header("content-type") or ""):
            assert orjson.loads(second.body) == orjson.loads(first.body)


def post_twice(proxy: RunningProxy, path: str, body: bytes, headers: list[tuple[bytes, bytes]]):
    raw = request_bytes("POST", path, headers, body)
    return exchange(proxy, raw), exchange(proxy, raw)


JSON_HEADERS = [(b"content-type", b"application/json")]

# --------------------------------------------------------------------------- strategies

# Top-level numbers stay below 2**64 and nesting stays shallow here; big numbers and deep
# nesting have tests of their own below.
safe_numbers = st.integers(-(2**63), 2**64 - 1) | st.floats(
    min_value=-1e15, max_value=1e15, allow_nan=False
)
scalars = st.none() | st.booleans() | safe_numbers | st.text(max_size=40)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
roles = st.sampled_from(["user", "system", "assistant", "tool", "developer"]) | st.text(max_size=8)
contents = (
    st.text(max_size=60)
    | st.none()
    | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=20)}))
    | json_values
)
messages = st.lists(
    st.fixed_dictionaries({"role": roles}, optional={"content": contents, "name": json_values})
    | json_values,
    max_size=4,
)
token_ids = st.lists(st.integers(0, 100_000), min_size=1, max_size=6)
prompts = (
    st.text(max_size=60)
    | st.lists(st.text(max_size=20), min_size=1, max_size=4)
    | token_ids
    | st.lists(token_ids, min_size=1, max_size=3)
    | json_values
)
param_values = {name: st.just(value) | json_values for name, value in KNOWN_PARAMS.items()}
known_params = st.fixed_dictionaries({}, optional=param_values)


def model_for(route: str) -> st.SearchStrategy[Any]:
    model, _ = ROUTES[route]
    return st.just(model) | st.sampled_from(["whisper-1", "no-such-model", ""]) | json_values


@st.composite
def llm_bodies(draw: st.DrawFn, cache: st.SearchStrategy[Any] | None = None) -> tuple[str, dict]:
    route = draw(st.sampled_from(sorted(ROUTES)))
    _, prompt_param = ROUTES[route]
    body: dict[str, Any] = {"model": draw(model_for(route))}
    shape = messages if prompt_param == "messages" else prompts
    if draw(st.integers(0, 9)):  # mostly present
        body[prompt_param] = draw(shape)
    body.update(draw(known_params))
    body.update(draw(st.dictionaries(st.text(max_size=12), json_values, max_size=2)))
    if cache is not None:
        body["cache"] = draw(cache)
    return route, body


@st.composite
def valid_bodies(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A body the proxy forwards: the route's model and a well-formed prompt."""
    route = draw(st.sampled_from(sorted(ROUTES)))
    model, prompt_param = ROUTES[route]
    prompt = (
        [{"role": "user", "content": draw(st.text(max_size=20))}]
        if prompt_param == "messages"
        else draw(st.text(min_size=1, max_size=20))
    )
    return route, {"model": model, prompt_param: prompt}


seconds = (
    st.integers(-10, 10**6)
    | st.floats(min_value=-1e6, max_value=1e9, allow_nan=False)
    | st.floats(min_value=1e9, allow_infinity=False)  # JSON has no nan or inf
    | st.text(max_size=8)
    | st.booleans()
    | st.none()
)
namespaces = (
    st.text(max_size=20)
    | st.text(st.characters(codec="ascii"), max_size=12)
    | st.text(st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"]), min_size=1, max_size=4)
    | st.text(min_size=250, max_size=300)
    | json_values
)
flags = st.booleans() | st.none() | json_values


def controls(ttl: st.SearchStrategy[Any] = seconds) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {},
        optional={
            "ttl": ttl,
            "s-maxage": ttl,
            "no-cache": flags,
            "no-store": flags,
            "namespace": namespaces,
            "use-cache": flags,
        },
    ) | st.dictionaries(st.sampled_from([*CONTROL_KEYS, "max-age", "x"]) | st.text(), json_values)


def encode(body: Any) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)


# --------------------------------------------------------------------------- proxies


@pytest.fixture
def disk_proxy(make_proxy: ProxyFactory) -> RunningProxy:
    return make_proxy(cache_type="disk")


@pytest.fixture
def local_proxy(make_proxy: ProxyFactory) -> RunningProxy:
    return make_proxy(cache_type="local")


@pytest.fixture
def locked_proxy(make_proxy: ProxyFactory) -> RunningProxy:
    return make_proxy(cache_type="local", general_settings={"master_key": MASTER_KEY})


# --------------------------------------------------------------------------- JSON bodies


@fuzz
@given(case=llm_bodies())
def test_fuzz_json_bodies(disk_proxy: RunningProxy, case: tuple[str, dict[str, Any]]) -> None:
    route, body = case
    first, second = post_twice(disk_proxy, route, encode(body), JSON_HEADERS)
    check_repeat(first, second, plain=True)


@fuzz
@given(
    body=st.binary(max_size=200)
    | st.text(max_size=200).map(str.encode)
    | st.sampled_from(
        [
            b"{",
            b"[]",
            b"null",
            b'{"model": "gpt-4o-mini", "messages": "\\ud800"}',
            b"\xef\xbb\xbf{}",
        ]
    ),
    route=st.sampled_from(sorted(ROUTES)),
    content_type=st.sampled_from(
        [None, b"application/json", b"text/plain", b"application/x-www-form-urlencoded", b"a/b; c"]
    ),
)
def test_fuzz_raw_bodies(
    disk_proxy: RunningProxy, body: bytes, route: str, content_type: bytes | None
) -> None:
    headers = [] if content_type is None else [(b"content-type", content_type)]
    first, second = post_twice(disk_proxy, route, body, headers)
    check_repeat(first, second, plain=True)
    if content_type == b"text/plain":
        assert first.status == 415


@fuzz
@given(case=llm_bodies(cache=controls()))
def test_fuzz_cache_controls(local_proxy: RunningProxy, case: tuple[str, dict[str, Any]]) -> None:
    route, body = case
    first, second = post_twice(local_proxy, route, encode(body), JSON_HEADERS)
    check_repeat(first, second, plain=False)
    namespace = body["cache"].get("namespace") if isinstance(body["cache"], dict) else None
    if isinstance(namespace, str) and not namespace.isprintable():
        assert first.status == 400


@fuzz
@given(
    case=valid_bodies(),
    name=st.sampled_from(sorted(KNOWN_PARAMS)),
    number=st.floats(min_value=2.0**63, allow_infinity=False) | st.floats(max_value=-(2.0**63)),
)
def test_fuzz_big_numbers(
    disk_proxy: RunningProxy, case: tuple[str, dict[str, Any]], name: str, number: float
) -> None:
    route, body = case
    body[name] = number
    first, second = post_twice(disk_proxy, route, encode(body), JSON_HEADERS)
    check_repeat(first, second, plain=True)


@fuzz
@given(
    case=valid_bodies(),
    name=st.sampled_from(["metadata", "user", "tools", "x-extra", "cache.ttl", "cache.no-cache"]),
    depth=st.integers(200, 1020),
    kind=st.sampled_from(["[", "{"]),
)
def test_fuzz_deep_nesting(
    disk_proxy: RunningProxy, case: tuple[str, dict[str, Any]], name: str, depth: int, kind: str
) -> None:
    route, body = case
    body.pop(name, None)
    nested = b"[" * depth + b"]" * depth if kind == "[" else b'{"a":' * depth + b"1" + b"}" * depth
    if name.startswith("cache."):
        member = b'"cache":{' + orjson.dumps(name[len("cache.") :]) + b":" + nested + b"}"
    else:
        member = orjson.dumps(name) + b":" + nested
    raw = encode(body)[:-1] + b"," + member + b"}"
    first, second = post_twice(disk_proxy, route, raw, JSON_HEADERS)
    check_repeat(first, second, plain=True)


# --------------------------------------------------------------------------- headers

header_names = st.binary(min_size=1, max_size=20).filter(
    lambda name: b"\r" not in name and b"\n" not in name and name.lower() not in FRAMING_HEADERS
) | st.sampled_from(
    [b"content-type", b"content-encoding", b"authorization", b"api-key", b"x-api-key", b"expect"]
)
header_values = st.binary(max_size=60).filter(lambda v: b"\r" not in v and b"\n" not in v)
headers = st.lists(st.tuples(header_names, header_values), max_size=6)
paths = st.sampled_from(
    [
        "/v1/chat/completions",
        "/chat/completions",
        "/v1/embeddings",
        "/v1/audio/transcriptions",
        "/cache/ping",
        "/cache/delete",
        "/health",
        "/v1/models",
        "/metrics",
        "/v1/unknown",
        "/v1/chat/completions/",
        "/%2e%2e/v1/models",
    ]
)


@fuzz
@given(
    path=paths,
    method=st.sampled_from(["POST", "GET", "PUT", "OPTIONS"]),
    extra=headers,
    body=st.sampled_from(
        [b"", encode({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "h"}]})]
    ),
)
def test_fuzz_headers(
    local_proxy: RunningProxy,
    path: str,
    method: str,
    extra: list[tuple[bytes, bytes]],
    body: bytes,
) -> None:
    reply = exchange(local_proxy, request_bytes(method, path, extra, body))
    check(reply)


schemes = st.sampled_from(["Bearer", "bearer", "BEARER", "bEaReR", "Basic", "Token", ""])
keys = (
    st.just(MASTER_KEY)
    | st.sampled_from(
        [MASTER_KEY.lower(), MASTER_KEY + " ", MASTER_KEY[:-1], "", "Bearer " + MASTER_KEY]
    )
    | st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=20)
)


@fuzz
@given(scheme=schemes, gap=st.sampled_from([" ", "  ", "", "\t"]), key=keys, header=st.booleans())
def test_fuzz_authorization(
    locked_proxy: RunningProxy, scheme: str, gap: str, key: str, header: bool
) -> None:
    value = f"{scheme}{gap}{key}" if header else key
    sent = [(b"authorization" if header else b"api-key", value.encode("latin-1"))]
    seen = value.strip(" \t")  # the server drops the whitespace around a header value
    if header:
        # RFC 9110: a case-insensitive scheme, one or more spaces, then the token.
        scheme_seen, space, token = seen.partition(" ")
        valid = bool(space) and scheme_seen.lower() == "bearer" and token.strip(" \t") == MASTER_KEY
    else:
        valid = seen == MASTER_KEY
    reply = exchange(locked_proxy, request_bytes("GET", "/v1/models", sent))
    check(reply)
    if CONTROLS.search(value):
        assert reply.status == 400, (sent, reply.body)  # the HTTP parser refuses it
    else:
        assert reply.status == (200 if valid else 401), (sent, reply.body)


# --------------------------------------------------------------------------- multipart

boundaries = st.text(
    st.characters(codec="ascii", categories=["L", "N"], include_characters="'()+_,-./:=? "),
    min_size=1,
    max_size=70,
).filter(lambda b: not b.endswith(" "))
form_names = st.sampled_from(
    [
        "model",
        "cache",
        "cache[ttl]",
        "cache[s-maxage]",
        "cache[namespace]",
        "cache[no-cache]",
        "cache[no-store]",
        "cache[use-cache]",
        "cache[bogus]",
        "cache[",
        "language",
        "prompt",
        "temperature",
        "response_format",
    ]
) | st.text(max_size=10)
SANE_FIELDS = [
    "language",
    "prompt",
    "temperature",
    "response_format",
    "cache[ttl]",
    "cache[no-store]",
    "cache[namespace]",
]
form_values = st.sampled_from(
    ["whisper-1", "true", "false", "0", "1", "300", "-1", "abc", "", '{"ttl": 5}', "[1]", "ns"]
) | st.text(max_size=20)
non_finite_values = st.sampled_from(["nan", "inf", "-inf", "1e400", "NaN", "Infinity", "1e300"])


@st.composite
def uploads(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A multipart upload: (content type header, body); about half broken on purpose."""
    broken = draw(st.booleans())
    boundary = draw(boundaries)
    names = form_names if broken else st.sampled_from(SANE_FIELDS)
    fields = draw(st.lists(st.tuples(names, form_values), max_size=5))
    if not broken or draw(st.integers(0, 4)):
        fields.insert(0, ("model", "whisper-1"))
    parts = []
    for name, value in fields:
        disposition = f'form-data; name="{name}"'.encode()
        parts.append(b"Content-Disposition: " + disposition + b"\r\n\r\n" + value.encode())
    if not broken or draw(st.integers(0, 4)):
        filename = draw(st.sampled_from(["a.wav", "", "x\u00e9.mp3", 'q"uote.wav']))
        data = draw(st.binary(max_size=64))
        disposition = f'form-data; name="file"; filename="{filename}"'.encode()
        parts.append(
            b"Content-Disposition: " + disposition + b"\r\nContent-Type: audio/wav\r\n\r\n" + data
        )
    delimiter = b"--" + boundary.encode()
    body = b"".join(delimiter + b"\r\n" + part + b"\r\n" for part in parts) + delimiter + b"--\r\n"
    declared, kind = f'"{boundary}"', "multipart/form-data"
    if broken:
        if draw(st.booleans()):
            body = body[: draw(st.integers(0, len(body)))]
        declared = draw(st.sampled_from([declared, boundary, boundary + "x", ""]))
        kind = draw(st.sampled_from([kind, kind, "multipart/mixed", "text/plain"]))
    return f"{kind}; boundary={declared}".encode(), body


@fuzz
@given(upload=uploads())
def test_fuzz_multipart(disk_proxy: RunningProxy, upload: tuple[bytes, bytes]) -> None:
    content_type, body = upload
    first, second = post_twice(
        disk_proxy, "/v1/audio/transcriptions", body, [(b"content-type", content_type)]
    )
    check_repeat(first, second, plain=b"cache" not in body)


@fuzz
@given(
    control=st.sampled_from(["ttl", "s-maxage"]),
    value=non_finite_values,
    audio=st.binary(min_size=1, max_size=32),
)
def test_fuzz_multipart_non_finite_ttls(
    local_proxy: RunningProxy, control: str, value: str, audio: bytes
) -> None:
    boundary = b"fuzz-boundary"
    parts = [
        b'Content-Disposition: form-data; name="model"\r\n\r\nwhisper-1',
        f'Content-Disposition: form-data; name="cache[{control}]"\r\n\r\n{value}'.encode(),
        b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' + audio,
    ]
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    body += b"--" + boundary + b"--\r\n"
    headers = [(b"content-type", b"multipart/form-data; boundary=" + boundary)]
    first, second = post_twice(local_proxy, "/v1/audio/transcriptions", body, headers)
    check_repeat(first, second, plain=False)
    if value.lower() == "nan":
        # no number of seconds: refused, never stored to live forever
        assert "stored" not in first.cache_status, first.cache_status
