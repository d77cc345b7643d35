"""What the cache keeps of an answer: a :class:`CacheEntry` built from an upstream reply.

Only a whole, successful answer becomes an entry; anything else is passed to the client
and forgotten.
"""

from __future__ import annotations

from typing import Any

import orjson

from llmcache_tui.cache.entry import CacheEntry, prompt_preview
from llmcache_tui.proxy.request import LLMRequest
from llmcache_tui.proxy.streaming import StreamRecorder, assemble
from llmcache_tui.proxy.upstream import UpstreamReply


def entry_for(request: LLMRequest, reply: UpstreamReply, now: float) -> CacheEntry | None:
    """The entry to store for a successful reply, or None if it is not complete."""
    media_type = None
    response: Any
    if reply.content_type.startswith("application/json"):
        try:
            response = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            return None
        if not complete(request.route, response):
            return None
    elif request.route == "transcription":
        media_type = reply.content_type or "text/plain"
        response = reply.body.decode("utf-8", "replace")
    else:
        return None
    return new_entry(request, response, now, media_type=media_type)


def stream_entry(request: LLMRequest, recorder: StreamRecorder, now: float) -> CacheEntry:
    """The entry for a stream the recorder holds whole: the assembled answer and its chunks."""
    return new_entry(
        request,
        assemble(request.route, recorder.chunks),
        now,
        chunks=recorder.chunks,
        chunk_offsets=[round(offset, 4) for offset in recorder.offsets],
    )


def new_entry(request: LLMRequest, response: Any, now: float, **extra: Any) -> CacheEntry:
    """An entry for ``request`` answered by ``response``, created at ``now``."""
    usage = response.get("usage") if isinstance(response, dict) else None
    return CacheEntry(
        response=response,
        route=request.route,
        model=request.model,
        prompt_preview=prompt_preview(request.body),
        created_at=now,
        ttl=request.controls.ttl,
        usage=usage if isinstance(usage, dict) else None,
        **extra,
    )


def complete(route: str, response: Any) -> bool:
    """Whether an upstream JSON answer is whole and successful, so safe to replay."""
    if not isinstance(response, dict) or "error" in response:
        return False
    if route in ("chat", "text_completion"):
        choices = response.get("choices")
        return (
            isinstance(choices, list)
            and bool(choices)
            and all(isinstance(c, dict) and c.get("finish_reason") for c in choices)
        )
    if route == "embedding":
        data = response.get("data")
        return isinstance(data, list) and bool(data)
    return "text" in response
