"""Write one setting back into the user's config file: the semantic similarity threshold.

The edit is targeted, not a rewrite: PyYAML's composer gives the exact character span of
``litellm_settings.cache_params.similarity_threshold`` (or of the mapping it belongs in),
and only those characters change. Comments, key order, quoting, blank lines,
``os.environ/...`` references and line endings stay byte for byte as the user wrote them,
which no round-trip dump guarantees. Before anything is written the edited text is parsed
again and must equal the original document with only that one key changed, so an edit that
would land anywhere else (an anchor shared with another section, say) is refused.

The file is written atomically (a temporary file beside it, then a rename), keeping its
mode; a symbolic link is followed, so the file it points at is the one edited.
"""

from __future__ import annotations

import contextlib
import math
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmcache_tui.config import ENV_PREFIX

THRESHOLD_PATH = "litellm_settings.cache_params.similarity_threshold"
_SECTION = "litellm_settings"
_PARAMS = "cache_params"
_KEY = "similarity_threshold"


class ConfigEditError(Exception):
    """The file cannot be edited safely; the message says why and what to do instead."""


@dataclass(frozen=True, slots=True)
class ThresholdEdit:
    """A planned change of the threshold in ``path``: shown for confirmation, then applied.

    ``old`` is the value as written in the file (None: the key is absent), ``original``
    the file's text the edit was planned on, ``text`` the text to write.
    """

    path: Path
    old: str | None
    new: float
    original: str
    text: str

    def describe(self) -> str:
        """``old -> new`` for the confirmation dialog."""
        old = "not set (the default)" if self.old is None else self.old
        return f"{old} -> {format_threshold(self.new)}"


def format_threshold(value: float) -> str:
    """The threshold as written to the file: the shortest form of the value rounded to four
    places (``0.85``, ``1.0``)."""
    return repr(round(float(value), 4))


def plan_threshold_edit(path: str | Path, value: float) -> ThresholdEdit:
    """Read ``path`` and work out the edit that sets the threshold to ``value``.

    Raises :class:`ConfigEditError` when the file cannot be read, does not hold a
    ``litellm_settings.cache_params`` mapping, or cannot be edited without touching
    anything else.
    """
    if not (isinstance(value, int | float) and 0.0 <= value <= 1.0) or math.isnan(value):
        raise ConfigEditError(f"{THRESHOLD_PATH} must be a cosine similarity in [0, 1]")
    target = Path(os.path.realpath(path))
    original = _read(target)
    old, text = _edited(original, value, str(path))
    return ThresholdEdit(target, old, float(value), original, text)


def apply_threshold_edit(edit: ThresholdEdit) -> None:
    """Write ``edit`` atomically, unless the file changed since it was planned."""
    if _read(edit.path) != edit.original:
        raise ConfigEditError(f"{edit.path} changed since it was read; nothing written, try again")
    write_atomically(edit.path, edit.text)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8, newlines as given) through a temporary file
    in the same directory, keeping the file's permission bits (and owner, where allowed)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigEditError(f"{path}: cannot read the file: {exc.strerror}") from exc
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigEditError(
            f"{path.parent}: cannot write a file in this directory: {exc.strerror}"
        ) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, stat.S_IMODE(info.st_mode))
        # Not ours to give away where we may not: then it is owned by whoever runs us.
        with contextlib.suppress(OSError, AttributeError):
            os.chown(temporary, info.st_uid, info.st_gid)
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise ConfigEditError(f"{path}: cannot write the file: {exc.strerror}") from exc


