"""A fake OpenAI-compatible LLM provider: a small, real HTTP server that counts calls.

``FakeOpenAI`` is a raw ASGI app (no framework) that answers the OpenAI endpoints the
proxy cares about with deterministic content, so tests can assert on exact bodies:

* ``POST /chat/completions``  -> ``"echo: <last user message text>"`` (JSON or SSE stream)
* ``POST /completions``       -> ``"echo: <prompt>"`` (JSON or SSE stream)
* ``POST /embeddings``        -> 8 floats per input derived from sha256 (float or base64)
* ``POST /audio/transcriptions`` -> ``"transcript of <N> bytes sha256 <12 hex>"``
* ``GET /models``             -> a short model list

Every path works with and without the ``/v1`` prefix. Every response carries an
``x-fake-call: <n>`` header and every generated id embeds ``n``, the app's global call
number, so a test can tell a cached response (old id) from a fresh one (new id).

Failure behaviours (queued HTTP errors, delays and broken streams, mid-stream error events)
are plain attributes/methods on the app and may be set from the test thread while the
server runs in a background thread (``FakeUpstreamServer``).

Run standalone for benchmarks::

    python -m tests.fake_upstream --host 127.0.0.1 --port 9999 [--delay 0]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import re
import struct
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any

import orjson
import uvicorn
from python_multipart.multipart import MultipartParser, parse_options_header

from tests.ports import free_port

__all__ = [
    "DEFAULT_MODELS",
    "EMBEDDING_DIMENSIONS",
    "FakeOpenAI",
    "FakeUpstreamServer",
    "RecordedCall",
    "UploadedFile",
    "expected_embedding",
    "main",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "whisper-1",
)
DEFAULT_MODEL = "fake-model"
EMBEDDING_DIMENSIONS = 8
SYSTEM_FINGERPRINT = "fp_fake"

_JSON_CT = b"application/json"
_TEXT_CT = b"text/plain; charset=utf-8"
_SSE_HEADERS_BASE: tuple[tuple[bytes, bytes], ...] = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
)
_DONE_EVENT = b"data: [DONE]\n\n"
_MID_STREAM_ERROR_EVENT = (
    b"data: "
    + orjson.dumps(
        {
            "error": {
                "message": "Fake upstream error in the middle of the stream.",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
    )
    + b"\n\n"
)
_WORD_RE = re.compile(r"\s*\S+\s*")

# Endpoint (path without the /v1 prefix) -> (HTTP method, body kind).
_ROUTES: dict[str, tuple[str, str]] = {
    "chat/completions": ("POST", "json"),
    "completions": ("POST", "json"),
    "embeddings": ("POST", "json"),
    "audio/transcriptions": ("POST", "form"),
    "models": ("GET", "none"),
}


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A file part of a multipart/form-data request."""

    filename: str
    content_type: str | None
    data: bytes


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One request as the fake saw it.

    ``body`` is the parsed JSON body, or for multipart requests a dict of form fields
    (text fields as ``str``, file fields as ``UploadedFile``), or ``None`` when the body
    was empty or could not be parsed.
    """

    n: int
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw_body: bytes
    query: str = ""  # the query string as sent, without "?"

    @property
    def endpoint(self) -> str:
        """The path without the ``/v1`` prefix and surrounding slashes."""
        return _endpoint_of(self.path)


@dataclass(slots=True)
class _QueuedError:
    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...]


@dataclass(slots=True)
class _JsonReply:
    status: int
    body: bytes
    content_type: bytes = _JSON_CT


@dataclass(slots=True)
class _StreamReply:
    events: list[bytes]  # serialized "data: ...\n\n" events, without the final [DONE]


class _BadRequest(Exception):
    """Raised by handlers for request validation errors (mapped to a 400 response)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


# --------------------------------------------------------------------------- helpers


def _endpoint_of(path: str) -> str:
    path = path.strip("/")
    if path == "v1":
        return ""
    if path.startswith("v1/"):
        return path[3:]
    return path


