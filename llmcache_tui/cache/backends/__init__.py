"""Cache backends, built from settings. SDKs are imported only for the chosen type."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from llmcache_tui.cache.backends.base import (
    BackendStats,
    CacheBackend,
    CacheBackendError,
    KeyInfo,
    ScanPage,
    UnsupportedCacheType,
    ValueShape,
)
from llmcache_tui.config import CacheSettings, ConfigError
from llmcache_tui.redact import NO_SECRETS

__all__ = [
    "BackendStats",
    "CacheBackend",
    "CacheBackendError",
    "KeyInfo",
    "ScanPage",
    "UnsupportedCacheType",
    "ValueShape",
    "build_backend",
    "build_backend_or_problem",
]

# LiteLLM keeps in-memory entries 10 minutes unless told otherwise.
DEFAULT_LOCAL_TTL = 600.0


def build_backend(cache: CacheSettings) -> CacheBackend:
    """Construct the backend the settings ask for.

    Raises UnsupportedCacheType for a type not built yet and ConfigError for settings the
    backend cannot use; connecting happens lazily, on first use. The backend's error
    messages are scrubbed of the settings' secrets.
    """
    backend = _build(cache)
    if backend.redactor is NO_SECRETS:
        backend.redactor = cache.redactor
    return backend


def _build(cache: CacheSettings) -> CacheBackend:
    params = cache.params
    if params.type == "local":
        from llmcache_tui.cache.backends.local import LocalBackend

        return LocalBackend(
            max_entries=params.max_size_in_memory,
            max_bytes=params.max_bytes_in_memory,
            default_ttl=params.ttl or params.default_in_memory_ttl or DEFAULT_LOCAL_TTL,
        )
    if params.type == "disk":
        from llmcache_tui.cache.backends.disk import DiskBackend

        return DiskBackend(Path(params.disk_cache_dir), default_ttl=params.ttl)
    if params.type in ("redis", "redis-semantic"):
        # redis-semantic keeps its entries as ordinary Redis entries; vectors beside them.
        return _with_memory_tier(cache, _redis_backend(cache))
    if params.type == "qdrant-semantic":
        # The entries live on disk beside the embedded Qdrant; Qdrant holds only vectors,
        # so an entry deleted or expired here stops its semantic hits too.
        from llmcache_tui.cache.backends.disk import DiskBackend

        return DiskBackend(Path(params.disk_cache_dir), default_ttl=params.ttl)
    if params.type == "s3":
        return _with_memory_tier(cache, _s3_backend(cache))
    raise UnsupportedCacheType(f"cache type {params.type!r} is not supported")


def build_backend_or_problem(cache: CacheSettings) -> tuple[CacheBackend | None, str | None]:
    """The backend, or None and the reason it cannot be built (for a caller that runs on)."""
    try:
        return build_backend(cache), None
    except (CacheBackendError, ConfigError) as exc:
        return None, cache.redactor.scrub(str(exc))


def _redis_backend(cache: CacheSettings) -> CacheBackend:
    """Raises ConfigError for unusable Redis settings (they may come from REDIS_* variables)."""
    from llmcache_tui.cache.backends.redis import RedisBackend
    from llmcache_tui.cache.backends.redis_options import redis_options

    options = redis_options(cache)
    provider = None
    if options.gcp_service_account:
        from llmcache_tui.cache.backends.gcp_iam import GcpIamCredentialProvider

        provider = GcpIamCredentialProvider(options.gcp_service_account)
    params = cache.params
    backend = RedisBackend(
        options,
        default_ttl=params.ttl or params.default_in_redis_ttl,
        credential_provider=provider,
    )
    # The options may hold secrets from variables set since the settings were read.
    backend.redactor = cache.redactor.extended(options.secrets())
    return backend


# cache_params key -> boto3 client argument. Unset ones fall back to boto3's own lookup:
# AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_DEFAULT_REGION (and
# AWS_REGION, below), AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL...
S3_CLIENT_PARAMS = {
    "s3_region_name": "region_name",
    "s3_api_version": "api_version",
    "s3_use_ssl": "use_ssl",
    "s3_verify": "verify",
    "s3_endpoint_url": "endpoint_url",
    "s3_aws_access_key_id": "aws_access_key_id",
    "s3_aws_secret_access_key": "aws_secret_access_key",
    "s3_aws_session_token": "aws_session_token",
}


def _s3_backend(cache: CacheSettings) -> CacheBackend:
    """Raises ConfigError for unusable S3 settings, UnsupportedCacheType without boto3."""
    bucket = cache.extra("s3_bucket_name")
    if not isinstance(bucket, str) or not bucket:
        raise ConfigError("litellm_settings.cache_params.s3_bucket_name: required for type s3")
    options: dict[str, Any] = {}
    for param, argument in S3_CLIENT_PARAMS.items():
        value = cache.extra(param)
        if value is None:
            continue
        if param == "s3_use_ssl" or (param == "s3_verify" and str(value).lower() in BOOLS):
            value = _boolean(value, param)
        elif param == "s3_api_version":
            value = str(value)  # YAML reads 2006-03-01 as a date
        options[argument] = value
    configured = frozenset(options)  # the arguments cache_params gave (for error messages)
    if "region_name" not in options and not os.environ.get("AWS_DEFAULT_REGION"):
        # Other AWS SDKs read AWS_REGION; botocore reads only AWS_DEFAULT_REGION.
        region = os.environ.get("AWS_REGION")
        if region:
            options["region_name"] = region
    path = cache.extra("s3_path") or ""
    try:
        from llmcache_tui.cache.backends.s3 import S3Backend, client_problem
    except ImportError:
        raise UnsupportedCacheType(
            "cache type s3 needs boto3: pip install 'llmcache-tui[s3]'"
        ) from None
    try:
        backend = S3Backend(
            bucket=bucket,
            prefix=str(path),
            client_options=options,
            default_ttl=cache.params.ttl,
            key_format=cache.params.key_format,
        )
    except Exception as exc:
        # botocore checks the endpoint, region, API version and credentials here.
        problem = client_problem(exc, configured)
        if problem is None:
            raise
        raise ConfigError(problem) from None
    backend.redactor = cache.redactor
    return backend


BOOLS = {"true": True, "false": False}


def _boolean(value: Any, param: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in BOOLS:
        return BOOLS[str(value).lower()]
    raise ConfigError(
        f"litellm_settings.cache_params.{param}: expected true or false, got {value!r}"
    )


def _with_memory_tier(cache: CacheSettings, shared: CacheBackend) -> CacheBackend:
    """Put a per-process memory tier in front when ``default_in_memory_ttl`` asks for one."""
    params = cache.params
    if not params.default_in_memory_ttl:
        return shared
    from llmcache_tui.cache.backends.local import LocalBackend
    from llmcache_tui.cache.backends.tiered import TieredBackend

    memory = LocalBackend(
        max_entries=params.max_size_in_memory,
        max_bytes=params.max_bytes_in_memory,
        default_ttl=params.default_in_memory_ttl,
    )
    memory.redactor = shared.redactor
    tiered = TieredBackend(memory, shared, params.default_in_memory_ttl)
    tiered.redactor = shared.redactor
    return tiered
