"""Identical concurrent misses share one upstream call, streamed, plain or mixed."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import ProxyFactory
from tests.fake_upstream import FakeUpstreamServer
from tests.redis_servers import RedisProcess
from tests.servers import RunningProxy

REQUESTS = 100
QUESTION = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three"}]}
ANSWER = "echo: one two three"


@pytest.fixture(params=["local", "disk", "redis"])
def shared_proxy(
    request: pytest.FixtureRequest, make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> RunningProxy:
    # A slow upstream keeps the leader's call open while the others arrive.
    upstream.app.delay = 0.3
    upstream.app.chunk_delay = 0.01
    if request.param == "redis":
        server: RedisProcess = request.getfixturevalue("redis_plain")
        params = {"host": server.host, "port": server.port}
        return make_proxy(params, cache_type="redis")
    return make_proxy(cache_type=request.param)


async def _ask_all(proxy: RunningProxy, streams: list[bool]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=proxy.base_url, timeout=30) as client:
        asks = [
            client.post("/v1/chat/completions", json={**QUESTION, "stream": stream})
            for stream in streams
        ]
        return list(await asyncio.gather(*asks))


def _content(response: httpx.Response, stream: bool) -> str:
    if not stream:
        message: dict[str, Any] = response.json()["choices"][0]["message"]
        return str(message["content"])
    assert response.text.endswith("data: [DONE]\n\n")
    text = ""
    for line in response.text.splitlines():
        if line.startswith("data: {"):
            for choice in httpx.Response(200, content=line[6:]).json()["choices"]:
                text += choice.get("delta", {}).get("content") or ""
    return text


@pytest.mark.parametrize("kind", ["streamed", "plain", "mixed"])
def test_one_upstream_call_for_identical_concurrent_misses(
    shared_proxy: RunningProxy, upstream: FakeUpstreamServer, kind: str
) -> None:
    streams = {
        "streamed": [True] * REQUESTS,
        "plain": [False] * REQUESTS,
        "mixed": [i % 2 == 0 for i in range(REQUESTS)],
    }[kind]

    responses = asyncio.run(_ask_all(shared_proxy, streams))

    assert upstream.app.call_count() == 1
    assert all(r.status_code == 200 for r in responses)
    statuses = [r.headers["cache-status"] for r in responses]
    assert sum("collapsed" in s for s in statuses) == REQUESTS - 1
    assert {_content(r, s) for r, s in zip(responses, streams, strict=True)} == {ANSWER}
    with shared_proxy.http() as http:
        after = http.post("/v1/chat/completions", json=QUESTION)
    assert after.headers["cache-status"] == "llmcache; hit"


def test_followers_call_upstream_themselves_when_the_leader_fails(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    upstream.app.delay = 0.3
    upstream.app.queue_error(500)  # only the leader's call fails
    proxy = make_proxy(cache_type="local")

    responses = asyncio.run(_ask_all(proxy, [False] * 5))

    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 200, 200, 500]
    assert upstream.app.call_count() >= 2  # the followers did not inherit the error


def test_coalescing_can_be_switched_off(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    upstream.app.delay = 0.2
    proxy = make_proxy({"coalesce": False}, cache_type="local")

    asyncio.run(_ask_all(proxy, [False] * 5))

    assert upstream.app.call_count() == 5


def test_a_follower_gets_the_whole_stream_when_the_leader_hangs_up(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    upstream.app.chunk_delay = 0.05
    proxy = make_proxy(cache_type="local")
    body = {**QUESTION, "stream": True}

    async def scenario() -> str:
        async with httpx.AsyncClient(base_url=proxy.base_url, timeout=30) as client:
            leader = client.stream("POST", "/v1/chat/completions", json=body)
            response = await leader.__aenter__()
            pieces = response.aiter_raw()
            await anext(pieces)  # the leader's stream is under way
            follower = asyncio.create_task(client.post("/v1/chat/completions", json=body))
            await asyncio.sleep(0.1)  # the follower attaches to the leader's stream
            await leader.__aexit__(None, None, None)  # the leader's client hangs up
            answer = await follower
            assert "collapsed" in answer.headers["cache-status"]
            return _content(answer, True)

    assert asyncio.run(scenario()) == ANSWER
    assert upstream.app.call_count() == 1
    with proxy.http() as http:
        again = http.post("/v1/chat/completions", json=QUESTION)
    assert again.headers["cache-status"] == "llmcache; hit"  # read to the end and stored
