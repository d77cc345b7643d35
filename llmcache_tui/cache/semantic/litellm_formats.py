"""LiteLLM's own semantic caches: how their records look, so they are recognised and listed.

An operator may point the terminal app at a collection or index that LiteLLM's proxy
wrote. Their records are shown and probed, marked as LiteLLM's, and never served nor
written by this program (read-only unless the operator allows deletes).

* **Qdrant** (LiteLLM's ``qdrant-semantic``): one point per answer, under a random UUID,
  whose vector is the embedding of the prompt (cosine) and whose payload is only
  ``{"text": <prompt>, "response": <the response as a string>}``. No model, no scope, no
  expiry: LiteLLM answers with the nearest point whatever the model or conversation.
* **Redis** (LiteLLM's ``redis-semantic``): a RedisVL ``SemanticCache``, a query-engine
  index (LiteLLM names it ``litellm_semantic_cache_index`` unless configured otherwise)
  over hashes ``<prefix>:<entry id>`` holding ``prompt`` and ``response`` (TEXT),
  ``inserted_at`` and ``updated_at`` (NUMERIC, Unix times), ``prompt_vector`` (FLOAT32
  bytes, cosine), optionally ``metadata`` (JSON) and filter fields: recent LiteLLM adds a
  ``litellm_cache_key`` TAG that its lookups must match exactly; older entries have none.
  The hash's own TTL is the entry's expiry.

This module holds the formats only (no client imports); the stores read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from llmcache_tui.cache.semantic.store import LITELLM, VectorRecordInfo, VectorStoreError

#: The index name LiteLLM's Redis semantic cache uses unless configured otherwise.
REDIS_INDEX: Final = "litellm_semantic_cache_index"
REDIS_PROMPT: Final = "prompt"
REDIS_RESPONSE: Final = "response"
REDIS_VECTOR: Final = "prompt_vector"
REDIS_INSERTED: Final = "inserted_at"
REDIS_UPDATED: Final = "updated_at"
REDIS_METADATA: Final = "metadata"
#: The filter field recent LiteLLM stores with each entry (its own exact cache key).
REDIS_CACHE_KEY: Final = "litellm_cache_key"
#: Hash fields read to list a record (never the vector).
REDIS_LISTED: Final = (
    REDIS_PROMPT,
    REDIS_RESPONSE,
    REDIS_INSERTED,
    REDIS_UPDATED,
    REDIS_METADATA,
    REDIS_CACHE_KEY,
)
#: Shown where a LiteLLM record appears: why it is never served from here.
UNSCOPED: Final = (
    "LiteLLM's entry: no llmcache scope (LiteLLM stores no model, parameters or"
    " conversation with it), so llmcache never serves it"
)
#: How the operator allows deleting LiteLLM's records.
WRITES_HINT: Final = (
    "start the terminal app with --allow-litellm-writes (or set llmcache:"
    " allow_litellm_writes: true) to delete them"
)


class LiteLLMReadOnly(VectorStoreError):
    """A change to LiteLLM's records that the operator has not allowed."""


def refused_delete() -> LiteLLMReadOnly:
    return LiteLLMReadOnly(f"LiteLLM's semantic cache is read-only here: {WRITES_HINT}")


def refused_add(where: str) -> VectorStoreError:
    """Why the semantic tier does not write into LiteLLM's collection or index."""
    return VectorStoreError(
        f"{where} holds LiteLLM's semantic cache: llmcache writes none of its own records"
        " into it (they would be a second, differently shaped cache in one place); name"
        " another collection or index for llmcache"
    )


def is_qdrant_payload(payload: Mapping[str, Any] | None) -> bool:
    """Whether a Qdrant point's payload is one LiteLLM wrote (prompt and response only,
    none of the fields our points carry)."""
    if not payload:
        return False
    return (
        isinstance(payload.get("text"), str)
        and isinstance(payload.get("response"), str)
        and "key" not in payload
        and "scope" not in payload
    )


def qdrant_record(point_id: Any, payload: Mapping[str, Any]) -> VectorRecordInfo:
    return VectorRecordInfo(
        key=str(point_id),
        text=str(payload.get("text", "")),
        created_at=None,  # LiteLLM records no time
        expires_at=None,  # nor any expiry: its points stay until deleted
        origin=LITELLM,
        response=str(payload.get("response", "")),
    )


def is_redisvl_cache(fields: Mapping[str, str]) -> bool:
    """Whether an index's fields (name to type, lower case, from FT.INFO) are a RedisVL
    SemanticCache's."""
    return (
        fields.get(REDIS_VECTOR) == "vector"
        and fields.get(REDIS_PROMPT) == "text"
        and fields.get(REDIS_RESPONSE) == "text"
    )


def redis_record(
    hash_key: str, fields: Mapping[str, str | None], expires_at: float | None
) -> VectorRecordInfo:
    """A RedisVL cache hash as a listed record; ``fields`` as read (missing ones None)."""
    details: dict[str, Any] = {}
    cache_key = fields.get(REDIS_CACHE_KEY)
    details["litellm_cache_key"] = cache_key  # None: an entry any request may be served
    if fields.get(REDIS_METADATA):
        details["metadata"] = fields[REDIS_METADATA]
    updated = _time(fields.get(REDIS_UPDATED))
    if updated is not None:
        details["updated_at"] = updated
    return VectorRecordInfo(
        key=hash_key,
        text=fields.get(REDIS_PROMPT) or "",
        created_at=_time(fields.get(REDIS_INSERTED)),
        expires_at=expires_at,
        origin=LITELLM,
        response=fields.get(REDIS_RESPONSE) or "",
        details=details,
    )


def _time(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None
