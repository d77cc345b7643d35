"""End to end: the proxy caches chat, text completion, embedding and transcription calls.

Every test talks to a real proxy over HTTP, in front of the real fake upstream, and checks
the cache through what a client sees (ids, headers) and what the upstream was asked.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import ProxyFactory
from tests.disk_support import fill_up
from tests.fake_upstream import FakeUpstreamServer, expected_embedding
from tests.servers import CLIENT_TLS, RunningProxy

HEX_KEY = re.compile(r"[0-9a-f]{64}")
MISS_STORED = "llmcache; fwd=miss; stored"
HIT = "llmcache; hit"
MESSAGES: list[Any] = [{"role": "user", "content": "write a poem about litellm!"}]


def post_json(http: httpx.Client, path: str, body: Any) -> httpx.Response:
    return http.post(path, content=orjson.dumps(body), headers={"content-type": "application/json"})


def test_second_identical_chat_request_is_a_hit(
    any_proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    with any_proxy.sdk() as client:
        first = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        second = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )

    key = first.headers["x-litellm-cache-key"]
    assert HEX_KEY.fullmatch(key)
    assert first.headers["cache-status"] == MISS_STORED
    assert "age" not in first.headers
    assert second.headers["x-litellm-cache-key"] == key
    assert second.headers["cache-status"] == HIT
    assert second.headers["age"].isdigit()
    assert second.headers["content-type"] == "application/json"
    assert second.parse().id == first.parse().id
    assert second.parse().choices[0].message.content == "echo: write a poem about litellm!"
    assert upstream.app.call_count("chat/completions") == 1


def test_docs_basic_example_without_v1_prefix(
    proxy_http: httpx.Client, upstream: FakeUpstreamServer
) -> None:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0.7}
    first = post_json(proxy_http, "/chat/completions", body)
    second = post_json(proxy_http, "/chat/completions", body)

    assert first.status_code == second.status_code == 200
    assert second.headers["cache-status"] == HIT
    assert second.json() == first.json()
    assert upstream.app.call_count() == 1


def test_field_order_does_not_change_the_key(
    proxy_http: httpx.Client, upstream: FakeUpstreamServer
) -> None:
    ordered = (
        b'{"model":"gpt-4o-mini","temperature":0.2,'
        b'"messages":[{"role":"user","content":"order"}],"user":"u1"}'
    )
    shuffled = (
        b'{ "user": "u1", "messages": [ {"content": "order", "role": "user"} ],\n'
        b'  "temperature": 0.2, "model": "gpt-4o-mini" }'
    )
    headers = {"content-type": "application/json"}
    first = proxy_http.post("/v1/chat/completions", content=ordered, headers=headers)
    second = proxy_http.post("/v1/chat/completions", content=shuffled, headers=headers)

    assert second.headers["cache-status"] == HIT
    assert second.headers["x-litellm-cache-key"] == first.headers["x-litellm-cache-key"]
    assert upstream.app.call_count() == 1


def test_answer_changing_parameters_change_the_key(
    proxy_http: httpx.Client, upstream: FakeUpstreamServer
) -> None:
    base = {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0.7}
    variants = [
        base,
        {**base, "temperature": 0.1},
        {**base, "messages": [{"role": "user", "content": "another poem"}]},
        {**base, "max_tokens": 5},
    ]
    replies = [post_json(proxy_http, "/v1/chat/completions", body) for body in variants]

    assert [r.headers["cache-status"] for r in replies] == [MISS_STORED] * 4
    assert len({r.headers["x-litellm-cache-key"] for r in replies}) == 4
    assert upstream.app.call_count() == 4


def test_metadata_does_not_change_the_key(
    proxy_http: httpx.Client, upstream: FakeUpstreamServer
) -> None:
    base = {"model": "gpt-4o-mini", "messages": MESSAGES}
    post_json(proxy_http, "/v1/chat/completions", {**base, "metadata": {"run": "1"}})
    second = post_json(proxy_http, "/v1/chat/completions", {**base, "metadata": {"run": "2"}})

    assert second.headers["cache-status"] == HIT
    assert upstream.app.call_count() == 1


def test_config_namespace_prefixes_the_key(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    proxy = make_proxy({"namespace": "litellm.caching.caching"})
    with proxy.sdk() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    namespace, _, digest = raw.headers["x-litellm-cache-key"].rpartition(":")
    assert namespace == "litellm.caching.caching"
    assert HEX_KEY.fullmatch(digest)


def test_embeddings_are_cached(any_proxy: RunningProxy, upstream: FakeUpstreamServer) -> None:
    with any_proxy.sdk() as client:
        first = client.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["write a litellm poem"]
        )
        second = client.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["write a litellm poem"]
        )

    assert first.headers["cache-status"] == MISS_STORED
    assert second.headers["cache-status"] == HIT
    assert second.parse().data[0].embedding == expected_embedding("write a litellm poem")
    assert upstream.app.call_count("embeddings") == 1


def test_docs_embeddings_example(proxy_http: httpx.Client, upstream: FakeUpstreamServer) -> None:
    body = {"model": "text-embedding-3-small", "input": ["write a litellm poem"]}
    first = post_json(proxy_http, "/embeddings", body)
    second = post_json(proxy_http, "/embeddings", body)

    assert first.headers["cache-status"] == MISS_STORED
    assert second.headers["cache-status"] == HIT
    assert second.json()["data"][0]["embedding"] == expected_embedding("write a litellm poem")
    assert upstream.app.call_count() == 1


def test_text_completions_are_cached(any_proxy: RunningProxy, upstream: FakeUpstreamServer) -> None:
    with any_proxy.sdk() as client:
        first = client.completions.with_raw_response.create(
            model="gpt-3.5-turbo-instruct", prompt="Say this is a test"
        )
        second = client.completions.with_raw_response.create(
            model="gpt-3.5-turbo-instruct", prompt="Say this is a test"
        )

    assert first.headers["cache-status"] == MISS_STORED
    assert second.headers["cache-status"] == HIT
    assert second.parse().id == first.parse().id
    assert second.parse().choices[0].text == "echo: Say this is a test"
    assert upstream.app.call_count("completions") == 1


def test_transcriptions_are_cached_by_file_bytes(
    any_proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    audio = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(64))
    other = audio[:-1] + b"\x00"
    with any_proxy.sdk() as client:
        replies = [
            client.audio.transcriptions.with_raw_response.create(
                model="whisper-1", file=("speech.wav", data, "audio/wav")
            )
            for data in (audio, audio, other)
        ]

    statuses = [r.headers["cache-status"] for r in replies]
    assert statuses == [MISS_STORED, HIT, MISS_STORED]
    texts = [r.parse().text for r in replies]
    assert texts[0] == texts[1] != texts[2]
    assert replies[0].headers["x-litellm-cache-key"] != replies[2].headers["x-litellm-cache-key"]
    uploads = [call.body["file"].data for call in upstream.app.calls]
    assert uploads == [audio, other]
    assert upstream.app.calls[0].body["model"] == "whisper-1"


def test_plain_text_transcription_replays_its_content_type(
    proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    with proxy.http() as http:
        replies = [
            http.post(
                "/v1/audio/transcriptions",
                data={"model": "whisper-1", "response_format": "text"},
                files={"file": ("a.mp3", b"ID3 fake mp3 bytes", "audio/mpeg")},
            )
            for _ in range(2)
        ]

    assert [r.status_code for r in replies] == [200, 200]
    assert replies[1].headers["cache-status"] == HIT
    assert replies[1].text == replies[0].text
    assert replies[1].text.startswith("transcript of 18 bytes")
    assert replies[1].headers["content-type"].startswith("text/plain")
    assert upstream.app.call_count() == 1


def test_large_response_round_trips(any_proxy: RunningProxy, upstream: FakeUpstreamServer) -> None:
    body = {
        "model": "text-embedding-3-small",
        "input": [f"sentence {i}" for i in range(8)],
        "dimensions": 4096,
        "encoding_format": "float",
    }
    with any_proxy.http() as http:
        first = http.post("/v1/embeddings", json=body)
        second = http.post("/v1/embeddings", json=body)

    assert len(first.content) > 256 * 1024
    assert second.headers["cache-status"] == HIT
    assert second.json() == first.json()
    assert second.json()["data"][7]["embedding"] == expected_embedding("sentence 7", 4096)
    assert upstream.app.call_count() == 1


def test_disk_entries_survive_a_restart(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    first_proxy = make_proxy()
    with first_proxy.sdk() as client:
        first = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    first_proxy.server.stop()

    second_proxy = make_proxy()
    with second_proxy.sdk() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    assert raw.headers["cache-status"] == HIT
    assert raw.parse().id == first.id
    assert upstream.app.call_count() == 1


def test_local_cache_is_per_process(make_proxy: ProxyFactory, upstream: FakeUpstreamServer) -> None:
    for _ in range(2):
        with make_proxy(cache_type="local").sdk() as client:
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=MESSAGES
            )
        assert raw.headers["cache-status"] == MISS_STORED
    assert upstream.app.call_count() == 2


def concurrent_posts(url: str, body: dict[str, Any], count: int) -> list[httpx.Response]:
    """``count`` identical requests at once, each on its own connection."""

    def post(_: int) -> httpx.Response:
        return httpx.post(url, json=body, timeout=10, verify=CLIENT_TLS)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(post, range(count)))


def test_identical_concurrent_misses_share_one_upstream_call(
    any_proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    upstream.app.delay = 0.3
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    replies = concurrent_posts(any_proxy.url + "/chat/completions", body, 5)

    statuses = [r.headers["cache-status"] for r in replies]
    assert statuses.count(MISS_STORED) == 1
    assert set(statuses) <= {MISS_STORED, "llmcache; fwd=miss; collapsed", HIT}
    assert len({r.json()["id"] for r in replies}) == 1
    assert len({r.headers["x-litellm-cache-key"] for r in replies}) == 1
    assert upstream.app.call_count() == 1


def test_concurrent_misses_and_an_upstream_error(
    proxy: RunningProxy, upstream: FakeUpstreamServer
) -> None:
    upstream.app.delay = 0.3
    upstream.app.queue_error(429)
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    replies = concurrent_posts(proxy.url + "/chat/completions", body, 4)
    upstream.app.delay = 0
    with proxy.http() as http:
        after = http.post("/v1/chat/completions", json=body)

    statuses = [r.headers["cache-status"] for r in replies]
    callers = [
        r
        for r, s in zip(replies, statuses, strict=True)
        if s in (MISS_STORED, "llmcache; fwd=miss")
    ]
    assert {r.status_code for r in replies} <= {200, 429}
    assert [r.status_code for r in callers].count(429) == 1
    assert len({r.content for r in replies if r.status_code == 429}) == 1
    assert after.status_code == 200
    assert upstream.app.call_count() == len(callers) + (after.headers["cache-status"] != HIT)


def test_a_failed_write_says_so_and_is_logged_once(
    make_proxy: ProxyFactory,
    upstream: FakeUpstreamServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fill_up(tmp_path / "disk-cache")  # the directory make_proxy's disk cache uses
    proxy = make_proxy()

    with caplog.at_level(logging.WARNING, logger="llmcache_tui.cache"), proxy.http() as http:
        answers = [
            post_json(
                http,
                "/v1/chat/completions",
                {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": f"question {n}"}],
                },
            )
            for n in range(20)
        ]

    assert {r.status_code for r in answers} == {200}
    assert {r.headers["cache-status"] for r in answers} == {
        "llmcache; fwd=miss; detail=cache-error"
    }
    full = [r for r in caplog.records if "database or disk is full" in r.getMessage()]
    assert len(full) == 1  # not one line per request
    assert proxy.app.cache is not None and proxy.app.cache.errors == 20  # all counted
