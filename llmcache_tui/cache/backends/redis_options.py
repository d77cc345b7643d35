"""Turn LiteLLM's Redis settings (``cache_params`` and ``REDIS_*`` variables) into client options.

As in LiteLLM: any ``REDIS_<kwarg>`` variable is passed to the client; ``cache_params``
override the environment; a URL (``url`` or ``REDIS_URL``) takes the place of host and
port; ``redis_startup_nodes`` / ``REDIS_CLUSTER_NODES`` select a cluster and
``sentinel_nodes`` / ``REDIS_SENTINEL_NODES`` with a service name select Sentinel.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from llmcache_tui.config import REDIS_CLIENT_PARAMS, CacheSettings, ConfigError
from llmcache_tui.redact import mask_secrets, mask_url, secrets_in

PARAMS = "litellm_settings.cache_params"
# Client keyword arguments a cache_params key or REDIS_<NAME> variable may set.
CLIENT_KWARGS = REDIS_CLIENT_PARAMS
# Variables with a meaning of their own, never passed through as client kwargs.
SPECIAL_VARIABLES = frozenset(
    {
        "REDIS_URL",
        "REDIS_CLUSTER_NODES",
        "REDIS_SENTINEL_NODES",
        "REDIS_SERVICE_NAME",
        "REDIS_SENTINEL_PASSWORD",
        "REDIS_GCP_SERVICE_ACCOUNT",
        "REDIS_GCP_SSL_CA_CERTS",
    }
)
# How a REDIS_<NAME> variable's text is read: numbers and booleans only where the client
# expects them, so a password such as "007" or "1e3" reaches Redis exactly as written.
NUMBER_KWARGS = frozenset(
    {
        "port",
        "db",
        "max_connections",
        "socket_timeout",
        "socket_connect_timeout",
        "health_check_interval",
        "protocol",
    }
)
BOOLEAN_KWARGS = frozenset(
    {"ssl", "ssl_check_hostname", "socket_keepalive", "retry_on_timeout", "decode_responses"}
)
# Settings of the TLS connection, which a plain redis:// URL's connection does not take.
TLS_KWARGS = frozenset(kwarg for kwarg in CLIENT_KWARGS if kwarg.startswith("ssl_"))
URL_SCHEMES = ("redis://", "rediss://", "unix://")
# A cache must answer fast or not at all: these bound what a dead server costs a request.
DEFAULT_TIMEOUTS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}

Mode = Literal["single", "cluster", "sentinel"]


@dataclass(frozen=True)
class RedisOptions:
    """Everything needed to build the client, resolved and checked."""

    mode: Mode
    kwargs: dict[str, Any]
    url: str | None = None
    startup_nodes: list[tuple[str, int]] = field(default_factory=list)
    sentinel_nodes: list[tuple[str, int]] = field(default_factory=list)
    service_name: str | None = None
    sentinel_password: str | None = None
    gcp_service_account: str | None = None

    def describe(self) -> dict[str, Any]:
        """The connection parameters as they may be shown: secrets masked."""
        shown: dict[str, Any] = {"mode": self.mode, **self.kwargs}
        if self.url:
            shown["url"] = self.url
        if self.startup_nodes:
            shown["startup_nodes"] = [f"{h}:{p}" for h, p in self.startup_nodes]
        if self.sentinel_nodes:
            shown["sentinel_nodes"] = [f"{h}:{p}" for h, p in self.sentinel_nodes]
            shown["service_name"] = self.service_name
            shown["sentinel_password"] = self.sentinel_password
        if self.gcp_service_account:
            shown["gcp_service_account"] = self.gcp_service_account
        masked: dict[str, Any] = mask_secrets({k: v for k, v in shown.items() if v is not None})
        return masked

    def secrets(self) -> set[str]:
        """The secret values the client is given (passwords, tokens in the URL), wherever
        they came from: they are scrubbed from this backend's error messages."""
        found = secrets_in(self.kwargs) | secrets_in({"sentinel_password": self.sentinel_password})
        if self.url:
            found |= secrets_in(self.url)
        return found


