"""Write semantic-cache records the way LiteLLM's proxy does, from its documented formats.

Neither LiteLLM nor RedisVL is installed for the suite: these write the same shapes with
qdrant-client and redis-py directly (see ``llmcache_tui/cache/semantic/litellm_formats.py``).

* Qdrant: a collection with one unnamed cosine vector, points under random UUIDs whose
  payload is ``{"text": prompt, "response": str(response)}``.
* Redis: a RedisVL SemanticCache index (``FT.CREATE`` with prompt/response TEXT,
  inserted_at/updated_at NUMERIC, prompt_vector FLAT FLOAT32 COSINE and LiteLLM's
  ``litellm_cache_key`` TAG) over hashes ``<name>:<sha256 of prompt and filters>``.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import redis

LITELLM_INDEX = "litellm_semantic_cache_index"


def write_litellm_qdrant(
    path: Path, collection: str, points: Sequence[tuple[str, str, Sequence[float]]]
) -> list[str]:
    """Create ``collection`` in embedded Qdrant at ``path`` and add (prompt, response,
    vector) points as LiteLLM does; their ids. The client is closed again (the directory
    takes one client at a time)."""
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(path))
    try:
        if not client.collection_exists(collection):
            client.create_collection(
                collection,
                vectors_config=models.VectorParams(
                    size=len(points[0][2]), distance=models.Distance.COSINE
                ),
            )
        ids = [str(uuid.uuid4()) for _ in points]
        client.upsert(
            collection,
            points=[
                models.PointStruct(
                    id=point_id,
                    vector=[float(x) for x in vector],
                    payload={"text": prompt, "response": response},
                )
                for point_id, (prompt, response, vector) in zip(ids, points, strict=True)
            ],
        )
        return ids
    finally:
        client.close()


def create_litellm_index(client: redis.Redis, dimension: int, name: str = LITELLM_INDEX) -> None:
    """The RedisVL SemanticCache index LiteLLM's redis-semantic creates."""
    client.execute_command(
        "FT.CREATE", name, "ON", "HASH", "PREFIX", 1, name, "SCHEMA",
        "prompt", "TEXT", "response", "TEXT",
        "inserted_at", "NUMERIC", "updated_at", "NUMERIC",
        "prompt_vector", "VECTOR", "FLAT", 6,
        "TYPE", "FLOAT32", "DIM", dimension, "DISTANCE_METRIC", "COSINE",
        "litellm_cache_key", "TAG",
    )  # fmt: skip


def write_litellm_redis(
    client: redis.Redis,
    prompt: str,
    response: Any,
    vector: Sequence[float],
    *,
    name: str = LITELLM_INDEX,
    cache_key: str | None = "litellm-key-1",
    ttl: int | None = None,
    metadata: dict[str, Any] | None = None,
) -> str:
    """Store one entry as RedisVL's SemanticCache.store does (LiteLLM passes its cache key
    as a filter); the hash's key."""
    filters = {"litellm_cache_key": cache_key} if cache_key is not None else None
    material = prompt + (json.dumps(filters, sort_keys=True) if filters else "")
    entry_id = hashlib.sha256(material.encode()).hexdigest()
    key = f"{name}:{entry_id}"
    now = time.time()
    fields: dict[str, Any] = {
        "entry_id": entry_id,
        "prompt": prompt,
        "response": str(response),
        "prompt_vector": np.asarray(vector, dtype="<f4").tobytes(),
        "inserted_at": now,
        "updated_at": now,
    }
    if metadata is not None:
        fields["metadata"] = json.dumps(metadata)
    if filters:
        fields.update(filters)
    client.hset(key, mapping=fields)
    if ttl is not None:
        client.expire(key, ttl)
    return key
