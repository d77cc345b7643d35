"""Load a LiteLLM ``config.yaml`` (plus environment) into validated, typed settings.

The file format is LiteLLM's own, so a user can point us at the config they already run.
Every error names the key path that is wrong and what was expected; secrets are masked
whenever settings are shown.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from llmcache_tui.redact import (
    MASK,
    NO_SECRETS,
    Redactor,
    is_secret_name,
    mask_secrets,
    secrets_in,
)

CacheType = Literal["local", "disk", "redis", "redis-semantic", "qdrant-semantic", "s3"]
SEMANTIC_TYPES = frozenset({"redis-semantic", "qdrant-semantic"})

# LiteLLM names a call type twice (sync and async); both mean the same route here.
CALL_TYPE_ROUTES: dict[str, str] = {
    "completion": "chat",
    "acompletion": "chat",
    "text_completion": "text_completion",
    "atext_completion": "text_completion",
    "embedding": "embedding",
    "aembedding": "embedding",
    "transcription": "transcription",
    "atranscription": "transcription",
}
# LiteLLM call types for endpoints this proxy does not serve: accepted (a LiteLLM config
# may list them) with a warning, so only a misspelling is an error.
UNSERVED_CALL_TYPES = frozenset(
    {
        "image_generation",
        "aimage_generation",
        "image_edit",
        "aimage_edit",
        "moderation",
        "amoderation",
        "speech",
        "aspeech",
        "rerank",
        "arerank",
        "responses",
        "aresponses",
        "anthropic_messages",
        "pass_through_endpoint",
        "create_batch",
        "acreate_batch",
        "retrieve_batch",
        "aretrieve_batch",
    }
)

ENV_PREFIX = "os.environ/"
CONFIG_ENV_VAR = "LLMCACHE_CONFIG"
BUILTIN_SOURCE = "built-in default"

DEFAULT_MAX_REQUEST_MB = 32.0
DEFAULT_REQUEST_TIMEOUT = 600.0
# The longest TTL or age accepted anywhere (config, per-request controls, the terminal app):
# ten years. Anything longer means "keep it", and far longer expiries are refused by Redis
# (its milliseconds overflow) or, as infinity or NaN, never expire at all.
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600
MAX_TTL_TEXT = f"{MAX_TTL_SECONDS} seconds (10 years)"

# Infinity and NaN are valid YAML floats (.inf, .nan), never valid durations or sizes.
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
TtlSeconds = Annotated[float, Field(gt=0, le=MAX_TTL_SECONDS, allow_inf_nan=False)]

# A tenant names a segment of every stored key: no ":" (the namespace separator), no glob
# or header-breaking characters, and never starting with "_" (reserved, e.g. "_master").
TENANT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TENANT_RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"

DEFAULT_MAX_HEADER_KB = 64.0
DEFAULT_MAX_HEADERS = 100
DEFAULT_IDLE_TIMEOUT = 5.0  # uvicorn's keep-alive default: clients' pools expect about this
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 120.0  # a 32 MB body at about 2 Mbit/s

# Redis client arguments a cache_params key (or a REDIS_<NAME> variable) may set.
REDIS_CLIENT_PARAMS = frozenset(
    {
        "host",
        "port",
        "db",
        "username",
        "password",
        "ssl",
        "ssl_cert_reqs",
        "ssl_check_hostname",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_ca_path",
        "max_connections",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "health_check_interval",
        "client_name",
        "retry_on_timeout",
        "decode_responses",
        "encoding",
        "protocol",
    }
)
# Keys that other LiteLLM cache types (or later versions of ours) read. They are accepted
# silently so a real LiteLLM config loads; anything else in cache_params draws a warning.
KNOWN_CACHE_PARAM_KEYS = REDIS_CLIENT_PARAMS | frozenset(
    {
        "url",
        "redis_url",
        "redis_startup_nodes",
        "startup_nodes",
        "service_name",
        "sentinel_nodes",
        "sentinel_password",
        "gcp_service_account",
        "gcp_ssl_ca_certs",
        "s3_bucket_name",
        "s3_region_name",
        "s3_api_version",
        "s3_use_ssl",
        "s3_verify",
        "s3_endpoint_url",
        "s3_aws_access_key_id",
        "s3_aws_secret_access_key",
        "s3_aws_session_token",
        "s3_path",
        "s3_config",
        "redis_flush_size",
    }
)


# Top-level keys of LiteLLM's config.yaml that this proxy does not read: accepted silently,
# so a real LiteLLM config loads without noise; any other top-level key draws a warning.
LITELLM_TOP_LEVEL_KEYS = frozenset(
    {
        "router_settings",
        "credential_list",
        "guardrails",
        "callback_settings",
        "files_settings",
        "finetune_settings",
        "assistant_settings",
        "mcp_servers",
        "mcp_aliases",
        "vector_store_registry",
        "prompts",
        "search_tools",
        "model_group_alias",
    }
)


class ConfigError(Exception):
    """A config file that cannot be used; the message names the key path at fault."""


class _Model(BaseModel):
    # LiteLLM configs carry many keys we do not read; they must not be rejected.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class LitellmParams(_Model):
    """The ``litellm_params`` of one ``model_list`` entry: where and how to call upstream."""

    model: str = Field(min_length=1)
    api_base: str | None = None
    api_key: str | None = None
    api_version: str | None = None
    mock_response: Any = None
    timeout: PositiveFloat | None = None


class ModelInfo(_Model):
    """``model_info`` of a ``model_list`` entry; its prices give ``/metrics`` the money
    each cache hit saved (USD per token, LiteLLM's keys)."""

    input_cost_per_token: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    output_cost_per_token: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class ModelEntry(_Model):
    """One ``model_list`` entry: a public model name and the deployment behind it."""

    model_name: str = Field(min_length=1)
    litellm_params: LitellmParams
    model_info: ModelInfo = Field(default_factory=ModelInfo)


class CacheParams(_Model):
    """``litellm_settings.cache_params``: which cache, and how it behaves."""

    type: CacheType = "redis"  # LiteLLM's proxy picks Redis when no type is given
    namespace: str | None = None
    ttl: TtlSeconds | None = None
    default_in_memory_ttl: TtlSeconds | None = None
    default_in_redis_ttl: TtlSeconds | None = None
    mode: Literal["default_on", "default_off"] = "default_on"
    supported_call_types: list[str] | None = None
    disk_cache_dir: str = "./.litellm_cache"
    stream_replay: Literal["instant", "original"] = "instant"
    coalesce: bool = True  # identical concurrent misses share one upstream call
    max_size_in_memory: PositiveInt = 10_000
    max_bytes_in_memory: PositiveInt = 256 * 1024 * 1024
    # Semantic types. The threshold is a cosine similarity, as LiteLLM's; None: the guards'
    # default. The embedding model names a model_list entry; None: the built-in local model.
    similarity_threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    qdrant_semantic_cache_embedding_model: str | None = None
    redis_semantic_cache_embedding_model: str | None = None
    qdrant_collection_name: str | None = None
    qdrant_quantization_config: Literal["binary", "scalar", "product"] | None = None
    qdrant_api_base: str | None = None
    qdrant_api_key: str | None = None
    qdrant_path: str | None = None  # embedded Qdrant's directory; default under disk_cache_dir
    redis_semantic_cache_index_name: str | None = None


class LitellmSettings(_Model):
    """``litellm_settings``: only the caching part matters here."""

    cache: bool = False
    cache_params: CacheParams | None = None
    request_timeout: PositiveFloat | None = None


class GeneralSettings(_Model):
    """``general_settings``: proxy-wide auth and limits."""

    master_key: str | None = None
    max_request_size_mb: PositiveFloat = DEFAULT_MAX_REQUEST_MB
    # At least 1 KiB: below that no real client's request line and headers fit.
    max_request_header_size_kb: Annotated[float, Field(ge=1)] = DEFAULT_MAX_HEADER_KB
    max_request_headers: PositiveInt = DEFAULT_MAX_HEADERS
    idle_connection_timeout: PositiveFloat = DEFAULT_IDLE_TIMEOUT
    request_header_timeout: PositiveFloat = DEFAULT_HEADER_TIMEOUT
    request_body_timeout: PositiveFloat = DEFAULT_BODY_TIMEOUT
    max_connections: PositiveInt | None = None  # None: derived from the open-file limit


class ApiKey(_Model):
    """One ``llmcache.api_keys`` entry: a client key and the tenant it speaks for."""

    key: str | None = Field(default=None, repr=False)  # a secret: never shown
    tenant: str | None = None


class AppSettings(_Model):
    """``llmcache``: settings of our own (LiteLLM ignores this section)."""

    read_only: bool = False
    #: let the terminal app delete records of LiteLLM's own semantic caches (off: shown only)
    allow_litellm_writes: bool = False
    keymap: dict[str, str] = Field(default_factory=dict)
    # Client keys besides the master key, each naming its tenant; "tenant" isolation keeps
    # each tenant's cache entries (exact and semantic) apart.
    api_keys: list[ApiKey] = Field(default_factory=list, repr=False)
    isolation: Literal["shared", "tenant"] = "shared"
    # Addresses (or networks) allowed to name the tenant in the x-llmcache-tenant header.
    trusted_gateways: list[str] = Field(default_factory=list)


class ConfigFile(_Model):
    """The whole ``config.yaml``."""

    model_list: list[ModelEntry] = Field(default_factory=list)
    litellm_settings: LitellmSettings = Field(default_factory=LitellmSettings)
    general_settings: GeneralSettings = Field(default_factory=GeneralSettings)
    # Any scalar: LiteLLM exports str(value), so ``REDIS_PORT: 6379`` is fine.
    environment_variables: dict[str, Any] = Field(default_factory=dict)
    llmcache: AppSettings = Field(default_factory=AppSettings)


@dataclass(frozen=True)
class CacheSettings:
    """The resolved cache configuration the proxy and the TUI act on."""

    params: CacheParams = field(repr=False)  # holds passwords and access keys
    routes: frozenset[str]  # route kinds that may be cached ("chat", "embedding", ...)
    # Knows every secret of the settings, for the backend's error messages.
    redactor: Redactor = field(default=NO_SECRETS, repr=False, compare=False)

    @property
    def type(self) -> str:
        return self.params.type

    @property
    def namespace(self) -> str | None:
        return self.params.namespace or None

    @property
    def default_off(self) -> bool:
        return self.params.mode == "default_off"

    @property
    def semantic(self) -> bool:
        return self.params.type in SEMANTIC_TYPES

    @property
    def embedding_model(self) -> str | None:
        """The model_list name the semantic type embeds with (None: the local model)."""
        if self.params.type == "qdrant-semantic":
            return self.params.qdrant_semantic_cache_embedding_model or None
        if self.params.type == "redis-semantic":
            return self.params.redis_semantic_cache_embedding_model or None
        return None

    def extra(self, key: str) -> Any:
        """A cache_params key this module does not model (backend-specific), or None."""
        extras = self.params.model_extra or {}
        return extras.get(key)


@dataclass(frozen=True)
class ConnectionLimits:
    """What one client connection may hold: header size and count, time to send a request.

    Sizes in bytes, times in seconds; ``max_connections`` None means "as many as the
    open-file limit allows" (worked out when the server starts).
    """

    max_header_bytes: int = int(DEFAULT_MAX_HEADER_KB * 1024)
    max_headers: int = DEFAULT_MAX_HEADERS
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    max_connections: int | None = None


@dataclass(frozen=True)
class Settings:
    """Validated settings; ``masked()`` is the only form that may be shown to a person."""

    source: str
    model_list: list[ModelEntry] = field(repr=False)  # holds api keys
    cache: CacheSettings | None
    master_key: str | None = field(repr=False)
    max_request_bytes: int
    request_timeout: float
    warnings: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    # Warnings (also in ``warnings``) about cache settings the config holds but that do
    # nothing (a top-level cache_params, cache_params without cache: true): ``--check``
    # exits 2 on them, since caching is then not what the file seems to ask for.
    unused_cache_settings: tuple[str, ...] = ()
    app: AppSettings = field(default_factory=AppSettings)
    # Knows the secret values of the config and of the variables backends read; every
    # text or structure shown to a person or written to a log goes through it.
    redactor: Redactor = field(default=NO_SECRETS, repr=False, compare=False)
    connection_limits: ConnectionLimits = field(default_factory=ConnectionLimits)

    def masked(self) -> dict[str, Any]:
        """The resolved config as a plain dict with every secret masked."""
        masked: dict[str, Any] = self.redactor.redact(dict(self.raw))
        return masked


def resolve_config_path(explicit: str | None) -> Path | None:
    """Pick the config file: ``--config``, then ``$LLMCACHE_CONFIG``, then ``./config.yaml``.

    ``None`` means the built-in default.
    """
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV_VAR)
    if from_env:
        return Path(from_env)
    local = Path("config.yaml")
    return local if local.is_file() else None


