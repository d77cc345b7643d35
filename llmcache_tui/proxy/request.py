"""An LLM call as the proxy sees it: read, parsed and checked once, with its cache controls.

JSON routes and the multipart transcription route both end in an :class:`LLMRequest`:
what to forward upstream, what identifies the call for the cache, and the ``cache``
controls taken out of the body. Byte-identical JSON bodies are parsed once and the
parsed request reused; a parsed request is never changed afterwards.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from llmcache_tui.cache.keys import UnwritableBody, request_digest
from llmcache_tui.cache.litellm_keys import embedding_digests, litellm_digest
from llmcache_tui.cache.policy import CacheControls, InvalidControls, parse_controls
from llmcache_tui.cache.semantic.scope import SemanticQuery, semantic_query
from llmcache_tui.proxy.asgi import BodyTooLarge, Receive, Scope, read_body
from llmcache_tui.proxy.errors import ProxyError
from llmcache_tui.proxy.multipart import MultipartError, parse_multipart
from llmcache_tui.proxy.validation import (
    body_headers,
    check_encoding,
    check_field_name,
    check_part_type,
    check_prompt,
    json_media,
    unsupported_media,
)

# route kind -> its path (without /v1), here and upstream
LLM_PATHS = {
    "chat": "chat/completions",
    "text_completion": "completions",
    "embedding": "embeddings",
    "transcription": "audio/transcriptions",
}
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
    shared_digests: list[str] | None = None  # LiteLLM's, one per embedding input; once
    # The semantic view per (namespace, tenant), computed once (a repeat reuses its vector).
    semantic: dict[tuple[str | None, str | None], SemanticQuery | None] | None = None

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

    def litellm_digests(self, per_input: bool = True) -> list[str]:
        """The digests LiteLLM's proxy gives this request: one, or one per embedding input
        (unless not ``per_input``: LiteLLM keeps embeddings whole on S3)."""
        if self.shared_digests is None:
            try:
                if self.route == "embedding" and per_input:
                    self.shared_digests = embedding_digests(self.body)
                else:
                    self.shared_digests = [litellm_digest(self.route, self.body)]
            except RecursionError:
                raise ProxyError(400, "request body nests objects and arrays too deeply") from None
        return self.shared_digests

    def semantic_query(
        self, namespace: str | None, tenant: str | None = None
    ) -> SemanticQuery | None:
        """What the semantic tier embeds and the scope it searches; None: exact only."""
        views = self.semantic
        if views is None:
            views = self.semantic = {}
        scope = (namespace, tenant)
        if scope not in views:
            views[scope] = semantic_query(self.route, self.model, self.body, namespace, tenant)
        return views[scope]


class RequestReader:
    """Reads and parses LLM requests, within the body size limit.

    Keeps the most recent small JSON bodies it parsed, so repeats (the cache's business)
    skip parsing, checking and hashing. ``partition`` (the tenant, under tenant isolation)
    keeps those apart too: a repeat answered faster would tell one tenant that another
    sent the same request.
    """

    def __init__(self, max_request_bytes: int) -> None:
        self.max_request_bytes = max_request_bytes
        self._recent: dict[tuple[str, str | None, bytes], LLMRequest] = {}

    async def read_json(
        self, route: str, scope: Scope, receive: Receive, partition: str | None = None
    ) -> LLMRequest:
        raw = await self._read(scope, receive)
        content_type, encoding = body_headers(scope)
        check_encoding(encoding)
        form_encoded = json_media(content_type)
        known = self._recent.get((route, partition, raw))
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
            self._recent[(route, partition, raw)] = request
        return request

    async def read_form(self, route: str, scope: Scope, receive: Receive) -> LLMRequest:
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
        controls = _controls(form_controls(fields))
        fields = [(name, value) for name, value in fields if not _is_cache_field(name)]
        model = next((value for name, value in fields if name == "model"), "")
        if not model:
            raise ProxyError(400, "missing required field 'model'", param="model")
        upload = files[0]
        check_part_type(upload.content_type or "")
        file = (upload.filename or "audio", bytes(upload.data), upload.content_type or "")
        body = {"model": model, "fields": sorted(fields), "file_name": file[0]}
        return LLMRequest(route, model, body, controls, form=fields, file=file)

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        try:
            return await read_body(scope, receive, self.max_request_bytes)
        except BodyTooLarge:
            limit = self.max_request_bytes
            size = f"{limit / MIB:g} MB" if limit >= MIB else f"{limit} bytes"
            raise ProxyError(
                413,
                f"request body is larger than the {size} limit"
                " (general_settings.max_request_size_mb)",
            ) from None


def form_controls(fields: list[tuple[str, str]]) -> Any:
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


def _controls(raw: Any) -> CacheControls:
    try:
        return parse_controls(raw)
    except InvalidControls as exc:
        raise ProxyError(400, str(exc), param=exc.param) from None


def _is_cache_field(name: str) -> bool:
    return name == "cache" or (name.startswith("cache[") and name.endswith("]"))


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
