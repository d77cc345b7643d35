"""Per-request cache controls, ``mode`` and ``supported_call_types`` turned into a decision."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from llmcache_tui.config import MAX_TTL_SECONDS, MAX_TTL_TEXT, CacheSettings
from llmcache_tui.echo import echo

CONTROL_KEYS = ("ttl", "s-maxage", "no-cache", "no-store", "namespace", "use-cache")
NAMESPACE_MAX_LENGTH = 256  # keeps the x-litellm-cache-key header short


class InvalidControls(ValueError):
    """The ``cache`` object of a request is malformed; the message names the field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class CacheControls:
    """The ``cache`` object of one request, validated."""

    ttl: float | None = None
    s_maxage: float | None = None
    no_cache: bool = False
    no_store: bool = False
    namespace: str | None = None
    use_cache: bool | None = None


NO_CONTROLS = CacheControls()


@dataclass(frozen=True, slots=True)
class Decision:
    """What the proxy may do with the cache for one request.

    ``skip_reason`` is the RFC 9211 ``fwd`` value explaining why the cache is not read
    (``bypass`` or ``request``); it is ``None`` when a lookup happens. ``tenant`` is the
    caller's tenant under tenant isolation (None: entries are shared).
    """

    read: bool
    write: bool
    namespace: str | None = None
    tenant: str | None = None
    ttl: float | None = None
    max_age: float | None = None
    skip_reason: str | None = None

    @property
    def uses_cache(self) -> bool:
        return self.read or self.write


BYPASS = Decision(read=False, write=False, skip_reason="bypass")


def parse_controls(raw: Any) -> CacheControls:
    """Validate the request's ``cache`` object; raise :class:`InvalidControls` if malformed."""
    if raw is None:
        return NO_CONTROLS
    if not isinstance(raw, dict):
        raise InvalidControls("'cache' must be an object such as {\"ttl\": 300}", "cache")
    for key in raw:
        if key not in CONTROL_KEYS:
            allowed = ", ".join(CONTROL_KEYS)
            raise InvalidControls(
                f"unknown cache control 'cache.{key}'; expected one of {allowed}", f"cache.{key}"
            )
    ttl = _seconds(raw, "ttl")
    return CacheControls(
        ttl=ttl,
        s_maxage=_seconds(raw, "s-maxage"),
        no_cache=_flag(raw, "no-cache") or False,
        no_store=_flag(raw, "no-store") or ttl == 0,
        namespace=_namespace(raw),
        use_cache=_flag(raw, "use-cache"),
    )


def decide(cache: CacheSettings | None, route: str, controls: CacheControls) -> Decision:
    """Combine config and per-request controls into what this request may read and write.

    Streamed and plain requests decide alike: they share one entry.
    """
    if cache is None or route not in cache.routes:
        return BYPASS
    if cache.default_off and controls.use_cache is not True:
        return BYPASS
    if controls.use_cache is False:
        return BYPASS
    read = not controls.no_cache
    return Decision(
        read=read,
        write=not controls.no_store,
        namespace=controls.namespace or cache.namespace,
        ttl=controls.ttl,
        max_age=controls.s_maxage,
        skip_reason=None if read else "request",
    )


def _seconds(raw: dict[str, Any], key: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidControls(
            f"'cache.{key}' must be a number of seconds, got {value!r}", f"cache.{key}"
        )
    if value < 0:
        raise InvalidControls(f"'cache.{key}' must not be negative, got {value!r}", f"cache.{key}")
    # JSON bodies cannot hold NaN or infinity, but form fields can (cache[ttl]=nan); both
    # would never expire, and a huge TTL is one Redis refuses.
    if value > MAX_TTL_SECONDS or not math.isfinite(value):
        raise InvalidControls(
            f"'cache.{key}' must be a finite number of seconds, at most {MAX_TTL_TEXT};"
            f" got {value!r}",
            f"cache.{key}",
        )
    return float(value)


def _flag(raw: dict[str, Any], key: str) -> bool | None:
    value = raw.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise InvalidControls(f"'cache.{key}' must be true or false, got {value!r}", f"cache.{key}")


def _namespace(raw: dict[str, Any]) -> str | None:
    value = raw.get("namespace")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidControls(
            f"'cache.namespace' must be a non-empty string, got {echo(value)}", "cache.namespace"
        )
    if len(value) > NAMESPACE_MAX_LENGTH:
        raise InvalidControls(
            f"'cache.namespace' must be at most {NAMESPACE_MAX_LENGTH} characters,"
            f" got {len(value)}",
            "cache.namespace",
        )
    # The key, namespace included, goes back in a response header: a control character
    # there would break the response after the answer was stored.
    if not value.isprintable() or any(ch.isspace() or ch in "*?[]" for ch in value):
        raise InvalidControls(
            "'cache.namespace' must not contain spaces, control characters or glob"
            " characters (* ? [ ])",
            "cache.namespace",
        )
    return value
