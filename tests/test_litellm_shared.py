"""Our proxy sharing a real Redis with LiteLLM (``key_format: litellm``).

Entries LiteLLM 1.108 wrote (tests/data/litellm_reference.json) are put into a redis-server
under the keys LiteLLM gave them; our proxy must serve them as hits without calling
upstream. What our proxy writes must decode by LiteLLM's rules into the same shape.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import diskcache
import httpx
import pytest

from tests import redis_servers as rs
from tests.conftest import ProxyFactory
from tests.fake_upstream import FakeUpstreamServer
from tests.redis_support import HIT, MISS_STORED, server_params
from tests.servers import RunningProxy
from tests.test_litellm_keys import REFERENCE, ROUTES, entries

pytestmark = pytest.mark.usefixtures("no_redis_env")

MODELS = {"fake": "openai/fake-model", "fake-instruct": "openai/gpt-3.5-turbo-instruct",
          "fake-embed": "openai/text-embedding-3-small"}  # fmt: skip
CASES = {case["name"]: case for case in REFERENCE["runs"]["namespace"]}


def shared_proxy(make_proxy: ProxyFactory, server: rs.RedisProcess) -> RunningProxy:
    params = {**server_params(server), "namespace": REFERENCE["namespace"], "key_format": "litellm"}
    return make_proxy(params, cache_type="redis", models=MODELS)


def seed(raw: Any, case: dict[str, Any], age: float = 1.0) -> None:
    """Put LiteLLM's entries of ``case`` into Redis, written ``age`` seconds ago."""
    for key, value in entries(case).items():
        document = json.loads(value)
        document["timestamp"] = time.time() - age
        raw.set(key, json.dumps(document))


def send(http: httpx.Client, case: dict[str, Any], **cache: Any) -> httpx.Response:
    body = json.loads(case["body"])
    if cache:
        body["cache"] = {**body.get("cache", {}), **cache}
    return http.post(case["path"], content=json.dumps(body),
                     headers={"content-type": "application/json"})  # fmt: skip


def streamed_text(reply: httpx.Response) -> str:
    """The text of a completion answer, whole or as server-sent events."""
    if not reply.headers["content-type"].startswith("text/event-stream"):
        return str(reply.json()["choices"][0]["text"])
    text = ""
    for line in reply.text.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                text += choice.get("text") or choice.get("delta", {}).get("content") or ""
    return text