def load_settings(path: str | Path | None) -> Settings:
    """Read, resolve and validate a config file (``None``: the built-in default)."""
    if path is None:
        text = resources.files("llmcache_tui").joinpath("default_config.yaml").read_text()
        source = BUILTIN_SOURCE
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read config file: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{source}: cannot read config file: not UTF-8 text (byte {exc.start})"
            ) from exc
        except ValueError as exc:  # a path no file system accepts (a NUL byte in it)
            raise ConfigError(f"{source!r}: cannot read config file: {exc}") from exc
    return parse_settings(text, source)


def parse_settings(text: str, source: str = "<string>") -> Settings:
    """Validate config text; raise :class:`ConfigError` naming the bad key path."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}: invalid YAML{where}: {problem}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {_kind(data)}")

    env_vars = data.get("environment_variables") or {}
    if isinstance(env_vars, dict):
        # LiteLLM exports these (over the environment) before reading the rest of the file.
        for name, value in env_vars.items():
            if value is not None and not str(value).startswith(ENV_PREFIX):
                os.environ[str(name)] = str(value)

    warnings: list[str] = []
    unused_cache: list[str] = []
    _check_top_level(data, warnings, unused_cache)
    resolved = _resolve_env(data, "", warnings)
    # A section whose children are all commented out is YAML null; LiteLLM treats it as absent.
    resolved = {
        k: v for k, v in resolved.items() if v is not None or k not in ConfigFile.model_fields
    }
    try:
        parsed = ConfigFile.model_validate(resolved)
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(source, exc)) from exc

    problem = _api_base_problem(parsed.model_list) or _tenancy_problem(parsed)
    if problem:
        raise ConfigError(f"{source}: invalid config: {problem}")
    redactor = Redactor(secrets_in(_tenants_left_out(resolved)) | secrets_in(_backend_variables()))
    cache = _cache_settings(parsed, warnings, redactor, unused_cache)
    problem = _embedding_model_problem(cache, parsed.model_list)
    if problem:
        raise ConfigError(f"{source}: invalid config: {problem}")
    general = parsed.general_settings
    timeout = parsed.litellm_settings.request_timeout or DEFAULT_REQUEST_TIMEOUT
    return Settings(
        source=source,
        model_list=parsed.model_list,
        cache=cache,
        master_key=general.master_key or None,
        max_request_bytes=int(general.max_request_size_mb * 1024 * 1024),
        request_timeout=timeout,
        warnings=tuple(warnings),
        raw=resolved,
        unused_cache_settings=tuple(unused_cache),
        app=parsed.llmcache,
        redactor=redactor,
        connection_limits=ConnectionLimits(
            max_header_bytes=int(general.max_request_header_size_kb * 1024),
            max_headers=general.max_request_headers,
            idle_timeout=general.idle_connection_timeout,
            header_timeout=general.request_header_timeout,
            body_timeout=general.request_body_timeout,
            max_connections=general.max_connections,
        ),
    )


def _tenancy_problem(parsed: ConfigFile) -> str | None:
    """The first bad ``llmcache.api_keys`` / ``isolation`` / ``trusted_gateways`` setting.

    A key is never repeated in the message: only its path is named.
    """
    app = parsed.llmcache
    master = parsed.general_settings.master_key or None
    first_of: dict[str, int] = {}
    for index, entry in enumerate(app.api_keys):
        path = f"llmcache.api_keys[{index}]"
        if not entry.key:
            return f"{path}.key: required (is its environment variable set?)"
        if entry.key in first_of:
            return f"{path}.key: the same key as llmcache.api_keys[{first_of[entry.key]}].key"
        if entry.key == master:
            return f"{path}.key: the same key as general_settings.master_key"
        first_of[entry.key] = index
        if not entry.tenant:
            return f"{path}.tenant: required (the tenant this key speaks for)"
        if not TENANT_PATTERN.fullmatch(entry.tenant):
            return f"{path}.tenant: {entry.tenant!r} is not a tenant name ({TENANT_RULE})"
    for index, gateway in enumerate(app.trusted_gateways):
        try:
            ipaddress.ip_network(gateway, strict=False)
        except ValueError:
            return (
                f"llmcache.trusted_gateways[{index}]: {gateway!r} is not an IP address"
                " or network (such as 10.0.0.0/8)"
            )
    if app.isolation == "tenant" and not app.api_keys and not app.trusted_gateways:
        return (
            "llmcache.isolation: 'tenant' needs llmcache.api_keys (or"
            " llmcache.trusted_gateways) to tell tenants apart"
        )
    return None


def _tenants_left_out(resolved: dict[str, Any]) -> dict[str, Any]:
    """The settings with each API key entry reduced to its key, to collect secrets from.

    Under the secret-named ``api_keys`` every value would count as a secret, and tenant
    names, masked in every log line and screen, would make both unreadable.
    """
    app = resolved.get("llmcache")
    if not isinstance(app, dict) or not isinstance(app.get("api_keys"), list):
        return resolved
    keys = [e.get("key") if isinstance(e, dict) else e for e in app["api_keys"]]
    return {**resolved, "llmcache": {**app, "api_keys": keys}}


def _backend_variables() -> dict[str, str]:
    """The environment variables cache clients read by themselves (REDIS_PASSWORD,
    REDIS_URL, AWS_SECRET_ACCESS_KEY, ...): their secrets are the config's too."""
    return {k: v for k, v in os.environ.items() if k.startswith(("REDIS_", "AWS_", "QDRANT_"))}


