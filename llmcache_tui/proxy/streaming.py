"""Server-sent event streams: record one while relaying it, rebuild and replay it later.

A stream is stored only when it finished normally: a chunk carrying a ``finish_reason``,
then ``[DONE]``, and no error event. Its chunks are kept as parsed JSON with their arrival
times, and assembled into the equivalent non-streamed completion, so one entry answers
both kinds of request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

DONE_EVENT = b"data: [DONE]\n\n"


def sse_event(document: Any) -> bytes:
    """One server-sent event carrying ``document`` as JSON."""
    return b"data: " + orjson.dumps(document) + b"\n\n"


@dataclass
class StreamRecorder:
    """Parses relayed SSE bytes on the side; never alters what is relayed."""

    clock: Callable[[], float] = time.monotonic
    chunks: list[dict[str, Any]] = field(default_factory=list)
    offsets: list[float] = field(default_factory=list)  # seconds since the first byte
    done: bool = False
    finished: bool = False
    failed: bool = False
    _pending: bytes = b""
    _started: float | None = None

    def feed(self, data: bytes) -> None:
        if self._started is None:
            self._started = self.clock()
        # Normalised after joining: a piece may end between the "\r" and the "\n".
        self._pending = (self._pending + data).replace(b"\r\n", b"\n")
        *events, self._pending = self._pending.split(b"\n\n")
        for event in events:
            self._event(event)

    def _event(self, event: bytes) -> None:
        payload = b"\n".join(
            line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")
        )
        if not payload:
            return
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.failed = True
            return
        if not isinstance(chunk, dict) or "error" in chunk:
            self.failed = True
            return
        if self.done:
            self.failed = True  # anything after [DONE] is not a stream we understand
        if any(c.get("finish_reason") for c in chunk.get("choices") or [] if isinstance(c, dict)):
            self.finished = True
        self.chunks.append(chunk)
        self.offsets.append(self.clock() - (self._started or 0.0))

    @property
    def complete(self) -> bool:
        return self.done and self.finished and not self.failed and not self._pending.strip()


def assemble(route: str, chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-streamed completion equivalent to a list of stream chunks."""
    first = chunks[0] if chunks else {}
    usage = next((c["usage"] for c in reversed(chunks) if c.get("usage")), None)
    choices: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index", 0))
            merged = choices.setdefault(index, {"index": index})
            if route == "chat":
                _merge_delta(merged.setdefault("message", {}), choice.get("delta") or {})
            else:
                merged["text"] = merged.get("text", "") + (choice.get("text") or "")
            if choice.get("finish_reason") is not None:
                merged["finish_reason"] = choice["finish_reason"]
            if "logprobs" in choice:
                merged["logprobs"] = _merge_logprobs(merged.get("logprobs"), choice["logprobs"])
    for merged in choices.values():
        merged.setdefault("finish_reason", None)
        if route == "chat":
            merged["message"].setdefault("role", "assistant")
            merged["message"].setdefault("content", None)
    completion: dict[str, Any] = {
        "id": first.get("id"),
        "object": "chat.completion" if route == "chat" else "text_completion",
        "created": first.get("created"),
        "model": first.get("model"),
        "choices": [choices[i] for i in sorted(choices)],
    }
    if first.get("system_fingerprint") is not None:
        completion["system_fingerprint"] = first["system_fingerprint"]
    if usage is not None:
        completion["usage"] = usage
    return completion


def _merge_delta(message: dict[str, Any], delta: dict[str, Any]) -> None:
    for key, value in delta.items():
        if value is None:
            message.setdefault(key, None)  # e.g. "refusal": null, kept as a plain answer has it
        elif key == "tool_calls":
            calls = message.get("tool_calls") or []
            message["tool_calls"] = calls
            _merge_tool_calls(calls, value)
        elif key == "function_call" and isinstance(value, dict):  # the legacy functions API
            call = dict(message.get(key) or {})
            for part, text in value.items():
                call[part] = (call.get(part) or "") + text if isinstance(text, str) else text
            message[key] = call
        elif isinstance(value, str) and key != "role":
            message[key] = (message.get(key) or "") + value
        else:
            message[key] = value


def _merge_logprobs(merged: Any, piece: Any) -> Any:
    """Logprobs of a choice so far plus one chunk's: their token lists are concatenated."""
    if not isinstance(merged, dict) or not isinstance(piece, dict):
        return merged if piece is None else piece
    result = dict(merged)
    for key, value in piece.items():
        if isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = result[key] + value
        elif value is not None or key not in result:
            result[key] = value
    return result


def _merge_tool_calls(calls: list[dict[str, Any]], deltas: list[dict[str, Any]]) -> None:
    for delta in deltas:
        index = int(delta.get("index", 0))
        while len(calls) <= index:
            calls.append(
                {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            )
        call = calls[index]
        if delta.get("id"):
            call["id"] = delta["id"]
        if delta.get("type"):
            call["type"] = delta["type"]
        function = delta.get("function") or {}
        for key in ("name", "arguments"):
            if function.get(key):
                call["function"][key] += function[key]


def chunks_from_completion(route: str, completion: dict[str, Any]) -> list[dict[str, Any]]:
    """Stream chunks equivalent to a stored non-streamed completion."""
    base = {
        "id": completion.get("id"),
        "object": "chat.completion.chunk" if route == "chat" else "text_completion",
        "created": completion.get("created"),
        "model": completion.get("model"),
    }
    if completion.get("system_fingerprint") is not None:
        base["system_fingerprint"] = completion["system_fingerprint"]
    chunks: list[dict[str, Any]] = []
    for choice in completion.get("choices") or []:
        index = choice.get("index", 0)
        if route == "chat":
            message = choice.get("message") or {}
            delta = dict(message)
            if delta.get("tool_calls"):
                delta["tool_calls"] = [
                    {"index": i, **call} for i, call in enumerate(delta["tool_calls"])
                ]
            content: dict[str, Any] = {"index": index, "delta": delta}
            finish = {"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")}
        else:
            content = {"index": index, "text": choice.get("text", "")}
            finish = {"index": index, "text": "", "finish_reason": choice.get("finish_reason")}
        if "logprobs" in choice:
            content["logprobs"] = choice["logprobs"]
        chunks.append({**base, "choices": [content]})
        chunks.append({**base, "choices": [finish]})
    if completion.get("usage"):
        chunks.append({**base, "choices": [], "usage": completion["usage"]})
    return chunks


def replay_events(
    chunks: list[dict[str, Any]], offsets: list[float] | None, *, include_usage: bool
) -> Iterator[tuple[float, bytes]]:
    """(seconds since start, SSE event) pairs for a replay, ending with ``[DONE]``.

    The usage-only chunk is sent only when the request asked for it
    (``stream_options.include_usage``) and the entry has one: a plain answer always
    does, a stream only if its own request asked for usage.
    """
    last = 0.0
    for i, chunk in enumerate(chunks):
        usage_only = not chunk.get("choices") and chunk.get("usage") is not None
        if usage_only and not include_usage:
            continue
        last = offsets[i] if offsets and i < len(offsets) else last
        yield last, sse_event(chunk)
    yield last, DONE_EVENT
