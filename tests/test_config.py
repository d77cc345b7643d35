"""Config loading: every LiteLLM docs example loads, errors name the key path, secrets stay hidden.

The YAML blocks below are copied verbatim from LiteLLM's public caching docs
(``/work/shared/reference/litellm-proxy-caching.md``); the point is that a user can hand us
the config they already run with LiteLLM.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmcache_tui.cache.backends import build_backend
from llmcache_tui.cache.health import probe_backend
from llmcache_tui.config import (
    BUILTIN_SOURCE,
    CONFIG_ENV_VAR,
    MAX_TTL_SECONDS,
    ConfigError,
    Settings,
    load_settings,
    parse_settings,
    resolve_config_path,
)
from llmcache_tui.redact import MASK, mask_secrets, mask_url

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CONFIGS = REPO_ROOT / "sample_configs"


def _yaml(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


# --------------------------------------------------------------------- LiteLLM docs examples

DOCS_QUICK_START = _yaml(
    """
    model_list:
      - model_name: gpt-3.5-turbo
        litellm_params:
          model: gpt-3.5-turbo
      - model_name: text-embedding-ada-002
        litellm_params:
          model: text-embedding-ada-002

    litellm_settings:
      set_verbose: True
      cache: True          # set cache responses to True, litellm defaults to using a redis cache
    """
)

DOCS_NAMESPACE = _yaml(
    """
    litellm_settings:
      cache: true
      cache_params:        # set cache params for redis
        type: redis
        namespace: "litellm.caching.caching"
    """
)

DOCS_REDIS_CLUSTER = _yaml(
    """
    model_list:
      - model_name: "*"
        litellm_params:
          model: "*"


    litellm_settings:
      cache: True
      cache_params:
        type: redis
        redis_startup_nodes: [{"host": "127.0.0.1", "port": "7001"}]
    """
)

DOCS_REDIS_SENTINEL = _yaml(
    """
    model_list:
      - model_name: "*"
        litellm_params:
          model: "*"


    litellm_settings:
      cache: true
      cache_params:
        type: "redis"
        service_name: "mymaster"
        sentinel_nodes: [["localhost", 26379]]
        sentinel_password: "password" # [OPTIONAL]
    """
)

DOCS_TTL = _yaml(
    """
    litellm_settings:
      cache: true
      cache_params:        # set cache params for redis
        type: redis
        ttl: 600 # will be cached on redis for 600s
        # default_in_memory_ttl: Optional[float], default is None. time in seconds.
        # default_in_redis_ttl: Optional[float], default is None. time in seconds.
    """
)

DOCS_GCP_IAM = _yaml(
    """
    litellm_settings:
      cache: True
      cache_params:
        type: redis
        redis_startup_nodes: [{"host": "10.128.0.2", "port": 6379}, {"host": "10.128.0.2", "port": 11008}]
        gcp_service_account: "projects/-/serviceAccounts/your-sa@project.iam.gserviceaccount.com"
        ssl: true
        ssl_cert_reqs: null
        ssl_check_hostname: false
    """  # noqa: E501 - verbatim from the docs
)

DOCS_QDRANT_SEMANTIC = _yaml(
    """
    model_list:
      - model_name: fake-openai-endpoint
        litellm_params:
          model: openai/fake
          api_key: fake-key
          api_base: https://exampleopenaiendpoint-production.up.railway.app/
      - model_name: openai-embedding
        litellm_params:
          model: openai/text-embedding-3-small
          api_key: os.environ/OPENAI_API_KEY

    litellm_settings:
      set_verbose: True
      cache: True          # set cache responses to True, litellm defaults to using a redis cache
      cache_params:
        type: qdrant-semantic
        qdrant_semantic_cache_embedding_model: openai-embedding # the model should be defined on the model_list
        qdrant_collection_name: test_collection
        qdrant_quantization_config: binary
        similarity_threshold: 0.8   # similarity threshold for semantic cache
    """  # noqa: E501 - verbatim from the docs
)

DOCS_S3 = _yaml(
    """
    model_list:
      - model_name: gpt-3.5-turbo
        litellm_params:
          model: gpt-3.5-turbo
      - model_name: text-embedding-ada-002
        litellm_params:
          model: text-embedding-ada-002

    litellm_settings:
      set_verbose: True
      cache: True          # set cache responses to True
      cache_params:        # set cache params for s3
        type: s3
        s3_bucket_name: cache-bucket-litellm   # AWS Bucket Name for S3
        s3_region_name: us-west-2              # AWS Region Name for S3
        s3_aws_access_key_id: os.environ/AWS_ACCESS_KEY_ID  # us os.environ/<variable name> to pass environment variables. This is AWS Access Key ID for S3
        s3_aws_secret_access_key: os.environ/AWS_SECRET_ACCESS_KEY  # AWS Secret Access Key for S3
        s3_endpoint_url: https://s3.amazonaws.com  # [OPTIONAL] S3 endpoint URL, if you want to use Backblaze/cloudflare s3 buckets
    """  # noqa: E501 - verbatim from the docs
)

DOCS_REDIS_SEMANTIC = _yaml(
    """
    model_list:
      - model_name: gpt-3.5-turbo
        litellm_params:
          model: gpt-3.5-turbo
      - model_name: azure-embedding-model
        litellm_params:
          model: azure/azure-embedding-model
          api_base: os.environ/AZURE_API_BASE
          api_key: os.environ/AZURE_API_KEY
          api_version: "2023-07-01-preview"

    litellm_settings:
      set_verbose: True
      cache: True          # set cache responses to True
      cache_params:
        type: "redis-semantic"
        similarity_threshold: 0.8   # similarity threshold for semantic cache
        redis_semantic_cache_embedding_model: azure-embedding-model # set this to a model_name set in model_list
    """  # noqa: E501 - verbatim from the docs
)

DOCS_LOCAL = _yaml(
    """
    litellm_settings:
      cache: True
      cache_params:
        type: local
    """
)

DOCS_DISK = _yaml(
    """
    litellm_settings:
      cache: True
      cache_params:
        type: disk
        disk_cache_dir: /tmp/litellm-cache  # OPTIONAL, default to ./.litellm_cache
    """
)

DOCS_NO_CALL_TYPES = _yaml(
    """
    litellm_settings:
      cache: True
      cache_params:
        type: redis
        supported_call_types: []
    """
)

DOCS_CALL_TYPES = _yaml(
    """
    litellm_settings:
      cache: True
      cache_params:
        type: redis
        supported_call_types: ["acompletion", "atext_completion", "aembedding", "atranscription"]
                              # /chat/completions, /completions, /embeddings, /audio/transcriptions
    """
)

DOCS_CACHE_PARAMS = _yaml(
    """
    model_list:
      - model_name: gpt-3.5-turbo
        litellm_params:
          model: gpt-3.5-turbo
      - model_name: text-embedding-ada-002
        litellm_params:
          model: text-embedding-ada-002

    litellm_settings:
      set_verbose: True
      cache: True          # set cache responses to True, litellm defaults to using a redis cache
      cache_params:         # cache_params are optional
        type: "redis"  # The type of cache to initialize. Can be "local" or "redis". Defaults to "local".
        host: "localhost"  # The host address for the Redis cache. Required if type is "redis".
        port: 6379  # The port number for the Redis cache. Required if type is "redis".
        password: "your_password"  # The password for the Redis cache. Required if type is "redis".

        # Optional configurations
        supported_call_types: ["acompletion", "atext_completion", "aembedding", "atranscription"]
                          # /chat/completions, /completions, /embeddings, /audio/transcriptions
    """  # noqa: E501 - verbatim from the docs
)

DOCS_DEFAULT_OFF = _yaml(
    """
    model_list:
      - model_name: fake-openai-endpoint
        litellm_params:
          model: openai/fake
          api_key: fake-key
          api_base: https://exampleopenaiendpoint-production.up.railway.app/

    # default off mode
    litellm_settings:
      set_verbose: True
      cache: True
      cache_params:
        mode: default_off # 👈 Key change cache is default_off
    """
)

DOCS_MAX_CONNECTIONS = _yaml(
    """
    litellm_settings:
      cache: true
      cache_params:
        type: redis
        max_connections: 100
    """
)

# The docs' reference listing of every cache_params key. Its values are partly placeholders
# (``Optional[float]``); it is a top-level ``cache_params`` block, as printed.
DOCS_SUPPORTED_CACHE_PARAMS = _yaml(
    """
    cache_params:
      # ttl
      ttl: Optional[float]
      default_in_memory_ttl: Optional[float]
      default_in_redis_ttl: Optional[float]
      max_connections: Optional[Int]

      # Type of cache (options: "local", "redis", "s3")
      type: s3

      # List of litellm call types to cache for
      # Options: "completion", "acompletion", "embedding", "aembedding"
      supported_call_types: ["acompletion", "atext_completion", "aembedding", "atranscription"]
                          # /chat/completions, /completions, /embeddings, /audio/transcriptions

      # Redis cache parameters
      host: localhost  # Redis server hostname or IP address
      port: "6379"  # Redis server port (as a string)
      password: secret_password  # Redis server password
      namespace: Optional[str] = None,

      # GCP IAM Authentication for Redis
      gcp_service_account: "projects/-/serviceAccounts/your-sa@project.iam.gserviceaccount.com"  # GCP service account for IAM authentication
      gcp_ssl_ca_certs: "./server-ca.pem"  # Path to SSL CA certificate file for GCP Memorystore Redis
      ssl: true  # Enable SSL for secure connections
      ssl_cert_reqs: null  # Set to null for self-signed certificates
      ssl_check_hostname: false  # Set to false for self-signed certificates


      # S3 cache parameters
      s3_bucket_name: your_s3_bucket_name  # Name of the S3 bucket
      s3_region_name: us-west-2  # AWS region of the S3 bucket
      s3_api_version: 2006-03-01  # AWS S3 API version
      s3_use_ssl: true  # Use SSL for S3 connections (options: true, false)
      s3_verify: true  # SSL certificate verification for S3 connections (options: true, false)
      s3_endpoint_url: https://s3.amazonaws.com  # S3 endpoint URL
      s3_aws_access_key_id: your_access_key  # AWS Access Key ID for S3
      s3_aws_secret_access_key: your_secret_key  # AWS Secret Access Key for S3
      s3_aws_session_token: your_session_token  # AWS Session Token for temporary credentials
    """  # noqa: E501 - verbatim from the docs
)

DOCS_USER_API_KEY_CACHE_TTL = _yaml(
    """
    general_settings:
      user_api_key_cache_ttl: <your-number> #time in seconds
    """
)

# name -> (yaml, expected cache type or None for caching off)
DOCS_CONFIGS: dict[str, tuple[str, str | None]] = {
    "quick-start": (DOCS_QUICK_START, "redis"),
    "namespace": (DOCS_NAMESPACE, "redis"),
    "redis-cluster": (DOCS_REDIS_CLUSTER, "redis"),
    "redis-sentinel": (DOCS_REDIS_SENTINEL, "redis"),
    "ttl": (DOCS_TTL, "redis"),
    "gcp-iam": (DOCS_GCP_IAM, "redis"),
    "qdrant-semantic": (DOCS_QDRANT_SEMANTIC, "qdrant-semantic"),
    "s3": (DOCS_S3, "s3"),
    "redis-semantic": (DOCS_REDIS_SEMANTIC, "redis-semantic"),
    "local": (DOCS_LOCAL, "local"),
    "disk": (DOCS_DISK, "disk"),
    "no-call-types": (DOCS_NO_CALL_TYPES, "redis"),
    "call-types": (DOCS_CALL_TYPES, "redis"),
    "cache-params": (DOCS_CACHE_PARAMS, "redis"),
    "default-off": (DOCS_DEFAULT_OFF, "redis"),
    "max-connections": (DOCS_MAX_CONNECTIONS, "redis"),
    "supported-cache-params-listing": (DOCS_SUPPORTED_CACHE_PARAMS, None),
    "user-api-key-cache-ttl": (DOCS_USER_API_KEY_CACHE_TTL, None),
}

DOCS_ENV = {
    "OPENAI_API_KEY": "sk-openai-docs-secret",
    "AWS_ACCESS_KEY_ID": "AKIADOCSEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-docs-value",
    "AZURE_API_BASE": "https://azure.example.invalid",
    "AZURE_API_KEY": "azure-docs-secret",
}


@pytest.fixture
def docs_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Every variable the docs examples reference, set to a recognisable value."""
    for name, value in DOCS_ENV.items():
        monkeypatch.setenv(name, value)
    return DOCS_ENV


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    """``environment_variables:`` exports into ``os.environ``; undo that after each test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _unset(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Remove variables for this test and restore their state afterwards.

    ``setenv`` first so that monkeypatch records the original state even when the variable
    was absent (``delenv(raising=False)`` on an absent variable records nothing, and a
    variable the code under test then sets would leak into later tests).
    """
    for name in names:
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, "cfg.yaml")
    return str(caught.value)