def _embedding_model_problem(cache: CacheSettings | None, entries: list[ModelEntry]) -> str | None:
    """Why a semantic cache's embedding model cannot be used, or None."""
    if cache is None or not cache.semantic:
        return None
    name = cache.embedding_model
    if name is None or any(entry.model_name == name for entry in entries):
        return None
    key = (
        "qdrant_semantic_cache_embedding_model"
        if cache.type == "qdrant-semantic"
        else "redis_semantic_cache_embedding_model"
    )
    known = ", ".join(sorted({entry.model_name for entry in entries})) or "none"
    return (
        f"litellm_settings.cache_params.{key}: {name!r} is not a model_name in model_list"
        f" (models: {known}); leave it out to use the built-in local embedder"
    )


def _cache_settings(
    parsed: ConfigFile, warnings: list[str], redactor: Redactor, unused: list[str]
) -> CacheSettings | None:
    settings = parsed.litellm_settings
    if not settings.cache:
        if settings.cache_params is not None:
            message = (
                "litellm_settings.cache_params is set but litellm_settings.cache is not true:"
                " caching is off (add 'cache: true' under litellm_settings)"
            )
            warnings.append(message)
            unused.append(message)
        return None
    params = settings.cache_params or CacheParams()
    routes = _routes(params.supported_call_types, warnings)
    for key in sorted(params.model_extra or {}):
        if key not in KNOWN_CACHE_PARAM_KEYS:
            warnings.append(f"litellm_settings.cache_params.{key}: unknown key, ignored")
    return CacheSettings(params=params, routes=routes, redactor=redactor)


