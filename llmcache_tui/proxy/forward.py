"""Where a request that the cache does not answer goes: its deployment, and the call to it.

A deployment is called over HTTP (OpenAI-compatible or Azure upstreams), or answered in
process (``mock_response``, and the built-in models of :mod:`.local_models`). Either way
the answer has the shape of an upstream one, so the rest of the proxy does not tell them
apart.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING

import orjson

from llmcache_tui.proxy import local_models
from llmcache_tui.proxy.asgi import JSON_CONTENT
from llmcache_tui.proxy.errors import ProxyError, echo
from llmcache_tui.proxy.mock import MockStream, mock_reply, mock_stream
from llmcache_tui.proxy.request import LLM_PATHS, LLMRequest
from llmcache_tui.proxy.routing import Deployment, Router, UnsafeModelName
from llmcache_tui.proxy.upstream import UpstreamClient, UpstreamReply, UpstreamStream

if TYPE_CHECKING:
    from llmcache_tui.proxy.metrics import ProxyMetrics


def deployment_for_request(router: Router, request: LLMRequest) -> Deployment:
    """The deployment that answers ``request``; a ProxyError if there is none it can use."""
    model = request.model
    try:
        deployment = router.resolve(model)
    except UnsafeModelName as exc:
        raise ProxyError(400, str(exc), param="model") from None
    if deployment is None:
        known = ", ".join(router.names) or "none configured"
        raise ProxyError(
            400,
            f"model {echo(model)} is not in model_list (models: {known})",
            param="model",
        )
    if not deployment.supported:
        raise ProxyError(
            400,
            f"model {echo(model)} routes to provider {deployment.provider!r}, which"
            " llmcache-tui does not call; use an OpenAI-compatible deployment"
            " (openai/..., azure/..., or an api_base), mock_response, or a built-in"
            " model (local/...)",
            param="model",
        )
    if deployment.provider == local_models.PROVIDER:
        local_models.check_local(deployment, request)
        return deployment
    if not deployment.api_base and deployment.provider != "mock":
        raise ProxyError(502, f"model {echo(model)} has no api_base configured")
    return deployment


class Forwarder:
    """Calls deployments for the proxy, through one upstream client created on first use.

    With ``metrics``, each call's latency is recorded by model group, failed calls too.
    """

    def __init__(self, request_timeout: float, metrics: ProxyMetrics | None = None) -> None:
        self.request_timeout = request_timeout
        self.metrics = metrics
        self._upstream: UpstreamClient | None = None

    @property
    def upstream(self) -> UpstreamClient:
        if self._upstream is None:
            self._upstream = UpstreamClient(self.request_timeout)
        return self._upstream

    async def aclose(self) -> None:
        if self._upstream is not None:
            await self._upstream.aclose()
            self._upstream = None

    async def call(self, deployment: Deployment, request: LLMRequest) -> UpstreamReply:
        """The deployment's whole answer to a request that is not streamed."""
        if self.metrics is None:
            return await self._call(deployment, request)
        started = perf_counter()
        try:
            return await self._call(deployment, request)
        finally:
            self.metrics.upstream_call(request.model, perf_counter() - started)

    async def _call(self, deployment: Deployment, request: LLMRequest) -> UpstreamReply:
        if deployment.provider == "mock":
            mock = deployment.mock_response
            document = mock_reply(request.route, request.model, request.body, mock)
            return UpstreamReply(200, orjson.dumps(document), [JSON_CONTENT])
        if deployment.provider == local_models.PROVIDER:
            return await local_models.embedding_reply(request)
        path = LLM_PATHS[request.route]
        if request.file is not None:
            fields = [
                (name, deployment.model if name == "model" else value)
                for name, value in request.form
            ]
            return await self.upstream.post_form(deployment, path, fields, request.file)
        body = {**request.body, "model": deployment.model}
        return await self.upstream.post_json(deployment, path, body)

    async def open_stream(
        self, deployment: Deployment, request: LLMRequest
    ) -> UpstreamStream | MockStream:
        """Start the deployment's streamed answer; the caller must ``close()`` it.

        Its latency is recorded up to the response headers: the rest is the answer's
        own pace."""
        if self.metrics is None:
            return await self._open_stream(deployment, request)
        started = perf_counter()
        try:
            return await self._open_stream(deployment, request)
        finally:
            self.metrics.upstream_call(request.model, perf_counter() - started)

    async def _open_stream(
        self, deployment: Deployment, request: LLMRequest
    ) -> UpstreamStream | MockStream:
        if deployment.provider == "mock":
            mock = deployment.mock_response
            return MockStream(mock_stream(request.route, request.model, request.body, mock))
        body = {**request.body, "model": deployment.model}
        return await self.upstream.open_stream(deployment, LLM_PATHS[request.route], body)