@pytest.mark.parametrize("name", list(DOCS_CONFIGS))
def test_every_docs_config_loads(name: str, docs_env: dict[str, str]) -> None:
    text, expected_type = DOCS_CONFIGS[name]
    settings = parse_settings(text, f"{name}.yaml")
    assert settings.source == f"{name}.yaml"
    if expected_type is None:
        assert settings.cache is None
    else:
        assert settings.cache is not None
        assert settings.cache.type == expected_type
    # Every variable is set, so nothing is reported missing.
    assert not [w for w in settings.warnings if "environment variable" in w]
    # Known LiteLLM keys are accepted silently.
    assert not [w for w in settings.warnings if "unknown key" in w]


def test_docs_redis_cluster_keeps_string_ports() -> None:
    settings = parse_settings(DOCS_REDIS_CLUSTER)
    assert settings.cache is not None
    assert settings.cache.extra("redis_startup_nodes") == [{"host": "127.0.0.1", "port": "7001"}]
    assert [m.model_name for m in settings.model_list] == ["*"]
    assert settings.model_list[0].litellm_params.model == "*"


def test_docs_sentinel_and_gcp_values_survive() -> None:
    sentinel = parse_settings(DOCS_REDIS_SENTINEL)
    assert sentinel.cache is not None
    assert sentinel.cache.extra("sentinel_nodes") == [["localhost", 26379]]
    assert sentinel.cache.extra("service_name") == "mymaster"
    gcp = parse_settings(DOCS_GCP_IAM)
    assert gcp.cache is not None
    assert gcp.cache.extra("ssl") is True
    assert gcp.cache.extra("ssl_check_hostname") is False
    assert (gcp.cache.params.model_extra or {})["ssl_cert_reqs"] is None
    assert gcp.cache.extra("redis_startup_nodes")[1] == {"host": "10.128.0.2", "port": 11008}