def _section_of_keys() -> dict[str, str]:
    """Each key the sections read, mapped to its full path: where a misplaced key belongs."""
    paths: dict[str, str] = {}
    for name in CacheParams.model_fields:
        paths[name] = f"litellm_settings.cache_params.{name}"
    sections: list[tuple[str, type[BaseModel]]] = [
        ("general_settings", GeneralSettings),
        ("llmcache", AppSettings),
        ("litellm_settings", LitellmSettings),
    ]
    for section, model in sections:
        for name in model.model_fields:
            paths[name] = f"{section}.{name}"
    return paths


_CACHE_PATH = "litellm_settings.cache"


def _check_top_level(data: dict[Any, Any], warnings: list[str], unused: list[str]) -> None:
    """Warn about each top-level key no one reads, saying where it probably belongs.

    A key that belongs in the cache settings (``cache_params`` pasted at the top level, a
    misspelt ``litellm_settings`` holding ``cache``) leaves caching other than the file
    seems to ask for, so it is also listed in ``unused``.
    """
    known = set(ConfigFile.model_fields) | LITELLM_TOP_LEVEL_KEYS
    nested = _section_of_keys()
    for key in data:
        name = str(key)
        if name == "include":
            # LiteLLM merges the listed files in; settings there (a cache, models) are not
            # read here, so say so rather than leave them silently missing.
            warnings.append(
                "include: the files it lists are not read by llmcache-tui;"
                " put their settings in this file"
            )
            continue
        if name in known:
            continue
        suggestion = nested.get(name)
        if suggestion is None:
            close = difflib.get_close_matches(name, [*sorted(known), *nested], n=1, cutoff=0.75)
            if close:
                suggestion = nested.get(close[0], close[0])
        message = f"{name}: unknown top-level key, ignored"
        if suggestion:
            message += f"; did you mean {suggestion}?"
        value = data[key]
        holds_cache = isinstance(value, dict) and ("cache" in value or "cache_params" in value)
        about_cache = (suggestion or "").startswith(_CACHE_PATH) or (
            suggestion == "litellm_settings" and holds_cache
        )
        if about_cache:
            message += " (its cache settings are not used)"
            unused.append(message)
        warnings.append(message)


