"""The "floor": a bare ASGI app that answers every request with one fixed JSON body.

It does the least any POST handler must do (drain the request body, send a complete
response) and nothing else, so its throughput under uvicorn is the ceiling the proxy's
cache hits are measured against. The body has the size and shape of a chat completion.

Run it on the proxy's server stack::

    python -m uvicorn bench.floor_app:app --loop uvloop --http httptools \
        --no-access-log --no-server-header --lifespan off
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY: bytes = orjson.dumps(
    {
        "id": "chatcmpl-floor-000000000000000000000000",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_floor",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "The capital of France is Paris, a city on the Seine.",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 16, "completion_tokens": 12, "total_tokens": 28},
    }
)
HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Drain the request body, then send :data:`BODY`; other scope types are ignored."""
    if scope["type"] != "http":
        return
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more_body = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
