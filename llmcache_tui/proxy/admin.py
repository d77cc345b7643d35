"""Operational routes: ``/cache/ping``, ``/cache/delete``, health and metrics."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson

from llmcache_tui import __version__
from llmcache_tui.cache.backends import CacheBackendError
from llmcache_tui.cache.health import probe_backend, semantic_health
from llmcache_tui.cache.keys import NAMESPACE_SEPARATOR, tenant_prefix
from llmcache_tui.config import CALL_TYPE_ROUTES
from llmcache_tui.proxy.asgi import (
    BodyTooLarge,
    Receive,
    Scope,
    Send,
    read_body,
    send_json,
    send_response,
)
from llmcache_tui.proxy.auth import caller_of
from llmcache_tui.proxy.errors import error_body
from llmcache_tui.proxy.exposition import render

if TYPE_CHECKING:
    from llmcache_tui.proxy.app import Handler, ProxyApp

DELETE_BODY_LIMIT = 4 * 1024 * 1024


async def cache_ping(app: ProxyApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Ping, write and read back through the live backend, in LiteLLM's response shape."""
    cache = app.settings.cache
    if cache is None:
        reason = "caching is not enabled (set litellm_settings.cache: true)"
        await send_json(send, 503, {"status": "unhealthy", "cache_type": None, "error": reason})
        return
    document: dict[str, Any] = {"status": "unhealthy", "cache_type": cache.type}
    if app.backend is None:
        document["error"] = app.backend_problem or "cache backend is not available"
        await send_json(send, 503, app.settings.redactor.redact(document))
        return
    result = await probe_backend(app.backend)
    call_types = cache.params.supported_call_types
    if call_types is None:
        call_types = list(CALL_TYPE_ROUTES)
    document.update(
        {
            "status": "healthy" if result.healthy else "unhealthy",
            "ping_response": result.ping,
            "set_cache_response": "success" if result.write else "failed",
            # Which isolation is on, never the keys: "tenant" keeps tenants' entries apart.
            "isolation": app.settings.app.isolation,
            "litellm_cache_params": {
                "supported_call_types": call_types,
                "type": cache.type,
                "namespace": cache.namespace,
                "mode": cache.params.mode,
                "ttl": cache.params.ttl,
            },
            f"{cache.type.replace('-', '_')}_cache_params": {
                "namespace": cache.namespace,  # as --check shows it beside the connection
                **app.backend.describe(),
                **result.server,
            },
        }
    )
    if result.ping_ms is not None:
        document["ping_ms"] = round(result.ping_ms, 3)
    if not result.healthy:
        document["error"] = result.error
    healthy = result.healthy
    if cache.semantic:
        tier = app.cache.semantic if app.cache is not None else None
        semantic = await semantic_health(tier, app.semantic_problem)
        document["semantic_cache"] = semantic
        if not semantic["healthy"]:
            healthy = False
            document["status"] = "unhealthy"
            document.setdefault("error", "semantic cache: " + _semantic_problem(semantic))
    # Parameters and errors alike: a client's error may quote a URL or a password.
    await send_json(send, 200 if healthy else 503, app.settings.redactor.redact(document))


def _semantic_problem(report: dict[str, Any]) -> str:
    if report.get("problem"):
        return str(report["problem"])
    embedder = report.get("embedder", {})
    if not embedder.get("ok"):
        return f"embedder {embedder.get('name')}: {embedder.get('error')}"
    store = report.get("store", {})
    return str(store.get("problem") or "vector store unreachable")


