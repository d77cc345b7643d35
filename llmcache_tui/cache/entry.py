"""The stored cache record and its (de)serialisation.

Our entries are self-describing JSON so that the terminal app can show what a key means.
Entries written by LiteLLM itself (``{"timestamp": ..., "response": "<json string>"}``)
decode too, marked as foreign, so an existing LiteLLM cache can be browsed. Both formats
are also recognised from the first bytes of a value alone (``entry_origin``), which is how
a purge on a shared server tells cache entries from other applications' data cheaply.
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

FORMAT_VERSION = 1
PREVIEW_CHARS = 200
#: Bytes at the start of a value that ``entry_origin`` needs (a LiteLLM timestamp included).
ENTRY_HEAD_BYTES = 96
ORIGIN_OURS = "llmcache"
ORIGIN_LITELLM = "litellm"
# How each writer starts its document: ours with "v" then "response" (orjson, in the order
# ``encode`` builds it), LiteLLM's with a numeric "timestamp" then "response" (json.dumps of
# the dict it builds). Whitespace is allowed, as a JSON writer may put it there.
_OURS_HEAD = re.compile(rb'\s*\{\s*"v"\s*:\s*%d\s*,\s*"response"\s*:' % FORMAT_VERSION)
_LITELLM_HEAD = re.compile(rb'\s*\{\s*"timestamp"\s*:\s*-?[0-9][0-9.eE+-]*\s*,\s*"response"\s*:')
#: The same two tests as Lua patterns, for a store that judges values itself (a Redis script).
ENTRY_HEAD_LUA_PATTERNS = (
    '^%s*{%s*"v"%s*:%s*' + str(FORMAT_VERSION) + '%s*,%s*"response"%s*:',
    '^%s*{%s*"timestamp"%s*:%s*%-?%d[%d%.eE%+%-]*%s*,%s*"response"%s*:',
)


class EntryFormatError(ValueError):
    """Bytes in the cache that are not an entry we (or LiteLLM) wrote."""


@dataclass(slots=True)
class CacheEntry:
    """One cached upstream response plus what the terminal app needs to explain it."""

    response: Any
    route: str
    model: str
    prompt_preview: str
    created_at: float
    ttl: float | None = None
    usage: dict[str, Any] | None = None
    media_type: str | None = None  # None: ``response`` is JSON; else it is text of this type
    chunks: list[dict[str, Any]] | None = None  # a streamed answer's chunks, as received
    chunk_offsets: list[float] | None = None  # seconds from the first byte to each chunk
    foreign: bool = False  # written by LiteLLM, not by us: shown, never served
    #: ``usage``'s token counts (0 where it has none), what serving this entry saves;
    #: worked out once here because ``/metrics`` adds them up on every hit
    prompt_tokens: int = field(init=False, repr=False, compare=False, default=0)
    completion_tokens: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        usage = self.usage
        if isinstance(usage, dict):  # a damaged entry's may be anything
            self.prompt_tokens = _token_count(usage.get("prompt_tokens"))
            self.completion_tokens = _token_count(usage.get("completion_tokens"))

    def response_bytes(self) -> bytes:
        """The response body exactly as a client receives it."""
        if self.media_type is None:
            return orjson.dumps(self.response)
        return str(self.response).encode()

    def encode(self) -> bytes:
        document: dict[str, Any] = {
            "v": FORMAT_VERSION,
            "response": self.response,
            "call_type": self.route,
            "model": self.model,
            "prompt_preview": self.prompt_preview,
            "created_at": self.created_at,
            "ttl": self.ttl,
            "usage": self.usage,
        }
        if self.media_type is not None:
            document["media_type"] = self.media_type
        if self.chunks is not None:
            document["chunks"] = self.chunks
            document["chunk_offsets"] = self.chunk_offsets
        return orjson.dumps(document)

    @classmethod
    def decode(cls, raw: bytes | str) -> CacheEntry:
        """Parse stored bytes; raise :class:`EntryFormatError` for anything unrecognised."""
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise EntryFormatError(f"not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise EntryFormatError("not a JSON object")
        try:
            if document.get("v") == FORMAT_VERSION and "response" in document:
                return cls(
                    response=document["response"],
                    route=str(document.get("call_type") or "unknown"),
                    model=str(document.get("model") or ""),
                    prompt_preview=str(document.get("prompt_preview") or ""),
                    created_at=_moment(document.get("created_at")),
                    ttl=document.get("ttl"),
                    usage=document.get("usage"),
                    media_type=document.get("media_type"),
                    chunks=document.get("chunks"),
                    chunk_offsets=document.get("chunk_offsets"),
                )
            if "timestamp" in document and "response" in document:
                return cls._from_litellm(document)
        except (TypeError, ValueError) as exc:  # e.g. a timestamp that is not a number
            raise EntryFormatError(f"malformed entry: {exc}") from exc
        raise EntryFormatError("unknown entry format")

    @classmethod
    def _from_litellm(cls, document: dict[str, Any]) -> CacheEntry:
        response = document["response"]
        if isinstance(response, str):
            # LiteLLM also stores plain strings; those are shown as they are.
            with contextlib.suppress(orjson.JSONDecodeError):
                response = orjson.loads(response)
        usage = response.get("usage") if isinstance(response, dict) else None
        model = response.get("model", "") if isinstance(response, dict) else ""
        return cls(
            response=response,
            route=_route_of_response(response),
            model=str(model or ""),
            prompt_preview="",
            created_at=_moment(document.get("timestamp")),
            usage=usage if isinstance(usage, dict) else None,
            foreign=True,
        )


def entry_origin(head: bytes) -> str | None:
    """Who wrote a stored value, judged from its first :data:`ENTRY_HEAD_BYTES` bytes:
    :data:`ORIGIN_OURS`, :data:`ORIGIN_LITELLM`, or ``None`` for data that is not a cache
    entry (another application's key on a shared server). A value that starts like an entry
    but does not decode is still an entry, a damaged one."""
    if _OURS_HEAD.match(head):
        return ORIGIN_OURS
    if _LITELLM_HEAD.match(head):
        return ORIGIN_LITELLM
    return None


def _token_count(value: Any) -> int:
    # Upstream's usage is whatever it sent: only a positive whole number counts.
    return value if type(value) is int and value > 0 else 0


def _moment(value: Any) -> float:
    """A stored Unix time; raises ValueError for one no clock can reach ("-inf", "nan"),
    whose age would be infinite or undefined."""
    moment = float(value or 0.0)
    if not math.isfinite(moment):
        raise ValueError(f"time {value!r} is not a finite number")
    return moment


def prompt_preview(body: dict[str, Any]) -> str:
    """A short human-readable summary of what was asked, for browsing."""
    text = ""
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                text = _text_of(message.get("content"))
                break
    elif "prompt" in body:
        text = _text_of(body["prompt"])
    elif "input" in body:
        text = _text_of(body["input"])
    elif "file_name" in body:
        text = f"audio file {body['file_name']}"
    return text[:PREVIEW_CHARS]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return " ".join(parts)
    return "" if content is None else str(content)


def _route_of_response(response: Any) -> str:
    kind = response.get("object") if isinstance(response, dict) else None
    return {
        "chat.completion": "chat",
        "text_completion": "text_completion",
        "list": "embedding",
        "embedding": "embedding",  # LiteLLM's entry for one input of an embedding request
    }.get(str(kind), "unknown")
