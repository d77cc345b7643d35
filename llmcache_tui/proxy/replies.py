"""Answering the client from a cache entry, and the ``Cache-Status`` of every answer.

An entry answers a plain request with its stored bytes and a streamed one as server-sent
events, whether it was stored from a stream or not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from llmcache_tui.cache.entry import CacheEntry
from llmcache_tui.proxy.asgi import JSON_CONTENT, SSE_CONTENT, Headers, Send, send_response
from llmcache_tui.proxy.request import LLMRequest
from llmcache_tui.proxy.streaming import chunks_from_completion, replay_events

HIT_STATUS = (b"cache-status", b"llmcache; hit")
SEMANTIC_HIT_STATUS = (b"cache-status", b"llmcache; hit; detail=semantic")


def semantic_headers(key: str, similarity: float) -> Headers:
    """The headers of a semantic hit: the entry served, then its cosine similarity."""
    return [
        (b"x-litellm-cache-key", key.encode()),
        (b"x-litellm-semantic-similarity", f"{similarity:.4f}".encode()),
    ]


def cache_status(
    fwd: str, stored: bool, detail: str | None, collapsed: bool = False
) -> tuple[bytes, bytes]:
    """An RFC 9211 ``Cache-Status`` value for a response that was not a hit."""
    value = f"llmcache; fwd={fwd}"
    if stored:
        value += "; stored"
    if collapsed:
        value += "; collapsed"
    if detail:
        value += f"; detail={detail}"
    return (b"cache-status", value.encode())


def send_entry(
    send: Send,
    entry: CacheEntry,
    body: bytes | None,
    request: LLMRequest,
    headers: Headers,
    stream_replay: str,
) -> Awaitable[None]:
    """Answer from an entry, as a stream or whole (``body``: its bytes, if at hand).

    ``stream_replay`` is the configured pace of a streamed answer ("instant" or
    "original"). Returns the sending coroutine itself: on the hit path, no extra layer.
    """
    if request.stream:
        return replay_stream(send, entry, request, headers, stream_replay)
    content_type = (
        JSON_CONTENT
        if entry.media_type is None
        else (b"content-type", entry.media_type.encode("latin-1"))
    )
    body = entry.response_bytes() if body is None else body
    return send_response(send, 200, body, [content_type, *headers])


async def replay_stream(
    send: Send, entry: CacheEntry, request: LLMRequest, headers: Headers, stream_replay: str
) -> None:
    """Answer a streamed request from an entry, stored streamed or not.

    ``headers`` carry the cache status; the content type is added here.
    """
    chunks = entry.chunks or chunks_from_completion(entry.route, entry.response)
    original = stream_replay == "original" and entry.chunks is not None
    options = request.body.get("stream_options")
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    events = replay_events(
        chunks, entry.chunk_offsets if original else None, include_usage=include_usage
    )
    start_headers = [*headers, SSE_CONTENT]
    await send({"type": "http.response.start", "status": 200, "headers": start_headers})
    if not original:
        # One write: a client reads the same events, and a hit costs one send.
        body = b"".join(event for _, event in events)
        await send({"type": "http.response.body", "body": body})
        return
    loop = asyncio.get_running_loop()
    started = loop.time()
    for offset, event in events:
        delay = started + offset - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
