"""Saving the similarity threshold into a config file: only that value changes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from llmcache_tui.config import load_settings
from llmcache_tui.config_edit import (
    ConfigEditError,
    apply_threshold_edit,
    format_threshold,
    plan_threshold_edit,
)

CONFIG = """\
# My proxy. Keep this comment.
model_list:
  - model_name: gpt-4o-mini   # the cheap one
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: os.environ/OPENAI_API_KEY

litellm_settings:
  cache: true
  cache_params:
    type: qdrant-semantic     # embedded Qdrant
    similarity_threshold: 0.8 # tuned by hand
    qdrant_path: ./vectors

    namespace: "team-a"
general_settings:
  master_key: os.environ/LLMCACHE_MASTER_KEY
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def save(path: Path, value: float) -> str:
    apply_threshold_edit(plan_threshold_edit(path, value))
    return path.read_bytes().decode("utf-8")


def test_only_the_value_changes(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    edit = plan_threshold_edit(path, 0.85)
    assert edit.old == "0.8"
    assert edit.describe() == "0.8 -> 0.85"
    apply_threshold_edit(edit)
    assert path.read_text() == CONFIG.replace("threshold: 0.8 #", "threshold: 0.85 #")
    cache = load_settings(path).cache
    assert cache is not None and cache.params.similarity_threshold == 0.85


def test_a_missing_key_is_inserted_under_cache_params(tmp_path: Path) -> None:
    text = CONFIG.replace("    similarity_threshold: 0.8 # tuned by hand\n", "")
    path = write(tmp_path, text)
    edit = plan_threshold_edit(path, 0.9)
    assert edit.old is None
    assert "not set" in edit.describe()
    written = save(path, 0.9)
    # After the last one-line entry, at its indentation; everything else as it was.
    assert written == text.replace(
        '    namespace: "team-a"\n', '    namespace: "team-a"\n    similarity_threshold: 0.9\n'
    )
    assert "os.environ/OPENAI_API_KEY" in written
    assert "# embedded Qdrant" in written


def test_insert_before_nested_values_and_at_the_end_of_the_file(tmp_path: Path) -> None:
    text = (
        "litellm_settings:\n  cache: true\n  cache_params:\n"
        "    supported_call_types:\n      - completion\n    type: redis-semantic"
    )
    written = save(write(tmp_path, text), 0.75)
    assert written == text + "\n    similarity_threshold: 0.75"

    nested_only = "litellm_settings:\n  cache_params:\n    supported_call_types: [completion]\n"
    # A flow list on the key's line is still one line: the key goes after it.
    assert save(write(tmp_path, nested_only, "b.yaml"), 0.7) == (
        nested_only + "    similarity_threshold: 0.7\n"
    )


def test_a_flow_mapping_gets_the_key_before_its_brace(tmp_path: Path) -> None:
    text = "litellm_settings: {cache: true, cache_params: {type: qdrant-semantic}}\n"
    written = save(write(tmp_path, text), 0.82)
    assert written == (
        "litellm_settings: {cache: true, cache_params: {type: qdrant-semantic,"
        " similarity_threshold: 0.82}}\n"
    )


def test_crlf_line_endings_and_quotes_are_kept(tmp_path: Path) -> None:
    text = 'litellm_settings:\r\n  cache_params:\r\n    type: "redis-semantic"\r\n'
    assert save(write(tmp_path, text), 0.8) == text + "    similarity_threshold: 0.8\r\n"
    quoted = "litellm_settings:\n  cache_params:\n    similarity_threshold: '0.7'  # q\n"
    assert save(write(tmp_path, quoted, "q.yaml"), 0.71) == quoted.replace("'0.7'", "0.71")


def test_an_empty_value_is_filled(tmp_path: Path) -> None:
    text = "litellm_settings:\n  cache_params:\n    similarity_threshold:\n    type: disk\n"
    path = write(tmp_path, text)
    assert plan_threshold_edit(path, 0.6).old == ""
    assert save(path, 0.6) == text.replace("threshold:\n", "threshold: 0.6\n")


def test_mode_is_kept_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    os.chmod(path, 0o640)
    save(path, 0.9)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_a_symlink_is_followed(tmp_path: Path) -> None:
    real = write(tmp_path, CONFIG, "real.yaml")
    link = tmp_path / "config.yaml"
    link.symlink_to(real)
    save(link, 0.95)
    assert link.is_symlink()
    assert "similarity_threshold: 0.95 #" in real.read_text()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "cache_params:\n  type: redis-semantic\n",
            "no litellm_settings section (the top-level cache_params is not where",
        ),
        ("model_list: []\n", "there is no litellm_settings section"),
        ("litellm_settings:\n  cache: true\n", "there is no litellm_settings.cache_params"),
        ("litellm_settings:\n  cache_params:\n", "is not a mapping"),
        ("litellm_settings: [1]\n", "litellm_settings is not a mapping"),
        ("- 1\n", "expected a mapping at the top level"),
        ("litellm_settings: {\n", "invalid YAML"),
        (
            "litellm_settings:\n  cache_params:\n    similarity_threshold: os.environ/SIM\n",
            "environment variable SIM; set SIM=0.9 instead",
        ),
        (
            # The mapping is an anchor another section shares: one edit would change both.
            "base: &p\n  type: redis-semantic\nlitellm_settings:\n  cache_params: *p\n",
            "does not allow a safe edit",
        ),
    ],
)
def test_files_that_cannot_be_edited_safely_are_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigEditError, match=None) as caught:
        plan_threshold_edit(path, 0.9)
    assert message in str(caught.value)
    assert path.read_text() == text  # untouched


def test_a_file_changed_since_planning_is_not_overwritten(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    edit = plan_threshold_edit(path, 0.9)
    path.write_text(CONFIG + "# edited meanwhile\n")
    with pytest.raises(ConfigEditError, match="changed since it was read"):
        apply_threshold_edit(edit)
    assert path.read_text().endswith("# edited meanwhile\n")


def test_a_missing_file_and_a_bad_value_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigEditError, match="cannot read the file"):
        plan_threshold_edit(tmp_path / "absent.yaml", 0.9)
    path = write(tmp_path, CONFIG)
    for value in (1.5, -0.1, float("nan")):
        with pytest.raises(ConfigEditError, match=r"in \[0, 1\]"):
            plan_threshold_edit(path, value)


def test_format_threshold() -> None:
    assert [format_threshold(v) for v in (0.85, 1, 0.0, 0.123456)] == [
        "0.85",
        "1.0",
        "0.0",
        "0.1235",
    ]
