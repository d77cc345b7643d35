"""The canonical cache key: what makes two requests "the same request"."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

# Parameters that never change the answer. A streamed and a plain request for the same
# thing share one key, so ``stream`` and ``stream_options`` are left out too.
IGNORED_PARAMS = frozenset({"cache", "metadata", "stream", "stream_options"})
NAMESPACE_SEPARATOR = ":"


def request_digest(route: str, body: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical JSON of every answer-changing parameter of a request.

    The route (chat, embedding, ...) is part of the key: the same body sent to two
    endpoints asks two different questions. Field order never changes the key because
    the JSON is written with sorted keys at every depth, and a top-level ``1.0`` keys as
    ``1`` because SDKs disagree on how to write sampling parameters such as temperature.
    """
    canonical = {
        k: int(v) if type(v) is float and v.is_integer() else v
        for k, v in body.items()
        if k not in IGNORED_PARAMS
    }
    canonical["~route"] = route
    payload = orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(payload).hexdigest()


def storage_key(digest: str, namespace: str | None) -> str:
    """The key as stored in the backend: ``namespace:digest``, or the bare digest."""
    return f"{namespace}{NAMESPACE_SEPARATOR}{digest}" if namespace else digest
