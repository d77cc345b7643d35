"""Calls to the upstream provider through one shared ``httpx.AsyncClient``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from llmcache_tui.proxy.errors import ProxyError
from llmcache_tui.proxy.routing import Deployment

# Upstream response headers worth passing on to the client.
_PASSED_HEADERS = ("content-type", "x-request-id", "openai-processing-ms", "retry-after")
_PASSED_PREFIXES = ("x-ratelimit-",)


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    """A complete upstream answer."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]

    @property
    def content_type(self) -> str:
        for name, value in self.headers:
            if name == b"content-type":
                return value.decode("latin-1")
        return ""


class UpstreamClient:
    """One pooled HTTP client for every upstream call of the process."""

    def __init__(self, default_timeout: float) -> None:
        self.default_timeout = default_timeout
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(default_timeout, connect=10.0),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def post_json(
        self, deployment: Deployment, path: str, body: dict[str, Any]
    ) -> UpstreamReply:
        request = self._request(deployment, path, content=orjson.dumps(body), json_body=True)
        response = await self._send(deployment, request, stream=False)
        return UpstreamReply(response.status_code, response.content, passed_headers(response))

    async def post_form(
        self,
        deployment: Deployment,
        path: str,
        fields: list[tuple[str, str]],
        file: tuple[str, bytes, str],
    ) -> UpstreamReply:
        request = self._http.build_request(
            "POST",
            deployment.url(path),
            data=_form_dict(fields),
            files={"file": file},
            headers=deployment.auth_headers(),
            timeout=self._timeout(deployment),
        )
        response = await self._send(deployment, request, stream=False)
        return UpstreamReply(response.status_code, response.content, passed_headers(response))

    async def open_stream(
        self, deployment: Deployment, path: str, body: dict[str, Any]
    ) -> httpx.Response:
        """Start a streamed call; the caller must ``aclose()`` the response."""
        request = self._request(deployment, path, content=orjson.dumps(body), json_body=True)
        return await self._send(deployment, request, stream=True)

    def _request(
        self, deployment: Deployment, path: str, *, content: bytes, json_body: bool
    ) -> httpx.Request:
        headers = deployment.auth_headers()
        if json_body:
            headers["Content-Type"] = "application/json"
        return self._http.build_request(
            "POST",
            deployment.url(path),
            content=content,
            headers=headers,
            timeout=self._timeout(deployment),
        )

    def _timeout(self, deployment: Deployment) -> httpx.Timeout:
        return httpx.Timeout(deployment.timeout or self.default_timeout, connect=10.0)

    async def _send(
        self, deployment: Deployment, request: httpx.Request, *, stream: bool
    ) -> httpx.Response:
        host = urlsplit(str(request.url)).netloc or "upstream"
        try:
            return await self._http.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            limit = deployment.timeout or self.default_timeout
            reason = f"{type(exc).__name__}, limit {limit:g}s"
            raise ProxyError(504, f"upstream {host} did not answer in time ({reason})") from exc
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise ProxyError(502, f"upstream {host} is unreachable: {reason}") from exc


def passed_headers(response: httpx.Response) -> list[tuple[bytes, bytes]]:
    """The upstream headers a client should still see through the proxy."""
    kept = []
    for name, value in response.headers.raw:
        lowered = name.lower()
        text = lowered.decode("latin-1")
        if text in _PASSED_HEADERS or text.startswith(_PASSED_PREFIXES):
            kept.append((lowered, value))
    return kept


def _form_dict(fields: list[tuple[str, str]]) -> dict[str, str | list[str]]:
    form: dict[str, str | list[str]] = {}
    for name, value in fields:
        existing = form.get(name)
        if existing is None:
            form[name] = value
        elif isinstance(existing, list):
            existing.append(value)
        else:
            form[name] = [existing, value]
    return form
