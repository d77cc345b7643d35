"""End to end: per-request ``cache`` controls, ``mode`` and ``supported_call_types``.

Expiry and age are tested without sleeping: the proxy is built around a local backend and
an entry clock that the test moves forward, then served over real HTTP like any other.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diskcache
import httpx
import openai
import orjson
import pytest

from llmcache_tui.cache.backends.local import LocalBackend
from llmcache_tui.config import Settings
from llmcache_tui.proxy.app import ProxyApp
from tests.conftest import ProxyFactory
from tests.fake_upstream import FakeUpstreamServer
from tests.servers import RunningProxy, ThreadedServer

MISS_STORED = "llmcache; fwd=miss; stored"
HIT = "llmcache; hit"
BYPASS = "llmcache; fwd=bypass"
MESSAGES: list[Any] = [{"role": "user", "content": "Hello"}]


class ManualClock:
    """A clock that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def with_manual_clock(clock: ManualClock) -> Callable[[Settings], ProxyApp]:
    def build(settings: Settings) -> ProxyApp:
        backend = LocalBackend(default_ttl=600, clock=clock)
        return ProxyApp(settings, backend, owns_backend=True, clock=clock)

    return build


def chat(client: openai.OpenAI, cache: dict[str, Any] | None = None, content: str = "Hello") -> Any:
    extra = None if cache is None else {"cache": cache}
    return client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": content}],
        extra_body=extra,
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def timed_proxy(make_proxy: ProxyFactory, clock: ManualClock) -> RunningProxy:
    return make_proxy(cache_type="local", build=with_manual_clock(clock))


# --------------------------------------------------------------------------- ttl


def test_ttl_entry_expires(
    timed_proxy: RunningProxy, clock: ManualClock, upstream: FakeUpstreamServer
) -> None:
    with timed_proxy.sdk() as client:
        first = chat(client, {"ttl": 1})
        clock.advance(0.5)
        before = chat(client)
        clock.advance(1)
        after = chat(client)

    assert first.headers["cache-status"] == MISS_STORED
    assert before.headers["cache-status"] == HIT
    assert after.headers["cache-status"] == MISS_STORED
    assert after.parse().id != first.parse().id
    assert upstream.app.call_count() == 2


def test_config_ttl_is_the_default_and_a_request_ttl_overrides_it(
    make_proxy: ProxyFactory, clock: ManualClock, upstream: FakeUpstreamServer
) -> None:
    def build(settings: Settings) -> ProxyApp:
        assert settings.cache is not None
        backend = LocalBackend(default_ttl=settings.cache.params.ttl, clock=clock)
        return ProxyApp(settings, backend, owns_backend=True, clock=clock)

    proxy = make_proxy({"ttl": 10}, cache_type="local", build=build)
    with proxy.sdk() as client:
        chat(client, content="default ttl")
        chat(client, {"ttl": 100}, content="long ttl")
        clock.advance(20)
        statuses = [
            chat(client, content=c).headers["cache-status"] for c in ("default ttl", "long ttl")
        ]

    assert statuses == [MISS_STORED, HIT]


def test_ttl_reaches_the_disk_backend(proxy: RunningProxy, tmp_path: Path) -> None:
    with proxy.sdk() as client:
        key = chat(client, {"ttl": 300}).headers["x-litellm-cache-key"]

    with diskcache.Cache(str(tmp_path / "disk-cache")) as store:
        raw, expire_time = store.get(key, expire_time=True)
    assert expire_time is not None
    assert 0 < expire_time - time.time() <= 300
    entry = orjson.loads(raw)
    assert entry["ttl"] == 300
    assert entry["call_type"] == "chat"
    assert entry["model"] == "gpt-4o-mini"
    assert entry["prompt_preview"] == "Hello"


