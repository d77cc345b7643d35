"""``cache_params.key_format``: its validation and how ``--check`` shows it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llmcache_tui.config import ConfigError, parse_settings

BASE = """
litellm_settings:
  cache: true
  cache_params: {{type: {type}, key_format: {key_format}}}
"""


def test_the_default_is_ours() -> None:
    settings = parse_settings("litellm_settings: {cache: true, cache_params: {type: local}}", "c")
    assert settings.cache is not None
    assert settings.cache.params.key_format == "llmcache"


def test_an_unknown_key_format_is_an_error_naming_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(BASE.format(type="local", key_format="litelm"), "cfg.yaml")
    message = str(caught.value)
    assert "litellm_settings.cache_params.key_format" in message
    assert "'litelm' is not one of llmcache, litellm" in message


@pytest.mark.parametrize("semantic", ["qdrant-semantic", "redis-semantic"])
def test_litellm_keys_are_refused_for_semantic_caches(semantic: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(BASE.format(type=semantic, key_format="litellm"), "cfg.yaml")
    assert "key_format 'litellm' works with the exact cache types" in str(caught.value)


def test_check_shows_the_key_format(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(BASE.format(type="local", key_format="litellm"), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "llmcache_tui", "--check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "keys       litellm, shared with LiteLLM's proxy" in result.stdout
    assert "order of a body's fields is part of its key" in result.stdout
