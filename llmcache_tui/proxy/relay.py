"""Relaying a streamed miss: the upstream's bytes go on to the client as they arrive.

A recorder reads the same bytes on the side, so a stream that completes can be stored;
while identical requests follow this one (:mod:`llmcache_tui.proxy.coalesce`), every piece
is also published to them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from llmcache_tui.proxy.asgi import Headers, Receive, Send, send_response
from llmcache_tui.proxy.coalesce import Flight
from llmcache_tui.proxy.errors import ProxyError, error_body, upstream_error_reply
from llmcache_tui.proxy.mock import MockStream
from llmcache_tui.proxy.request import LLMRequest
from llmcache_tui.proxy.streaming import StreamRecorder, sse_event
from llmcache_tui.proxy.upstream import UpstreamBroken, UpstreamReply, UpstreamStream

log = logging.getLogger("llmcache_tui.proxy")

OnComplete = Callable[[StreamRecorder], Awaitable[None]]


async def relay_stream(
    source: UpstreamStream | MockStream,
    request: LLMRequest,
    receive: Receive,
    send: Send,
    headers: Headers,
    flight: Flight | None,
    on_complete: OnComplete | None,
) -> bool:
    """Relay ``source`` to the client, then close it; False if upstream did not answer 200.

    With ``on_complete`` the stream is recorded, and ``on_complete`` runs once, as soon as
    the recorder holds the whole stream and before the piece that completed it (the one
    with ``[DONE]``) is sent on. It does not run when the client goes away before
    ``[DONE]``, the upstream breaks off or errors, or the stream lacks its finish reason or
    ``[DONE]``.
    """
    try:
        if source.status != 200:
            content = await source.read()
            passed = source.headers
            if source.status >= 400:
                content, passed = upstream_error_reply(source.status, content, passed)
            if flight is not None:
                flight.finish(entry=None, reply=UpstreamReply(source.status, content, passed))
            await send_response(send, source.status, content, [*passed, *headers])
            return False
        start_headers = [*source.headers, *headers]
        await send({"type": "http.response.start", "status": 200, "headers": start_headers})
        recorder = StreamRecorder() if on_complete is not None else None
        await _pump(source, request, receive, send, recorder, flight, on_complete)
        return True
    finally:
        await source.close()


async def _pump(
    source: UpstreamStream | MockStream,
    request: LLMRequest,
    receive: Receive,
    send: Send,
    recorder: StreamRecorder | None,
    flight: Flight | None,
    on_complete: OnComplete | None,
) -> None:
    """Forward the stream's bytes as they come, until the end or the client goes away."""
    gone = asyncio.Event()
    watcher = asyncio.create_task(_wait_for_disconnect(receive, gone))
    try:
        async for piece in source.chunks():
            if recorder is not None:
                recorder.feed(piece)
                if on_complete is not None and recorder.complete:
                    await on_complete(recorder)
                    on_complete = None
            if flight is not None:
                flight.publish(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            # With followers relaying this stream, read on for them (and for the cache).
            if gone.is_set() and not (flight is not None and flight.followers):
                return
    except UpstreamBroken as exc:
        log.warning("upstream stream for %s broke off: %s", request.model, exc)
        if recorder is not None:
            recorder.failed = True
        if flight is not None:
            flight.error = ProxyError(502, f"upstream stream broke off: {exc}")
        event = error_event(f"upstream stream broke off: {exc}")
        await send({"type": "http.response.body", "body": event, "more_body": True})
    finally:
        watcher.cancel()
    await send({"type": "http.response.body", "body": b""})


def error_event(message: str) -> bytes:
    """An OpenAI-style error as a server-sent event, for a stream that cannot go on."""
    return sse_event(error_body(502, message))


async def _wait_for_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    """Set ``gone`` when the client disconnects (the request body was already read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return
