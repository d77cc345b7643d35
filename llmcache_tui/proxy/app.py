"""The proxy's ASGI app: routing, auth, lifespan, and the entry to the LLM routes.

An LLM call is read and parsed by :mod:`~llmcache_tui.proxy.request` and answered by
:mod:`~llmcache_tui.proxy.pipeline`, which holds the cached path (decide, key, lookup,
hit or miss, store).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from llmcache_tui.cache.backends import CacheBackend, build_backend_or_problem
from llmcache_tui.cache.service import ResponseCache
from llmcache_tui.config import Settings
from llmcache_tui.proxy import admin
from llmcache_tui.proxy.asgi import (
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    header,
    received_at,
    send_json,
)
from llmcache_tui.proxy.errors import ProxyError, echo, error_body
from llmcache_tui.proxy.pipeline import Pipeline
from llmcache_tui.proxy.request import LLM_PATHS, RequestReader
from llmcache_tui.proxy.routing import Router
from llmcache_tui.proxy.stats import ProxyStats

if TYPE_CHECKING:
    from llmcache_tui.cache.semantic.tier import SemanticTier

log = logging.getLogger("llmcache_tui.proxy")

Handler = Callable[["ProxyApp", Scope, Receive, Send], Awaitable[None]]

LLM_ROUTES = {f"/{path}": route for route, path in LLM_PATHS.items()}
# Reachable without the master key, so orchestrators can probe liveness.
PUBLIC_PATHS = frozenset({"/health/liveliness", "/health/liveness"})


def semantic_tier_for(
    settings: Settings, backend: CacheBackend | None
) -> tuple[SemanticTier | None, str | None]:
    """The semantic tier a semantic cache type asks for, or why it runs without one.

    Without a backend there are no entries to serve, so no tier either.
    """
    if settings.cache is None or not settings.cache.semantic or backend is None:
        return None, None
    from llmcache_tui.cache.semantic.build import build_semantic_or_problem

    tier, problem = build_semantic_or_problem(settings, backend)
    if problem:
        log.warning("semantic caching is off, exact caching goes on: %s", problem)
    return tier, problem


class ProxyApp:
    """The caching proxy as one ASGI application.

    ``backend`` may be shared with the terminal app; it is closed at shutdown only when
    this app built it (``owns_backend``). ``semantic`` is the semantic tier of a semantic
    cache type, closed at shutdown unless ``owns_semantic`` is False (the terminal app's,
    shared with its probe); ``semantic_problem`` says why a semantic type runs without one.
    """

    def __init__(
        self,
        settings: Settings,
        backend: CacheBackend | None = None,
        *,
        backend_problem: str | None = None,
        owns_backend: bool = False,
        clock: Callable[[], float] = time.time,
        semantic: SemanticTier | None = None,
        semantic_problem: str | None = None,
        owns_semantic: bool = True,
    ) -> None:
        self.settings = settings
        self.router = Router(settings.model_list)
        self.backend = backend
        self.cache = None
        if backend is not None:
            key_format = settings.cache.params.key_format if settings.cache else "llmcache"
            self.cache = ResponseCache(backend, clock, semantic=semantic, key_format=key_format)
        self.semantic_problem = semantic_problem
        self.backend_problem = backend_problem
        self.owns_backend = owns_backend
        self.owns_semantic = owns_semantic
        if backend is not None and semantic is not None and owns_semantic:
            # Deleted entries take their vectors along, whoever deletes them (the terminal
            # app registers its own tier the same way).
            backend.add_delete_listener(semantic.forget_deleted)
        self.clock = clock
        self.stats = ProxyStats()
        self.requests = RequestReader(settings.max_request_bytes)
        self.pipeline = Pipeline(
            settings,
            self.router,
            self.cache,
            self.stats,
            backend_problem=backend_problem,
            clock=clock,
        )
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
        semantic, semantic_problem = semantic_tier_for(settings, backend)
        return cls(
            settings,
            backend,
            backend_problem=problem,
            owns_backend=True,
            semantic=semantic,
            semantic_problem=semantic_problem,
        )

    async def startup(self) -> None:
        _ = self.pipeline.forwarder.upstream  # inside the running loop, as aiohttp requires
        if self.cache is not None and self.cache.semantic is not None:
            self.cache.semantic.warm_up()

    async def shutdown(self) -> None:
        await self.pipeline.aclose()
        if self.cache is not None and self.owns_semantic:
            await self.cache.aclose()
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
                request = await self.requests.read_form(route, scope, receive)
            else:
                request = await self.requests.read_json(route, scope, receive)
            outcome = await self.pipeline.answer(request, receive, send)
        except ProxyError as exc:
            outcome = "upstream_error" if exc.status >= 500 else "client_error"
            await send_json(send, exc.status, exc.body(), exc.headers)
        finally:
            self.stats.record(outcome, time.perf_counter() - started)