def _read(path: Path) -> str:
    try:
        with path.open(encoding="utf-8", newline="") as handle:  # keep \r\n as written
            return handle.read()
    except OSError as exc:
        raise ConfigEditError(f"{path}: cannot read the file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigEditError(f"{path}: not UTF-8 text (byte {exc.start})") from exc


def _edited(original: str, value: float, source: str) -> tuple[str | None, str]:
    """The value written now (None: absent) and the text with the new one."""
    try:
        root = yaml.compose(original, Loader=yaml.SafeLoader)
        before = yaml.safe_load(original)
    except yaml.YAMLError as exc:
        raise ConfigEditError(f"{source}: invalid YAML, not edited: {exc}") from exc
    if not isinstance(root, yaml.MappingNode):
        raise ConfigEditError(f"{source}: expected a mapping at the top level; not edited")
    misplaced = _value_of(root, _PARAMS) is not None
    where = f" (the top-level {_PARAMS} is not where LiteLLM reads it)" if misplaced else ""
    section = _value_of(root, _SECTION)
    if section is None:
        raise ConfigEditError(
            f"{source}: there is no {_SECTION} section{where}; add {THRESHOLD_PATH} yourself"
        )
    if not isinstance(section, yaml.MappingNode):
        raise ConfigEditError(f"{source}: {_SECTION} is not a mapping; not edited")
    params = _value_of(section, _PARAMS)
    if params is None:
        raise ConfigEditError(
            f"{source}: there is no {_SECTION}.{_PARAMS}{where}; add {THRESHOLD_PATH} yourself"
        )
    if not isinstance(params, yaml.MappingNode):
        raise ConfigEditError(
            f"{source}: {_SECTION}.{_PARAMS} is not a mapping (empty or a single value);"
            f" add {THRESHOLD_PATH} yourself"
        )
    new = format_threshold(value)
    current = _value_of(params, _KEY)
    if current is not None:
        old, text = _replace(original, current, new, source)
    else:
        old, text = None, _insert(original, params, new, source)
    _check(before, text, float(new), source)
    return old, text


def _value_of(mapping: yaml.MappingNode, key: str) -> yaml.Node | None:
    """The value node of ``key`` (the last one, as a loader keeps), or None."""
    found = None
    for key_node, value_node in mapping.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            found = value_node
    return found


def _replace(original: str, node: yaml.Node, new: str, source: str) -> tuple[str, str]:
    if not isinstance(node, yaml.ScalarNode) or node.style in ("|", ">"):
        raise ConfigEditError(f"{source}: {THRESHOLD_PATH} is not a plain value; not edited")
    if node.value.startswith(ENV_PREFIX):
        name = node.value[len(ENV_PREFIX) :]
        raise ConfigEditError(
            f"{source}: {THRESHOLD_PATH} is read from the environment variable {name};"
            f" set {name}={new} instead"
        )
    start, end = node.start_mark.index, node.end_mark.index
    if start == end:  # an empty value ("similarity_threshold:"): keep a space after ':'
        return "", f"{original[:start]} {new}{original[end:]}"
    return original[start:end], f"{original[:start]}{new}{original[end:]}"


def _insert(original: str, params: yaml.MappingNode, new: str, source: str) -> str:
    """``similarity_threshold: new`` added to the cache_params mapping: in a block mapping
    on a line of its own after the last one-line entry (else before the first entry), in a
    flow mapping (``{type: ...}``) before the closing brace."""
    if params.flow_style:
        close = params.end_mark.index - 1
        if original[close : close + 1] != "}":
            raise ConfigEditError(f"{source}: cannot find the end of {_SECTION}.{_PARAMS}")
        separator = ", " if params.value else ""
        return f"{original[:close].rstrip()}{separator}{_KEY}: {new}{original[close:]}"
    if not params.value:
        raise ConfigEditError(f"{source}: {_SECTION}.{_PARAMS} is empty; add {THRESHOLD_PATH}")
    newline = "\r\n" if "\r\n" in original else "\n"
    first_key = params.value[0][0]
    line_start = original.rfind("\n", 0, first_key.start_mark.index) + 1
    indent = original[line_start : first_key.start_mark.index]
    if indent.strip():
        raise ConfigEditError(f"{source}: {_SECTION}.{_PARAMS} is not laid out one key a line")
    line = f"{indent}{_KEY}: {new}{newline}"
    one_line = [
        value
        for key, value in params.value
        if key.start_mark.line == value.end_mark.line
        and not (isinstance(value, yaml.ScalarNode) and value.style in ("|", ">"))
    ]
    if not one_line:
        return original[:line_start] + line + original[line_start:]
    after = one_line[-1].end_mark.index
    end = original.find("\n", after)
    if end < 0:  # the last line of a file without a final newline
        return original + newline + line.rstrip("\r\n")
    return original[: end + 1] + line + original[end + 1 :]


def _check(before: Any, text: str, value: float, source: str) -> None:
    """The edited text must load as the original document with only the threshold set."""
    expected = _unshared(before)  # an alias's target must not change along with it
    expected[_SECTION][_PARAMS][_KEY] = value
    try:
        after = yaml.safe_load(text)
    except yaml.YAMLError:
        after = None
    if after != expected:
        raise ConfigEditError(
            f"{source}: the file's layout (anchors, aliases or an unusual style) does not"
            f" allow a safe edit; set {THRESHOLD_PATH}: {format_threshold(value)} yourself"
        )


def _unshared(value: Any) -> Any:
    """A deep copy in which no two places share one object (as YAML aliases do)."""
    if isinstance(value, dict):
        return {key: _unshared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unshared(item) for item in value]
    return value