def redis_options(cache: CacheSettings, env: Mapping[str, str] | None = None) -> RedisOptions:
    """Resolve the Redis connection for ``cache``; raise ConfigError naming what is wrong."""
    environ = os.environ if env is None else env
    kwargs: dict[str, Any] = dict(DEFAULT_TIMEOUTS)
    sources: dict[str, str] = {}  # kwarg -> the key or variable it came from, for errors
    for name, value in environ.items():
        if name.startswith("REDIS_") and name not in SPECIAL_VARIABLES:
            kwarg = name[len("REDIS_") :].lower()
            if kwarg in CLIENT_KWARGS:
                kwargs[kwarg] = _from_text(kwarg, value)
                sources[kwarg] = name
    for key in CLIENT_KWARGS:
        # ``ssl_cert_reqs: null`` is meaningful (do not verify), so null passes for it alone.
        value = cache.extra(key)
        if value is not None or (key == "ssl_cert_reqs" and _has(cache, key)):
            kwargs[key] = value
            sources[key] = f"{PARAMS}.{key}"
    _check_types(kwargs, sources)

    startup_nodes = _cluster_nodes(cache, environ)
    sentinel_nodes = _sentinel_nodes(cache, environ)
    service_name = cache.extra("service_name") or environ.get("REDIS_SERVICE_NAME")
    gcp_account = cache.extra("gcp_service_account") or environ.get("REDIS_GCP_SERVICE_ACCOUNT")
    gcp_ca = cache.extra("gcp_ssl_ca_certs") or environ.get("REDIS_GCP_SSL_CA_CERTS")
    if gcp_ca and "ssl_ca_certs" not in kwargs:
        kwargs["ssl_ca_certs"] = gcp_ca

    if startup_nodes:
        kwargs.pop("db", None)  # a cluster has only database 0
        return RedisOptions(
            "cluster", kwargs, startup_nodes=startup_nodes, gcp_service_account=gcp_account
        )
    if gcp_account:
        raise ConfigError(
            f"{PARAMS}.gcp_service_account: GCP IAM authentication needs a Redis Cluster"
            " (redis_startup_nodes or REDIS_CLUSTER_NODES), as in LiteLLM"
        )
    if sentinel_nodes:
        if not service_name:
            raise ConfigError(
                f"{PARAMS}.service_name: required with sentinel_nodes (or set REDIS_SERVICE_NAME)"
            )
        sentinel_password = cache.extra("sentinel_password") or environ.get(
            "REDIS_SENTINEL_PASSWORD"
        )
        return RedisOptions(
            "sentinel",
            kwargs,
            sentinel_nodes=sentinel_nodes,
            service_name=str(service_name),
            sentinel_password=sentinel_password,
        )
    url = _url(cache, environ)
    if url:
        for key in ("host", "port"):
            kwargs.pop(key, None)  # the URL says where
        return RedisOptions("single", kwargs, url=_url_with_tls(url, kwargs))
    kwargs.setdefault("host", "localhost")
    kwargs.setdefault("port", 6379)
    return RedisOptions("single", kwargs)


def _has(cache: CacheSettings, key: str) -> bool:
    return key in (cache.params.model_extra or {})


def _from_text(kwarg: str, value: str) -> Any:
    """A ``REDIS_<KWARG>`` string as the value the client expects for ``kwarg``.

    Only numeric and boolean kwargs are converted (a password stays text, whatever it looks
    like); ``None`` is read only for ``ssl_cert_reqs``, where it means "do not verify".
    """
    lowered = value.strip().lower()
    if kwarg in BOOLEAN_KWARGS and lowered in ("true", "false"):
        return lowered == "true"
    if kwarg == "ssl_cert_reqs" and lowered in ("none", "null"):
        return None
    if kwarg in NUMBER_KWARGS:
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
    return value


