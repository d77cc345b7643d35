"""Identical concurrent misses share one upstream call, streamed, plain or mixed."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections import Counter
from typing import Any

import httpx
import pytest

from llmcache_tui.proxy.coalesce import MAX_LEADERS
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


async def _ask_all(
    proxy: RunningProxy, streams: list[bool], question: dict[str, Any] = QUESTION
) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=None)  # every request in flight at once
    async with httpx.AsyncClient(base_url=proxy.base_url, timeout=30, limits=limits) as client:
        asks = [
            client.post("/v1/chat/completions", json={**question, "stream": stream})
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
    # One leader asked upstream; every other request shared its call or, arriving after
    # it was stored (on a busy machine some requests start late), was a hit.
    leaders = [s for s in statuses if "collapsed" not in s and s != "llmcache; hit"]
    assert len(leaders) == 1, statuses
    assert {_content(r, s) for r, s in zip(responses, streams, strict=True)} == {ANSWER}
    with shared_proxy.http() as http:
        after = http.post("/v1/chat/completions", json=QUESTION)
    assert after.headers["cache-status"] == "llmcache; hit"


def test_one_follower_takes_over_when_the_leader_fails(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    upstream.app.delay = 0.3
    upstream.app.queue_error(500)  # only the leader's call fails
    proxy = make_proxy(cache_type="local")

    responses = asyncio.run(_ask_all(proxy, [False] * 5))

    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 200, 200, 500]
    assert upstream.app.call_count() == 2  # the followers did not inherit the error


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


# ------------------------------------------------------------------ a leader that fails
# MANY identical requests at once; the first upstream call is held for a second so that
# all of them are waiting on it before it fails.

MANY = 200
KINDS = {
    "streamed": [True] * MANY,
    "plain": [False] * MANY,
    "mixed": [i % 2 == 0 for i in range(MANY)],
}


def _verdict(response: httpx.Response, stream: bool) -> str:
    """What a client got: the right answer, an error status, or a stream that broke off."""
    if response.status_code != 200:
        assert response.json()["error"]["message"]  # an error in OpenAI's shape
        return f"error {response.status_code}"
    if stream and not response.text.endswith("data: [DONE]\n\n"):
        assert '"error"' in response.text  # the stream says why it ended
        return "broken"
    assert _content(response, stream) == ANSWER  # never a wrong answer
    return "answer"


def _verdicts(responses: list[httpx.Response], streams: list[bool]) -> Counter[str]:
    return Counter(_verdict(r, s) for r, s in zip(responses, streams, strict=True))


def _collapsed(responses: list[httpx.Response]) -> int:
    return sum("collapsed" in r.headers["cache-status"] for r in responses)


@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_leader_hands_over_to_one_follower(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer, kind: str
) -> None:
    upstream.app.queue_delay(1.0)
    upstream.app.queue_error(500)
    proxy = make_proxy(cache_type="local")

    responses = asyncio.run(_ask_all(proxy, KINDS[kind]))

    assert upstream.app.call_count() == 2
    assert _verdicts(responses, KINDS[kind]) == {"answer": MANY - 1, "error 500": 1}
    assert _collapsed(responses) == MANY - 2  # all but the two leaders


@pytest.mark.parametrize("kind", KINDS)
def test_followers_get_the_error_after_the_last_leader_fails(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer, kind: str
) -> None:
    upstream.app.queue_delay(1.0)
    upstream.app.queue_error(503, times=MANY, headers={"retry-after": "7"})
    proxy = make_proxy(cache_type="local")

    responses = asyncio.run(_ask_all(proxy, KINDS[kind]))

    assert upstream.app.call_count() == MAX_LEADERS
    assert _verdicts(responses, KINDS[kind]) == {"error 503": MANY}
    assert {r.headers["retry-after"] for r in responses} == {"7"}  # the upstream's reply
    assert _collapsed(responses) == MANY - MAX_LEADERS


@pytest.mark.parametrize("kind", KINDS)
def test_a_rejection_is_shared_rather_than_retried(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer, kind: str
) -> None:
    upstream.app.queue_delay(1.0)
    upstream.app.queue_error(400, times=MANY)
    proxy = make_proxy(cache_type="local")

    responses = asyncio.run(_ask_all(proxy, KINDS[kind]))

    # A streamed and a plain request are different calls: each kind is asked once.
    assert upstream.app.call_count() == (2 if kind == "mixed" else 1)
    assert _verdicts(responses, KINDS[kind]) == {"error 400": MANY}


@pytest.mark.parametrize("kind", ["streamed", "mixed"])
def test_a_stream_that_breaks_before_its_first_byte_hands_over(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer, kind: str
) -> None:
    upstream.app.queue_delay(1.0)
    upstream.app.queue_broken_stream(0)  # if a streamed request leads
    proxy = make_proxy(cache_type="local")

    responses = asyncio.run(_ask_all(proxy, KINDS[kind]))

    verdicts = _verdicts(responses, KINDS[kind])
    assert verdicts["broken"] <= 1  # only the leader's own stream
    assert verdicts["answer"] == MANY - verdicts["broken"]
    assert upstream.app.call_count() == 1 + verdicts["broken"]
    with proxy.http() as http:
        again = http.post("/v1/chat/completions", json=QUESTION)
    assert again.headers["cache-status"] == "llmcache; hit"


def test_followers_attached_to_a_stream_that_breaks_are_told_so(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    upstream.app.queue_delay(1.0)
    upstream.app.chunk_delay = 0.2  # followers attach before the stream breaks
    upstream.app.queue_broken_stream(2)
    proxy = make_proxy(cache_type="local")
    streams = [True] * 20

    responses = asyncio.run(_ask_all(proxy, streams))

    # Bytes were sent: no one can start over, and no one is told the stream was whole.
    assert _verdicts(responses, streams) == {"broken": 20}
    assert upstream.app.call_count() == 1


@pytest.mark.parametrize("kind", ["plain", "streamed"])
def test_a_leader_that_times_out_gives_a_bounded_number_of_calls(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer, kind: str
) -> None:
    slow = {"model_name": "slow", "litellm_params": {"model": "gpt-4o-mini", "timeout": 1}}
    slow["litellm_params"]["api_base"] = upstream.url
    upstream.app.queue_delay(5)  # longer than the deployment's timeout
    proxy = make_proxy(cache_type="local", extra_models=[slow])
    question = {**QUESTION, "model": "slow"}

    responses = asyncio.run(_ask_all(proxy, KINDS[kind], question))

    # Followers whose own time ran out get the timeout; the others the next leader's answer.
    verdicts = _verdicts(responses, KINDS[kind])
    assert set(verdicts) <= {"answer", "error 504"}, {
        r.text for r in responses if r.status_code == 502
    }
    assert verdicts["error 504"] >= 1  # the first leader's own
    assert 1 <= upstream.app.call_count() <= MAX_LEADERS


class _Hangup:
    """A loopback port that accepts connections and closes them unanswered, counting them.

    The first is held for a second, so that every request is waiting when it fails.
    """

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}/v1"

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.socket.accept()
                self.accepted += 1
                if self.accepted == 1:
                    threading.Timer(1.0, connection.close).start()
                else:
                    connection.close()

    def close(self) -> None:
        self.socket.close()


@pytest.mark.parametrize("kind", ["plain", "streamed"])
def test_an_upstream_that_hangs_up_gives_a_bounded_number_of_calls(
    make_proxy: ProxyFactory, kind: str
) -> None:
    hangup = _Hangup()
    try:
        proxy = make_proxy(cache_type="local", api_base=hangup.url)
        responses = asyncio.run(_ask_all(proxy, KINDS[kind][:50]))
    finally:
        hangup.close()

    assert _verdicts(responses, KINDS[kind][:50]) == {"error 502": 50}
    assert hangup.accepted <= MAX_LEADERS


def test_followers_say_the_cache_failed_when_it_did(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer, redis_restartable: RedisProcess
) -> None:
    upstream.app.delay = 0.5
    server = redis_restartable
    proxy = make_proxy({"host": server.host, "port": server.port}, cache_type="redis")
    server.stop()

    responses = asyncio.run(_ask_all(proxy, [False] * 20))

    assert _verdicts(responses, [False] * 20) == {"answer": 20}
    assert _collapsed(responses) == 19
    statuses = {r.headers["cache-status"] for r in responses}
    assert all("detail=cache-error" in s for s in statuses), statuses