def _api_base_problem(entries: list[ModelEntry]) -> str | None:
    """The first ``api_base`` that cannot be called as given, named by its key path.

    Credentials in the URL (``https://user:pass@host``) are refused rather than sent as
    HTTP basic auth beside the key: the key belongs in ``api_key``. The URL itself is never
    repeated, so its password is not shown.
    """
    for index, entry in enumerate(entries):
        api_base = entry.litellm_params.api_base
        if not api_base:
            continue
        path = f"model_list[{index}].litellm_params.api_base"
        try:
            netloc = urlsplit(api_base).netloc
        except ValueError:
            return f"{path}: not a valid URL"
        if "@" in netloc:
            return (
                f"{path}: must not contain a user name or password (user:pass@host);"
                " give the key as api_key"
            )
    return None


def _routes(call_types: list[str] | None, warnings: list[str]) -> frozenset[str]:
    if call_types is None:
        return frozenset(CALL_TYPE_ROUTES.values())
    routes = set()
    for index, name in enumerate(call_types):
        route = CALL_TYPE_ROUTES.get(name)
        path = f"litellm_settings.cache_params.supported_call_types[{index}]"
        if route is None and name in UNSERVED_CALL_TYPES:
            warnings.append(f"{path}: {name!r} is not an endpoint llmcache-tui serves; ignored")
            continue
        if route is None:
            allowed = ", ".join(CALL_TYPE_ROUTES)
            raise ConfigError(f"{path}: {name!r} is not one of {allowed}")
        routes.add(route)
    return frozenset(routes)