async def cache_delete(app: ProxyApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Delete the given keys (as stored, or without the configured namespace).

    Under tenant isolation a tenant's keys are read inside its own tenant: another
    tenant's key matches nothing and is answered as any key that is not there.
    """
    try:
        raw = await read_body(scope, receive, DELETE_BODY_LIMIT)
    except BodyTooLarge:
        await send_json(send, 413, error_body(413, "request body too large"))
        return
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        await send_json(send, 400, error_body(400, f"request body is not valid JSON: {exc}"))
        return
    keys = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        message = 'expected a JSON body {"keys": ["<cache key>", ...]}'
        await send_json(send, 400, error_body(400, message, param="keys"))
        return
    if app.backend is None:
        reason = app.backend_problem or "caching is not enabled"
        await send_json(send, 503, error_body(503, app.settings.redactor.scrub(reason)))
        return
    namespace = app.settings.cache.namespace if app.settings.cache else None
    caller = caller_of(scope)
    candidates = _deletable(keys, namespace, None if caller.master else caller.tenant)
    try:
        deleted = await app.backend.delete(candidates)
    except CacheBackendError as exc:
        error = app.settings.redactor.scrub(str(exc))
        await send_json(send, 503, error_body(503, f"cache delete failed: {error}"))
        return
    await send_json(send, 200, {"status": "success", "deleted": deleted})


def _deletable(keys: list[str], namespace: str | None, tenant: str | None) -> list[str]:
    """The stored keys the given keys may stand for, all inside ``tenant`` when given."""
    own = tenant_prefix(tenant) if tenant else ""
    bare = [key.removeprefix(own) for key in keys]
    candidates = bare
    if namespace:
        prefix = namespace + NAMESPACE_SEPARATOR
        candidates = bare + [prefix + key for key in bare if not key.startswith(prefix)]
    return [own + key for key in candidates]


async def health(app: ProxyApp, scope: Scope, receive: Receive, send: Send) -> None:
    await send_json(send, 200, _health_document(app))


async def liveliness(app: ProxyApp, scope: Scope, receive: Receive, send: Send) -> None:
    await send_json(send, 200, "I'm alive!")


async def readiness(app: ProxyApp, scope: Scope, receive: Receive, send: Send) -> None:
    """LiteLLM's readiness document (the fields its probes and dashboards read), open to all.

    The proxy serves from upstream when the cache is down, so it stays ready; the cache's
    state is reported for operators, not used to take the instance out of rotation.
    """
    level = logging.getLogger("llmcache_tui").getEffectiveLevel()
    cache = app.settings.cache
    await send_json(
        send,
        200,
        {
            "status": "healthy",
            "db": "Not connected",  # LiteLLM's value without a database: there is none here
            "cache": None if cache is None else cache.type,
            "litellm_version": __version__,
            "success_callbacks": [],
            "use_aiohttp_transport": True,  # upstream calls go through aiohttp
            "log_level": logging.getLevelName(level),
            "is_detailed_debug": level <= logging.DEBUG,
            "version": __version__,
            "models": len(app.settings.model_list),
            # Open to anyone, so without the reason (it may name hosts): /health has it.
            "cache_status": _cache_state(app).partition(":")[0],
        },
    )


def _health_document(app: ProxyApp) -> dict[str, Any]:
    cache = app.settings.cache
    return {
        "status": "healthy",
        "version": __version__,
        "cache": None if cache is None else cache.type,
        "cache_status": _cache_state(app),
        "models": len(app.settings.model_list),
    }


def _cache_state(app: ProxyApp) -> str:
    if app.settings.cache is None:
        return "disabled"
    if app.backend is None:
        return f"unavailable: {app.settings.redactor.scrub(str(app.backend_problem))}"
    return "configured"


async def metrics(app: ProxyApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Every metric in the Prometheus text format (OpenMetrics if the scraper asks)."""
    body, content_type = render(app.metrics_registry, scope)
    await send_response(send, 200, body, [(b"content-type", content_type)])


ROUTES: dict[str, tuple[str, Handler]] = {
    "/cache/ping": ("GET", cache_ping),
    "/cache/delete": ("POST", cache_delete),
    "/health": ("GET", health),
    "/health/liveliness": ("GET", liveliness),
    "/health/liveness": ("GET", liveliness),
    "/health/readiness": ("GET", readiness),
    "/metrics": ("GET", metrics),
}
