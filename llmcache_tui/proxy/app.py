"""The proxy's ASGI app: routing, auth, and the cached request path.

Hot path: read body -> parse -> take the ``cache`` controls out -> decide -> key ->
lookup -> hit: answer from the entry; miss: forward upstream, store a complete successful
answer, respond. Cache failures are absorbed by :class:`ResponseCache`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from llmcache_tui.cache.backends import CacheBackend, build_backend_or_problem
from llmcache_tui.cache.entry import CacheEntry, prompt_preview
from llmcache_tui.cache.keys import UnwritableBody, request_digest, storage_key
from llmcache_tui.cache.policy import (
    BYPASS,
    NO_CONTROLS,
    CacheControls,
    Decision,
    InvalidControls,
    decide,
    parse_controls,
)
from llmcache_tui.cache.service import ResponseCache
from llmcache_tui.config import Settings
from llmcache_tui.proxy import admin
from llmcache_tui.proxy.asgi import (
    JSON_CONTENT,
    BodyTooLarge,
    ClientDisconnected,
    Headers,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    received_at,
    send_json,
    send_response,
)
from llmcache_tui.proxy.coalesce import MAX_LEADERS, Flight
from llmcache_tui.proxy.errors import ProxyError, echo, error_body
from llmcache_tui.proxy.mock import mock_reply, mock_stream
from llmcache_tui.proxy.multipart import MultipartError, parse_multipart
from llmcache_tui.proxy.routing import Deployment, Router, UnsafeModelName
from llmcache_tui.proxy.stats import ProxyStats
from llmcache_tui.proxy.streaming import (
    StreamRecorder,
    assemble,
    chunks_from_completion,
    replay_events,
    sse_event,
)
from llmcache_tui.proxy.upstream import (
    UpstreamBroken,
    UpstreamClient,
    UpstreamReply,
    UpstreamStream,
)
from llmcache_tui.proxy.validation import (
    body_headers,
    check_encoding,
    check_field_name,
    check_part_type,
    check_prompt,
    json_media,
    unsupported_media,
)

log = logging.getLogger("llmcache_tui.proxy")

Handler = Callable[["ProxyApp", Scope, Receive, Send], Awaitable[None]]

# route kind -> its path (without /v1), here and upstream
LLM_PATHS = {
    "chat": "chat/completions",
    "text_completion": "completions",
    "embedding": "embeddings",
    "transcription": "audio/transcriptions",
}
LLM_ROUTES = {f"/{path}": route for route, path in LLM_PATHS.items()}
# Reachable without the master key, so orchestrators can probe liveness.
PUBLIC_PATHS = frozenset({"/health/liveliness", "/health/liveness"})
SSE_CONTENT = (b"content-type", b"text/event-stream")
HIT_STATUS = (b"cache-status", b"llmcache; hit")
MIB = 1024 * 1024
RECENT_REQUESTS = 512  # parsed request bodies kept for byte-identical repeats
RECENT_MAX_BYTES = 8 * 1024


@dataclass(slots=True)
class LLMRequest:
    """One parsed LLM call: what to forward, what identifies it, and its cache controls."""

    route: str
    model: str
    body: dict[str, Any]
    controls: CacheControls
    stream: bool = False
    form: list[tuple[str, str]] = field(default_factory=list)
    file: tuple[str, bytes, str] | None = None
    digest: str | None = None  # computed once, on first use

    def cache_digest(self) -> str:
        if self.digest is None:
            material = self.body
            if self.file is not None:
                material = {**material, "file_sha256": hashlib.sha256(self.file[1]).hexdigest()}
            try:
                self.digest = request_digest(self.route, material)
            except UnwritableBody as exc:
                raise ProxyError(400, str(exc)) from None
        return self.digest


class ProxyApp:
    """The caching proxy as one ASGI application.

    ``backend`` may be shared with the terminal app; it is closed at shutdown only when
    this app built it (``owns_backend``).
    """

    def __init__(
        self,
        settings: Settings,
        backend: CacheBackend | None = None,
        *,
        backend_problem: str | None = None,
        owns_backend: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.router = Router(settings.model_list)
        self.backend = backend
        self.cache = ResponseCache(backend, clock) if backend is not None else None
        self.backend_problem = backend_problem
        self.owns_backend = owns_backend
        self.clock = clock
        self.stats = ProxyStats()
        self.stream_replay = settings.cache.params.stream_replay if settings.cache else "instant"
        self._upstream: UpstreamClient | None = None
        self._inflight: dict[str, Flight] = {}
        self._recent: dict[tuple[str, bytes], LLMRequest] = {}
        self.coalesce = settings.cache.params.coalesce if settings.cache else False
        # Most requests carry no cache controls: decide once per route, not per request.
        self._plain_decisions = {
            route: decide(settings.cache, route, NO_CONTROLS) for route in LLM_PATHS
        }
        self._master_key = settings.master_key.encode() if settings.master_key else None
        self._routes: dict[str, tuple[str, Handler | None]] = {
            **{path: ("POST", None) for path in LLM_ROUTES},  # None: the LLM path below
            **admin.ROUTES,
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> ProxyApp:
        """Build the app and its own backend; a backend that cannot start leaves caching off."""
        backend = problem = None
        if settings.cache is not None:
            backend, problem = build_backend_or_problem(settings.cache)
            if problem:
                log.warning("caching is off: %s", problem)
        return cls(settings, backend, backend_problem=problem, owns_backend=True)

    @property
    def upstream(self) -> UpstreamClient:
        if self._upstream is None:
            self._upstream = UpstreamClient(self.settings.request_timeout)
        return self._upstream

    async def startup(self) -> None:
        _ = self.upstream

    async def shutdown(self) -> None:
        if self._upstream is not None:
            await self._upstream.aclose()
            self._upstream = None
        if self.owns_backend and self.backend is not None:
            await self.backend.close()

    # -- ASGI --------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path.startswith("/v1/"):
            path = path[3:]
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        found = self._routes.get(path)
        if found is None:
            await send_json(send, 404, error_body(404, f"no route {echo(scope['path'])}"))
            return
        method, handler = found
        if scope["method"] != method:
            message = f"{echo(scope['path'])} accepts {method}, not {scope['method']}"
            await send_json(send, 405, error_body(405, message), [(b"allow", method.encode())])
            return
        if path not in PUBLIC_PATHS and not self._authorized(scope):
            message = "missing or invalid API key: send 'Authorization: Bearer <master_key>'"
            await send_json(send, 401, error_body(401, message, code="invalid_api_key"))
            return
        try:
            if handler is None:
                await self.handle_llm(LLM_ROUTES[path], scope, receive, send)
            else:
                await handler(self, scope, receive, send)
        except ClientDisconnected:
            return
        except Exception:
            # A bug must still answer in OpenAI's shape, without a traceback to the client.
            log.exception("unexpected error on %s", scope["path"])
            # If the response had started, the server refuses this and closes the connection.
            with contextlib.suppress(Exception):
                await send_json(send, 500, error_body(500, "internal error in llmcache-tui"))

    def _authorized(self, scope: Scope) -> bool:
        key = self._master_key
        if key is None:
            return True
        given = header(scope, b"authorization")
        if given is None:
            given = header(scope, b"api-key")
            if given is None:
                return False
        else:
            # "Bearer", "bearer", "BEARER": the scheme is case-insensitive (RFC 9110 11.1),
            # and one or more spaces separate it from the token; the key itself is not.
            scheme, _, given = given.partition(b" ")
            if scheme.lower() != b"bearer":
                return False
        # Whitespace around a field value is not part of it (RFC 9110 5.5); the HTTP
        # parser leaves trailing whitespace in.
        return hmac.compare_digest(given.strip(b" \t"), key)

    # -- LLM calls -----------------------------------------------------------------------
    async def handle_llm(self, route: str, scope: Scope, receive: Receive, send: Send) -> None:
        started = received_at(scope)
        outcome = "client_error"
        try:
            if route == "transcription":
                request = await self._parse_form(route, scope, receive)
            else:
                request = await self._parse_json(route, scope, receive)
            outcome = await self._answer(request, receive, send)
        except ProxyError as exc:
            outcome = "upstream_error" if exc.status >= 500 else "client_error"
            await send_json(send, exc.status, exc.body(), exc.headers)
        finally:
            self.stats.record(outcome, time.perf_counter() - started)

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        try:
            return await read_body(scope, receive, self.settings.max_request_bytes)
        except BodyTooLarge:
            limit = self.settings.max_request_bytes
            size = f"{limit / MIB:g} MB" if limit >= MIB else f"{limit} bytes"
            raise ProxyError(
                413,
                f"request body is larger than the {size} limit"
                " (general_settings.max_request_size_mb)",
            ) from None

    async def _parse_json(self, route: str, scope: Scope, receive: Receive) -> LLMRequest:
        raw = await self._read(scope, receive)
        content_type, encoding = body_headers(scope)
        check_encoding(encoding)
        form_encoded = json_media(content_type)
        # Byte-identical bodies parse to the same request: repeats (the cache's business)
        # skip parsing, checking and hashing. Parsed requests are never changed after this.
        known = self._recent.get((route, raw))
        if known is not None:
            return known
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if form_encoded:
                raise unsupported_media("form-encoded body", "a JSON body") from None
            raise ProxyError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ProxyError(400, "request body must be a JSON object")
        controls = _controls(body.pop("cache", None))
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ProxyError(400, "missing required parameter 'model' (a string)", param="model")
        stream = body.get("stream", False)
        if stream is not None and not isinstance(stream, bool):
            raise ProxyError(400, "'stream' must be true or false", param="stream")
        check_prompt(route, body)
        request = LLMRequest(route, model, body, controls, stream=bool(stream))
        if len(raw) <= RECENT_MAX_BYTES:
            if len(self._recent) >= RECENT_REQUESTS:
                del self._recent[next(iter(self._recent))]  # oldest first
            self._recent[(route, raw)] = request
        return request

    async def _parse_form(self, route: str, scope: Scope, receive: Receive) -> LLMRequest:
        raw = await self._read(scope, receive)
        content_type, encoding = body_headers(scope)
        check_encoding(encoding)
        try:
            parts = parse_multipart(content_type or b"", raw)
        except MultipartError as exc:
            raise ProxyError(400, str(exc)) from None
        files = [part for part in parts if part.filename is not None and part.name == "file"]
        if not files:
            raise ProxyError(400, "missing required file field 'file'", param="file")
        fields = [
            (part.name, part.data.decode("utf-8", "replace"))
            for part in parts
            if part.filename is None
        ]
        for name, _ in fields:
            check_field_name(name)
        controls = _controls(_form_controls(fields))
        fields = [(name, value) for name, value in fields if not _is_cache_field(name)]
        model = next((value for name, value in fields if name == "model"), "")
        if not model:
            raise ProxyError(400, "missing required field 'model'", param="model")
        upload = files[0]
        check_part_type(upload.content_type or "")
        file = (upload.filename or "audio", bytes(upload.data), upload.content_type or "")
        body = {"model": model, "fields": sorted(fields), "file_name": file[0]}
        return LLMRequest(route, model, body, controls, form=fields, file=file)

    def _deployment(self, model: str) -> Deployment:
        try:
            deployment = self.router.resolve(model)
        except UnsafeModelName as exc:
            raise ProxyError(400, str(exc), param="model") from None
        if deployment is None:
            known = ", ".join(self.router.names) or "none configured"
            raise ProxyError(
                400,
                f"model {echo(model)} is not in model_list (models: {known})",
                param="model",
                code="model_not_found",
            )
        if not deployment.supported:
            raise ProxyError(
                400,
                f"model {echo(model)} routes to provider {deployment.provider!r}, which"
                " llmcache-tui does not call; use an OpenAI-compatible deployment"
                " (openai/..., azure/..., or an api_base) or mock_response",
                param="model",
            )
        if not deployment.api_base and deployment.provider != "mock":
            raise ProxyError(502, f"model {echo(model)} has no api_base configured")
        return deployment

    async def _answer(self, request: LLMRequest, receive: Receive, send: Send) -> str:
        deployment = self._deployment(request.model)
        cache = self.cache
        decision = BYPASS
        if cache is not None:
            decision = self._decision(request)
        headers: Headers = []
        key = ""
        fwd = decision.skip_reason or "miss"
        detail = "cache-unavailable" if self.backend_problem else None
        if decision.uses_cache:
            key = storage_key(request.cache_digest(), decision.namespace)
            headers.append((b"x-litellm-cache-key", key.encode()))
        if cache is not None and decision.read:
            found = await cache.lookup(key, request.route, request.model, decision.max_age)
            if found.entry is not None:
                await self._send_hit(send, found.entry, found.body, found.age, request, headers)
                return "hit"
            fwd = found.fwd
            detail = "cache-error" if found.failed else None
        flight = None
        if decision.read and self.coalesce:
            joined = await self._join(key, deployment, request, send, headers, fwd, detail)
            if isinstance(joined, str):
                return joined  # answered from another request's upstream call
            flight = joined
        try:
            if request.stream:
                headers.append(_cache_status(fwd, False, detail))
                return await self._relay_stream(
                    deployment, request, receive, send, headers, decision, key, flight
                )
            reply, stored = await self._fetch(deployment, request, decision, key, flight)
        except ProxyError as exc:
            if flight is not None:
                flight.fail(exc)
            raise
        finally:
            if flight is not None:
                flight.fail()  # no effect once finished; frees followers otherwise
                if self._inflight.get(key) is flight:  # a follower may lead a new one
                    del self._inflight[key]
        if stored is False:
            detail = "cache-error"
        headers.append(_cache_status(fwd, bool(stored), detail))
        await send_response(send, reply.status, reply.body, [*reply.headers, *headers])
        if reply.status >= 400:
            return "upstream_error"
        return "miss" if decision.read else "bypass"

    def _decision(self, request: LLMRequest) -> Decision:
        if request.controls is NO_CONTROLS:
            return self._plain_decisions[request.route]
        return decide(self.settings.cache, request.route, request.controls)

    async def _fetch(
        self,
        deployment: Deployment,
        request: LLMRequest,
        decision: Decision,
        key: str,
        flight: Flight | None,
    ) -> tuple[UpstreamReply, bool | None]:
        """Call upstream; store a complete successful answer when allowed.

        Also returns what :meth:`_store` said (None: nothing to store, or not allowed).
        """
        reply = await self._call(deployment, request)
        entry = None
        if reply.status == 200 and (self._writes(decision) or flight is not None):
            entry = self._entry_for(request, reply)
        if flight is not None:
            flight.finish(entry=entry, reply=reply)
        stored = None if entry is None else await self._store(key, entry, decision)
        return reply, stored

    def _writes(self, decision: Decision) -> bool:
        return self.cache is not None and decision.write

    async def _store(self, key: str, entry: CacheEntry, decision: Decision) -> bool | None:
        """Store ``entry`` if the decision allows: True if stored, False if the write
        failed, None if it was not to be stored."""
        if self.cache is None or not decision.write:
            return None
        stored = await self.cache.store(key, entry, decision.ttl)
        self.stats.stored += stored
        return stored

    async def _join(
        self,
        key: str,
        deployment: Deployment,
        request: LLMRequest,
        send: Send,
        headers: Headers,
        fwd: str,
        detail: str | None,
    ) -> Flight | str:
        """Lead the upstream call for ``key``, or be answered from the one in flight.

        Returns the :class:`Flight` this request now leads, or, once it has been answered
        from another request's call, the outcome.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (deployment.timeout or self.settings.request_timeout)
        attempt = 1
        while True:
            flight = self._inflight.get(key)
            if flight is None or flight.failed:  # failed: its leader is on its way out
                flight = Flight(
                    streamed=request.stream,
                    body=request.body,
                    deployment=deployment,
                    attempt=attempt,
                    detail=detail,
                )
                self._inflight[key] = flight
                return flight
            outcome = await self._follow(
                flight, request, deployment, send, headers, fwd, detail, deadline
            )
            if outcome is not None:
                self.stats.coalesced += 1
                return outcome
            attempt = flight.attempt + 1

    async def _follow(
        self,
        flight: Flight,
        request: LLMRequest,
        deployment: Deployment,
        send: Send,
        headers: Headers,
        fwd: str,
        detail: str | None,
        deadline: float,
    ) -> str | None:
        """Answer from another request's upstream call and return the outcome; None if
        that call failed before anything was sent here and this request should lead (or
        follow) the next one."""
        # The leader's lookup may have failed where this one's did not: say so as well.
        status = _cache_status(fwd, False, detail or flight.detail, collapsed=True)
        headers = [*headers, status]
        flight.followers += 1
        loop = asyncio.get_running_loop()
        if request.stream and flight.streamed:
            outcome = await self._follow_stream(flight, send, [*headers, SSE_CONTENT], deadline)
            if outcome is not None:
                return outcome
        else:
            await flight.wait_finished(max(0.0, deadline - loop.time()))
            if flight.entry is not None:
                if flight.reply is not None and not request.stream:
                    reply = flight.reply
                    await send_response(send, reply.status, reply.body, [*reply.headers, *headers])
                else:
                    await self._send_entry(send, flight.entry, None, request, headers)
                return "miss"
        if not flight.finished:
            # As long as this request's own call would have been allowed: it timed out.
            limit = deployment.timeout or self.settings.request_timeout
            message = (
                f"upstream did not answer in time (limit {limit:g}s) the identical"
                " request this one waited for"
            )
            await send_json(send, 504, error_body(504, message), headers)
            return "upstream_error"
        return await self._after_failure(flight, request, deployment, send, headers, deadline)

    async def _after_failure(
        self,
        flight: Flight,
        request: LLMRequest,
        deployment: Deployment,
        send: Send,
        headers: Headers,
        deadline: float,
    ) -> str | None:
        """Pass on a failed leader's answer where retrying would not help; None: retry."""
        reply = flight.final_reply(request.body, deployment)
        retry = flight.attempt < MAX_LEADERS and asyncio.get_running_loop().time() < deadline
        if reply is None and retry:
            return None
        reply = reply or flight.reply
        if reply is not None and (reply.status >= 400 or flight.asked_as(request.body, deployment)):
            await send_response(send, reply.status, reply.body, [*reply.headers, *headers])
            return "upstream_error" if reply.status >= 400 else "miss"
        error = flight.error or ProxyError(
            502, f"upstream gave no complete answer ({flight.attempt} calls in a row)"
        )
        await send_json(send, error.status, error.body(), headers)
        return "upstream_error"

    async def _follow_stream(
        self, flight: Flight, send: Send, headers: Headers, deadline: float
    ) -> str | None:
        """Relay the leader's stream bytes as they arrive, from the first one.

        None if nothing was sent: the leader failed first, or ``deadline`` passed.
        """
        loop = asyncio.get_running_loop()
        sent = 0
        while True:
            for piece in flight.pieces[sent:]:
                if sent == 0:
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                sent += 1
            if flight.finished:
                if sent == 0:
                    return None
                outcome = "miss"
                if flight.failed:
                    outcome = "upstream_error"
                    event = _error_event("the upstream stream this request shared broke off")
                    await send({"type": "http.response.body", "body": event, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return outcome
            # Once under way, the leader's own read timeout bounds the stream.
            timeout = self.settings.request_timeout if sent else deadline - loop.time()
            if not await flight.wait(max(0.0, timeout)) and not (
                sent or flight.pieces or flight.finished  # it may have come meanwhile
            ):
                return None

    async def _send_hit(
        self,
        send: Send,
        entry: CacheEntry,
        body: bytes,
        age: float,
        request: LLMRequest,
        headers: Headers,
    ) -> None:
        headers += [HIT_STATUS, (b"age", str(int(age)).encode())]
        await self._send_entry(send, entry, body, request, headers)
        tokens = entry.usage.get("total_tokens") if entry.usage else None
        if isinstance(tokens, int):
            self.stats.tokens_saved += tokens

    def _send_entry(
        self,
        send: Send,
        entry: CacheEntry,
        body: bytes | None,
        request: LLMRequest,
        headers: Headers,
    ) -> Awaitable[None]:
        """Answer from an entry, as a stream or whole (``body``: its bytes, if at hand).

        Returns the sending coroutine itself: on the hit path, no extra layer.
        """
        if request.stream:
            return self._replay_stream(send, entry, request, headers)
        content_type = (
            JSON_CONTENT
            if entry.media_type is None
            else (b"content-type", entry.media_type.encode("latin-1"))
        )
        body = entry.response_bytes() if body is None else body
        return send_response(send, 200, body, [content_type, *headers])

    async def _replay_stream(
        self, send: Send, entry: CacheEntry, request: LLMRequest, headers: Headers
    ) -> None:
        """Answer a streamed request from an entry, stored streamed or not.

        ``headers`` carry the cache status; the content type is added here.
        """
        chunks = entry.chunks or chunks_from_completion(entry.route, entry.response)
        original = self.stream_replay == "original" and entry.chunks is not None
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

    async def _call(self, deployment: Deployment, request: LLMRequest) -> UpstreamReply:
        if deployment.provider == "mock":
            document = mock_reply(
                request.route, request.model, request.body, deployment.mock_response
            )
            return UpstreamReply(200, orjson.dumps(document), [JSON_CONTENT])
        if request.file is not None:
            fields = [
                (name, deployment.model if name == "model" else value)
                for name, value in request.form
            ]
            return await self.upstream.post_form(
                deployment, LLM_PATHS[request.route], fields, request.file
            )
        body = {**request.body, "model": deployment.model}
        return await self.upstream.post_json(deployment, LLM_PATHS[request.route], body)

    def _entry_for(self, request: LLMRequest, reply: UpstreamReply) -> CacheEntry | None:
        """The entry to store for a successful reply, or None if it is not complete."""
        media_type = None
        response: Any
        if reply.content_type.startswith("application/json"):
            try:
                response = orjson.loads(reply.body)
            except orjson.JSONDecodeError:
                return None
            if not _complete(request.route, response):
                return None
        elif request.route == "transcription":
            media_type = reply.content_type or "text/plain"
            response = reply.body.decode("utf-8", "replace")
        else:
            return None
        return self._new_entry(request, response, media_type=media_type)

    def _new_entry(self, request: LLMRequest, response: Any, **extra: Any) -> CacheEntry:
        """An entry for ``request`` answered by ``response``, stamped now."""
        usage = response.get("usage") if isinstance(response, dict) else None
        return CacheEntry(
            response=response,
            route=request.route,
            model=request.model,
            prompt_preview=prompt_preview(request.body),
            created_at=self.clock(),
            ttl=request.controls.ttl,
            usage=usage if isinstance(usage, dict) else None,
            **extra,
        )

    async def _relay_stream(
        self,
        deployment: Deployment,
        request: LLMRequest,
        receive: Receive,
        send: Send,
        headers: Headers,
        decision: Decision,
        key: str,
        flight: Flight | None,
    ) -> str:
        """Relay a stream chunk by chunk, recording it on the side to store if it completes.

        Nothing is stored when the client goes away before ``[DONE]``, the upstream breaks
        off or errors, or the stream lacks its finish reason or ``[DONE]``.
        """
        if deployment.provider == "mock":
            mock = deployment.mock_response
            source: UpstreamStream | MockStream = MockStream(
                mock_stream(request.route, request.model, request.body, mock)
            )
        else:
            body = {**request.body, "model": deployment.model}
            source = await self.upstream.open_stream(deployment, LLM_PATHS[request.route], body)
        try:
            if source.status != 200:
                content = await source.read()
                if flight is not None:
                    flight.finish(
                        entry=None, reply=UpstreamReply(source.status, content, source.headers)
                    )
                await send_response(send, source.status, content, [*source.headers, *headers])
                return "upstream_error"
            start_headers = [*source.headers, *headers]
            await send({"type": "http.response.start", "status": 200, "headers": start_headers})
            recorder = StreamRecorder() if self._writes(decision) or flight else None
            entry: CacheEntry | None = None

            async def keep(recorder: StreamRecorder) -> None:
                # Before the client is sent [DONE]: the OpenAI SDK hangs up on reading it,
                # and asked again right away, the answer must already be stored.
                nonlocal entry
                entry = self._stream_entry(request, recorder)
                await self._store(key, entry, decision)

            await self._relay(source, request, receive, send, recorder, flight, keep)
            if flight is not None and entry is not None:
                flight.finish(entry=entry)
            return "miss" if decision.read else "bypass"
        finally:
            await source.close()

    async def _relay(
        self,
        source: UpstreamStream | MockStream,
        request: LLMRequest,
        receive: Receive,
        send: Send,
        recorder: StreamRecorder | None,
        flight: Flight | None,
        on_complete: Callable[[StreamRecorder], Awaitable[None]] | None,
    ) -> None:
        """Forward the stream's bytes as they come, until the end or the client goes away.

        ``on_complete`` runs once, as soon as the recorder holds the whole stream and
        before the piece that completed it (the one with ``[DONE]``) is sent on.
        """
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
            event = _error_event(f"upstream stream broke off: {exc}")
            await send({"type": "http.response.body", "body": event, "more_body": True})
        finally:
            watcher.cancel()
        await send({"type": "http.response.body", "body": b""})

    def _stream_entry(self, request: LLMRequest, recorder: StreamRecorder) -> CacheEntry:
        return self._new_entry(
            request,
            assemble(request.route, recorder.chunks),
            chunks=recorder.chunks,
            chunk_offsets=[round(offset, 4) for offset in recorder.offsets],
        )


def _error_event(message: str) -> bytes:
    """An OpenAI-style error as a server-sent event, for a stream that cannot go on."""
    return sse_event(error_body(502, message))


def _controls(raw: Any) -> CacheControls:
    try:
        return parse_controls(raw)
    except InvalidControls as exc:
        raise ProxyError(400, str(exc), param=exc.param) from None


def _is_cache_field(name: str) -> bool:
    return name == "cache" or (name.startswith("cache[") and name.endswith("]"))


def _form_controls(fields: list[tuple[str, str]]) -> Any:
    """The raw ``cache`` controls of a form upload.

    Either one field ``cache`` holding a JSON object, or the ``cache[<control>]=<value>``
    fields the OpenAI SDK sends for ``extra_body={"cache": {...}}`` on multipart calls.
    """
    text = next((value for name, value in fields if name == "cache"), None)
    raw = _json_field(text) if text else None
    bracketed = {
        name[len("cache[") : -1]: _form_scalar(name[len("cache[") : -1], value)
        for name, value in fields
        if name.startswith("cache[") and name.endswith("]")
    }
    if not bracketed:
        return raw
    if raw is None:
        return bracketed
    return {**raw, **bracketed} if isinstance(raw, dict) else raw


def _form_scalar(control: str, text: str) -> Any:
    """A form value as the JSON value it stood for (the SDK writes true/false and numbers)."""
    if control in ("no-cache", "no-store", "use-cache"):
        return {"true": True, "false": False}.get(text, text)
    if control in ("ttl", "s-maxage"):
        # Read as a JSON number, not with float(): that also takes "nan", "inf" and
        # "1_000", which no JSON body can carry. Anything else stays text for the error.
        try:
            number = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
        return number if type(number) in (int, float) else text
    return text


def _json_field(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProxyError(400, "form field 'cache' must be a JSON object", param="cache") from None


def _cache_status(
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


def _complete(route: str, response: Any) -> bool:
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


async def _wait_for_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    """Set ``gone`` when the client disconnects (the request body was already read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


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