def _resolve_env(value: Any, path: str, warnings: list[str]) -> Any:
    """Replace every ``os.environ/NAME`` string with the variable's value."""
    if isinstance(value, dict):
        return {k: _resolve_env(v, _join(path, str(k)), warnings) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, f"{path}[{i}]", warnings) for i, v in enumerate(value)]
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        resolved = os.environ.get(name)
        if resolved is None:
            warnings.append(f"{path}: environment variable {name} is not set")
        return resolved
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe_validation_error(source: str, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        path = ""
        for part in error["loc"]:
            path = f"{path}[{part}]" if isinstance(part, int) else _join(path, str(part))
        secret = bool(error["loc"]) and is_secret_name(str(error["loc"][-1]))
        lines.append(f"{path or '(top level)'}: {_error_text(error, secret)}")
    head = f"{source}: invalid config"
    return head + (": " + lines[0] if len(lines) == 1 else ":\n  " + "\n  ".join(lines))


def _error_text(error: Any, secret: bool) -> str:
    kind = error["type"]
    given = MASK if secret else error.get("input")
    if kind == "literal_error":
        expected = str(error.get("ctx", {}).get("expected", "")).replace("'", "")
        expected = expected.replace(" or ", ", ")
        return f"{given!r} is not one of {expected}"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    message = message[0].lower() + message[1:]
    if kind == "greater_than":
        message = "must be a positive number"
    elif kind == "finite_number":
        message = "must be a finite number"
    elif kind == "less_than_equal":
        limit = error.get("ctx", {}).get("le")
        message = f"must be at most {MAX_TTL_TEXT if limit == MAX_TTL_SECONDS else limit}"
    return f"{message} (got {_short(given)})"


def _short(value: Any) -> str:
    text = repr(mask_secrets(value))  # also hides URL passwords in plain strings
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )
