"""Write cache entries to a JSON Lines file: one line per key, with its TTL and its entry.

Each line is ``{"key": ..., "ttl": seconds or null, "entry": {...}}``. ``entry`` is the
entry decoded into one shape whatever wrote it (our own format or LiteLLM's, whose response
is a JSON string inside the stored JSON): ``response`` as an object, ``call_type``,
``model``, ``prompt_preview``, ``created_at``, ``usage`` and ``origin``. A key that is not a
cache entry has ``"entry": null`` and its bytes as text in ``raw``; a damaged entry also
has ``error``. Used by the terminal app's export; kept free of the UI.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from llmcache_tui.cache.backends import CacheBackend
from llmcache_tui.cache.entry import (
    ENTRY_HEAD_BYTES,
    ORIGIN_LITELLM,
    CacheEntry,
    EntryFormatError,
    entry_origin,
)
from llmcache_tui.config import BUILTIN_SOURCE

EXPORT_BATCH = 100  # keys read per backend call

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export wrote: ``written`` lines to ``path``; ``missing`` keys were gone."""

    path: Path
    written: int
    missing: int


def output_directory(source: str, cwd: Path | None = None) -> Path:
    """Where files the app writes go by default: the config file's directory when the
    settings came from a file that exists, else the current directory."""
    here = cwd or Path.cwd()
    if source and source != BUILTIN_SOURCE:
        config = Path(source).expanduser()
        if not config.is_absolute():
            config = here / config
        if config.is_file():
            return config.parent.resolve()
    return here.resolve()


def default_export_path(directory: Path, *, now: float | None = None) -> Path:
    """``llmcache-export-YYYYmmdd-HHMMSS.jsonl`` in ``directory``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    return directory / f"llmcache-export-{stamp}.jsonl"


def decoded_entry(raw: bytes) -> dict[str, Any]:
    """The ``entry`` of an export line (and the JSON a person copies): a cache entry in one
    shape whoever wrote it; ``{"error": ...}`` for a damaged one.

    Raises ``ValueError`` for bytes that are not a cache entry at all."""
    origin = entry_origin(raw[:ENTRY_HEAD_BYTES])
    if origin is None:
        raise ValueError("not a cache entry")
    try:
        entry = CacheEntry.decode(raw)
    except EntryFormatError as exc:
        return {"error": str(exc)}
    document: dict[str, Any] = orjson.loads(entry.encode())
    document["origin"] = "litellm" if origin == ORIGIN_LITELLM else "llmcache"
    return document


def export_line(key: str, raw: bytes, ttl: float | None) -> dict[str, Any]:
    """One line of an export, as a JSON-ready dict."""
    line: dict[str, Any] = {"key": key, "ttl": ttl}
    try:
        entry = decoded_entry(raw)
    except ValueError:
        line["entry"] = None
        line["raw"] = raw.decode("utf-8", "replace")
        return line
    if "error" in entry:
        line["entry"] = None
        line["error"] = entry["error"]
        line["raw"] = raw.decode("utf-8", "replace")
    else:
        line["entry"] = entry
    return line


async def export_entries(
    backend: CacheBackend,
    keys: Iterable[str],
    path: Path,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> ExportResult:
    """Write the entries under ``keys`` to ``path``, one JSON document per line.

    Never replaces an existing file unless ``overwrite`` (``FileExistsError`` otherwise).
    Keys that hold no plain value any more (expired, deleted) are counted, not written.
    ``progress(done, total)`` is called after every batch. Backend errors propagate.
    """
    wanted = list(dict.fromkeys(keys))
    written = missing = 0
    with path.open("wb" if overwrite else "xb") as out:
        for start in range(0, len(wanted), EXPORT_BATCH):
            batch = wanted[start : start + EXPORT_BATCH]
            values = await backend.get_many(batch)
            for key, raw in zip(batch, values, strict=True):
                if raw is None:
                    missing += 1
                    continue
                try:
                    ttl = await backend.ttl(key)
                except KeyError:  # expired between the read and the TTL
                    ttl = None
                out.write(orjson.dumps(export_line(key, raw, ttl)) + b"\n")
                written += 1
            if progress is not None:
                progress(min(start + EXPORT_BATCH, len(wanted)), len(wanted))
    return ExportResult(path, written, missing)