def test_docs_namespace_ttl_and_call_types() -> None:
    namespace = parse_settings(DOCS_NAMESPACE)
    assert namespace.cache is not None
    assert namespace.cache.namespace == "litellm.caching.caching"

    ttl = parse_settings(DOCS_TTL)
    assert ttl.cache is not None
    assert ttl.cache.params.ttl == 600

    none = parse_settings(DOCS_NO_CALL_TYPES)
    assert none.cache is not None
    assert none.cache.routes == frozenset()

    some = parse_settings(DOCS_CALL_TYPES)
    assert some.cache is not None
    assert some.cache.routes == {"chat", "text_completion", "embedding", "transcription"}

    listed = parse_settings(DOCS_CACHE_PARAMS)
    assert listed.cache is not None
    assert listed.cache.extra("host") == "localhost"
    assert listed.cache.extra("port") == 6379


def test_docs_default_off_defaults_to_redis() -> None:
    settings = parse_settings(DOCS_DEFAULT_OFF)
    assert settings.cache is not None
    assert settings.cache.default_off
    assert settings.cache.type == "redis"  # LiteLLM's proxy default


def test_quick_start_caches_every_route() -> None:
    settings = parse_settings(DOCS_QUICK_START)
    assert settings.cache is not None
    assert not settings.cache.default_off
    assert settings.cache.routes == {"chat", "text_completion", "embedding", "transcription"}
    assert settings.cache.params.supported_call_types is None


