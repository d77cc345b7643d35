"""``llmcache-tui --check``: a health probe for scripts and container health checks.

Exit codes: 0 healthy, 1 cache backend unhealthy (with the reason), 2 config error, or a
config whose cache settings would do nothing (``cache_params`` at the top level, or without
``cache: true``; listed under ``unused_cache_settings``, the rest is still checked). A
semantic cache is also checked: one probe embedding, and the vector store's reachability,
collection or index and dimension; if that part fails the status is ``degraded`` (exit 1):
the exact cache works, semantic hits do not.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from llmcache_tui import defaults
from llmcache_tui.cache.backends import CacheBackendError, build_backend
from llmcache_tui.cache.health import ProbeResult, probe_backend, probe_semantic
from llmcache_tui.config import ConfigError, Settings, load_settings, resolve_config_path
from llmcache_tui.log_redaction import install_log_redaction
from llmcache_tui.redact import NO_SECRETS, Redactor

EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1
EXIT_CONFIG_ERROR = defaults.EXIT_CONFIG_ERROR


def run_check(config_path: str | None, *, as_json: bool) -> int:
    """Load the config, probe the backend, print the outcome, return the exit code.

    The config is looked up as everywhere else: ``--config``, ``$LLMCACHE_CONFIG``,
    ``./config.yaml``, then the built-in default.
    """
    started = time.perf_counter()
    try:
        settings = load_settings(resolve_config_path(config_path))
    except ConfigError as exc:
        failed: dict[str, Any] = {"status": "config_error", "error": str(exc)}
        return _report(failed, NO_SECRETS, as_json, EXIT_CONFIG_ERROR)
    install_log_redaction(settings.redactor)
    report = asyncio.run(_probe(settings))
    report["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 1)
    codes = {"healthy": EXIT_HEALTHY, "disabled": EXIT_HEALTHY, "config_error": EXIT_CONFIG_ERROR}
    code = codes.get(report["status"], EXIT_UNHEALTHY)
    if settings.unused_cache_settings:
        report["unused_cache_settings"] = list(settings.unused_cache_settings)
        code = EXIT_CONFIG_ERROR
    return _report(report, settings.redactor, as_json, code)


async def _probe(settings: Settings) -> dict[str, Any]:
    report: dict[str, Any] = {
        "config": settings.source,
        "warnings": list(settings.warnings),
        "models": len(settings.model_list),
        # Which isolation is on and how many keys, never the keys themselves.
        "isolation": settings.app.isolation,
        "client_keys": len(settings.app.api_keys),  # not "api_keys": masked by name
    }
    if settings.cache is None:
        report.update(status="disabled", cache_type=None)
        return report
    report["cache_type"] = settings.cache.type
    report["key_format"] = settings.cache.params.key_format
    try:
        backend = build_backend(settings.cache)
    except ConfigError as exc:
        report.update(status="config_error", error=str(exc))
        return report
    except CacheBackendError as exc:
        report.update(status="unhealthy", error=str(exc))
        return report
    try:
        # Masked with the rest of the report. The namespace tells which keys are ours
        # on a shared server.
        report["params"] = {"namespace": settings.cache.namespace, **backend.describe()}
        result = await probe_backend(backend)
    finally:
        await backend.close()
    report.update(_probe_fields(result))
    if backend.process_local:
        report["note"] = "in-memory cache: this checks a fresh instance, not a running proxy's"
    if settings.cache.semantic:
        report["semantic"] = await probe_semantic(settings)
        if report["status"] == "healthy" and not report["semantic"]["healthy"]:
            report["status"] = "degraded"
    return report


def _probe_fields(result: ProbeResult) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "status": "healthy" if result.healthy else "unhealthy",
        "ping": result.ping,
        "ping_ms": None if result.ping_ms is None else round(result.ping_ms, 3),
        "write": result.write,
        "read_back": result.read_back,
        "delete": result.deleted,
        **result.server,
    }
    if result.error:
        fields["error"] = result.error
    return fields


_KEY_FORMATS = {
    "llmcache": "llmcache (field order does not change a key)",
    "litellm": "litellm, shared with LiteLLM's proxy (the order of a body's fields is part"
    " of its key)",
}


def _report(report: dict[str, Any], redactor: Redactor, as_json: bool, code: int) -> int:
    # One pass over everything printed: parameters, errors (a client's error may quote a
    # URL or a password) and warnings.
    report = redactor.redact(report)
    if as_json:
        print(json.dumps(report, indent=2))
        return code
    status = report["status"]
    if status == "config_error":
        print(f"config error: {report['error']}")
        return code
    cache = report.get("cache_type") or "none"
    print(f"{status}: cache {cache} (config: {report.get('config')})")
    for name in ("ping", "write", "read_back", "delete"):
        if name in report:
            print(f"  {name:<10} {'ok' if report[name] else 'FAILED'}")
    if report.get("ping_ms") is not None:
        print(f"  ping time  {report['ping_ms']} ms")
    if report.get("redis_version"):
        print(f"  server     Redis {report['redis_version']}")
    if "isolation" in report:
        print(f"  isolation  {report['isolation']} ({_count(report['client_keys'], 'API key')})")
    if report.get("key_format"):
        print(f"  keys       {_KEY_FORMATS.get(report['key_format'], report['key_format'])}")
    params = report.get("params") or {}
    if params:
        shown = ", ".join(f"{name}={value}" for name, value in params.items())
        print(f"  params     {shown}")
    for key in ("error", "note"):
        if report.get(key):
            print(f"  {key}: {report[key]}")
    if "semantic" in report:
        _print_semantic(report["semantic"])
    for warning in report.get("warnings", []):
        print(f"  warning: {warning}")
    if report.get("unused_cache_settings"):
        print("config error: cache settings above are not used; move them as the warnings say")
    return code


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _print_semantic(semantic: dict[str, Any]) -> None:
    if semantic.get("problem"):
        print(f"  semantic   OFF: {semantic['problem']}")
        return
    embedder = semantic.get("embedder", {})
    state = f"ok, {embedder.get('dimension')} dimensions" if embedder.get("ok") else "FAILED"
    print(f"  embedder   {embedder.get('name')}: {state}")
    if embedder.get("error"):
        print(f"    error: {embedder['error']}")
    store = semantic.get("store")
    if store is None:
        return
    if not store.get("reachable"):
        print(f"  vectors    {store.get('kind', 'store')}: UNREACHABLE")
    else:
        ready = "ready" if store.get("ready") else "not created yet (made on first store)"
        count = store.get("vectors")
        counted = "" if count is None else f", {count} vectors"
        print(f"  vectors    {store.get('kind')} at {store.get('location')}: {ready}{counted}")
    if store.get("problem"):
        print(f"    problem: {store['problem']}")
    for limit in store.get("limits", []):
        print(f"    note: {limit}")
