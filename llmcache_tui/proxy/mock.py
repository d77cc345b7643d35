"""Local answers for ``mock_response`` deployments: the offline default and sample configs."""

from __future__ import annotations

import hashlib
import struct
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, ClassVar

import orjson

from llmcache_tui.cache.entry import prompt_preview
from llmcache_tui.proxy.asgi import SSE_CONTENT, Headers
from llmcache_tui.proxy.streaming import DONE_EVENT, sse_event

EMBEDDING_DIMENSIONS = 16


def mock_reply(route: str, model: str, body: dict[str, Any], mock: Any) -> dict[str, Any]:
    """The complete JSON answer an OpenAI-compatible server would give."""
    if isinstance(mock, dict):
        return mock
    text = str(mock)
    if route == "embedding":
        return _embedding_reply(model, body)
    if route == "transcription":
        return {"text": text}
    usage = _usage(prompt_preview(body), text)
    created = int(time.time())
    if route == "text_completion":
        return {
            "id": f"cmpl-mock-{uuid.uuid4().hex[:24]}",
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
            "usage": usage,
        }
    return {
        "id": f"chatcmpl-mock-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }


def mock_stream(route: str, model: str, body: dict[str, Any], mock: Any) -> Iterator[bytes]:
    """The same answer as server-sent events, one word a chunk, ending in ``[DONE]``."""
    text = str(mock)
    chat = route == "chat"
    stream_id = f"{'chatcmpl' if chat else 'cmpl'}-mock-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    kind = "chat.completion.chunk" if chat else "text_completion"

    def event(choice: dict[str, Any], **extra: Any) -> bytes:
        chunk = {"id": stream_id, "object": kind, "created": created, "model": model}
        chunk["choices"] = [choice] if choice else []
        chunk.update(extra)
        return sse_event(chunk)

    if chat:
        yield event({"index": 0, "delta": {"role": "assistant", "content": ""}})
    words = text.split(" ")
    for i, word in enumerate(words):
        piece = word if i == len(words) - 1 else word + " "
        yield event(_piece(piece, chat))
    yield event({**_piece("", chat), "finish_reason": "stop"})
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        yield event({}, usage=_usage(prompt_preview(body), text))
    yield DONE_EVENT


class MockStream:
    """A mock deployment's answer, shaped like an upstream stream."""

    status = 200
    headers: ClassVar[Headers] = [SSE_CONTENT]

    def __init__(self, events: Iterable[bytes]) -> None:
        self._events = events

    async def read(self) -> bytes:
        return b"".join(self._events)

    async def chunks(self) -> AsyncIterator[bytes]:
        for event in self._events:
            yield event

    async def close(self) -> None:
        return None


def _piece(text: str, chat: bool) -> dict[str, Any]:
    if chat:
        return {"index": 0, "delta": {"content": text} if text else {}}
    return {"index": 0, "text": text}


def _embedding_reply(model: str, body: dict[str, Any]) -> dict[str, Any]:
    inputs = body.get("input")
    items = inputs if isinstance(inputs, list) and inputs and not _is_tokens(inputs) else [inputs]
    data = [
        {"object": "embedding", "index": i, "embedding": _vector(orjson.dumps(item))}
        for i, item in enumerate(items)
    ]
    tokens = sum(len(str(item).split()) for item in items)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _is_tokens(items: list[Any]) -> bool:
    return all(isinstance(item, int) for item in items)


def _vector(seed: bytes) -> list[float]:
    """A deterministic unit-length vector for a text (no meaning, just stable)."""
    digest = hashlib.sha512(seed).digest()
    raw = [
        v / 2**31
        for v in struct.unpack(f">{EMBEDDING_DIMENSIONS}i", digest[: 4 * EMBEDDING_DIMENSIONS])
    ]
    norm = sum(v * v for v in raw) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in raw]


def _usage(prompt: str, text: str) -> dict[str, int]:
    prompt_tokens = len(prompt.split())
    completion_tokens = len(text.split())
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