def test_docs_cache_params_listing_nested_under_litellm_settings(docs_env: dict[str, str]) -> None:
    """The reference listing, filled in and put where it belongs, keeps its odd types."""
    listing = DOCS_SUPPORTED_CACHE_PARAMS
    for placeholder, value in [
        ("\n  ttl: Optional[float]", "\n  ttl: 600"),
        ("\n  default_in_memory_ttl: Optional[float]", "\n  default_in_memory_ttl: 60"),
        ("\n  default_in_redis_ttl: Optional[float]", "\n  default_in_redis_ttl: 600"),
        ("\n  max_connections: Optional[Int]", "\n  max_connections: 100"),
        ("\n  namespace: Optional[str] = None,", "\n  namespace: team-a"),
    ]:
        assert placeholder in listing
        listing = listing.replace(placeholder, value)
    text = "litellm_settings:\n  cache: true\n" + textwrap.indent(listing, "  ")
    settings = parse_settings(text)
    assert settings.cache is not None
    assert settings.cache.type == "s3"
    assert settings.cache.namespace == "team-a"
    assert settings.cache.extra("port") == "6379"
    assert (settings.cache.params.model_extra or {})["ssl_cert_reqs"] is None
    assert not settings.warnings
    masked = settings.masked()["litellm_settings"]["cache_params"]
    for secret_key in ("password", "s3_aws_access_key_id", "s3_aws_secret_access_key"):
        assert masked[secret_key] == MASK
    assert masked["s3_aws_session_token"] == MASK
    assert masked["host"] == "localhost"


@pytest.mark.parametrize("name", ["qdrant-semantic", "redis-semantic"])
async def test_docs_semantic_configs_build_unchanged(name: str, docs_env: dict[str, str]) -> None:
    """The docs blocks embed with a model_list entry and keep entries in disk or Redis."""
    from llmcache_tui.cache.backends.disk import DiskBackend
    from llmcache_tui.cache.backends.redis import RedisBackend
    from llmcache_tui.cache.semantic.build import build_semantic_tier

    settings = parse_settings(DOCS_CONFIGS[name][0])
    assert settings.cache is not None and settings.cache.semantic
    backend = build_backend(settings.cache)
    tier = build_semantic_tier(settings, backend)
    try:
        expected = DiskBackend if name == "qdrant-semantic" else RedisBackend
        assert isinstance(backend, expected)
        assert tier.threshold == 0.8
        assert tier.embedder.name == settings.cache.embedding_model
    finally:
        await tier.aclose()
        await backend.close()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("similarity_threshold: 1.5", "similarity_threshold"),
        ("similarity_threshold: -0.1", "similarity_threshold"),
        ("qdrant_quantization_config: ternary", "qdrant_quantization_config"),
        ("qdrant_semantic_cache_embedding_model: nope", "'nope' is not a model_name"),
    ],
)
def test_bad_semantic_settings_name_the_key(params: str, message: str) -> None:
    text = (
        "litellm_settings:\n  cache: true\n  cache_params:\n"
        f"    type: qdrant-semantic\n    {params}\n"
    )
    with pytest.raises(ConfigError, match=message):
        parse_settings(text)


