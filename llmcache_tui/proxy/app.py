"""The proxy's ASGI app: routing, auth, lifespan, and the entry to the LLM routes.

An LLM call is read and parsed by :mod:`~llmcache_tui.proxy.request` and answered by
:mod:`~llmcache_tui.proxy.pipeline`, which holds the cached path (decide, key, lookup,
hit or miss, store).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from llmcache_tui.cache.backends import CacheBackend, build_backend_or_problem
from llmcache_tui.cache.service import ResponseCache
from llmcache_tui.config import Settings
from llmcache_tui.proxy import admin, models_routes
from llmcache_tui.proxy.asgi import (
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    received_at,
    send_json,
)
from llmcache_tui.proxy.auth import CALLER, Authenticator, caller_of
from llmcache_tui.proxy.errors import ProxyError, echo, error_body
from llmcache_tui.proxy.events import CLIENT_CLOSED, RequestListener, ResponseWatch
from llmcache_tui.proxy.exposition import new_registry
from llmcache_tui.proxy.metrics import ProxyMetrics
from llmcache_tui.proxy.pipeline import Pipeline
from llmcache_tui.proxy.request import LLM_PATHS, RequestReader
from llmcache_tui.proxy.routing import Router
from llmcache_tui.proxy.stats import ProxyStats

if TYPE_CHECKING:
    from llmcache_tui.cache.semantic.tier import SemanticTier

log = logging.getLogger("llmcache_tui.proxy")

Handler = Callable[["ProxyApp", Scope, Receive, Send], Awaitable[None]]

LLM_ROUTES = {f"/{path}": route for route, path in LLM_PATHS.items()}
# Reachable without the master key, as on LiteLLM, so orchestrators' probes need no secret;
# they tell only that the process runs and which cache type it has. ``/health`` needs it.
PUBLIC_PATHS = frozenset({"/health/liveliness", "/health/liveness", "/health/readiness"})


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
    ``request_listeners`` are called with a :class:`~llmcache_tui.proxy.events.RequestEvent`
    after each LLM request (on the event loop: they must return at once).
    ``metrics=False`` records no latencies, lookups or savings (and no backend timings),
    to measure what recording them costs; ``/metrics`` then has the plain counters only.
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
        metrics: bool = True,
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
        self.request_listeners: list[RequestListener] = []
        self.metrics: ProxyMetrics | None = None
        if metrics:
            namespace = settings.cache.namespace if settings.cache else None
            self.metrics = ProxyMetrics(settings.model_list, namespace)
        elif backend is not None:
            for part in backend.timed_parts():
                part.timings = None
        self.metrics_registry = new_registry(self)
        # Bound once: the request path calls it on every request, hits included.
        self._observe_request = self.metrics.requests.observe if self.metrics else None
        self.requests = RequestReader(settings.max_request_bytes)
        self.pipeline = Pipeline(
            settings,
            self.router,
            self.cache,
            self.stats,
            backend_problem=backend_problem,
            clock=clock,
            metrics=self.metrics,
        )
        self.auth = Authenticator(settings)
        self._routes: dict[str, tuple[str, Handler | None]] = {
            **{path: ("POST", None) for path in LLM_ROUTES},  # None: the LLM path below
            **admin.ROUTES,
            **models_routes.ROUTES,
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
        if found is None and path.startswith(models_routes.MODEL_PREFIX):
            found = ("GET", models_routes.model)
        if found is None:
            await send_json(send, 404, error_body(404, f"no route {echo(scope['path'])}"))
            return
        method, handler = found
        if scope["method"] != method:
            message = f"{echo(scope['path'])} accepts {method}, not {scope['method']}"
            await send_json(send, 405, error_body(405, message), [(b"allow", method.encode())])
            return
        if path not in PUBLIC_PATHS:
            try:
                scope[CALLER] = self.auth.identify(scope)
            except ProxyError as exc:
                await send_json(send, exc.status, exc.body())
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

    # -- LLM calls -----------------------------------------------------------------------
    async def handle_llm(self, route: str, scope: Scope, receive: Receive, send: Send) -> None:
        started = received_at(scope)
        outcome = "client_error"
        tenant = caller_of(scope).tenant
        # Responses are watched only for listeners: without one, the hit path is unchanged.
        watch = ResponseWatch(send) if self.request_listeners else None
        if watch is not None:
            send = watch.send
        model = ""
        try:
            if route == "transcription":
                request = await self.requests.read_form(route, scope, receive)
            else:
                request = await self.requests.read_json(route, scope, receive, tenant)
            model = request.model
            outcome = await self.pipeline.answer(request, receive, send, tenant)
        except ProxyError as exc:
            outcome = "upstream_error" if exc.status >= 500 else "client_error"
            await send_json(send, exc.status, exc.body(), exc.headers)
        except ClientDisconnected:
            if watch is not None and not watch.status:
                watch.status = CLIENT_CLOSED
            raise
        except Exception:
            if watch is not None and not watch.status:
                watch.status = 500  # what the caller answers
            raise
        finally:
            elapsed = time.perf_counter() - started
            self.stats.record(outcome, elapsed)
            observe = self._observe_request
            if observe is not None:
                observe((route, outcome), elapsed)
            if watch is not None:
                self._tell(watch, route, model, elapsed)

    def _tell(self, watch: ResponseWatch, route: str, model: str, elapsed: float) -> None:
        event = watch.event(self.clock(), route, model, elapsed)
        for listener in list(self.request_listeners):
            try:
                listener(event)
            except Exception:  # a listener's bug must not fail the request
                log.exception("request listener %r failed", listener)
