"""The remote embedder against the fake upstream's ``/embeddings``, and ``embedder_for``.

The fake answers every text with a deterministic 8-dimensional vector
(``expected_embedding``) and counts its calls, so a test can see what reached it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from llmcache_tui.cache.semantic.embedder import (
    EmbedderError,
    EmbedderTimeout,
    EmbeddingDimensionError,
)
from llmcache_tui.cache.semantic.local_embedder import LocalEmbedder
from llmcache_tui.cache.semantic.remote_embedder import RemoteEmbedder, embedder_for
from llmcache_tui.cache.semantic.vector_lru import VectorLRU
from llmcache_tui.config import ModelEntry
from llmcache_tui.proxy.routing import Deployment, Router, deployment_for
from tests.fake_upstream import EMBEDDING_DIMENSIONS, FakeUpstreamServer, expected_embedding
from tests.ports import free_port

np = pytest.importorskip("numpy")

NAME = "embedder"  # the model_list model_name
SECRET = "sk-remote-secret-4f9a8c7e1d2b"


def _entry(name: str, **params: Any) -> ModelEntry:
    return ModelEntry.model_validate({"model_name": name, "litellm_params": params})


def _deployment(api_base: str, **params: Any) -> Deployment:
    params = {"model": "openai/text-embedding-3-small", "api_base": api_base, **params}
    return deployment_for(_entry(NAME, api_key=SECRET, **params), NAME)


def _unit(vector: list[float]) -> Any:
    array = np.asarray(vector, dtype=np.float32)
    return array / np.linalg.norm(array)


@pytest.fixture
async def remote(upstream: FakeUpstreamServer) -> AsyncIterator[RemoteEmbedder]:
    embedder = RemoteEmbedder(_deployment(upstream.url), name=NAME, timeout=5.0)
    yield embedder
    await embedder.aclose()


# -- answers ------------------------------------------------------------------------------
async def test_vectors_are_the_deployments_normalised(
    remote: RemoteEmbedder, upstream: FakeUpstreamServer
) -> None:
    assert remote.name == NAME
    assert remote.dimension is None  # not known before the first answer
    texts = ["What is the capital of France?", "And of Spain?"]
    vectors = await remote.embed(texts)
    assert vectors.dtype == np.float32
    assert vectors.shape == (2, EMBEDDING_DIMENSIONS)
    for row, text in zip(vectors, texts, strict=True):
        assert np.allclose(row, _unit(expected_embedding(text)), atol=1e-6)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert remote.dimension == EMBEDDING_DIMENSIONS
    [call] = upstream.app.calls_to("embeddings")
    assert call.body == {"model": "text-embedding-3-small", "input": texts}  # the upstream id
    assert call.headers["authorization"] == f"Bearer {SECRET}"


async def test_no_texts_make_no_call(remote: RemoteEmbedder, upstream: FakeUpstreamServer) -> None:
    assert (await remote.embed([])).shape == (0, 0)
    assert upstream.app.call_count() == 0


async def test_a_known_text_does_not_reach_upstream(
    remote: RemoteEmbedder, upstream: FakeUpstreamServer
) -> None:
    first = await remote.embed(["one", "two"])
    again = await remote.embed(["two", "one"])
    assert upstream.app.call_count("embeddings") == 1
    assert np.array_equal(again, first[::-1])
    assert remote.cached == 2
    # Only the new text of a mixed call is asked for, and the order is kept.
    mixed = await remote.embed(["one", "three"])
    assert upstream.app.call_count("embeddings") == 2
    assert upstream.app.calls_to("embeddings")[-1].body["input"] == ["three"]
    assert np.array_equal(mixed[0], first[0])
    assert np.allclose(mixed[1], _unit(expected_embedding("three")), atol=1e-6)


async def test_the_lru_is_bounded(upstream: FakeUpstreamServer) -> None:
    embedder = RemoteEmbedder(_deployment(upstream.url), cache_size=1)
    try:
        await embedder.embed(["a", "b"])
        assert embedder.cached == 1
        await embedder.embed(["b"])  # the most recent one stayed
        assert upstream.app.call_count("embeddings") == 1
        await embedder.embed(["a"])
        assert upstream.app.call_count("embeddings") == 2
    finally:
        await embedder.aclose()


async def test_base64_answers_are_read(
    remote: RemoteEmbedder, upstream: FakeUpstreamServer
) -> None:
    import base64
    import struct

    vector = [0.5, -0.5, 0.5, -0.5, 0.0, 0.0, 0.0, 0.0]
    packed = base64.b64encode(struct.pack("<8f", *vector)).decode()
    upstream.app.queue_error(200, {"data": [{"index": 0, "embedding": packed}]})
    [row] = await remote.embed(["packed"])
    assert np.allclose(row, _unit(vector))


async def test_answers_are_put_in_the_order_of_their_index(
    remote: RemoteEmbedder, upstream: FakeUpstreamServer
) -> None:
    data = [
        {"index": 1, "embedding": [0.0, 1.0]},
        {"index": 0, "embedding": [1.0, 0.0]},
    ]
    upstream.app.queue_error(200, {"data": data})
    vectors = await remote.embed(["first", "second"])
    assert np.array_equal(vectors, np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32))


async def test_a_mock_deployment_answers_without_upstream(upstream: FakeUpstreamServer) -> None:
    deployment = deployment_for(_entry("mocked", model="openai/x", mock_response="hi"), "mocked")
    embedder = RemoteEmbedder(deployment, name="mocked")
    try:
        vectors = await embedder.embed(["hello", "world"])
        assert vectors.shape[0] == 2 and embedder.dimension == vectors.shape[1]
        assert np.array_equal(vectors, await embedder.embed(["hello", "world"]))
        assert upstream.app.call_count() == 0
    finally:
        await embedder.aclose()


# -- errors -------------------------------------------------------------------------------
async def test_another_dimension_later_is_an_error(
    remote: RemoteEmbedder, upstream: FakeUpstreamServer
) -> None:
    await remote.embed(["eight dimensions"])
    upstream.app.queue_error(200, {"data": [{"index": 0, "embedding": [0.5] * 4}]})
    with pytest.raises(EmbeddingDimensionError, match="8-dimensional vectors, got 4"):
        await remote.embed(["four dimensions"])
    assert remote.dimension == EMBEDDING_DIMENSIONS
    assert remote.cached == 1  # the bad answer was not kept


async def test_http_500_is_an_embedder_error(
    remote: RemoteEmbedder, upstream: FakeUpstreamServer
) -> None:
    upstream.app.queue_error(500)
    with pytest.raises(EmbedderError, match="HTTP 500") as caught:
        await remote.embed(["x"])
    assert not isinstance(caught.value, EmbedderTimeout)
    assert NAME in str(caught.value)


async def test_a_slow_upstream_is_a_timeout(upstream: FakeUpstreamServer) -> None:
    embedder = RemoteEmbedder(_deployment(upstream.url), name=NAME, timeout=0.2)
    upstream.app.queue_delay(5.0)
    try:
        # Our deadline or the upstream client's (the same one) says so, whichever is first.
        with pytest.raises(EmbedderTimeout, match=r"0\.2 ?s") as caught:
            await embedder.embed(["slow"])
        assert NAME in str(caught.value)
        # The next call is answered as usual.
        assert (await embedder.embed(["fast"])).shape == (1, EMBEDDING_DIMENSIONS)
    finally:
        await embedder.aclose()


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"{not json", "not JSON"),
        ({"object": "list"}, "no 'data' list"),
        ({"data": []}, "the answer holds 0"),
        ({"data": [{"index": 0, "embedding": "%%%"}]}, "not a vector of numbers"),
        ({"data": [{"index": 0, "embedding": ["a", "b"]}]}, "not a vector of numbers"),
        ({"data": [{"index": 0, "embedding": [0.0, 0.0]}]}, "zero vector"),
        ({"data": [{"index": 0, "embedding": []}]}, "empty vectors"),
    ],
)
async def test_unusable_answers_are_embedder_errors(
    remote: RemoteEmbedder, upstream: FakeUpstreamServer, body: Any, match: str
) -> None:
    upstream.app.queue_error(200, body)
    with pytest.raises(EmbedderError, match=match):
        await remote.embed(["x"])
    assert remote.dimension is None


async def test_no_error_message_holds_the_api_key(upstream: FakeUpstreamServer) -> None:
    embedder = RemoteEmbedder(_deployment(upstream.url), name=NAME, timeout=0.2)
    unreachable = RemoteEmbedder(_deployment(f"http://127.0.0.1:{free_port()}/v1"), name=NAME)
    # An upstream that quotes the key back, as OpenAI's 401 quotes part of it.
    quoted = {"error": {"message": f"Incorrect API key provided: {SECRET}", "code": "bad_key"}}
    messages = []
    try:
        for queue in (
            lambda: upstream.app.queue_error(401, quoted),
            lambda: upstream.app.queue_error(500),
            lambda: upstream.app.queue_error(200, b"not json"),
            lambda: upstream.app.queue_delay(5.0),
        ):
            queue()
            with pytest.raises(EmbedderError) as caught:
                await embedder.embed([f"text {len(messages)}"])
            messages.append(str(caught.value))
        with pytest.raises(EmbedderError) as caught:
            await unreachable.embed(["x"])
        messages.append(str(caught.value))
    finally:
        await embedder.aclose()
        await unreachable.aclose()
    assert "(bad_key)" in messages[0]  # the code is kept, the message is not
    assert "unreachable" in messages[-1]
    for message in messages:
        assert SECRET not in message and SECRET[:12] not in message


# -- choosing the embedder ------------------------------------------------------------------
def _router(upstream_url: str) -> Router:
    return Router(
        [
            _entry("minilm", model="local/all-minilm-l6-v2"),
            _entry("small", model="openai/text-embedding-3-small", api_base=upstream_url),
            _entry("gpt-*", model="openai/gpt-*", api_base=upstream_url),
            _entry("claude", model="anthropic/claude-3"),
        ]
    )


async def test_embedder_for_picks_the_kind_the_entry_names(upstream: FakeUpstreamServer) -> None:
    router = _router(upstream.url)
    default = embedder_for(None, router, timeout=2.0)
    assert isinstance(default, LocalEmbedder) and default.timeout == 2.0
    assert isinstance(embedder_for("minilm", router), LocalEmbedder)
    remote = embedder_for("small", router, timeout=3.0)
    assert isinstance(remote, RemoteEmbedder)
    assert remote.name == "small" and remote.timeout == 3.0
    assert remote.deployment.model == "text-embedding-3-small"
    await remote.aclose()


@pytest.mark.parametrize("name", ["missing", "gpt-*", "gpt-4o"])
def test_an_unknown_name_lists_the_model_list_names(name: str) -> None:
    with pytest.raises(ValueError, match="not a model_name in model_list") as caught:
        embedder_for(name, _router("http://127.0.0.1:9"))
    assert "'minilm', 'small'" in str(caught.value)


def test_an_entry_that_cannot_embed_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="'claude' cannot embed"):
        embedder_for("claude", _router("http://127.0.0.1:9"))
    other_local = Router([_entry("bge", model="local/bge-small")])
    with pytest.raises(ValueError, match="not a built-in model"):
        embedder_for("bge", other_local)


def test_settings_are_checked() -> None:
    deployment = _deployment("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="timeout"):
        RemoteEmbedder(deployment, timeout=0)
    with pytest.raises(ValueError, match="cache_size"):
        RemoteEmbedder(deployment, cache_size=-1)
    with pytest.raises(ValueError, match="cache_size"):
        VectorLRU(-1)