def test_unset_env_vars_warn_with_key_path(monkeypatch: pytest.MonkeyPatch) -> None:
    _unset(monkeypatch, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    settings = parse_settings(DOCS_S3)
    assert settings.cache is not None
    assert (
        "litellm_settings.cache_params.s3_aws_access_key_id:"
        " environment variable AWS_ACCESS_KEY_ID is not set"
    ) in settings.warnings
    assert (
        "litellm_settings.cache_params.s3_aws_secret_access_key:"
        " environment variable AWS_SECRET_ACCESS_KEY is not set"
    ) in settings.warnings
    assert (settings.cache.params.model_extra or {})["s3_aws_access_key_id"] is None


def test_unset_env_var_in_model_list_names_index(monkeypatch: pytest.MonkeyPatch) -> None:
    _unset(monkeypatch, "OPENAI_API_KEY")
    settings = parse_settings(DOCS_QDRANT_SEMANTIC)
    assert settings.warnings == (
        "model_list[1].litellm_params.api_key: environment variable OPENAI_API_KEY is not set",
    )
    assert settings.model_list[1].litellm_params.api_key is None


def test_env_values_are_resolved(docs_env: dict[str, str]) -> None:
    settings = parse_settings(DOCS_REDIS_SEMANTIC)
    params = settings.model_list[1].litellm_params
    assert params.api_base == docs_env["AZURE_API_BASE"]
    assert params.api_key == docs_env["AZURE_API_KEY"]
    assert params.api_version == "2023-07-01-preview"


def test_env_references_nested_in_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMCACHE_TEST_NODE_HOST", "10.0.0.7")
    monkeypatch.setenv("LLMCACHE_TEST_SENTINEL", "sentinel-1")
    _unset(monkeypatch, "LLMCACHE_TEST_MISSING")
    settings = parse_settings(
        _yaml(
            """
            litellm_settings:
              cache: true
              cache_params:
                type: redis
                redis_startup_nodes:
                  - {host: os.environ/LLMCACHE_TEST_NODE_HOST, port: "7001"}
                  - {host: os.environ/LLMCACHE_TEST_MISSING, port: "7002"}
                sentinel_nodes: [[os.environ/LLMCACHE_TEST_SENTINEL, 26379]]
            """
        )
    )
    assert settings.cache is not None
    nodes = settings.cache.extra("redis_startup_nodes")
    assert nodes[0] == {"host": "10.0.0.7", "port": "7001"}
    assert nodes[1]["host"] is None
    assert settings.cache.extra("sentinel_nodes") == [["sentinel-1", 26379]]
    assert settings.warnings == (
        "litellm_settings.cache_params.redis_startup_nodes[1].host:"
        " environment variable LLMCACHE_TEST_MISSING is not set",
    )


def test_environment_variables_section(monkeypatch: pytest.MonkeyPatch) -> None:
    _unset(monkeypatch, "LLMCACHE_TEST_KEY", "LLMCACHE_TEST_PORT")
    monkeypatch.setenv("LLMCACHE_TEST_PRESET", "from-the-environment")
    settings = parse_settings(
        _yaml(
            """
            environment_variables:
              LLMCACHE_TEST_KEY: sk-from-file
              LLMCACHE_TEST_PORT: 6379
              LLMCACHE_TEST_PRESET: from-the-file
            model_list:
              - model_name: gpt
                litellm_params:
                  model: openai/gpt-4o
                  api_key: os.environ/LLMCACHE_TEST_KEY
            litellm_settings:
              cache: true
              cache_params:
                type: local
                port: os.environ/LLMCACHE_TEST_PORT
                host: os.environ/LLMCACHE_TEST_PRESET
            """
        )
    )
    assert settings.model_list[0].litellm_params.api_key == "sk-from-file"
    assert os.environ["LLMCACHE_TEST_KEY"] == "sk-from-file"
    assert settings.cache is not None
    assert settings.cache.extra("port") == "6379"  # exported as a string, like LiteLLM
    # As in LiteLLM, the file's value replaces one already in the environment.
    assert settings.cache.extra("host") == "from-the-file"
    assert not settings.warnings


def test_environment_variables_referencing_unset_env_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    _unset(monkeypatch, "LLMCACHE_TEST_ALIAS", "LLMCACHE_TEST_ABSENT")
    settings = parse_settings(
        "environment_variables:\n  LLMCACHE_TEST_ALIAS: os.environ/LLMCACHE_TEST_ABSENT\n"
    )
    assert settings.warnings == (
        "environment_variables.LLMCACHE_TEST_ALIAS:"
        " environment variable LLMCACHE_TEST_ABSENT is not set",
    )
    assert "LLMCACHE_TEST_ALIAS" not in os.environ


# --------------------------------------------------------------------------------- errors


def test_unknown_cache_type_names_key_path() -> None:
    message = _error("litellm_settings:\n  cache: true\n  cache_params:\n    type: foo\n")
    assert message.startswith("cfg.yaml: invalid config")
    assert "litellm_settings.cache_params.type" in message
    assert "'foo' is not one of local, disk, redis" in message


@pytest.mark.parametrize("key", ["ttl", "default_in_memory_ttl", "default_in_redis_ttl"])
def test_negative_ttl_is_rejected(key: str) -> None:
    message = _error(f"litellm_settings:\n  cache: true\n  cache_params:\n    {key}: -5\n")
    assert f"litellm_settings.cache_params.{key}" in message
    assert "must be a positive number" in message
    assert "-5" in message


def test_non_numeric_ttl_is_rejected() -> None:
    message = _error("litellm_settings:\n  cache: true\n  cache_params:\n    ttl: soon\n")
    assert "litellm_settings.cache_params.ttl" in message
    assert "'soon'" in message


@pytest.mark.parametrize("key", ["ttl", "default_in_memory_ttl", "default_in_redis_ttl"])
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (".inf", "must be a finite number"),
        (".nan", "must be a finite number"),
        ("1.0e300", "must be at most 315360000 seconds (10 years)"),
        ("315360001", "must be at most 315360000 seconds (10 years)"),
    ],
)
def test_unbounded_ttl_is_rejected(key: str, value: str, reason: str) -> None:
    message = _error(f"litellm_settings:\n  cache: true\n  cache_params:\n    {key}: {value}\n")
    assert f"litellm_settings.cache_params.{key}: {reason}" in message


def test_ten_years_is_the_longest_ttl() -> None:
    settings = parse_settings(
        "litellm_settings:\n  cache: true\n  cache_params:\n    ttl: 315360000\n"
    )
    assert settings.cache is not None
    assert settings.cache.params.ttl == MAX_TTL_SECONDS == 10 * 365 * 86400


@pytest.mark.parametrize(
    "yaml_text",
    [
        "general_settings:\n  max_request_size_mb: .inf\n",
        "litellm_settings:\n  request_timeout: .nan\n",
        "model_list:\n  - model_name: a\n    litellm_params: {model: a, timeout: .inf}\n",
    ],
)
def test_infinite_limits_are_rejected(yaml_text: str) -> None:
    assert "must be a finite number" in _error(yaml_text)


