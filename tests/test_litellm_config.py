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


SHARED_FILE = """
litellm_settings:
  cache: true
  cache_params: {{type: {type}{extra}}}
llmcache:
  key_format: {key_format}
"""


def test_the_llmcache_section_sets_the_key_format_for_a_file_litellm_also_reads() -> None:
    # LiteLLM refuses cache_params keys it does not know; our own section it ignores.
    settings = parse_settings(SHARED_FILE.format(type="redis", extra="", key_format="litellm"), "c")
    assert settings.cache is not None
    assert settings.cache.params.key_format == "litellm"


def test_the_two_places_may_agree_but_not_contradict() -> None:
    agreeing = SHARED_FILE.format(type="local", extra=", key_format: litellm", key_format="litellm")
    cache = parse_settings(agreeing, "c").cache
    assert cache is not None
    assert cache.params.key_format == "litellm"
    contradicting = SHARED_FILE.format(
        type="local", extra=", key_format: llmcache", key_format="litellm"
    )
    with pytest.raises(ConfigError) as caught:
        parse_settings(contradicting, "cfg.yaml")
    message = str(caught.value)
    assert "llmcache.key_format: 'litellm' contradicts" in message
    assert "litellm_settings.cache_params.key_format 'llmcache'" in message


def test_the_llmcache_section_key_format_is_refused_for_semantic_caches() -> None:
    config = SHARED_FILE.format(type="qdrant-semantic", extra="", key_format="litellm")
    with pytest.raises(ConfigError) as caught:
        parse_settings(config, "cfg.yaml")
    assert "llmcache.key_format: 'litellm' works with the exact cache types" in str(caught.value)