def _check_types(kwargs: dict[str, Any], sources: dict[str, str]) -> None:
    def where(key: str) -> str:
        return sources.get(key, f"{PARAMS}.{key}")

    if "port" in kwargs:
        try:
            kwargs["port"] = int(kwargs["port"])
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where('port')}: expected a port number, got {kwargs['port']!r}"
            ) from None
    for key in ("ssl", "ssl_check_hostname"):
        if key in kwargs and isinstance(kwargs[key], str):
            kwargs[key] = _from_text(key, kwargs[key])
    for key in ("max_connections", "db"):
        if key in kwargs and not isinstance(kwargs[key], int):
            raise ConfigError(f"{where(key)}: expected a whole number, got {kwargs[key]!r}")


def _url(cache: CacheSettings, env: Mapping[str, str]) -> str | None:
    """The URL from ``url`` / ``redis_url`` or ``REDIS_URL``, checked: redis-py would
    otherwise refuse it only when the client is built, outside any error handling."""
    for key in ("url", "redis_url"):
        if cache.extra(key):
            where, url = f"{PARAMS}.{key}", cache.extra(key)
            break
    else:
        where, url = "REDIS_URL", env.get("REDIS_URL")
    if not url:
        return None
    if not isinstance(url, str) or not url.startswith(URL_SCHEMES):
        raise ConfigError(
            f"{where}: expected a URL starting with redis://, rediss:// or unix://,"
            f" got {mask_url(str(url))!r}"
        )
    try:
        urlsplit(url).port  # noqa: B018 - reading it checks it
    except ValueError:
        # The parser's own message quotes what it took for the port, which may be part of
        # the password: say what is wrong without it.
        raise ConfigError(
            f"{where}: not a usable URL ({mask_url(url)}): the port must be a number, and"
            " characters such as / ? # in a password must be percent-encoded"
        ) from None
    return url


def _url_with_tls(url: str, kwargs: dict[str, Any]) -> str:
    """Reconcile a URL with ``ssl`` settings (as LiteLLM users combine ``REDIS_URL`` and
    ``REDIS_SSL``): ``ssl: true`` makes ``redis://`` a ``rediss://`` URL; the client takes no
    ``ssl`` argument with a URL, nor TLS settings for a connection without TLS."""
    if kwargs.pop("ssl", None) and url.startswith("redis://"):
        url = "rediss://" + url[len("redis://") :]
    if not url.startswith("rediss://"):
        for key in TLS_KWARGS:
            kwargs.pop(key, None)
    return url


def _cluster_nodes(cache: CacheSettings, env: Mapping[str, str]) -> list[tuple[str, int]]:
    return _nodes(cache, env, ("redis_startup_nodes", "startup_nodes"), "REDIS_CLUSTER_NODES")


def _sentinel_nodes(cache: CacheSettings, env: Mapping[str, str]) -> list[tuple[str, int]]:
    return _nodes(cache, env, ("sentinel_nodes",), "REDIS_SENTINEL_NODES")


def _nodes(
    cache: CacheSettings, env: Mapping[str, str], keys: tuple[str, ...], variable: str
) -> list[tuple[str, int]]:
    """Nodes from the first of ``keys`` set in cache_params, else the JSON ``variable``."""
    for key in keys:
        raw = cache.extra(key)
        if raw is not None:
            where = f"{PARAMS}.{key}"
            break
    else:
        if not env.get(variable):
            return []
        raw, where = _json(env[variable], variable), variable
    return [_node(item, f"{where}[{i}]") for i, item in enumerate(_list(raw, where))]


def _json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name}: not valid JSON ({exc.msg} at column {exc.colno})") from None


def _list(raw: Any, where: str) -> list[Any]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: expected a non-empty list of nodes")
    return raw


def _node(item: Any, where: str) -> tuple[str, int]:
    """A node as ``{"host": h, "port": p}`` (cluster style) or ``[h, p]`` (sentinel style)."""
    host: Any
    port: Any
    if isinstance(item, dict):
        host, port = item.get("host"), item.get("port")
    elif isinstance(item, list | tuple) and len(item) == 2:
        host, port = item
    else:
        raise ConfigError(f'{where}: expected {{"host": ..., "port": ...}} or [host, port]')
    try:
        return str(host), int(port)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: port must be a number, got {port!r}") from None