@pytest.mark.parametrize(
    "api_base",
    [
        "https://bob:base-pw-leak@api.example.invalid/v1",
        "https://bob@api.example.invalid/v1",
        "http://:base-pw-leak@127.0.0.1:8000",
        "https://bob:base@pw-leak@api.example.invalid",
    ],
)
def test_api_base_with_credentials_is_a_config_error(api_base: str) -> None:
    message = _error(
        _yaml(
            f"""
            model_list:
              - model_name: ok
                litellm_params: {{model: openai/a, api_base: "https://api.example.invalid"}}
              - model_name: creds
                litellm_params: {{model: openai/a, api_key: sk-x, api_base: "{api_base}"}}
            """
        )
    )
    assert "model_list[1].litellm_params.api_base: must not contain a user name or password" in (
        message
    )
    assert "leak" not in message
    assert "bob" not in message


def test_missing_model_names_full_path() -> None:
    message = _error(
        _yaml(
            """
            model_list:
              - model_name: ok
                litellm_params:
                  model: openai/gpt-4o
              - model_name: broken
                litellm_params:
                  api_base: http://localhost:1234
            """
        )
    )
    assert "model_list[1].litellm_params.model: required key is missing" in message


def test_missing_model_first_entry() -> None:
    message = _error("model_list:\n  - model_name: x\n    litellm_params: {api_key: k}\n")
    assert "model_list[0].litellm_params.model" in message
    assert "required key is missing" in message


def test_several_errors_are_all_listed() -> None:
    message = _error(
        _yaml(
            """
            model_list:
              - litellm_params: {model: a}
            litellm_settings:
              cache: true
              cache_params: {type: nope, ttl: -1}
            """
        )
    )
    assert "model_list[0].model_name" in message
    assert "litellm_settings.cache_params.type" in message
    assert "litellm_settings.cache_params.ttl" in message


def test_invalid_yaml_names_line() -> None:
    text = "model_list:\n  - model_name: a\n    litellm_params: {model: a\nlitellm_settings: {}\n"
    message = _error(text)
    assert message.startswith("cfg.yaml: invalid YAML at line ")
    assert "line 4" in message


def test_invalid_yaml_tab_indent_names_line() -> None:
    message = _error("litellm_settings:\n\tcache: true\n")
    assert "invalid YAML at line 2" in message


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- a\n- b\n", "a list"), ("just a string\n", "a string"), ("42\n", "a number")],
)
def test_top_level_must_be_mapping(text: str, kind: str) -> None:
    message = _error(text)
    assert message == f"cfg.yaml: expected a mapping at the top level, got {kind}"


@pytest.mark.parametrize(
    "text",
    [
        "model_list:\nlitellm_settings:\n  # cache: true\ngeneral_settings:\n",
        "environment_variables:\nlitellm_settings:\n",
        "litellm_settings: null\ngeneral_settings: ~\n",
    ],
)
def test_empty_sections_are_absent(text: str) -> None:
    """A section with every child commented out is null in YAML; LiteLLM accepts that."""
    settings = parse_settings(text)
    assert settings.cache is None
    assert settings.model_list == []
    assert settings.master_key is None


def test_empty_cache_params_and_call_types_mean_defaults() -> None:
    settings = parse_settings(
        "litellm_settings:\n  cache: true\n  cache_params:\n    supported_call_types:\n"
    )
    assert settings.cache is not None
    assert settings.cache.type == "redis"
    assert settings.cache.routes == {"chat", "text_completion", "embedding", "transcription"}


def test_empty_file_is_an_empty_config() -> None:
    settings = parse_settings("# nothing here\n")
    assert settings.cache is None
    assert settings.model_list == []
    assert settings.master_key is None


def test_unknown_supported_call_type_named_by_index() -> None:
    message = _error(
        _yaml(
            """
            litellm_settings:
              cache: true
              cache_params:
                type: local
                supported_call_types: ["acompletion", "aembedding", "acompletoin"]
            """
        )
    )
    assert "litellm_settings.cache_params.supported_call_types[2]" in message
    assert "'acompletoin'" in message
    assert "acompletion" in message  # the allowed values are listed


def test_litellm_call_type_not_served_here_warns() -> None:
    settings = parse_settings(
        _yaml(
            """
            litellm_settings:
              cache: true
              cache_params:
                type: local
                supported_call_types: ["acompletion", "arerank"]
            """
        )
    )
    assert settings.cache is not None
    assert settings.cache.routes == frozenset({"chat"})
    assert settings.warnings == (
        "litellm_settings.cache_params.supported_call_types[1]: 'arerank' is not an endpoint"
        " llmcache-tui serves; ignored",
    )


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-config.yaml"
    with pytest.raises(ConfigError) as caught:
        load_settings(missing)
    message = str(caught.value)
    assert str(missing) in message
    assert "cannot read config file" in message
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path)  # a directory, not a file


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"model_list: []\n# caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value) == f"{path}: cannot read config file: not UTF-8 text (byte 20)"


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + DOCS_LOCAL.encode())
    settings = load_settings(path)
    assert settings.cache is not None
    assert settings.cache.type == "local"


def test_unknown_cache_param_warns() -> None:
    settings = parse_settings(
        "litellm_settings:\n  cache: true\n  cache_params:\n    type: local\n    colour: blue\n"
    )
    assert settings.warnings == ("litellm_settings.cache_params.colour: unknown key, ignored",)


def test_cache_params_without_cache_true_warns() -> None:
    settings = parse_settings("litellm_settings:\n  cache_params:\n    type: local\n")
    assert settings.cache is None
    assert len(settings.warnings) == 1
    assert "litellm_settings.cache is not true" in settings.warnings[0]


