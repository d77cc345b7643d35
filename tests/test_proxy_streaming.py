"""End to end: streamed responses are cached once and replayed as server-sent events.

The proxy runs over real HTTP in front of the fake upstream (``tests/fake_upstream.py``);
clients are the OpenAI SDK's streaming client and raw ``httpx`` streaming, which sees the
bytes and how they arrive. Covered: store then replay (local, disk and Redis backends),
a hit for a client that asks again right after reading ``[DONE]``,
``stream_options.include_usage`` on replay, a plain request hitting an entry stored from a
stream and the other way round, streams that must not be stored (client gone, upstream
broken off or erroring mid-stream, upstream HTTP errors), ``stream_replay: original``
timing, tool-call and ``reasoning_content`` entries, and per-request controls on streams.

No assertion is on wall-clock time: where a test must wait for the proxy, it polls with a
bound (``wait_for``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import orjson
import pytest

from llmcache_tui.cache.entry import CacheEntry
from llmcache_tui.cache.keys import request_digest, storage_key
from llmcache_tui.proxy.streaming import assemble
from tests import redis_servers as rs
from tests.conftest import ProxyFactory
from tests.fake_upstream import FakeUpstreamServer
from tests.servers import RunningProxy, ThreadedServer

HIT = "llmcache; hit"
MISS = "llmcache; fwd=miss"
BYPASS = "llmcache; fwd=bypass"
MODEL = "gpt-4o-mini"
PROMPT = "stream me three words"
ANSWER = "echo: stream me three words"
# The fake streams a role chunk, one chunk per word of ANSWER, then the finish chunk.
N_CHUNKS = 1 + len(ANSWER.split()) + 1
DONE = b"data: [DONE]\n\n"
CHAT_PATH = "/v1/chat/completions"


def messages(content: str = PROMPT) -> list[Any]:
    return [{"role": "user", "content": content}]


def stream_body(content: str = PROMPT, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": messages(content), "stream": True, **extra}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def events_of(body: bytes) -> list[Any]:
    """The SSE events of a body: parsed JSON, or ``"[DONE]"``."""
    assert body.endswith(b"\n\n"), body[-40:]
    events: list[Any] = []
    for event in body[:-2].split(b"\n\n"):
        assert event.startswith(b"data: "), event
        payload = event[len(b"data: ") :]
        events.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return events


@dataclass
class RawStream:
    """One streamed response as ``httpx`` received it."""

    status: int
    headers: httpx.Headers
    pieces: list[bytes]  # the body as it came off the socket (``iter_raw``)

    @property
    def body(self) -> bytes:
        return b"".join(self.pieces)

    @property
    def events(self) -> list[Any]:
        return events_of(self.body)

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e != "[DONE]"]


def raw_stream(proxy: RunningProxy, body: dict[str, Any], path: str = CHAT_PATH) -> RawStream:
    with proxy.http() as http, http.stream("POST", path, json=body) as reply:
        pieces = [piece for piece in reply.iter_raw() if piece]
        return RawStream(reply.status_code, reply.headers, pieces)


def content_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )


@dataclass
class SDKStream:
    """A streamed chat completion as the OpenAI SDK parsed it."""

    headers: Mapping[str, str]
    chunks: list[Any]

    @property
    def text(self) -> str:
        return "".join(c.choices[0].delta.content or "" for c in self.chunks if c.choices)

    @property
    def finish_reason(self) -> str | None:
        reasons = [c.choices[0].finish_reason for c in self.chunks if c.choices]
        return next((r for r in reversed(reasons) if r), None)

    @property
    def dumps(self) -> list[dict[str, Any]]:
        return [c.model_dump(exclude_unset=True) for c in self.chunks]


def sdk_stream(client: openai.OpenAI, content: str = PROMPT, **kwargs: Any) -> SDKStream:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages(content), stream=True, **kwargs
    )
    stream = raw.parse()
    assert isinstance(stream, openai.Stream)
    with stream:
        return SDKStream(raw.headers, list(stream))


def sdk_plain(client: openai.OpenAI, content: str = PROMPT, **kwargs: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages(content), **kwargs
    )


BASE_CHUNK: dict[str, Any] = {
    "id": "chatcmpl-seeded",
    "object": "chat.completion.chunk",
    "created": 1764150000,
    "model": "gpt-4o-mini-2024-07-18",
    "system_fingerprint": "fp_seeded",
}


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {**BASE_CHUNK, "choices": [choice]}


# --------------------------------------------------------------------------- backends


@dataclass
class CachedProxy:
    """A proxy and a way to read its backend's raw entries from the test thread."""

    proxy: RunningProxy
    read: Callable[[str], bytes | None]

    def entry(self, key: str) -> CacheEntry:
        raw = self.read(key)
        assert raw is not None, f"nothing stored under {key}"
        return CacheEntry.decode(raw)