def _error_payload(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _default_error_payload(status: int) -> dict[str, Any]:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    message = f"Fake upstream error: {status} {phrase}"
    if status == 429:
        return _error_payload(message, "requests", code="rate_limit_exceeded")
    if status == 401:
        return _error_payload(message, "invalid_request_error", code="invalid_api_key")
    if status >= 500:
        return _error_payload(message, "server_error")
    return _error_payload(message, "invalid_request_error")


def _content_text(content: Any) -> str:
    """Text of a chat message ``content``: a string, or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
        return " ".join(texts)
    return ""


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _split_words(text: str) -> list[str]:
    """Split into word pieces that keep their whitespace, so ``"".join`` is lossless."""
    pieces = _WORD_RE.findall(text)
    if not pieces:
        return [text] if text else []
    return pieces


def _count_words(text: str) -> int:
    return len(text.split())


def _sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _embedding_key(item: Any) -> bytes:
    if isinstance(item, str):
        return item.encode()
    return orjson.dumps(item)


def expected_embedding(
    item: str | list[int], dimensions: int = EMBEDDING_DIMENSIONS
) -> list[float]:
    """The embedding the fake returns for one input (a string or a token list).

    Values are ``int16 / 32768`` so they are exact in float32 as well as float64, which
    makes ``encoding_format="base64"`` (float32) and ``"float"`` responses compare equal.
    """
    key = _embedding_key(item)
    needed = dimensions * 2
    digest = b""
    block = hashlib.sha256(key).digest()
    while len(digest) < needed:
        digest += block
        block = hashlib.sha256(block).digest()
    return [
        int.from_bytes(digest[i * 2 : i * 2 + 2], "big", signed=True) / 32768.0
        for i in range(dimensions)
    ]


def _parse_multipart(body: bytes, content_type: str) -> dict[str, Any]:
    """Parse a multipart/form-data body into ``{name: str | UploadedFile}``."""
    ctype, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise ValueError("expected multipart/form-data with a boundary")

    fields: dict[str, Any] = {}
    part_headers: dict[str, str] = {}
    header_field: list[bytes] = []
    header_value: list[bytes] = []
    data: list[bytes] = []

    def on_part_begin() -> None:
        part_headers.clear()
        data.clear()

    def on_header_field(buf: bytes, start: int, end: int) -> None:
        header_field.append(buf[start:end])

    def on_header_value(buf: bytes, start: int, end: int) -> None:
        header_value.append(buf[start:end])

    def on_header_end() -> None:
        name = b"".join(header_field).decode("latin-1").lower()
        part_headers[name] = b"".join(header_value).decode("utf-8", "replace")
        header_field.clear()
        header_value.clear()

    def on_part_data(buf: bytes, start: int, end: int) -> None:
        data.append(buf[start:end])

    def on_part_end() -> None:
        _, disposition = parse_options_header(part_headers.get("content-disposition", ""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        payload = b"".join(data)
        filename = disposition.get(b"filename")
        if filename is not None:
            fields[name] = UploadedFile(
                filename=filename.decode("utf-8", "replace"),
                content_type=part_headers.get("content-type"),
                data=payload,
            )
        else:
            fields[name] = payload.decode("utf-8", "replace")

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    parser.write(body)
    parser.finalize()
    return fields


async def _read_body(receive: Receive) -> bytes | None:
    """The full request body, or ``None`` if the client disconnected first."""
    message = await receive()
    if message["type"] == "http.disconnect":
        return None
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


# --------------------------------------------------------------------------- the app


class FakeOpenAI:
    """Raw ASGI app speaking a deterministic subset of the OpenAI HTTP API.

    Thread-safety: the call log and the error queue are guarded by a lock, so tests may
    read ``calls``/``call_count()`` and call ``queue_error()``/``reset()`` from another
    thread while the server runs. The plain behaviour attributes (``delay``,
    ``chunk_delay``, ``break_stream_after``, ``error_mid_stream_after``) are read once per
    request, so setting them from another thread is safe too.

    The call number ``n`` (in ids and the ``x-fake-call`` header) is never reset, so ids
    stay unique for the whole life of the app even across ``reset()``.
    """

    def __init__(
        self,
        *,
        delay: float = 0.0,
        chunk_delay: float = 0.0,
        record_calls: bool = True,
        models: tuple[str, ...] = DEFAULT_MODELS,
    ) -> None:
        self._default_delay = delay
        self._default_chunk_delay = chunk_delay
        self.delay: float = delay
        self.chunk_delay: float = chunk_delay
        self.break_stream_after: int | None = None
        self.error_mid_stream_after: int | None = None
        # Off for the standalone benchmark server, where nobody reads the log and an
        # ever-growing list would skew memory and timing.
        self.record_calls = record_calls

        self._lock = threading.Lock()
        self._calls: list[RecordedCall] = []
        self._counter = 0
        self._errors: deque[_QueuedError] = deque()
        self._delays: deque[float] = deque()
        self._stream_cuts: deque[int] = deque()

        created = int(time.time())
        self._models_body = orjson.dumps(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": created, "owned_by": "fake"}
                    for m in models
                ],
            }
        )
        self._handlers: dict[str, Callable[[Any, int], _JsonReply | _StreamReply]] = {
            "chat/completions": self._chat_completions,
            "completions": self._completions,
            "embeddings": self._embeddings,
            "audio/transcriptions": self._transcriptions,
            "models": self._models,
        }

    # ---------------------------------------------------------------- accounting API

    @property
    def calls(self) -> list[RecordedCall]:
        """A snapshot of the recorded calls, oldest first."""
        with self._lock:
            return list(self._calls)

    @property
    def total_calls(self) -> int:
        """Requests served since the app was created (not cleared by ``reset()``)."""
        with self._lock:
            return self._counter

    def calls_to(self, path_suffix: str | None = None) -> list[RecordedCall]:
        """Recorded calls whose path ends with ``path_suffix`` (all calls if ``None``).

        Matching is on whole path segments: ``"chat/completions"`` matches
        ``/v1/chat/completions`` and ``/chat/completions``. Note that ``"completions"``
        therefore also matches chat completions; use ``RecordedCall.endpoint`` for an
        exact endpoint match.
        """
        calls = self.calls
        if path_suffix is None:
            return calls
        suffix = "/" + path_suffix.strip("/")
        return [c for c in calls if c.path.rstrip("/").endswith(suffix)]

    def call_count(self, path_suffix: str | None = None) -> int:
        """Number of recorded calls, optionally filtered like ``calls_to()``."""
        return len(self.calls_to(path_suffix))

    def reset(self) -> None:
        """Clear recorded calls, queued errors and all behaviour settings."""
        with self._lock:
            self._calls.clear()
            self._errors.clear()
            self._delays.clear()
            self._stream_cuts.clear()
        self.delay = self._default_delay
        self.chunk_delay = self._default_chunk_delay
        self.break_stream_after = None
        self.error_mid_stream_after = None

    def queue_error(
        self,
        status: int,
        body: dict[str, Any] | bytes | None = None,
        times: int = 1,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Make the next ``times`` requests (any endpoint) fail with ``status``.

        ``body`` is sent as the JSON body (bytes: as they are, e.g. to send broken JSON);
        by default an OpenAI-style error object with a message derived from the status.
        ``headers`` are added to the response (e.g. ``{"retry-after": "0"}``).
        """
        if isinstance(body, bytes):
            payload = body
        else:
            payload = orjson.dumps(body if body is not None else _default_error_payload(status))
        extra = tuple(
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        )
        with self._lock:
            for _ in range(times):
                self._errors.append(_QueuedError(status, payload, extra))

    def queue_delay(self, seconds: float, times: int = 1) -> None:
        """Make the next ``times`` requests wait ``seconds`` more before answering."""
        with self._lock:
            self._delays.extend([seconds] * times)

    def queue_broken_stream(self, after: int, times: int = 1) -> None:
        """Cut the next ``times`` streamed answers after ``after`` events, as
        ``break_stream_after`` does for every stream (the connection is dropped)."""
        with self._lock:
            self._stream_cuts.extend([after] * times)

    # ---------------------------------------------------------------- ASGI entry point

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._handle_http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._handle_lifespan(receive, send)

    async def _handle_lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_body = await _read_body(receive)
        if raw_body is None:
            return
        method: str = scope["method"]
        path: str = scope["path"]
        endpoint = _endpoint_of(path)
        route = _ROUTES.get(endpoint)

        headers: dict[str, str] | None = None
        if self.record_calls or (route is not None and route[1] == "form"):
            headers = {}
            for key, value in scope["headers"]:
                name = key.decode("latin-1").lower()
                text = value.decode("latin-1")
                headers[name] = f"{headers[name]}, {text}" if name in headers else text

        body: Any = None
        parse_error: str | None = None
        if route is not None and route[0] == method:
            if route[1] == "json":
                try:
                    body = orjson.loads(raw_body)
                except orjson.JSONDecodeError as exc:
                    parse_error = f"Invalid JSON body: {exc}"
                else:
                    if not isinstance(body, dict):
                        parse_error = "The request body must be a JSON object."
            elif route[1] == "form":
                assert headers is not None
                try:
                    body = _parse_multipart(raw_body, headers.get("content-type", ""))
                except Exception as exc:  # any parser failure is the client's fault here
                    parse_error = f"Invalid multipart/form-data body: {exc}"

        with self._lock:
            self._counter += 1
            n = self._counter
            if self.record_calls:
                assert headers is not None
                query = scope.get("query_string", b"").decode("latin-1")
                call = RecordedCall(n, method, path, headers, body, raw_body, query=query)
                self._calls.append(call)
            queued = self._errors.popleft() if self._errors else None
            extra_delay = self._delays.popleft() if self._delays else 0.0

        delay = self.delay + extra_delay
        if delay > 0:
            await asyncio.sleep(delay)

        if queued is not None:
            await self._send_bytes(send, n, queued.status, queued.body, _JSON_CT, queued.headers)
            return
        if route is None:
            await self._send_error(
                send,
                n,
                404,
                f"Unknown path: {method} {path}",
                "invalid_request_error",
                code="unknown_url",
            )
            return
        if route[0] != method:
            await self._send_error(
                send,
                n,
                405,
                f"Method {method} not allowed for {path}",
                "invalid_request_error",
                code="method_not_allowed",
            )
            return
        if parse_error is not None:
            await self._send_error(send, n, 400, parse_error, "invalid_request_error")
            return

        try:
            reply = self._handlers[endpoint](body, n)
        except _BadRequest as exc:
            await self._send_error(
                send, n, 400, exc.message, "invalid_request_error", param=exc.param
            )
            return
        if isinstance(reply, _StreamReply):
            await self._send_stream(send, n, reply.events)
        else:
            await self._send_bytes(send, n, reply.status, reply.body, reply.content_type)

    # ---------------------------------------------------------------- senders

    @staticmethod
    async def _send_bytes(
        send: Send,
        n: int,
        status: int,
        body: bytes,
        content_type: bytes,
        extra_headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"x-fake-call", str(n).encode()),
            *extra_headers,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _send_error(
        self,
        send: Send,
        n: int,
        status: int,
        message: str,
        type_: str,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        body = orjson.dumps(_error_payload(message, type_, param, code))
        await self._send_bytes(send, n, status, body, _JSON_CT)

    async def _send_stream(self, send: Send, n: int, events: list[bytes]) -> None:
        # Decide up front where (if anywhere) the stream is cut short; a cut exactly at
        # len(events) means "all chunks, but no [DONE]".
        cut, mode = len(events), ""
        with self._lock:
            queued_cut = self._stream_cuts.popleft() if self._stream_cuts else None
        for after, name in (
            (queued_cut, "break"),
            (self.break_stream_after, "break"),
            (self.error_mid_stream_after, "error"),
        ):
            if after is not None and 0 <= after <= cut and not (mode and after == cut):
                cut, mode = after, name
        chunk_delay = self.chunk_delay

        headers = [*_SSE_HEADERS_BASE, (b"x-fake-call", str(n).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for index in range(cut):
            if index and chunk_delay > 0:
                await asyncio.sleep(chunk_delay)
            await send({"type": "http.response.body", "body": events[index], "more_body": True})

        if mode == "break":
            # Returning without a final body message makes uvicorn close the connection
            # mid-response, so the client sees a truncated chunked body and no [DONE].
            return
        if cut and chunk_delay > 0:
            await asyncio.sleep(chunk_delay)
        if mode == "error":
            await send(
                {"type": "http.response.body", "body": _MID_STREAM_ERROR_EVENT, "more_body": True}
            )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send({"type": "http.response.body", "body": _DONE_EVENT, "more_body": False})

    # ---------------------------------------------------------------- endpoint handlers

    def _chat_completions(self, body: dict[str, Any], n: int) -> _JsonReply | _StreamReply:
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise _BadRequest("'messages' must be a list of messages.", "messages")
        model = str(body.get("model") or DEFAULT_MODEL)
        content = "echo: " + _last_user_text(messages)
        words = _split_words(content)
        prompt_tokens = sum(
            _count_words(_content_text(m.get("content"))) for m in messages if isinstance(m, dict)
        )
        usage = _usage(prompt_tokens, len(words))
        completion_id = f"chatcmpl-fake-{n}"
        created = int(time.time())

        if not body.get("stream"):
            return _JsonReply(
                200,
                orjson.dumps(
                    {
                        "id": completion_id,
                        "object": "chat.completion",
                        "created": created,
                        "model": model,
                        "system_fingerprint": SYSTEM_FINGERPRINT,
                        "choices": [
                            {
                                "index": 0,
                                "message": {
                                    "role": "assistant",
                                    "content": content,
                                    "refusal": None,
                                },
                                "logprobs": None,
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": usage,
                    }
                ),
            )

        include_usage = _include_usage(body)

        def chunk(delta: dict[str, Any], finish_reason: str | None) -> bytes:
            obj: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": [
                    {
                        "index": 0,
                        "delta": delta,
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                ],
            }
            if include_usage:
                obj["usage"] = None
            return _sse(obj)

        events = [chunk({"role": "assistant", "content": ""}, None)]
        events.extend(chunk({"content": word}, None) for word in words)
        events.append(chunk({}, "stop"))
        if include_usage:
            events.append(
                _sse(
                    {
                        "id": completion_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "system_fingerprint": SYSTEM_FINGERPRINT,
                        "choices": [],
                        "usage": usage,
                    }
                )
            )
        return _StreamReply(events)

    def _completions(self, body: dict[str, Any], n: int) -> _JsonReply | _StreamReply:
        prompt = body.get("prompt")
        if isinstance(prompt, list):
            if prompt and all(isinstance(t, int) for t in prompt):
                prompt = " ".join(str(t) for t in prompt)  # a single token list
            else:
                prompt = prompt[0] if prompt else ""
                if isinstance(prompt, list):
                    prompt = " ".join(str(t) for t in prompt)
        if not isinstance(prompt, str):
            raise _BadRequest("'prompt' must be a string or a list of strings.", "prompt")
        model = str(body.get("model") or DEFAULT_MODEL)
        text = "echo: " + prompt
        words = _split_words(text)
        usage = _usage(_count_words(prompt), len(words))
        completion_id = f"cmpl-fake-{n}"
        created = int(time.time())

        if not body.get("stream"):
            return _JsonReply(
                200,
                orjson.dumps(
                    {
                        "id": completion_id,
                        "object": "text_completion",
                        "created": created,
                        "model": model,
                        "system_fingerprint": SYSTEM_FINGERPRINT,
                        "choices": [
                            {"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}
                        ],
                        "usage": usage,
                    }
                ),
            )

        include_usage = _include_usage(body)

        def chunk(piece: str, finish_reason: str | None) -> bytes:
            obj: dict[str, Any] = {
                "id": completion_id,
                "object": "text_completion",
                "created": created,
                "model": model,
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": [
                    {"text": piece, "index": 0, "logprobs": None, "finish_reason": finish_reason}
                ],
            }
            if include_usage:
                obj["usage"] = None
            return _sse(obj)

        events = [chunk(word, None) for word in words]
        events.append(chunk("", "stop"))
        if include_usage:
            events.append(
                _sse(
                    {
                        "id": completion_id,
                        "object": "text_completion",
                        "created": created,
                        "model": model,
                        "system_fingerprint": SYSTEM_FINGERPRINT,
                        "choices": [],
                        "usage": usage,
                    }
                )
            )
        return _StreamReply(events)

    def _embeddings(self, body: dict[str, Any], n: int) -> _JsonReply:
        raw_input = body.get("input")
        items: list[Any]
        if isinstance(raw_input, str):
            items = [raw_input]
        elif (
            isinstance(raw_input, list) and raw_input and all(isinstance(t, int) for t in raw_input)
        ):
            items = [raw_input]  # a single token list
        elif (
            isinstance(raw_input, list)
            and raw_input
            and all(
                isinstance(t, str) or (isinstance(t, list) and all(isinstance(x, int) for x in t))
                for t in raw_input
            )
        ):
            items = raw_input
        else:
            raise _BadRequest(
                "'input' must be a string, a list of strings, or token lists.", "input"
            )
        dims = body.get("dimensions")
        dimensions = dims if isinstance(dims, int) and dims > 0 else EMBEDDING_DIMENSIONS
        as_base64 = body.get("encoding_format") == "base64"

        data = []
        tokens = 0
        for index, item in enumerate(items):
            vector = expected_embedding(item, dimensions)
            embedding: Any = (
                base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode("ascii")
                if as_base64
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
            tokens += _count_words(item) if isinstance(item, str) else len(item)
        return _JsonReply(
            200,
            orjson.dumps(
                {
                    "object": "list",
                    "data": data,
                    "model": str(body.get("model") or DEFAULT_MODEL),
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                }
            ),
        )

    def _transcriptions(self, body: dict[str, Any], n: int) -> _JsonReply:
        upload = body.get("file")
        if not isinstance(upload, UploadedFile):
            raise _BadRequest("'file' must be an uploaded file.", "file")
        digest = hashlib.sha256(upload.data).hexdigest()[:12]
        text = f"transcript of {len(upload.data)} bytes sha256 {digest}"
        if body.get("response_format") in ("text", "srt", "vtt"):
            return _JsonReply(200, text.encode(), _TEXT_CT)
        return _JsonReply(200, orjson.dumps({"text": text}))

    def _models(self, body: Any, n: int) -> _JsonReply:
        return _JsonReply(200, self._models_body)


# --------------------------------------------------------------------------- server


class FakeUpstreamServer:
    """Runs a ``FakeOpenAI`` app under uvicorn in a daemon thread.

    Use as a context manager (or call ``start()``/``stop()``). Each start picks a fresh
    free port; an instance can be started again after it was stopped.
    """

    def __init__(
        self,
        app: FakeOpenAI | None = None,
        *,
        host: str = "127.0.0.1",
        startup_timeout: float = 10.0,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.app = app if app is not None else FakeOpenAI()
        self.host = host
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port the server listens on (only while running)."""
        if self._port is None:
            raise RuntimeError("FakeUpstreamServer is not running")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://host:port`` without the ``/v1`` prefix."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://host:port/v1``, suitable as an OpenAI SDK ``base_url``."""
        return self.base_url + "/v1"

    @property
    def running(self) -> bool:
        """Whether the server thread is up and serving."""
        return self._thread is not None and self._thread.is_alive()

    def reset(self) -> None:
        """Shortcut for ``self.app.reset()``."""
        self.app.reset()

    def start(self) -> FakeUpstreamServer:
        """Start serving and block until the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("FakeUpstreamServer is already running")
        attempts = 3
        for _ in range(attempts):
            port = free_port()
            config = uvicorn.Config(
                self.app,
                host=self.host,
                port=port,
                log_level="warning",
                lifespan="off",
                # Bounded so stop() cannot hang on a stream a test left open.
                timeout_graceful_shutdown=1,
            )
            server = uvicorn.Server(config)
            thread = threading.Thread(target=server.run, name=f"fake-upstream-{port}", daemon=True)
            thread.start()
            deadline = time.monotonic() + self.startup_timeout
            while not server.started:
                if not thread.is_alive():
                    break  # startup failed, most likely the port was taken meanwhile
                if time.monotonic() > deadline:
                    server.should_exit = True
                    server.force_exit = True
                    thread.join(self.shutdown_timeout)
                    raise RuntimeError(
                        f"fake upstream did not start on {self.host}:{port} "
                        f"within {self.startup_timeout:.1f}s"
                    )
                time.sleep(0.005)
            if server.started:
                self._server, self._thread, self._port = server, thread, port
                return self
        raise RuntimeError(
            f"fake upstream failed to start after {attempts} attempts "
            "(uvicorn exited during startup; see its log above)"
        )

    def stop(self) -> None:
        """Ask uvicorn to exit and join its thread (bounded)."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(self.shutdown_timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(self.shutdown_timeout)
        self._server = self._thread = self._port = None
        if thread.is_alive():
            raise RuntimeError("fake upstream thread did not stop in time")

    def __enter__(self) -> FakeUpstreamServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    """Serve the fake in the foreground (used by the benchmarks)."""
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible upstream server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999)
    parser.add_argument(
        "--delay", type=float, default=0.0, help="seconds to wait before answering each request"
    )
    parser.add_argument(
        "--chunk-delay", type=float, default=0.0, help="seconds to wait between stream chunks"
    )
    args = parser.parse_args(argv)
    app = FakeOpenAI(delay=args.delay, chunk_delay=args.chunk_delay, record_calls=False)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="off",
    )


if __name__ == "__main__":
    main()