def test_settings_values() -> None:
    settings = parse_settings(
        _yaml(
            """
            litellm_settings:
              request_timeout: 30
            general_settings:
              master_key: sk-master
              max_request_size_mb: 2
            """
        )
    )
    assert settings.request_timeout == 30
    assert settings.max_request_bytes == 2 * 1024 * 1024
    assert settings.master_key == "sk-master"


# -------------------------------------------------------------------------------- secrets

SECRET_CONFIG = _yaml(
    """
    model_list:
      - model_name: gpt
        litellm_params:
          model: openai/gpt-4o
          api_key: sk-model-secret-123
          api_base: https://api.example.invalid/v1
    litellm_settings:
      cache: true
      cache_params:
        type: redis
        qdrant_api_base: https://user:basepw@qdrant.example.invalid
        password: redis-secret-pw
        url: redis://admin:url-secret-pw@redis.example.invalid:6379/0
        sentinel_password: sentinel-secret
        s3_aws_access_key_id: AKIASECRETID
        s3_aws_secret_access_key: aws-secret-access
        host: redis.example.invalid
    general_settings:
      master_key: sk-master-secret
    """
)
SECRETS = [
    "sk-model-secret-123",
    "basepw",
    "redis-secret-pw",
    "url-secret-pw",
    "sentinel-secret",
    "AKIASECRETID",
    "aws-secret-access",
    "sk-master-secret",
]


def test_masked_hides_every_secret() -> None:
    settings = parse_settings(SECRET_CONFIG)
    masked = settings.masked()
    text = repr(masked)
    for secret in SECRETS:
        assert secret not in text, secret
    params = masked["litellm_settings"]["cache_params"]
    assert params["password"] == MASK
    assert params["url"] == f"redis://admin:{MASK}@redis.example.invalid:6379/0"
    assert params["host"] == "redis.example.invalid"  # not a secret
    assert params["qdrant_api_base"] == f"https://user:{MASK}@qdrant.example.invalid"
    assert masked["general_settings"]["master_key"] == MASK
    model = masked["model_list"][0]["litellm_params"]
    assert model["api_key"] == MASK
    assert model["api_base"] == "https://api.example.invalid/v1"
    assert model["model"] == "openai/gpt-4o"


def test_settings_repr_does_not_leak() -> None:
    settings = parse_settings(SECRET_CONFIG)
    text = repr(settings)
    assert "sk-master-secret" not in text
    assert "redis-secret-pw" not in text
    assert "sk-model-secret-123" not in text


def test_masked_hides_environment_variables_section() -> None:
    settings = parse_settings(
        _yaml(
            """
            environment_variables:
              LLMCACHE_TEST_OPENAI_API_KEY: sk-env-secret-1
              LLMCACHE_TEST_REDIS_URL: redis://default:env-secret-2@redis.invalid:6379
              LLMCACHE_TEST_REDIS_PASSWORD: env-secret-3
              LLMCACHE_TEST_AWS_SECRET_ACCESS_KEY: env-secret-4
              LLMCACHE_TEST_HF_TOKEN: env-secret-5
              LLMCACHE_TEST_REDIS_HOST: redis.invalid
            """
        )
    )
    masked = settings.masked()["environment_variables"]
    assert "env-secret" not in repr(masked)
    assert masked["LLMCACHE_TEST_REDIS_HOST"] == "redis.invalid"


def test_masked_leaves_raw_untouched() -> None:
    settings = parse_settings(SECRET_CONFIG)
    settings.masked()
    assert settings.raw["general_settings"]["master_key"] == "sk-master-secret"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("redis://user:pw@host:6379", f"redis://user:{MASK}@host:6379"),
        ("rediss://:pw@host", f"rediss://:{MASK}@host"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("see redis://a:b@h and https://c:d@e", f"see redis://a:{MASK}@h and https://c:{MASK}@e"),
        ("no url here", "no url here"),
    ],
)
def test_mask_url(value: str, expected: str) -> None:
    assert mask_url(value) == expected


def test_mask_secrets_nested_and_in_lists() -> None:
    value = {
        "nodes": [{"host": "h", "password": "p1"}, {"host": "h2", "password": None}],
        "auth_token": 12345,
        "urls": ["redis://u:p2@h"],
        "ssl": True,
        "api_key": "",
    }
    masked = mask_secrets(value)
    assert masked == {
        "nodes": [{"host": "h", "password": MASK}, {"host": "h2", "password": None}],
        "auth_token": MASK,
        "urls": [f"redis://u:{MASK}@h"],
        "ssl": True,
        "api_key": MASK,
    }


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "sentinel_password",
        "REDIS_PASSWORD",
        "api_key",
        "apiKey",
        "master_key",
        "s3_aws_secret_access_key",
        "s3_aws_access_key_id",
        "s3_aws_session_token",
        "auth_token",
        "Authorization",
        "client_secret",
        "vertex_credentials",
        "private_key",
        "OPENAI_KEY",
        "key",
    ],
)
def test_secret_keys_are_masked(key: str) -> None:
    assert mask_secrets({key: "value"}) == {key: MASK}


@pytest.mark.parametrize(
    "key",
    ["max_tokens", "max_completion_tokens", "tokenizer", "host", "model", "ttl", "keymap"],
)
def test_ordinary_keys_are_not_masked(key: str) -> None:
    assert mask_secrets({key: 100}) == {key: 100}


@pytest.mark.parametrize("bad", ["12345678", "[sk-list-secret]", "{k: sk-map-secret}"])
def test_bad_master_key_error_does_not_echo_it(bad: str) -> None:
    message = _error(f"general_settings:\n  master_key: {bad}\n")
    assert "general_settings.master_key" in message
    for fragment in ("12345678", "sk-list-secret", "sk-map-secret"):
        assert fragment not in message


def test_bad_api_key_error_does_not_echo_it() -> None:
    message = _error(
        "model_list:\n  - model_name: a\n    litellm_params: {model: a, api_key: [sk-leak-me]}\n"
    )
    assert "model_list[0].litellm_params.api_key" in message
    assert "sk-leak-me" not in message


def test_error_does_not_echo_url_password() -> None:
    message = _error(
        "litellm_settings:\n  cache: true\n  cache_params: redis://u:url-pw-leak@host:6379\n"
    )
    assert "litellm_settings.cache_params" in message
    assert "url-pw-leak" not in message


# --------------------------------------------------------------------------- lookup order


@pytest.fixture
def no_config_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A working directory without config.yaml and no $LLMCACHE_CONFIG."""
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return workdir


def test_lookup_explicit_wins(no_config_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (no_config_env / "config.yaml").write_text("{}\n")
    monkeypatch.setenv(CONFIG_ENV_VAR, "/from/env.yaml")
    assert resolve_config_path("explicit.yaml") == Path("explicit.yaml")


def test_lookup_env_before_cwd(no_config_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (no_config_env / "config.yaml").write_text("{}\n")
    monkeypatch.setenv(CONFIG_ENV_VAR, "/from/env.yaml")
    assert resolve_config_path(None) == Path("/from/env.yaml")


def test_lookup_cwd_config(no_config_env: Path) -> None:
    (no_config_env / "config.yaml").write_text("{}\n")
    found = resolve_config_path(None)
    assert found is not None
    assert found.resolve() == (no_config_env / "config.yaml").resolve()


def test_lookup_cwd_directory_named_config_is_ignored(no_config_env: Path) -> None:
    (no_config_env / "config.yaml").mkdir()
    assert resolve_config_path(None) is None


def test_lookup_falls_back_to_builtin(no_config_env: Path) -> None:
    assert resolve_config_path(None) is None
    assert resolve_config_path("") is None  # an empty --config is no --config


def test_builtin_default_loads() -> None:
    settings = load_settings(None)
    assert settings.source == BUILTIN_SOURCE
    assert settings.cache is not None
    assert settings.cache.type == "disk"
    assert settings.cache.params.disk_cache_dir == "./.litellm_cache"
    assert [m.model_name for m in settings.model_list] == ["*"]
    params = settings.model_list[0].litellm_params
    assert params.model == "*"
    assert isinstance(params.mock_response, str)
    assert params.mock_response
    assert settings.master_key is None
    assert not settings.warnings


def test_load_settings_from_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(DOCS_LOCAL, encoding="utf-8")
    settings = load_settings(path)
    assert settings.source == str(path)
    assert settings.cache is not None
    assert settings.cache.type == "local"
    assert isinstance(settings, Settings)


# ------------------------------------------------------------------------ sample configs


def _sample_configs() -> list[Path]:
    return sorted([*SAMPLE_CONFIGS.glob("*.yaml"), *SAMPLE_CONFIGS.glob("*.yml")])


@pytest.mark.skipif(not _sample_configs(), reason="sample_configs/ has no YAML files yet")
@pytest.mark.parametrize("path", _sample_configs(), ids=lambda p: p.name)
async def test_sample_config_loads(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sample configs may reference provider keys; a missing one must only warn.
    settings = load_settings(path)
    assert settings.source == str(path)
    assert not [w for w in settings.warnings if "unknown key" in w], settings.warnings
    for warning in settings.warnings:
        assert "environment variable" in warning, warning
    if settings.cache is None or settings.cache.type not in ("local", "disk"):
        return
    # The backends we can build must come up healthy (a relative disk dir lands in tmp_path).
    monkeypatch.chdir(tmp_path)
    backend = build_backend(settings.cache)
    try:
        assert (await probe_backend(backend)).healthy
    finally:
        await backend.close()


REDIS_DOC_MODES = {
    "quick-start": "single",
    "namespace": "single",
    "redis-cluster": "cluster",
    "redis-sentinel": "sentinel",
    "ttl": "single",
    "gcp-iam": "cluster",
    "no-call-types": "single",
    "call-types": "single",
    "cache-params": "single",
    "default-off": "single",
    "max-connections": "single",
}


@pytest.mark.parametrize("name", list(REDIS_DOC_MODES))
async def test_every_docs_redis_config_builds_a_redis_backend(
    name: str, docs_env: dict[str, str]
) -> None:
    """Building connects lazily, so no server is needed to see the mode chosen."""
    from llmcache_tui.cache.backends.redis import RedisBackend

    settings = parse_settings(DOCS_CONFIGS[name][0])
    assert settings.cache is not None
    backend = build_backend(settings.cache)
    try:
        assert isinstance(backend, RedisBackend)
        assert backend.options.mode == REDIS_DOC_MODES[name]
        shown = backend.describe()
        assert all(v == MASK for k, v in shown.items() if "password" in k)
    finally:
        await backend.close()


def test_path_with_a_nul_byte_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot read config file: embedded null byte"):
        load_settings("bad\x00path.yaml")