def _read_through_backend(proxy: RunningProxy) -> Callable[[str], bytes | None]:
    backend = proxy.app.backend
    assert backend is not None

    def read(key: str) -> bytes | None:
        # The local and disk backends are not tied to the proxy's event loop.
        return asyncio.run(backend.get(key))

    return read


@pytest.fixture(params=["local", "disk", "redis"])
def cached_proxy(request: pytest.FixtureRequest, make_proxy: ProxyFactory) -> CachedProxy:
    """A default proxy once per backend: in memory, on disk, and on a real Redis."""
    if request.param == "redis":
        server: rs.RedisProcess = request.getfixturevalue("redis_plain")
        proxy = make_proxy({"host": server.host, "port": server.port}, cache_type="redis")

        def read(key: str) -> bytes | None:
            with server.client() as client:
                value = client.get(key)
            assert value is None or isinstance(value, bytes)
            return value

        return CachedProxy(proxy, read)
    proxy = make_proxy(cache_type=request.param)
    return CachedProxy(proxy, _read_through_backend(proxy))


@pytest.fixture
def local_proxy(make_proxy: ProxyFactory) -> CachedProxy:
    proxy = make_proxy(cache_type="local")
    return CachedProxy(proxy, _read_through_backend(proxy))


# --------------------------------------------------------------------------- store and replay


def test_stream_is_stored_once_and_replayed(
    cached_proxy: CachedProxy, upstream: FakeUpstreamServer
) -> None:
    proxy = cached_proxy.proxy
    with proxy.sdk() as client:
        first = sdk_stream(client)
        second = sdk_stream(client)
    third = raw_stream(proxy, stream_body())

    assert first.headers["cache-status"] == MISS
    assert first.text == ANSWER
    assert len(first.chunks) == N_CHUNKS
    assert first.finish_reason == "stop"

    key = first.headers["x-litellm-cache-key"]
    assert second.headers["cache-status"] == HIT
    assert second.headers["x-litellm-cache-key"] == key
    assert second.headers["content-type"].startswith("text/event-stream")
    assert second.text == ANSWER
    assert len(second.chunks) == len(first.chunks)
    assert second.finish_reason == "stop"
    assert second.dumps == first.dumps  # the very chunks, ids and all

    assert third.status == 200
    assert third.headers["cache-status"] == HIT
    assert third.body.endswith(DONE)
    assert third.events[-1] == "[DONE]"
    assert third.events.count("[DONE]") == 1
    assert content_of(third.chunks) == ANSWER
    assert len(third.chunks) == N_CHUNKS

    assert upstream.app.call_count() == 1
    entry = cached_proxy.entry(key)
    assert entry.chunks == third.chunks
    assert entry.chunk_offsets is not None and len(entry.chunk_offsets) == N_CHUNKS
    assert entry.response["object"] == "chat.completion"
    assert entry.response["choices"][0]["message"] == {"role": "assistant", "content": ANSWER}
    assert entry.prompt_preview == PROMPT


def test_stream_is_a_hit_as_soon_as_the_client_has_read_done(
    make_proxy: ProxyFactory,
) -> None:
    """The SDK hangs up on reading ``[DONE]``, before the upstream ends its body; asked
    again at once, the proxy already has the answer stored.

    The upstream here holds its body open after ``[DONE]`` until the test lets it go.
    """
    release = threading.Event()
    events = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "held"}),
        chunk({}, "stop"),
    ]

    async def lingering_upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        body = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + DONE
        await send({"type": "http.response.body", "body": body, "more_body": True})
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
        await send({"type": "http.response.body", "body": b""})

    with ThreadedServer(lingering_upstream, lifespan="off") as server:
        proxy = make_proxy(models={MODEL: f"openai/{MODEL}"}, api_base=server.base_url)
        try:
            with proxy.sdk() as client:
                first = sdk_stream(client)
                second = sdk_stream(client)
        finally:
            release.set()

    assert first.headers["cache-status"] == MISS
    assert first.text == "held"
    assert second.headers["cache-status"] == HIT
    assert second.dumps == first.dumps


