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
# Under tenant isolation every stored key starts with "@<tenant>:", before any namespace,
# so ownership is read off the key (``/cache/delete``, the browser) and a namespace a
# client picks stays inside its tenant.
TENANT_MARK = "@"
# How deep orjson.dumps nests (orjson.loads takes four times as much).
MAX_JSON_DEPTH = 254


class UnwritableBody(ValueError):
    """A parsed request body that cannot be written back as JSON (nested too deep)."""


def request_digest(route: str, body: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical JSON of every answer-changing parameter of a request.

    The route (chat, embedding, ...) is part of the key: the same body sent to two
    endpoints asks two different questions. Field order never changes the key because
    the JSON is written with sorted keys at every depth, and a top-level ``1.0`` keys as
    ``1`` because SDKs disagree on how to write sampling parameters such as temperature.
    Raises :class:`UnwritableBody` for a body JSON can carry but orjson cannot write.
    """
    canonical = canonical_params(body, IGNORED_PARAMS)
    canonical["~route"] = route
    try:
        payload = orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:
        raise UnwritableBody(unwritable_reason(exc)) from None
    return hashlib.sha256(payload).hexdigest()


def canonical_params(body: Mapping[str, Any], excluded: frozenset[str]) -> dict[str, Any]:
    """The top-level parameters of ``body`` not in ``excluded``, whole floats as integers."""
    # orjson writes integers of at most 64 bits (signed or not): a whole float beyond them
    # (``1e300``) keys as the float it is. The bounds are literals: this runs per request.
    return {
        k: int(v) if type(v) is float and v.is_integer() and -(2.0**63) <= v < 2.0**64 else v
        for k, v in body.items()
        if k not in excluded
    }


def unwritable_reason(exc: orjson.JSONEncodeError) -> str:
    """Why orjson could not write a parsed request body, for a 400 (no 500)."""
    if "Recursion" in str(exc):
        return f"request body nests objects and arrays more than {MAX_JSON_DEPTH} levels deep"
    return f"request body cannot be written back as JSON: {exc}"


def storage_key(digest: str, namespace: str | None, tenant: str | None = None) -> str:
    """The key as stored in the backend: ``namespace:digest``, or the bare digest; with a
    tenant, ``@tenant:`` before either."""
    key = f"{namespace}{NAMESPACE_SEPARATOR}{digest}" if namespace else digest
    return f"{tenant_prefix(tenant)}{key}" if tenant else key


def tenant_prefix(tenant: str) -> str:
    """What every stored key of ``tenant`` starts with."""
    return f"{TENANT_MARK}{tenant}{NAMESPACE_SEPARATOR}"


def tenant_of(key: str) -> str | None:
    """The tenant a stored key belongs to, or None for a key written without isolation."""
    if not key.startswith(TENANT_MARK):
        return None
    tenant, separator, _ = key[len(TENANT_MARK) :].partition(NAMESPACE_SEPARATOR)
    return tenant if separator and tenant else None
