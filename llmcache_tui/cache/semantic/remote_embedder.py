"""An embedding model from ``model_list``, called at its ``/embeddings`` over HTTP.

The semantic tier names its embedder by ``model_name`` (``embedding_model``);
:func:`embedder_for` turns that name into the built-in local model or a
:class:`RemoteEmbedder`. A remote embedder calls the deployment directly through its own
upstream client, never through the proxy and its cache, and keeps an LRU of the vectors
it got. A ``mock_response`` deployment answers in process with the mock's vectors.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import TYPE_CHECKING, Any, Final

import orjson

from llmcache_tui.cache.semantic.embedder import (
    Embedder,
    EmbedderError,
    EmbedderTimeout,
    EmbedderUnavailable,
)
from llmcache_tui.cache.semantic.local_embedder import (
    DEFAULT_CACHE_SIZE,
    DEFAULT_TIMEOUT,
    LocalEmbedder,
    checked_vectors,
)
from llmcache_tui.cache.semantic.local_embedder import (
    NAME as LOCAL_NAME,
)
from llmcache_tui.cache.semantic.vector_lru import VectorLRU
from llmcache_tui.proxy.errors import ProxyError
from llmcache_tui.proxy.routing import Deployment, Router

if TYPE_CHECKING:
    from llmcache_tui.cache.semantic.embedder import Vectors
    from llmcache_tui.proxy.upstream import UpstreamClient, UpstreamReply

PATH: Final = "embeddings"
NUMPY_HINT: Final = "pip install 'llmcache-tui[semantic]'"


class RemoteEmbedder:
    """A deployment's embeddings: L2-normalised float32 rows, one per text.

    ``name`` is the ``model_list`` model_name (default: the deployment's model id). The
    dimension is learned from the first answer and fixed from then on. ``timeout`` bounds
    one ``embed`` call in seconds (``None``: the deployment's own timeout); ``cache_size``
    bounds the per-text LRU (0 disables it).
    """

    def __init__(
        self,
        deployment: Deployment,
        *,
        name: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive or None")
        if deployment.provider == "local" or not deployment.supported:
            raise ValueError(
                f"provider {deployment.provider!r} is not called over HTTP"
                " (a local model is a LocalEmbedder)"
            )
        if deployment.provider != "mock" and not deployment.api_base:
            raise ValueError(f"{name or deployment.model!r} has no api_base configured")
        self.deployment = deployment
        self._name = name or deployment.model
        self.timeout = timeout
        self._dimension: int | None = None
        self._vectors = VectorLRU(cache_size)
        self._client: UpstreamClient | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int | None:
        return self._dimension

    @property
    def cached(self) -> int:
        """How many vectors the LRU holds."""
        return len(self._vectors)

    async def embed(self, texts: list[str], partition: str = "") -> Vectors:
        """One row per text, through the LRU; raises EmbedderError (EmbedderTimeout)."""
        try:
            import numpy  # noqa: F401 - needed below; said here, before any call is made
        except ImportError:
            raise EmbedderUnavailable(f"{self.name}: embedding needs numpy: {NUMPY_HINT}") from None
        return await self._vectors.embed(texts, self._fetch, self._dimension or 0, partition)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _fetch(self, texts: list[str]) -> Vectors:
        body = {"model": self.deployment.model, "input": texts}
        try:
            reply = await asyncio.wait_for(self._call(body), self.timeout)
        except TimeoutError:
            raise EmbedderTimeout(
                f"{self.name}: no embedding within {self.timeout:g} s ({len(texts)} text(s))"
            ) from None
        except ProxyError as exc:
            # The upstream client's messages name the host, never the key or the URL's
            # password.
            error = EmbedderTimeout if exc.status == 504 else EmbedderError
            raise error(f"{self.name}: {exc.message}") from None
        return self._read(reply, len(texts))

    async def _call(self, body: dict[str, Any]) -> UpstreamReply:
        from llmcache_tui.proxy.upstream import UpstreamClient, UpstreamReply

        deployment = self.deployment
        if deployment.provider == "mock":
            from llmcache_tui.proxy.mock import mock_reply

            document = mock_reply("embedding", self.name, body, deployment.mock_response)
            return UpstreamReply(200, orjson.dumps(document), [])
        if self._client is None:
            # Created here, inside the running loop, as aiohttp requires.
            self._client = UpstreamClient(self.timeout or DEFAULT_TIMEOUT)
        return await self._client.post_json(deployment, PATH, body)

    def _read(self, reply: UpstreamReply, count: int) -> Vectors:
        """The vectors of an answer, checked and normalised."""
        import numpy as np

        if reply.status != 200:
            raise EmbedderError(
                f"{self.name}: the embedding service answered HTTP {reply.status}"
                f"{_error_code(reply.body)}"
            )
        try:
            document = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            raise EmbedderError(
                f"{self.name}: the embedding service's answer is not JSON"
            ) from None
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise EmbedderError(f"{self.name}: the answer has no 'data' list of embeddings")
        if len(data) != count:
            raise EmbedderError(
                f"{self.name}: asked for {count} embedding(s), the answer holds {len(data)}"
            )
        indexes = [item.get("index") for item in data]
        if all(type(index) is int for index in indexes) and sorted(indexes) == list(range(count)):
            data = sorted(data, key=lambda item: item["index"])  # in the order of the texts
        rows = [_row(item.get("embedding"), self.name) for item in data]
        if len({len(row) for row in rows}) > 1:
            raise EmbedderError(f"{self.name}: the answer holds vectors of different lengths")
        array = np.stack(rows) if rows else np.zeros((0, self._dimension or 0), np.float32)
        dimension = self._dimension if self._dimension is not None else array.shape[1]
        if dimension == 0:
            raise EmbedderError(f"{self.name}: the answer holds empty vectors")
        vectors = checked_vectors(array, count, dimension, self.name)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if not norms.all():
            raise EmbedderError(f"{self.name}: the answer holds a zero vector")
        self._dimension = dimension
        normalised: Vectors = (vectors / norms).astype(np.float32)
        return normalised


def embedder_for(
    model_name: str | None, router: Router, *, timeout: float | None = DEFAULT_TIMEOUT
) -> Embedder:
    """The embedder ``embedding_model`` names: None for the built-in local model, else
    a ``model_list`` model_name. Raises ValueError naming the model_list names if there is
    no such entry or it cannot embed."""
    if model_name is None:
        return LocalEmbedder(timeout=timeout)
    names = [name for name in router.names if "*" not in name]
    deployment = router.resolve(model_name) if model_name in names else None
    if deployment is None:
        known = ", ".join(repr(name) for name in names) or "none"
        raise ValueError(f"{model_name!r} is not a model_name in model_list (names: {known})")
    if deployment.provider == "local":
        if f"local/{deployment.model}" != LOCAL_NAME:
            raise ValueError(
                f"{model_name!r} routes to local/{deployment.model}, which is not a built-in"
                f" model (built in: {LOCAL_NAME})"
            )
        return LocalEmbedder(timeout=timeout)
    try:
        return RemoteEmbedder(deployment, name=model_name, timeout=timeout)
    except ValueError as exc:
        raise ValueError(f"{model_name!r} cannot embed: {exc}") from None


def _row(embedding: Any, name: str) -> Vectors:
    """One vector as sent: an array of numbers, or base64 of little-endian float32."""
    import numpy as np

    try:
        if isinstance(embedding, str):
            return np.frombuffer(base64.b64decode(embedding, validate=True), dtype="<f4")
        if isinstance(embedding, list) and all(type(value) in (int, float) for value in embedding):
            return np.asarray(embedding, dtype=np.float32)
    except (binascii.Error, ValueError):
        pass  # base64 that is not, or not a whole number of float32s
    raise EmbedderError(f"{name}: an embedding in the answer is not a vector of numbers")


def _error_code(body: bytes) -> str:
    """`` (<code>)`` from an OpenAI-style error, if any.

    Only the code or type: an error's message may quote part of the API key.
    """
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    if not isinstance(error, dict):
        return ""
    code = error.get("code") or error.get("type")
    if not isinstance(code, str) or not code.isprintable() or len(code) > 64:
        return ""
    return f" ({code})"
