"""Models the proxy runs itself: ``local/all-minilm-l6-v2`` answers ``/v1/embeddings``.

A ``model_list`` entry whose model is ``local/all-minilm-l6-v2`` needs no upstream and no
key: the built-in embedder computes the vectors in process and the answer has OpenAI's
shape, so it is cached like any other embedding. The embedder is the process's one
:func:`~llmcache_tui.cache.semantic.local_embedder.shared_local_embedder`; numpy and the
model load on the first request, not when the proxy starts.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import orjson

from llmcache_tui.cache.semantic.embedder import (
    EmbedderError,
    EmbedderTimeout,
    EmbedderUnavailable,
)
from llmcache_tui.cache.semantic.local_embedder import (
    DIMENSION,
    NAME,
    shared_local_embedder,
)
from llmcache_tui.proxy.asgi import JSON_CONTENT
from llmcache_tui.proxy.errors import ProxyError, echo
from llmcache_tui.proxy.request import LLM_PATHS, LLMRequest
from llmcache_tui.proxy.routing import Deployment
from llmcache_tui.proxy.upstream import UpstreamReply

if TYPE_CHECKING:
    from llmcache_tui.cache.semantic.local_embedder import Vectors

PROVIDER = "local"
#: the models a ``local`` deployment can name (after ``local/``)
MODELS = frozenset({NAME.partition("/")[2]})
ENCODINGS = frozenset({"float", "base64"})


def check_local(deployment: Deployment, request: LLMRequest) -> None:
    """Refuse what a local deployment cannot answer, before the cache is asked."""
    model = echo(request.model)
    if deployment.model not in MODELS:
        known = ", ".join(f"{PROVIDER}/{name}" for name in sorted(MODELS))
        raise ProxyError(
            400,
            f"model {model} routes to {PROVIDER}/{deployment.model}, which is not a built-in"
            f" model (built in: {known})",
            param="model",
        )
    if request.route != "embedding":
        raise ProxyError(
            400,
            f"model {model} is an embedding model ({PROVIDER}/{deployment.model}): call"
            f" /v1/{LLM_PATHS['embedding']}, not /v1/{LLM_PATHS[request.route]}",
            param="model",
        )
    if request.stream:
        raise ProxyError(400, "embeddings are not streamed: leave out 'stream'", param="stream")
    body = request.body
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ENCODINGS:
        raise ProxyError(
            400,
            f"'encoding_format' must be 'float' or 'base64', got {echo(str(encoding))}",
            param="encoding_format",
        )
    dimensions = body.get("dimensions")
    if dimensions is not None and not (type(dimensions) is int and dimensions == DIMENSION):
        raise ProxyError(
            400,
            f"model {model} gives {DIMENSION}-dimensional vectors: 'dimensions' must be"
            f" {DIMENSION} or left out, got {echo(str(dimensions))}",
            param="dimensions",
        )
    _texts(request)


async def embedding_reply(request: LLMRequest) -> UpstreamReply:
    """The local model's answer to an embedding request that :func:`check_local` passed."""
    texts = _texts(request)
    embedder = shared_local_embedder()
    try:
        vectors = await embedder.embed(texts)
        tokens = await embedder.count_tokens(texts)
    except EmbedderUnavailable as exc:
        raise ProxyError(503, f"model {echo(request.model)} cannot run here: {exc}") from None
    except EmbedderTimeout as exc:
        raise ProxyError(504, str(exc)) from None
    except EmbedderError as exc:
        raise ProxyError(500, str(exc)) from None
    as_base64 = request.body.get("encoding_format") == "base64"
    document = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encoded(vector, as_base64)}
            for i, vector in enumerate(vectors)
        ],
        "model": request.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    # Numpy arrays are written by orjson itself, as float32: the shortest decimal that
    # reads back as the same float32, as OpenAI writes them.
    body = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    return UpstreamReply(200, body, [JSON_CONTENT])


def _texts(request: LLMRequest) -> list[str]:
    """The texts to embed: ``input`` as a string or an array of strings."""
    raw = request.body.get("input")
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        return raw
    # The request checks passed it, so it holds token ids, which this model cannot read.
    raise ProxyError(
        400,
        f"model {echo(request.model)} reads text: send 'input' as a string or an array of"
        " strings, not token ids",
        param="input",
    )


def _encoded(vector: Vectors, as_base64: bool) -> Any:
    if as_base64:
        # What OpenAI sends for encoding_format "base64": little-endian float32 bytes.
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector
