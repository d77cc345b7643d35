"""Config mistakes that load but do not do what the file seems to ask: warned at load, and
``--check`` exits 2 when cache settings end up unused.

The worst one is LiteLLM's documentation's list of cache_params pasted as it stands, at the
top level: caching is off, and without a warning nobody would know.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
import yaml
from textual.widgets import Static

from llmcache_tui.app import LLMCacheApp
from llmcache_tui.config import parse_settings
from tests.conftest import ProxyFactory
from tests.fake_upstream import FakeUpstreamServer
from tests.servers import CLIENT_TLS, litellm_config, write_config
from tests.test_serve_cli import launch
from tests.tui_support import SIZE, make_app, rendered_text, wait_until

CLI = Path(sys.executable).with_name("llmcache-tui")
REFERENCE = Path("/work/shared/reference/litellm-proxy-caching.md")
# The last block of LiteLLM's caching page ("Supported cache_params on proxy config.yaml").
DOCS_BLOCK = """
cache_params:
  # ttl
  ttl: Optional[float]
  default_in_memory_ttl: Optional[float]
  default_in_redis_ttl: Optional[float]
  max_connections: Optional[Int]

  # Type of cache (options: "local", "redis", "s3")
  type: s3
  supported_call_types: ["acompletion", "atext_completion", "aembedding", "atranscription"]
  host: localhost  # Redis server hostname or IP address
  port: "6379"  # Redis server port (as a string)
  password: secret_password  # Redis server password
  namespace: Optional[str] = None,
  s3_bucket_name: your_s3_bucket_name  # Name of the S3 bucket
  s3_aws_secret_access_key: your_secret_key  # AWS Secret Access Key for S3
"""


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LLMCACHE_CONFIG"}
    return subprocess.run(
        [str(CLI), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_the_docs_block_pasted_at_the_top_level_is_warned() -> None:
    settings = parse_settings(DOCS_BLOCK)

    assert settings.cache is None
    (warning,) = settings.warnings
    assert "cache_params: unknown top-level key" in warning
    assert "did you mean litellm_settings.cache_params?" in warning
    assert settings.unused_cache_settings == (warning,)
    assert "secret_password" not in warning


@pytest.mark.skipif(not REFERENCE.is_file(), reason="the reference page is not here")
def test_the_reference_pages_block_is_warned_too() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    start = text.index("Supported cache_params on proxy config.yaml")
    block = text[start : text.index("Advanced - user api key cache ttl")].split("\n", 1)[1]
    settings = parse_settings(block)
    assert settings.cache is None
    assert any("litellm_settings.cache_params" in w for w in settings.unused_cache_settings)


@pytest.mark.parametrize(
    ("text", "suggestion", "about_cache"),
    [
        ("master_key: sk-1\n", "general_settings.master_key", False),
        ("genral_settings: {}\n", "general_settings", False),
        ("model-list: []\n", "model_list", False),
        ("litellm_setting:\n  cache: true\n", "litellm_settings", True),
        ("cache: true\n", "litellm_settings.cache", True),
        ("namespace: team-a\n", "litellm_settings.cache_params.namespace", True),
        ("ttl: 60\n", "litellm_settings.cache_params.ttl", True),
        ("frobnicate: 1\n", None, False),
    ],
)
def test_unknown_top_level_keys_say_where_they_belong(
    text: str, suggestion: str | None, about_cache: bool
) -> None:
    settings = parse_settings(text)
    (warning,) = settings.warnings
    assert "unknown top-level key, ignored" in warning
    if suggestion is None:
        assert "did you mean" not in warning
    else:
        assert f"did you mean {suggestion}?" in warning
    assert bool(settings.unused_cache_settings) is about_cache
    assert "sk-1" not in warning


def test_litellms_own_top_level_keys_load_quietly() -> None:
    text = """
    model_list: []
    router_settings: {routing_strategy: simple-shuffle}
    environment_variables: {}
    general_settings: {}
    litellm_settings: {cache: true, cache_params: {type: local}}
    credential_list: []
    guardrails: []
    llmcache: {read_only: true}
    """
    settings = parse_settings(textwrap.dedent(text))
    assert settings.warnings == ()
    assert settings.unused_cache_settings == ()


def test_included_files_are_said_to_be_unread() -> None:
    settings = parse_settings("include: [models.yaml]\n")
    (warning,) = settings.warnings
    assert warning.startswith("include: the files it lists are not read")


@pytest.mark.parametrize(
    "text",
    [
        "litellm_settings:\n  cache: false\n  cache_params: {type: local}\n",
        "litellm_settings:\n  cache_params: {type: local}\n",
    ],
    ids=["cache false", "cache absent"],
)
def test_cache_params_without_cache_true_are_unused(text: str) -> None:
    settings = parse_settings(text)
    assert settings.cache is None
    assert settings.unused_cache_settings
    assert "litellm_settings.cache is not true" in settings.unused_cache_settings[0]


def test_check_exits_2_on_unused_cache_settings(tmp_path: Path) -> None:
    config = _write(tmp_path, DOCS_BLOCK)

    text = _run("--check", "--config", str(config), cwd=tmp_path)
    as_json = _run("--check", "--json", "--config", str(config), cwd=tmp_path)

    assert text.returncode == 2, text.stdout + text.stderr
    assert "did you mean litellm_settings.cache_params?" in text.stdout
    assert "not used" in text.stdout
    assert as_json.returncode == 2
    report = json.loads(as_json.stdout)
    assert report["status"] == "disabled"
    assert report["unused_cache_settings"]
    assert "secret_password" not in as_json.stdout
    assert "your_secret_key" not in as_json.stdout


def test_check_exits_2_on_cache_params_with_cache_false(tmp_path: Path) -> None:
    config = _write(
        tmp_path,
        """
        litellm_settings:
          cache: false
          cache_params:
            type: local
        """,
    )
    result = _run("--check", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "litellm_settings.cache is not true" in result.stdout


def test_check_json_params_name_the_namespace(tmp_path: Path) -> None:
    config = _write(
        tmp_path,
        """
        litellm_settings:
          cache: true
          cache_params:
            type: local
            namespace: team-a
        """,
    )
    result = _run("--check", "--json", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["params"]["namespace"] == "team-a"
    assert "unused_cache_settings" not in report


def test_cache_ping_shows_the_namespace(make_proxy: ProxyFactory) -> None:
    proxy = make_proxy({"namespace": "team-a"}, cache_type="local")
    with proxy.http() as http:
        document = http.get("/cache/ping").json()
    assert document["litellm_cache_params"]["namespace"] == "team-a"
    assert document["local_cache_params"]["namespace"] == "team-a"


def test_serve_logs_the_warnings_at_start(tmp_path: Path, upstream: FakeUpstreamServer) -> None:
    document = litellm_config(upstream.url, cache=False, general_settings={"master_key": "sk-9"})
    document["cache_params"] = {"type": "local", "password": "top-level-secret"}
    server = launch(write_config(tmp_path, document))
    try:
        with httpx.Client(base_url=server.base_url, timeout=10, verify=CLIENT_TLS) as http:
            ready = http.get("/health/readiness")  # open to probes, as on LiteLLM
    finally:
        code, log = server.stop()

    assert ready.status_code == 200
    assert ready.json()["cache"] is None
    assert code == 0
    assert "config: cache_params: unknown top-level key" in log
    assert "did you mean litellm_settings.cache_params?" in log
    assert "top-level-secret" not in log


async def test_the_overview_shows_the_warnings(upstream: FakeUpstreamServer) -> None:
    document = litellm_config(upstream.url, cache_params={"type": "local"})
    document["cache_params"] = {"type": "local", "password": "overview-secret"}
    app = make_app(yaml.safe_dump(document))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(
            pilot,
            lambda: "did you mean litellm_settings.cache_params?" in _overview(app),
            what="the warning on the overview",
        )
        assert "warning: cache_params: unknown top-level key" in _overview(app)
        assert "overview-secret" not in _overview(app)


def _overview(app: LLMCacheApp) -> str:
    return "\n".join(rendered_text(widget) for widget in app.screen.query(Static))
