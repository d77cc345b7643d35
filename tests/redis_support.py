"""Helpers for the Redis backend tests (tests/test_redis_*.py).

Configs are built the way users write them (a LiteLLM ``cache_params`` mapping, parsed by
the real config loader) and pointed at the real servers of ``tests/redis_servers.py``.
``run_check`` runs the installed ``llmcache-tui --check`` as a subprocess with a clean
environment: no ``REDIS_*`` variable leaks in from the developer's shell.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from llmcache_tui.cache.backends import CacheBackend, ScanPage, build_backend
from llmcache_tui.config import CacheSettings, parse_settings
from tests import redis_servers as rs

CLI = Path(sys.executable).with_name("llmcache-tui")
#: The namespace of the LiteLLM docs' example.
DOCS_NAMESPACE = "litellm.caching.caching"
MISS_STORED = "llmcache; fwd=miss; stored"
HIT = "llmcache; hit"
CACHE_ERROR = "detail=cache-error"
#: How a password may show up in output: as written, or percent-quoted in a URL.
PASSWORD_FORMS = (rs.PASSWORD, "p%40ss%3Aw%2Frd%21", rs.ACL_PASSWORD)


def cache_settings(params: Mapping[str, Any]) -> CacheSettings:
    """``litellm_settings.cache_params`` (``type: redis`` unless given) as loaded settings."""
    document = {
        "litellm_settings": {"cache": True, "cache_params": {"type": "redis", **params}},
    }
    settings = parse_settings(yaml.safe_dump(document), "redis-test.yaml")
    assert settings.cache is not None
    return settings.cache


def build(params: Mapping[str, Any]) -> CacheBackend:
    """The backend the proxy would build from these ``cache_params``."""
    return build_backend(cache_settings(params))


def server_params(server: rs.RedisProcess) -> dict[str, Any]:
    """``cache_params`` reaching ``server`` with host/port (and its auth and TLS settings)."""
    params: dict[str, Any] = {"host": server.host, "port": server.port}
    if server.username:
        params["username"] = server.username
    if server.password:
        params["password"] = server.password
    if server.tls:
        params.update(ssl=True, ssl_ca_certs=str(server.tls.ca_cert))
    return params


def cluster_params(cluster: rs.RedisClusterNodes) -> dict[str, Any]:
    """``cache_params`` for a cluster, in the docs' shape (ports as strings, as documented)."""
    nodes = [{"host": node["host"], "port": str(node["port"])} for node in cluster.startup_nodes]
    params: dict[str, Any] = {"redis_startup_nodes": nodes}
    if cluster.password:
        params["password"] = cluster.password
    return params


def sentinel_params(group: rs.RedisSentinelGroup) -> dict[str, Any]:
    """``cache_params`` for a sentinel group, in the docs' shape."""
    params: dict[str, Any] = {
        "service_name": group.service_name,
        "sentinel_nodes": group.sentinel_nodes,
    }
    if group.sentinel_password:
        params["sentinel_password"] = group.sentinel_password
    return params


async def scan_all(backend: CacheBackend, match: str = "*", count: int = 10) -> list[ScanPage]:
    """Every page of a scan (bounded, so a cursor bug fails instead of hanging)."""
    pages: list[ScanPage] = []
    cursor: str | None = None
    for _ in range(10_000):
        page = await backend.scan(match, cursor, count)
        pages.append(page)
        cursor = page.cursor
        if cursor is None:
            return pages
    raise AssertionError("scan never finished")


def scanned_keys(pages: list[ScanPage]) -> list[str]:
    return [info.key for page in pages for info in page.keys]


def assert_no_password(*texts: str) -> None:
    for text in texts:
        for secret in PASSWORD_FORMS:
            assert secret not in text, f"a password shows in: {text}"


# --------------------------------------------------------------------------- --check


@dataclass(frozen=True)
class CheckRun:
    """One ``llmcache-tui --check`` run; ``report`` is its JSON (empty in text mode)."""

    code: int
    report: dict[str, Any]
    stdout: str
    stderr: str


def write_config(directory: Path, params: Mapping[str, Any] | None, name: str = "c.yaml") -> Path:
    """A config.yaml with ``cache_params`` (``type: redis``; ``None``: no cache_params)."""
    litellm: dict[str, Any] = {"cache": True}
    if params is not None:
        litellm["cache_params"] = {"type": "redis", **params}
    path = directory / name
    path.write_text(yaml.safe_dump({"litellm_settings": litellm}), encoding="utf-8")
    return path


def run_check(
    config: Path, env: Mapping[str, str] | None = None, *, as_json: bool = True
) -> CheckRun:
    """``llmcache-tui --check [--json] --config CONFIG`` with only ``env``'s REDIS_* variables."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("REDIS_") and name != "LLMCACHE_CONFIG"
    }
    result = subprocess.run(
        [str(CLI), "--check", *(["--json"] if as_json else []), "--config", str(config)],
        cwd=config.parent,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report: dict[str, Any] = {}
    if as_json:
        try:
            report = json.loads(result.stdout)
        except json.JSONDecodeError:
            message = f"--check printed no JSON:\n{result.stdout}\n{result.stderr}"
            raise AssertionError(message) from None
    return CheckRun(result.returncode, report, result.stdout, result.stderr)


# --------------------------------------------------------------------------- the proxy


def chat(http: httpx.Client, text: str, **cache: Any) -> httpx.Response:
    """One chat completion through a proxy; ``cache`` holds per-request controls."""
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": text}],
    }
    if cache:
        body["cache"] = cache
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response


def poll(
    condition: Callable[[], bool], *, what: str, attempts: int = 150, pause: float = 0.1
) -> None:
    """Try ``condition`` up to ``attempts`` times, ``pause`` seconds apart (a bounded poll)."""
    for _ in range(attempts):
        if condition():
            return
        time.sleep(pause)
    raise AssertionError(f"gave up waiting for {what} after {attempts} attempts")