@pytest.mark.parametrize(
    "name",
    ["chat_plain", "chat_params", "chat_unicode_system", "chat_request_namespace",
     "text_completion", "text_completion_stream", "embedding_one", "embedding_many"],
)  # fmt: skip
def test_litellms_entries_are_hits_for_our_proxy(
    name: str, redis_plain: rs.RedisProcess, make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    case = CASES[name]
    proxy = shared_proxy(make_proxy, redis_plain)
    with redis_plain.client() as raw, proxy.http() as http:
        seed(raw, case)
        reply = send(http, case)
        assert reply.status_code == 200, reply.text
        assert reply.headers["cache-status"] == HIT
        assert upstream.app.call_count() == 0
        route = ROUTES[case["path"]]
        if route == "embedding":
            vectors = [json.loads(v)["response"]["embedding"] for v in entries(case).values()]
            assert sorted(d["embedding"] for d in reply.json()["data"]) == sorted(vectors)
            return
        (stored,) = entries(case).values()
        answer = json.loads(json.loads(stored)["response"])
        if route == "chat":
            assert reply.json() == answer
            assert reply.headers["x-litellm-cache-key"] == case["second"]["headers"][
                "x-litellm-cache-key"
            ].replace("team-a:", REFERENCE["namespace"] + ":team-a:")
        else:  # text: LiteLLM keeps a streamed one chat-shaped; it is served as text
            prompt = json.loads(case["body"])["prompt"]
            assert streamed_text(reply) == f"echo: {prompt}"


def test_a_streamed_request_is_served_from_litellms_assembled_answer(
    redis_plain: rs.RedisProcess, make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    case = CASES["chat_stream"]
    proxy = shared_proxy(make_proxy, redis_plain)
    with redis_plain.client() as raw, proxy.http() as http:
        seed(raw, case)
        reply = send(http, case)
        assert reply.headers["cache-status"] == HIT
        assert streamed_text(reply) == "echo: tui stream me"
        # A plain request for the same prompt has another key in LiteLLM, so it misses.
        plain = json.loads(case["body"])
        del plain["stream"]
        assert http.post(case["path"], json=plain).headers["cache-status"] == MISS_STORED
    assert upstream.app.call_count("chat/completions") == 1


def test_s_maxage_is_checked_against_litellms_timestamp(
    redis_plain: rs.RedisProcess, make_proxy: ProxyFactory
) -> None:
    case = CASES["chat_plain"]
    proxy = shared_proxy(make_proxy, redis_plain)
    with redis_plain.client() as raw, proxy.http() as http:
        seed(raw, case, age=120)
        assert send(http, case, **{"s-maxage": 600}).headers["cache-status"] == HIT
        stale = send(http, case, **{"s-maxage": 60})
        assert stale.headers["cache-status"].startswith("llmcache; fwd=stale")


@pytest.mark.parametrize("name", ["chat_plain", "chat_stream", "text_completion", "embedding_many"])
def test_what_our_proxy_writes_decodes_as_litellms_entries_do(
    name: str, redis_plain: rs.RedisProcess, make_proxy: ProxyFactory
) -> None:
    case = CASES[name]
    proxy = shared_proxy(make_proxy, redis_plain)
    with redis_plain.client() as raw, proxy.http() as http:
        first = send(http, case)
        # A stream's headers go out before it is stored, so they cannot say "stored".
        assert first.headers["cache-status"].startswith("llmcache; fwd=miss")
        if case["stored"] and ROUTES[case["path"]] != "embedding":
            assert send(http, case).headers["cache-status"] == HIT
        for key, theirs in entries(case).items():  # LiteLLM's keys, our values
            ours = raw.get(key)
            assert ours is not None, key
            mine, their = json.loads(ours), json.loads(theirs)
            assert list(mine) == list(their) == ["timestamp", "response"]
            assert isinstance(mine["timestamp"], float)
            if isinstance(their["response"], str):
                answer, reference = json.loads(mine["response"]), json.loads(their["response"])
                assert answer["object"] == reference["object"]
                assert answer["choices"][0]["finish_reason"] == "stop"
            else:
                assert mine["response"].keys() == their["response"].keys()
                assert mine["response"]["embedding"] == their["response"]["embedding"]
        assert len(list(raw.scan_iter(match="*"))) == len(entries(case))


def test_the_disk_cache_is_shared_the_way_litellm_writes_it(
    tmp_path: Path, make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    """LiteLLM's disk cache hands diskcache its entry as a dict (which diskcache pickles)
    and reads a value back with json.loads: both ways must work."""
    case = CASES["chat_plain"]
    (key,) = entries(case)
    params = {"namespace": REFERENCE["namespace"], "key_format": "litellm"}
    proxy = make_proxy(params, cache_type="disk", models=MODELS)
    with diskcache.Cache(str(tmp_path / "disk-cache")) as disk, proxy.http() as http:
        document = json.loads(entries(case)[key])
        document["timestamp"] = time.time()
        disk.set(key, document)  # as LiteLLM's DiskCache.set_cache does
        hit = send(http, case)
        assert hit.headers["cache-status"] == HIT
        assert hit.json() == json.loads(document["response"])
        disk.delete(key)
        assert send(http, case).headers["cache-status"] == MISS_STORED
        mine = json.loads(disk.get(key))  # as LiteLLM's DiskCache.get_cache reads it
        assert list(mine) == ["timestamp", "response"]
        assert json.loads(mine["response"])["choices"][0]["message"]["content"] == "echo: tui alpha"
    assert upstream.app.call_count("chat/completions") == 1


def test_an_embedding_request_with_one_input_missing_goes_upstream_whole(
    redis_plain: rs.RedisProcess, make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    case = CASES["embedding_many"]
    proxy = shared_proxy(make_proxy, redis_plain)
    with redis_plain.client() as raw, proxy.http() as http:
        seed(raw, case)
        first_key = next(iter(entries(case)))
        raw.delete(first_key)
        partial = send(http, case)
        assert partial.headers["cache-status"] == MISS_STORED
        assert len(partial.json()["data"]) == 2
        assert raw.exists(*entries(case)) == 2  # every input stored again
        assert send(http, case).headers["cache-status"] == HIT
        keys = send(http, case).headers["x-litellm-cache-key"].split(", ")
        assert sorted(keys) == sorted(entries(case))
    assert upstream.app.call_count("embeddings") == 1
