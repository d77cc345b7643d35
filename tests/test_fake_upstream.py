"""Tests of the fake OpenAI provider itself, driven through the real openai SDK and httpx."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.fake_upstream import FakeOpenAI, FakeUpstreamServer, UploadedFile, expected_embedding
from tests.ports import free_port

USER_TEXT = "the quick  brown fox"
MESSAGES: list[Any] = [
    {"role": "system", "content": "be terse"},
    {"role": "user", "content": "an earlier question"},
    {"role": "assistant", "content": "an earlier answer"},
    {"role": "user", "content": USER_TEXT},
]


@pytest.fixture
def client(upstream: FakeUpstreamServer) -> Iterator[openai.OpenAI]:
    # max_retries=0: the SDK retries 429/5xx by default, which would eat queued errors.
    with openai.OpenAI(base_url=upstream.url, api_key="x", max_retries=0) as sdk:
        yield sdk


@pytest.fixture
def http(upstream: FakeUpstreamServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=upstream.url, timeout=5) as session:
        yield session


def sse_events(lines: Iterator[str]) -> list[str]:
    """The ``data:`` payloads of an SSE stream, in order."""
    return [line[len("data: ") :] for line in lines if line.startswith("data: ")]


# --------------------------------------------------------------------------- chat


def test_chat_completion_echoes_last_user_message(
    upstream: FakeUpstreamServer, client: openai.OpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    completion = raw.parse()

    assert completion.choices[0].message.content == "echo: " + USER_TEXT
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.id == "chatcmpl-fake-" + raw.headers["x-fake-call"]
    assert abs(completion.created - time.time()) < 60
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 2 + 3 + 3 + 4
    assert completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == 17


def test_chat_completion_ids_are_unique_and_content_parts_are_joined(
    client: openai.OpenAI,
) -> None:
    messages: list[Any] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "part one"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": "part two"},
            ],
        }
    ]
    first = client.chat.completions.create(model="m", messages=messages)
    second = client.chat.completions.create(model="m", messages=messages)

    assert first.choices[0].message.content == "echo: part one part two"
    assert second.choices[0].message.content == first.choices[0].message.content
    assert first.id != second.id


def test_chat_stream_matches_non_stream_content(
    upstream: FakeUpstreamServer, client: openai.OpenAI
) -> None:
    expected = client.chat.completions.create(model="m", messages=MESSAGES)
    chunks = list(
        client.chat.completions.create(
            model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    assert {chunk.id for chunk in chunks} == {chunks[0].id}
    assert chunks[0].id != expected.id
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    content = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert content == expected.choices[0].message.content
    word_chunks = chunks[1:-2]
    assert len(word_chunks) == len(content.split())
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-2].choices[0].delta.content is None
    assert chunks[-1].choices == []
    assert chunks[-1].usage == expected.usage


def test_chat_stream_raw_sse_shape(http: httpx.Client) -> None:
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    with http.stream("POST", "/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response.iter_lines())

    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(event) for event in events[:-1]]
    assert "usage" not in chunks[0]  # only present when include_usage is requested
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }


def test_stream_arrives_chunk_by_chunk(upstream: FakeUpstreamServer, http: httpx.Client) -> None:
    upstream.app.chunk_delay = 0.05
    body = {"messages": [{"role": "user", "content": "a b"}], "stream": True}
    arrivals: list[float] = []
    with http.stream("POST", "/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic())

    # role, "echo: ", "a ", "b", stop, [DONE]: five gaps of chunk_delay each.
    assert len(arrivals) == 6
    assert arrivals[-1] - arrivals[0] >= 0.2


# --------------------------------------------------------------------------- completions


def test_text_completion_and_stream(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="say hi")
    assert completion.object == "text_completion"
    assert completion.id.startswith("cmpl-fake-")
    assert completion.choices[0].text == "echo: say hi"
    assert completion.choices[0].finish_reason == "stop"

    listed = client.completions.create(model="m", prompt=["first prompt", "second"])
    assert listed.choices[0].text == "echo: first prompt"

    chunks = list(
        client.completions.create(
            model="m", prompt="say hi", stream=True, stream_options={"include_usage": True}
        )
    )
    assert {chunk.id for chunk in chunks} == {chunks[0].id}
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "echo: say hi"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage == completion.usage


# --------------------------------------------------------------------------- embeddings


def test_embeddings_are_deterministic_in_both_encodings(
    upstream: FakeUpstreamServer, client: openai.OpenAI, http: httpx.Client
) -> None:
    # The SDK asks for base64 (float32) by default; the floats must still be exact.
    result = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert result.object == "list"
    assert [item.index for item in result.data] == [0, 1]
    assert result.data[0].embedding == expected_embedding("alpha")
    assert result.data[1].embedding == expected_embedding("beta")
    assert result.data[0].embedding != result.data[1].embedding
    assert len(result.data[0].embedding) == 8
    assert result.usage.prompt_tokens == 2

    response = http.post(
        "/embeddings", json={"model": "e", "input": "alpha", "encoding_format": "float"}
    )
    assert response.json()["data"][0]["embedding"] == expected_embedding("alpha")
    assert int(response.headers["x-fake-call"]) == upstream.app.calls[-1].n

    tokens = client.embeddings.create(model="e", input=[[1, 2, 3], [4]], dimensions=4)
    assert [item.embedding for item in tokens.data] == [
        expected_embedding([1, 2, 3], 4),
        expected_embedding([4], 4),
    ]


# --------------------------------------------------------------------------- audio & models


def test_audio_transcription_multipart(upstream: FakeUpstreamServer, client: openai.OpenAI) -> None:
    audio = b"RIFF\x00\x01fake-wave-bytes\r\n--not-a-boundary\r\n" * 10
    result = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", audio))

    digest = hashlib.sha256(audio).hexdigest()[:12]
    assert result.text == f"transcript of {len(audio)} bytes sha256 {digest}"
    call = upstream.app.calls[-1]
    assert call.endpoint == "audio/transcriptions"
    assert call.body["model"] == "whisper-1"
    upload = call.body["file"]
    assert isinstance(upload, UploadedFile)
    assert (upload.filename, upload.data) == ("a.wav", audio)

    text = client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", audio), response_format="text"
    )
    assert text == result.text


def test_models_with_and_without_v1_prefix(upstream: FakeUpstreamServer) -> None:
    with openai.OpenAI(base_url=upstream.base_url, api_key="x", max_retries=0) as bare:
        ids = [model.id for model in bare.models.list()]
        bare.chat.completions.create(model="m", messages=MESSAGES)
    assert "gpt-4o-mini" in ids
    assert upstream.app.calls[-1].path == "/chat/completions"


# --------------------------------------------------------------------------- errors


def test_unknown_path_and_bad_json_get_openai_errors(http: httpx.Client) -> None:
    missing = http.post("/nope", json={})
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == {"message", "type", "param", "code"}

    bad_json = http.post(
        "/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["type"] == "invalid_request_error"

    no_messages = http.post("/chat/completions", json={"model": "m"})
    assert no_messages.status_code == 400
    assert no_messages.json()["error"]["param"] == "messages"

    wrong_method = http.get("/chat/completions")
    assert wrong_method.status_code == 405


def test_queue_error_rate_limit_then_success(
    upstream: FakeUpstreamServer, client: openai.OpenAI
) -> None:
    upstream.app.queue_error(429, times=2)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="m", messages=MESSAGES)
        assert info.value.status_code == 429
        assert info.value.code == "rate_limit_exceeded"
    ok = client.chat.completions.create(model="m", messages=MESSAGES)
    assert ok.choices[0].message.content == "echo: " + USER_TEXT
    assert upstream.app.call_count("chat/completions") == 3


def test_queue_error_custom_body_and_headers(
    upstream: FakeUpstreamServer, http: httpx.Client
) -> None:
    body = {"error": {"message": "boom", "type": "server_error", "param": None, "code": "x"}}
    upstream.app.queue_error(503, body, headers={"Retry-After": "7"})
    response = http.post("/embeddings", json={"input": "a"})
    assert response.status_code == 503
    assert response.json() == body
    assert response.headers["retry-after"] == "7"
    assert "x-fake-call" in response.headers
    assert http.post("/embeddings", json={"input": "a"}).status_code == 200


def test_break_stream_after_drops_connection(
    upstream: FakeUpstreamServer, http: httpx.Client
) -> None:
    upstream.app.break_stream_after = 2
    body = {"messages": MESSAGES, "stream": True}
    events: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream("POST", "/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line)
    assert len(events) == 2
    assert "[DONE]" not in "".join(events)


def test_queued_broken_stream_cuts_only_the_next_stream(
    upstream: FakeUpstreamServer, http: httpx.Client
) -> None:
    upstream.app.queue_broken_stream(0)
    body = {"messages": MESSAGES, "stream": True}
    assert http.post("/embeddings", json={"input": "a"}).status_code == 200  # not a stream
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream("POST", "/chat/completions", json=body) as response,
    ):
        list(response.iter_lines())
    with http.stream("POST", "/chat/completions", json=body) as response:
        assert sse_events(response.iter_lines())[-1] == "[DONE]"


def test_break_stream_seen_by_sdk(upstream: FakeUpstreamServer, client: openai.OpenAI) -> None:
    upstream.app.break_stream_after = 1
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIConnectionError):
        list(stream)


def test_error_mid_stream(
    upstream: FakeUpstreamServer, client: openai.OpenAI, http: httpx.Client
) -> None:
    upstream.app.error_mid_stream_after = 3
    body = {"messages": MESSAGES, "stream": True}
    with http.stream("POST", "/chat/completions", json=body) as response:
        events = sse_events(response.iter_lines())
    assert len(events) == 4
    assert orjson.loads(events[-1])["error"]["type"] == "server_error"

    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError, match="middle of the stream"):
        list(stream)


def test_delay_applies_before_answer(upstream: FakeUpstreamServer, http: httpx.Client) -> None:
    upstream.app.delay = 0.2
    started = time.monotonic()
    assert http.get("/models").status_code == 200
    assert time.monotonic() - started >= 0.2


def test_queued_delay_applies_to_the_next_calls_only(
    upstream: FakeUpstreamServer, http: httpx.Client
) -> None:
    upstream.app.queue_delay(10)
    with pytest.raises(httpx.ReadTimeout):
        http.get("/models", timeout=0.5)
    assert http.get("/models", timeout=5).status_code == 200  # the next one is not held
    upstream.app.queue_delay(10)
    upstream.app.reset()  # clears what is still queued
    assert http.get("/models", timeout=5).status_code == 200


# --------------------------------------------------------------------------- accounting


def test_call_counting_headers_and_reset(upstream: FakeUpstreamServer, http: httpx.Client) -> None:
    app = upstream.app
    assert app.call_count() == 0
    http.post(
        "/chat/completions",
        json={"messages": MESSAGES},
        headers={"X-Custom-Thing": "Yes", "Authorization": "Bearer k"},
    )
    http.post(upstream.base_url + "/chat/completions", json={"messages": MESSAGES})
    http.post("/embeddings", json={"input": "a"})

    assert app.call_count() == 3
    assert app.call_count("chat/completions") == 2
    assert app.call_count("/v1/chat/completions") == 1
    assert app.call_count("embeddings") == 1
    first = app.calls[0]
    assert first.headers["x-custom-thing"] == "Yes"
    assert first.headers["authorization"] == "Bearer k"
    assert first.body == {"messages": MESSAGES}
    assert first.method == "POST"

    app.queue_error(500)
    app.delay = 5.0
    app.break_stream_after = 0
    last_n = app.calls[-1].n
    app.reset()
    assert app.call_count() == 0
    assert app.delay == 0.0
    assert app.break_stream_after is None
    response = http.post("/chat/completions", json={"messages": MESSAGES})
    assert response.status_code == 200
    assert response.json()["id"] == f"chatcmpl-fake-{last_n + 1}"


def test_concurrent_calls_are_all_counted(upstream: FakeUpstreamServer) -> None:
    def call(i: int) -> str:
        response = shared.post(
            "/chat/completions",
            json={"messages": [{"role": "user", "content": f"n {i}"}]},
        )
        content: str = response.json()["choices"][0]["message"]["content"]
        assert content == f"echo: n {i}"
        return response.headers["x-fake-call"]

    with (
        httpx.Client(base_url=upstream.url, timeout=5) as shared,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        numbers = list(pool.map(call, range(24)))
    assert len(set(numbers)) == 24
    assert upstream.app.call_count("chat/completions") == 24


# --------------------------------------------------------------------------- server


def test_server_restarts_on_fresh_ports() -> None:
    app = FakeOpenAI()
    server = FakeUpstreamServer(app)
    for _ in range(2):
        with server:
            assert server.url == f"http://127.0.0.1:{server.port}/v1"
            assert httpx.get(server.url + "/models").status_code == 200
        assert not server.running
    assert app.call_count("models") == 2
    with pytest.raises(RuntimeError):
        _ = server.port


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536