def test_ttl_zero_does_not_store(proxy: RunningProxy, upstream: FakeUpstreamServer) -> None:
    with proxy.sdk() as client:
        first = chat(client, {"ttl": 0})
        second = chat(client)

    assert first.headers["cache-status"] == "llmcache; fwd=miss"
    assert second.headers["cache-status"] == MISS_STORED
    assert upstream.app.call_count() == 2


# --------------------------------------------------------------------------- s-maxage


def test_s_maxage_zero_forces_a_fresh_answer(
    proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    with proxy.sdk() as client:
        first = chat(client)
        fresh = chat(client, {"s-maxage": 0})
        after = chat(client)

    assert fresh.headers["cache-status"] == "llmcache; fwd=stale; stored"
    assert fresh.parse().id != first.parse().id
    assert after.headers["cache-status"] == HIT
    assert after.parse().id == fresh.parse().id
    assert upstream.app.call_count() == 2


def test_s_maxage_accepts_only_young_enough_entries(
    timed_proxy: RunningProxy, clock: ManualClock, upstream: FakeUpstreamServer
) -> None:
    with timed_proxy.sdk() as client:
        first = chat(client)
        clock.advance(5)
        young_enough = chat(client, {"s-maxage": 600})
        too_old = chat(client, {"s-maxage": 3})

    assert young_enough.headers["cache-status"] == HIT
    assert young_enough.headers["age"] == "5"
    assert young_enough.parse().id == first.parse().id
    assert too_old.headers["cache-status"] == "llmcache; fwd=stale; stored"
    assert upstream.app.call_count() == 2


# --------------------------------------------------------------------------- no-cache / no-store


def test_no_cache_skips_the_read_but_stores(
    any_proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    with any_proxy.sdk() as client:
        first = chat(client)
        forced = chat(client, {"no-cache": True})
        after = chat(client)

    assert forced.headers["cache-status"] == "llmcache; fwd=request; stored"
    assert forced.headers["x-litellm-cache-key"] == first.headers["x-litellm-cache-key"]
    assert forced.parse().id != first.parse().id
    assert after.headers["cache-status"] == HIT
    assert after.parse().id == forced.parse().id
    assert upstream.app.call_count() == 2


def test_no_store_does_not_write(any_proxy: RunningProxy, upstream: FakeUpstreamServer) -> None:
    with any_proxy.sdk() as client:
        first = chat(client, {"no-store": True})
        second = chat(client)
        third = chat(client, {"no-store": True})

    assert first.headers["cache-status"] == "llmcache; fwd=miss"
    assert second.headers["cache-status"] == MISS_STORED
    assert third.headers["cache-status"] == HIT
    assert upstream.app.call_count() == 2


def test_cache_controls_are_not_forwarded(
    proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    with proxy.sdk() as client:
        chat(client, {"no-cache": True, "ttl": 300, "namespace": "x"})
        client.embeddings.create(
            model="text-embedding-3-small", input="hi", extra_body={"cache": {"no-store": True}}
        )

    chat_call, embedding_call = upstream.app.calls
    assert "cache" not in chat_call.body
    assert chat_call.body["messages"] == MESSAGES
    assert chat_call.body["model"] == "gpt-4o-mini"
    assert "cache" not in embedding_call.body
    assert chat_call.headers["authorization"] == "Bearer sk-test"


def test_transcription_cache_controls_from_the_sdk_are_applied_and_not_forwarded(
    proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    audio = b"\x00\x01 some audio"
    with proxy.sdk() as client:

        def transcribe(cache: dict[str, Any] | None) -> Any:
            return client.audio.transcriptions.with_raw_response.create(
                model="whisper-1",
                file=("a.wav", audio, "audio/wav"),
                extra_body=None if cache is None else {"cache": cache},
            )

        first = transcribe(None)
        forced = transcribe({"no-cache": True, "ttl": 60})
        namespaced = transcribe({"namespace": "voice"})

    assert first.headers["cache-status"] == MISS_STORED
    assert forced.headers["cache-status"] == "llmcache; fwd=request; stored"
    assert forced.headers["x-litellm-cache-key"] == first.headers["x-litellm-cache-key"]
    assert namespaced.headers["x-litellm-cache-key"].startswith("voice:")
    for call in upstream.app.calls:
        assert not any(name.startswith("cache") for name in call.body)


def test_transcription_cache_controls_as_a_json_form_field(
    proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    with proxy.http() as http:

        def transcribe(cache: str | None) -> httpx.Response:
            data = {"model": "whisper-1"}
            if cache is not None:
                data["cache"] = cache
            return http.post(
                "/v1/audio/transcriptions", data=data, files={"file": ("a.wav", b"abc")}
            )

        first = transcribe(None)
        forced = transcribe('{"no-cache": true}')

    assert forced.headers["cache-status"] == "llmcache; fwd=request; stored"
    assert forced.headers["x-litellm-cache-key"] == first.headers["x-litellm-cache-key"]
    assert "cache" not in upstream.app.calls[1].body


# --------------------------------------------------------------------------- namespace


def test_request_namespace(any_proxy: RunningProxy, upstream: FakeUpstreamServer) -> None:
    with any_proxy.sdk() as client:
        stored = chat(client, {"namespace": "my-custom-namespace"})
        again = chat(client, {"namespace": "my-custom-namespace"})
        other = chat(client, {"namespace": "another-namespace"})
        plain = chat(client)

    key = stored.headers["x-litellm-cache-key"]
    namespace, _, digest = key.rpartition(":")
    assert namespace == "my-custom-namespace"
    assert again.headers["cache-status"] == HIT
    assert again.headers["x-litellm-cache-key"] == key
    assert other.headers["cache-status"] == MISS_STORED
    assert other.headers["x-litellm-cache-key"] == f"another-namespace:{digest}"
    assert plain.headers["cache-status"] == MISS_STORED
    assert plain.headers["x-litellm-cache-key"] == digest
    assert upstream.app.call_count() == 3


def test_request_namespace_overrides_the_config_namespace(make_proxy: ProxyFactory) -> None:
    proxy = make_proxy({"namespace": "team"})
    with proxy.sdk() as client:
        own = chat(client, {"namespace": "mine"}).headers["x-litellm-cache-key"]
        default = chat(client).headers["x-litellm-cache-key"]

    assert own.startswith("mine:")
    assert default.startswith("team:")
    assert own.split(":")[-1] == default.split(":")[-1]


# --------------------------------------------------------------------------- mode, call types


def test_default_off_caches_only_on_request(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    proxy = make_proxy({"mode": "default_off"})
    with proxy.sdk() as client:
        plain = [chat(client) for _ in range(2)]
        opted = [chat(client, {"use-cache": True}) for _ in range(2)]

    assert [r.headers["cache-status"] for r in plain] == [BYPASS, BYPASS]
    assert all("x-litellm-cache-key" not in r.headers for r in plain)
    assert [r.headers["cache-status"] for r in opted] == [MISS_STORED, HIT]
    assert upstream.app.call_count() == 3


def test_use_cache_false_opts_out_under_default_on(
    proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    with proxy.sdk() as client:
        chat(client)
        opted_out = chat(client, {"use-cache": False})

    assert opted_out.headers["cache-status"] == BYPASS
    assert upstream.app.call_count() == 2


def test_empty_supported_call_types_caches_nothing(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    proxy = make_proxy({"supported_call_types": []})
    with proxy.sdk() as client:
        chats = [chat(client) for _ in range(2)]
        embeddings = [
            client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="x")
            for _ in range(2)
        ]

    assert {r.headers["cache-status"] for r in [*chats, *embeddings]} == {BYPASS}
    assert upstream.app.call_count() == 4


def test_supported_call_types_limits_caching_to_embeddings(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    proxy = make_proxy({"supported_call_types": ["aembedding"]})
    with proxy.sdk() as client:
        chats = [chat(client) for _ in range(2)]
        embeddings = [
            client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="x")
            for _ in range(2)
        ]

    assert [r.headers["cache-status"] for r in chats] == [BYPASS, BYPASS]
    assert [r.headers["cache-status"] for r in embeddings] == [MISS_STORED, HIT]
    assert upstream.app.call_count("chat/completions") == 2
    assert upstream.app.call_count("embeddings") == 1


def test_docs_call_type_list_caches_every_route(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    proxy = make_proxy(
        {
            "supported_call_types": [
                "acompletion",
                "atext_completion",
                "aembedding",
                "atranscription",
            ]
        }
    )
    with proxy.sdk() as client:
        for _ in range(2):
            chat(client)
            client.completions.create(model="gpt-3.5-turbo-instruct", prompt="p")
            client.embeddings.create(model="text-embedding-3-small", input="e")
            client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"wav"))

    assert upstream.app.call_count() == 4


# --------------------------------------------------------------------------- streaming


def test_stream_is_relayed_stored_and_replayed(
    proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    statuses = []
    with proxy.sdk() as client:
        for _ in range(2):
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "stream me three words"}],
                stream=True,
            )
            statuses.append(raw.headers["cache-status"])
            assert raw.headers["x-litellm-cache-key"]
            assert raw.headers["content-type"].startswith("text/event-stream")
            chunks = list(raw.parse())
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == "echo: stream me three words"
            assert chunks[-1].choices[0].finish_reason == "stop"
        plain = chat(client, content="stream me three words")

    # A stream's headers leave before it is stored, so its miss cannot say "stored".
    assert statuses == ["llmcache; fwd=miss", HIT]
    assert plain.headers["cache-status"] == HIT
    assert plain.parse().choices[0].message.content == "echo: stream me three words"
    assert upstream.app.call_count() == 1
    assert upstream.app.calls[0].body["stream"] is True


def test_stream_text_completion_with_usage(
    proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    with proxy.sdk() as client:
        stream = client.completions.create(
            model="gpt-3.5-turbo-instruct",
            prompt="count to three",
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)

    assert "".join(c.choices[0].text for c in chunks if c.choices) == "echo: count to three"
    assert chunks[-1].usage is not None


def test_stream_chunks_are_relayed_before_upstream_finishes(make_proxy: ProxyFactory) -> None:
    release = threading.Event()
    gate_opened: list[bool] = []
    first_event = b'data: {"choices":[{"index":0,"delta":{"content":"one "}}]}\n\n'
    last_event = b'data: {"choices":[{"index":0,"delta":{"content":"two"}}]}\n\ndata: [DONE]\n\n'

    async def gated_upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": first_event, "more_body": True})
        gate_opened.append(await asyncio.get_running_loop().run_in_executor(None, release.wait, 10))
        await send({"type": "http.response.body", "body": last_event})

    with ThreadedServer(gated_upstream, lifespan="off") as gate:
        proxy = make_proxy(models={"gated": "openai/gated"}, api_base=gate.base_url)
        body = {"model": "gated", "messages": MESSAGES, "stream": True}
        with proxy.http() as http, http.stream("POST", "/v1/chat/completions", json=body) as reply:
            lines = reply.iter_lines()
            first_line = next(line for line in lines if line)
            release.set()
            rest = [line for line in lines if line]

    assert first_line == first_event.decode().strip()
    assert gate_opened == [True]
    assert rest[-1] == "data: [DONE]"


def test_broken_upstream_stream_ends_with_an_error_event(
    proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    upstream.app.break_stream_after = 2
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    with proxy.http() as http, http.stream("POST", "/v1/chat/completions", json=body) as reply:
        events = [line[len("data: ") :] for line in reply.iter_lines() if line.startswith("data: ")]

    assert reply.status_code == 200
    assert len(events) == 3
    error = orjson.loads(events[-1])["error"]
    assert "broke off" in error["message"]
    assert all("choices" in orjson.loads(e) for e in events[:2])
