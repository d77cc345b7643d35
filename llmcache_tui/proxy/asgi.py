"""Minimal ASGI plumbing for the hot path: read a bounded body, send a complete response.

The proxy speaks raw ASGI rather than through a framework because every proxied request
crosses this code; it is small enough to keep by hand and measurably cheaper.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_CONTENT = (b"content-type", b"application/json")
SSE_CONTENT = (b"content-type", b"text/event-stream")
# A scope extension our server adds: {"received_at": time.perf_counter() at the first byte}.
TIMING_EXTENSION = "llmcache.timing"


class BodyTooLarge(Exception):
    """The request body is over the configured limit."""


class ClientDisconnected(Exception):
    """The client went away before its request body arrived."""


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a (lower-case) request header."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def received_at(scope: Scope) -> float:
    """When the request began to arrive (``time.perf_counter``); now if the server is not ours.

    Timing from there, rather than from when the app got the request, counts the time the
    request waited for a busy event loop, as the client does.
    """
    extensions = scope.get("extensions")
    if extensions:
        timing = extensions.get(TIMING_EXTENSION)
        if timing is not None:
            started: float = timing["received_at"]
            return started
    return time.perf_counter()


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """Read the whole request body, refusing one larger than ``limit`` bytes."""
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        body: bytes = message.get("body", b"")  # the usual case: all of it at once
        if len(body) > limit:
            raise BodyTooLarge
        return body
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
        message = await receive()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_response(
    send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Send a complete response with a content-length."""
    all_headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send, status: int, document: Any, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    await send_response(send, status, orjson.dumps(document), [JSON_CONTENT, *headers])
