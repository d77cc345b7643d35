"""The cached path of one LLM request, from a parsed request to the response sent.

decide -> key -> lookup -> hit: answer from the entry; miss: (lead or follow an identical
call in flight) -> call the deployment -> store a complete successful answer -> respond.
The cache is read in one place (:meth:`Pipeline.answer`, ``cache.lookup``) and written in
one place (:meth:`Pipeline._store`, ``cache.store``), for plain and streamed answers alike.
Cache failures are absorbed by :class:`ResponseCache`; they never fail a request.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from llmcache_tui.cache.entry import CacheEntry
from llmcache_tui.cache.keys import storage_key
from llmcache_tui.cache.policy import BYPASS, NO_CONTROLS, Decision, decide
from llmcache_tui.cache.service import ResponseCache
from llmcache_tui.config import Settings
from llmcache_tui.proxy.asgi import Headers, Receive, Send, send_response
from llmcache_tui.proxy.coalesce import Flight
from llmcache_tui.proxy.entries import entry_for, stream_entry
from llmcache_tui.proxy.errors import ProxyError
from llmcache_tui.proxy.followers import Coalescer
from llmcache_tui.proxy.forward import Forwarder, deployment_for_request
from llmcache_tui.proxy.metrics import ProxyMetrics
from llmcache_tui.proxy.relay import relay_stream
from llmcache_tui.proxy.replies import (
    HIT_STATUS,
    SEMANTIC_HIT_STATUS,
    cache_status,
    semantic_headers,
    send_entry,
)
from llmcache_tui.proxy.request import LLM_PATHS, LLMRequest
from llmcache_tui.proxy.routing import Deployment, Router
from llmcache_tui.proxy.stats import ProxyStats
from llmcache_tui.proxy.streaming import StreamRecorder
from llmcache_tui.proxy.upstream import UpstreamReply


class Pipeline:
    """Answers parsed LLM requests: from the cache when it may, else from the deployment.

    Returns each request's outcome for the counters: hit, semantic_hit, miss, collapsed,
    cache_error, bypass or upstream_error (a ProxyError raised out of :meth:`answer` is
    the caller's to send).
    """

    def __init__(
        self,
        settings: Settings,
        router: Router,
        cache: ResponseCache | None,
        stats: ProxyStats,
        *,
        backend_problem: str | None = None,
        clock: Callable[[], float] = time.time,
        metrics: ProxyMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.router = router
        self.cache = cache
        self.stats = stats
        self.backend_problem = backend_problem
        self.clock = clock
        self.metrics = metrics
        self.forwarder = Forwarder(settings.request_timeout, metrics)
        self.stream_replay = settings.cache.params.stream_replay if settings.cache else "instant"
        self.coalesce = settings.cache.params.coalesce if settings.cache else False
        self.coalescer = Coalescer(settings.request_timeout, stats, self.stream_replay)
        # Most requests carry no cache controls: decide once per route, not per request.
        self._plain_decisions = {
            route: decide(settings.cache, route, NO_CONTROLS) for route in LLM_PATHS
        }

    async def aclose(self) -> None:
        await self.forwarder.aclose()

    async def answer(
        self, request: LLMRequest, receive: Receive, send: Send, tenant: str | None = None
    ) -> str:
        """``tenant``: the caller's, under tenant isolation; its entries are its own."""
        deployment = deployment_for_request(self.router, request)
        cache = self.cache
        decision = BYPASS
        if cache is not None:
            decision = self._decision(request)
            if tenant is not None:
                decision = dataclasses.replace(decision, tenant=tenant)
        headers: Headers = []
        key = ""
        fwd = decision.skip_reason or "miss"
        detail = "cache-unavailable" if self.backend_problem else None
        if decision.uses_cache:
            # The coalescing key too: two tenants' identical misses never share an answer.
            key = storage_key(request.cache_digest(), decision.namespace, decision.tenant)
            headers.append((b"x-litellm-cache-key", key.encode()))
        if cache is not None and decision.read:
            # The lookup: the cache's one read on the request path. Awaited here, and the
            # hit sent from here, so a hit costs no layer more than it must.
            query = None
            if cache.semantic is not None:
                query = request.semantic_query(decision.namespace, decision.tenant)
            found = await cache.lookup(key, request.route, request.model, decision.max_age, query)
            if self.metrics is not None:
                self.metrics.looked_up(request.model, decision.namespace, found, deployment.model)
            if found.entry is not None:
                status = HIT_STATUS
                if found.similarity is not None:
                    headers = semantic_headers(found.key or key, found.similarity)
                    status = SEMANTIC_HIT_STATUS
                await self._send_hit(
                    send, found.entry, found.body, found.age, request, [*headers, status]
                )
                return "hit" if found.similarity is None else "semantic_hit"
            fwd = found.fwd
            detail = "cache-error" if found.failed else None
            if found.semantic_failed:
                detail = "semantic-error"
        flight = None
        if decision.read and self.coalesce:
            joined = await self.coalescer.join(key, deployment, request, send, headers, fwd, detail)
            if isinstance(joined, str):
                return joined  # answered from another request's upstream call
            flight = joined
        try:
            if request.stream:
                headers.append(cache_status(fwd, False, detail))
                outcome = await self._stream(
                    deployment, request, receive, send, headers, decision, key, flight
                )
                return _counted(outcome, detail)
            reply, stored = await self._fetch(deployment, request, decision, key, flight)
        except ProxyError as exc:
            if flight is not None:
                flight.fail(exc)
            raise
        finally:
            if flight is not None:
                self.coalescer.land(key, flight)
        if stored is False:
            detail = "cache-error"
        headers.append(cache_status(fwd, bool(stored), detail))
        await send_response(send, reply.status, reply.body, [*reply.headers, *headers])
        if reply.status >= 400:
            return "upstream_error"
        return _counted("miss" if decision.read else "bypass", detail)

    def _decision(self, request: LLMRequest) -> Decision:
        if request.controls is NO_CONTROLS:
            return self._plain_decisions[request.route]
        return decide(self.settings.cache, request.route, request.controls)

    async def _send_hit(
        self,
        send: Send,
        entry: CacheEntry,
        body: bytes,
        age: float,
        request: LLMRequest,
        headers: Headers,
    ) -> None:
        headers.append((b"age", str(int(age)).encode()))
        await send_entry(send, entry, body, request, headers, self.stream_replay)
        tokens = entry.usage.get("total_tokens") if entry.usage else None
        if isinstance(tokens, int):
            self.stats.tokens_saved += tokens

    async def _fetch(
        self,
        deployment: Deployment,
        request: LLMRequest,
        decision: Decision,
        key: str,
        flight: Flight | None,
    ) -> tuple[UpstreamReply, bool | None]:
        """Call the deployment; store a complete successful answer when allowed.

        Also returns what :meth:`_store` said (None: nothing to store, or not allowed).
        """
        reply = await self.forwarder.call(deployment, request)
        entry = None
        if reply.status == 200 and (self._writes(decision) or flight is not None):
            entry = entry_for(request, reply, self.clock())
        if flight is not None:
            flight.finish(entry=entry, reply=reply)
        stored = None if entry is None else await self._store(key, entry, decision, request)
        return reply, stored

    async def _stream(
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
        """Relay a streamed answer; store it, and share it with followers, if it completes."""
        source = await self.forwarder.open_stream(deployment, request)
        entry: CacheEntry | None = None

        async def keep(recorder: StreamRecorder) -> None:
            # Before the client is sent [DONE]: the OpenAI SDK hangs up on reading it,
            # and asked again right away, the answer must already be stored.
            nonlocal entry
            entry = stream_entry(request, recorder, self.clock())
            await self._store(key, entry, decision, request)

        record = self._writes(decision) or flight is not None
        relayed = await relay_stream(
            source, request, receive, send, headers, flight, keep if record else None
        )
        if not relayed:
            return "upstream_error"
        if flight is not None and entry is not None:
            flight.finish(entry=entry)
        return "miss" if decision.read else "bypass"

    def _writes(self, decision: Decision) -> bool:
        return self.cache is not None and decision.write

    async def _store(
        self, key: str, entry: CacheEntry, decision: Decision, request: LLMRequest
    ) -> bool | None:
        """Store ``entry`` if the decision allows: True if stored, False if the write
        failed, None if it was not to be stored.

        The cache's one write on the request path, for plain and streamed answers; with
        a semantic tier, the request's vector is stored beside the entry.
        """
        cache = self.cache
        if cache is None or not decision.write:
            return None
        query = None
        if cache.semantic is not None:
            query = request.semantic_query(decision.namespace, decision.tenant)
        stored = await cache.store(key, entry, decision.ttl, query)
        self.stats.stored += stored
        return stored


def _counted(outcome: str, detail: str | None) -> str:
    """The outcome to count: a miss the cache (or its semantic tier) failed on is a
    cache_error, so a dashboard can tell it from a plain miss."""
    if outcome == "miss" and detail in ("cache-error", "semantic-error"):
        return "cache_error"
    return outcome