def test_replayed_bytes_are_the_relayed_bytes(
    proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    """The fake writes its events with orjson, as the replay does: the bytes match exactly."""
    body = stream_body(stream_options={"include_usage": True})
    relayed = raw_stream(proxy, body)
    replayed = raw_stream(proxy, body)

    assert relayed.headers["cache-status"] == MISS
    assert replayed.headers["cache-status"] == HIT
    assert replayed.body == relayed.body
    assert relayed.body.endswith(b"\n\n" + DONE)
    assert upstream.app.call_count() == 1


def test_include_usage_is_honoured_on_replay(
    proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    usage: Any = {"include_usage": True}
    with proxy.sdk() as client:
        recorded = sdk_stream(client, stream_options=usage)
        asked = sdk_stream(client, stream_options=usage)
        not_asked = sdk_stream(client)

    assert recorded.chunks[-1].usage is not None
    assert asked.headers["cache-status"] == HIT
    assert asked.chunks[-1].choices == []
    assert asked.chunks[-1].usage == recorded.chunks[-1].usage
    assert asked.chunks[-1].usage.total_tokens > 0
    assert len(asked.chunks) == N_CHUNKS + 1

    assert not_asked.headers["cache-status"] == HIT
    assert all(chunk.usage is None for chunk in not_asked.chunks)
    assert all(chunk.choices for chunk in not_asked.chunks)
    assert len(not_asked.chunks) == N_CHUNKS
    assert not_asked.text == asked.text == ANSWER
    assert upstream.app.call_count() == 1


def test_plain_request_hits_an_entry_stored_from_a_stream(
    proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    with proxy.sdk() as client:
        streamed = sdk_stream(client, stream_options={"include_usage": True})
        raw = sdk_plain(client)
    plain = raw.parse()

    assert raw.headers["cache-status"] == HIT
    assert raw.headers["x-litellm-cache-key"] == streamed.headers["x-litellm-cache-key"]
    assert raw.headers["content-type"].startswith("application/json")
    assert plain.object == "chat.completion"
    assert plain.id == streamed.chunks[0].id
    assert plain.choices[0].message.role == "assistant"
    assert plain.choices[0].message.content == streamed.text == ANSWER
    assert plain.choices[0].finish_reason == "stop"
    assert plain.usage == streamed.chunks[-1].usage
    assert upstream.app.call_count() == 1


def test_stream_request_hits_an_entry_stored_from_a_plain_call(
    proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    with proxy.sdk() as client:
        raw = sdk_plain(client)
        plain = raw.parse()
        streamed = sdk_stream(client)
        with_usage = sdk_stream(client, stream_options={"include_usage": True})
    replay = raw_stream(proxy, stream_body())

    assert raw.headers["cache-status"] == "llmcache; fwd=miss; stored"
    for answer in (streamed, with_usage):
        assert answer.headers["cache-status"] == HIT
        assert answer.text == plain.choices[0].message.content == ANSWER
        assert answer.finish_reason == "stop"
        assert {chunk.id for chunk in answer.chunks} == {plain.id}
    assert all(chunk.usage is None for chunk in streamed.chunks)
    assert with_usage.chunks[-1].usage == plain.usage
    assert replay.headers["cache-status"] == HIT
    assert replay.body.endswith(DONE)
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in replay.chunks)
    assert upstream.app.call_count() == 1


def test_text_completion_stream_both_ways(
    proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    prompt = "count to three"
    with proxy.sdk() as client:
        first = list(
            client.completions.create(model="gpt-3.5-turbo-instruct", prompt=prompt, stream=True)
        )
        replayed = list(
            client.completions.create(model="gpt-3.5-turbo-instruct", prompt=prompt, stream=True)
        )
        plain = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=prompt)

    def text(chunks: list[Any]) -> str:
        return "".join(c.choices[0].text for c in chunks if c.choices)

    assert text(first) == text(replayed) == plain.choices[0].text == "echo: count to three"
    assert [c.model_dump() for c in replayed] == [c.model_dump() for c in first]
    assert plain.object == "text_completion"
    assert plain.choices[0].finish_reason == "stop"
    assert upstream.app.call_count() == 1


# --------------------------------------------------------------------------- not stored


def assert_not_stored(proxy: RunningProxy, upstream: FakeUpstreamServer, calls: int = 1) -> None:
    """The proxy stored nothing: the same request again is a miss that reaches upstream."""
    assert proxy.app.stats.stored == 0
    again = raw_stream(proxy, stream_body())
    assert again.headers["cache-status"] == MISS
    assert content_of(again.chunks) == ANSWER
    assert upstream.app.call_count() == calls + 1


def test_client_that_disconnects_mid_stream_stores_nothing(
    proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    upstream.app.chunk_delay = 0.05  # the stream is still going when the client leaves
    with proxy.http() as http, http.stream("POST", CHAT_PATH, json=stream_body()) as reply:
        first = next(line for line in reply.iter_lines() if line)
    # Closed after the first event. Wait until the proxy has finished with that request.
    wait_for(lambda: proxy.app.stats.requests == 1, "the abandoned request to end")
    upstream.app.chunk_delay = 0.0

    assert first.startswith("data: {")
    assert_not_stored(proxy, upstream)


@pytest.mark.parametrize("after", [2, N_CHUNKS], ids=["mid-stream", "before-done"])
def test_upstream_that_breaks_off_stores_nothing(
    proxy: RunningProxy, upstream: FakeUpstreamServer, after: int
) -> None:
    upstream.app.break_stream_after = after
    broken = raw_stream(proxy, stream_body())
    upstream.app.break_stream_after = None

    assert broken.status == 200
    *chunks, failure = broken.events
    assert len(chunks) == after
    assert "broke off" in failure["error"]["message"]
    assert DONE not in broken.body
    assert_not_stored(proxy, upstream)


def test_upstream_error_mid_stream_stores_nothing(
    proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    upstream.app.error_mid_stream_after = 3
    failed = raw_stream(proxy, stream_body())
    upstream.app.error_mid_stream_after = None

    *chunks, error = failed.events
    assert len(chunks) == 3
    assert error["error"]["type"] == "server_error"
    assert_not_stored(proxy, upstream)


def test_upstream_429_on_a_stream_passes_through_and_is_not_stored(
    proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    upstream.app.queue_error(429, headers={"retry-after": "7"})
    with proxy.sdk() as client, pytest.raises(openai.RateLimitError) as raised:
        sdk_stream(client)

    assert raised.value.status_code == 429
    assert raised.value.response.headers["retry-after"] == "7"
    assert raised.value.response.headers["cache-status"] == MISS
    assert_not_stored(proxy, upstream)


def test_upstream_500_on_a_stream_passes_through_and_is_not_stored(
    proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    upstream.app.queue_error(500)
    with proxy.http() as http:
        reply = http.post(CHAT_PATH, json=stream_body())

    assert reply.status_code == 500
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json()["error"]["message"] == "Fake upstream error: 500 Internal Server Error"
    assert_not_stored(proxy, upstream)


# --------------------------------------------------------------------------- replay timing


def test_stream_replay_original_recreates_the_recorded_pacing(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    chunk_delay = 0.05
    # Both on the same disk cache directory: one entry, replayed both ways.
    instant = make_proxy()
    original = make_proxy({"stream_replay": "original"})
    upstream.app.chunk_delay = chunk_delay
    recorded = raw_stream(instant, stream_body())
    upstream.app.chunk_delay = 0.0

    fast = raw_stream(instant, stream_body())
    paced = raw_stream(original, stream_body())

    assert recorded.headers["cache-status"] == MISS
    assert len(recorded.pieces) > 1  # relayed as it came, not buffered
    for replay in (fast, paced):
        assert replay.headers["cache-status"] == HIT
        assert replay.events == recorded.events
    # Instant: the whole replay in one write. Original: event by event, as recorded.
    assert len(fast.pieces) == 1
    assert len(paced.pieces) > 1

    backend = instant.app.backend
    assert backend is not None
    raw = asyncio.run(backend.get(recorded.headers["x-litellm-cache-key"]))
    assert raw is not None
    offsets = CacheEntry.decode(raw).chunk_offsets
    assert offsets is not None and len(offsets) == N_CHUNKS
    assert offsets == sorted(offsets)
    assert offsets[0] >= 0
    assert offsets[-1] >= (N_CHUNKS - 2) * chunk_delay * 0.5
    assert upstream.app.call_count() == 1


# --------------------------------------------------------------------------- tool calls, reasoning

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
TOOL_QUESTION = "weather in Paris and Rome?"


def call_delta(index: int, **fields: Any) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, **fields}]}


TOOL_CHUNKS: list[dict[str, Any]] = [
    chunk({"role": "assistant", "content": None, "reasoning_content": ""}),
    chunk({"reasoning_content": "Two cities, "}),
    chunk({"reasoning_content": "so two calls."}),
    chunk(
        call_delta(
            0, id="call_p", type="function", function={"name": "get_weather", "arguments": ""}
        )
    ),
    chunk(call_delta(0, function={"arguments": '{"city": '})),
    chunk(call_delta(0, function={"arguments": '"Paris"}'})),
    chunk(
        call_delta(
            1, id="call_r", type="function", function={"name": "get_weather", "arguments": ""}
        )
    ),
    chunk(call_delta(1, function={"arguments": '{"city": "Rome"}'})),
    chunk({}, "tool_calls"),
    {
        **BASE_CHUNK,
        "choices": [],
        "usage": {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50},
    },
]
EXPECTED_CALLS = [
    ("call_p", "get_weather", '{"city": "Paris"}'),
    ("call_r", "get_weather", '{"city": "Rome"}'),
]


def tool_body(stream: bool, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": messages(TOOL_QUESTION),
        "tools": TOOLS,
        **({"stream": True} if stream else {}),
        **extra,
    }


def seed(cached: CachedProxy, response: dict[str, Any], chunks: list[Any] | None) -> str:
    """Write an entry for the tool question straight into the (local) backend; its key."""
    key = storage_key(request_digest("chat", tool_body(stream=False)), None)
    entry = CacheEntry(
        response=response,
        route="chat",
        model=MODEL,
        prompt_preview=TOOL_QUESTION,
        created_at=time.time(),
        usage=response.get("usage"),
        chunks=chunks,
        chunk_offsets=None if chunks is None else [0.01 * i for i in range(len(chunks))],
    )
    backend = cached.proxy.app.backend
    assert backend is not None
    asyncio.run(backend.set(key, entry.encode()))
    return key


def calls_of(message: Any) -> list[tuple[str, str, str]]:
    return [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls]


def test_seeded_tool_call_stream_is_replayed_exactly_and_assembled(
    local_proxy: CachedProxy, upstream: FakeUpstreamServer
) -> None:
    response = assemble("chat", TOOL_CHUNKS)
    key = seed(local_proxy, response, TOOL_CHUNKS)
    proxy = local_proxy.proxy

    replay = raw_stream(proxy, tool_body(stream=True))
    replay_usage = raw_stream(proxy, tool_body(stream=True, stream_options={"include_usage": True}))
    with proxy.http() as http:
        plain_raw = http.post(CHAT_PATH, json=tool_body(stream=False))
    with proxy.sdk() as client:
        plain = client.chat.completions.create(
            model=MODEL,
            messages=messages(TOOL_QUESTION),
            tools=TOOLS,  # type: ignore[arg-type]
        )

    assert replay.headers["cache-status"] == HIT
    assert replay.headers["x-litellm-cache-key"] == key
    assert replay.chunks == TOOL_CHUNKS[:-1]  # the usage chunk only when asked
    assert replay.body.endswith(DONE)
    assert replay_usage.chunks == TOOL_CHUNKS

    assert plain_raw.headers["cache-status"] == HIT
    assert plain_raw.json() == response
    message = plain_raw.json()["choices"][0]["message"]
    assert message["reasoning_content"] == "Two cities, so two calls."
    assert message["content"] is None

    choice = plain.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert calls_of(choice.message) == EXPECTED_CALLS
    assert choice.message.model_extra is not None
    assert choice.message.model_extra["reasoning_content"] == "Two cities, so two calls."
    assert plain.usage is not None and plain.usage.total_tokens == 50
    assert upstream.app.call_count() == 0


def test_sdk_accumulates_a_replayed_tool_call_stream(
    local_proxy: CachedProxy, upstream: FakeUpstreamServer
) -> None:
    seed(local_proxy, assemble("chat", TOOL_CHUNKS), TOOL_CHUNKS)

    with (
        local_proxy.proxy.sdk() as client,
        client.chat.completions.stream(
            model=MODEL,
            messages=messages(TOOL_QUESTION),
            tools=TOOLS,  # type: ignore[arg-type]
        ) as stream,
    ):
        for _ in stream:
            pass
        final = stream.get_final_completion()

    assert calls_of(final.choices[0].message) == EXPECTED_CALLS
    assert final.choices[0].finish_reason == "tool_calls"
    assert upstream.app.call_count() == 0


def test_stream_request_replays_a_plain_tool_call_entry_as_chunks(
    local_proxy: CachedProxy, upstream: FakeUpstreamServer
) -> None:
    response = {
        "id": "chatcmpl-plain",
        "object": "chat.completion",
        "created": 1764150000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "reasoning_content": "Two cities, so two calls.",
                    "tool_calls": [
                        {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                        for i, n, a in EXPECTED_CALLS
                    ],
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50},
    }
    seed(local_proxy, response, None)

    replay = raw_stream(
        local_proxy.proxy, tool_body(stream=True, stream_options={"include_usage": True})
    )

    assert replay.headers["cache-status"] == HIT
    assert replay.body.endswith(DONE)
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in replay.chunks)
    assert replay.chunks[-1]["usage"] == response["usage"]
    assert assemble("chat", replay.chunks) == response
    assert upstream.app.call_count() == 0


def _tool_stream_events() -> Iterator[bytes]:
    """TOOL_CHUNKS as an upstream might send them: CRLF line ends, cut at awkward places."""
    data = b"".join(b"data: " + orjson.dumps(c) + b"\r\n\r\n" for c in TOOL_CHUNKS)
    data += b"data: [DONE]\r\n\r\n"
    cuts = sorted({i + 1 for i in range(len(data)) if data[i : i + 1] in (b"\r", b"{", b":")})
    cuts = [*cuts[::3], len(data)]
    start = 0
    for cut in cuts:
        if cut > start:
            yield data[start:cut]
            start = cut


def test_tool_call_stream_with_crlf_from_upstream_is_captured_and_replayed(
    make_proxy: ProxyFactory,
) -> None:
    async def tool_upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for piece in _tool_stream_events():
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            await asyncio.sleep(0.001)  # separate writes, so the proxy sees separate pieces
        await send({"type": "http.response.body", "body": b""})

    with ThreadedServer(tool_upstream, lifespan="off") as server:
        proxy = make_proxy(
            cache_type="local", models={MODEL: f"openai/{MODEL}"}, api_base=server.base_url
        )
        body = tool_body(stream=True, stream_options={"include_usage": True})
        relayed = raw_stream(proxy, body)
        replayed = raw_stream(proxy, body)
        with proxy.sdk() as client:
            plain = client.chat.completions.create(
                model=MODEL,
                messages=messages(TOOL_QUESTION),
                tools=TOOLS,  # type: ignore[arg-type]
            )

    assert relayed.body == b"".join(_tool_stream_events())  # relayed untouched
    assert replayed.headers["cache-status"] == HIT
    assert replayed.chunks == TOOL_CHUNKS
    assert calls_of(plain.choices[0].message) == EXPECTED_CALLS
    assert plain.choices[0].message.model_extra is not None
    assert plain.choices[0].message.model_extra["reasoning_content"] == "Two cities, so two calls."


# --------------------------------------------------------------------------- per-request controls


def test_no_store_stream_is_not_stored(proxy: RunningProxy, upstream: FakeUpstreamServer) -> None:
    with proxy.sdk() as client:
        first = sdk_stream(client, extra_body={"cache": {"no-store": True}})
    wait_for(lambda: proxy.app.stats.requests == 1, "the stream to end")

    assert first.text == ANSWER
    assert first.headers["cache-status"] == MISS
    assert "cache" not in upstream.app.calls[0].body
    assert_not_stored(proxy, upstream)


def test_namespace_applies_to_streams(proxy: RunningProxy, upstream: FakeUpstreamServer) -> None:
    namespaced = {"cache": {"namespace": "ns"}}
    with proxy.sdk() as client:
        first = sdk_stream(client, extra_body=namespaced)
        again = sdk_stream(client, extra_body=namespaced)
        bare = sdk_stream(client)

    key = first.headers["x-litellm-cache-key"]
    assert key.startswith("ns:")
    assert again.headers["cache-status"] == HIT
    assert again.headers["x-litellm-cache-key"] == key
    assert again.text == ANSWER
    assert bare.headers["cache-status"] == MISS
    assert bare.headers["x-litellm-cache-key"] == key.removeprefix("ns:")
    assert upstream.app.call_count() == 2


def test_stream_under_default_off_bypasses_the_cache(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    proxy = make_proxy({"mode": "default_off"})
    with proxy.sdk() as client:
        statuses = [sdk_stream(client).headers["cache-status"] for _ in range(2)]
        opted_in = sdk_stream(client, extra_body={"cache": {"use-cache": True}})

    assert statuses == [BYPASS, BYPASS]
    assert opted_in.headers["cache-status"] == MISS
    assert opted_in.text == ANSWER
    assert upstream.app.call_count() == 3
