"""``model_list`` routing: a requested model name to the deployment that answers it."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from llmcache_tui.config import ModelEntry

OPENAI_DEFAULT_BASE = "https://api.openai.com/v1"
AZURE_DEFAULT_VERSION = "2024-02-01"
# Wildcard-matched names remembered (at most this many, each at most this long): clients
# may send any number of names, of any length, to a wildcard.
MATCHED_NAMES = 4096
MATCHED_NAME_CHARS = 256
# What a deployment name taken from a client's model name may not hold: it becomes one
# URL path segment, and these would leave it (``/``, ``\``, ``..``), end the path (``?``,
# ``#``) or be decoded into one of those by the HTTP client (``%2e%2e``, ``%2f``).
UNSAFE_SEGMENT_CHARS = frozenset("/\\?#%")
DOT_SEGMENTS = frozenset({"", ".", ".."})
SHOWN_NAME_CHARS = 80
# Providers that speak the OpenAI HTTP API as it is (LiteLLM's prefixes for them).
OPENAI_COMPATIBLE = frozenset(
    {"openai", "custom_openai", "text-completion-openai", "hosted_vllm", "lm_studio", "openai_like"}
)


class UnsafeModelName(ValueError):
    """A requested model name that would change the upstream URL beyond its own segment."""


@dataclass(frozen=True, slots=True)
class Deployment:
    """Where one request goes: a provider, its upstream model id and credentials."""

    provider: str  # "openai", "azure", "mock", "local", or an unsupported provider's name
    model: str
    api_base: str | None
    api_key: str | None = None
    api_version: str | None = None
    mock_response: Any = None
    timeout: float | None = None

    @property
    def supported(self) -> bool:
        return self.provider in ("openai", "azure", "mock", "local")

    def url(self, path: str) -> str:
        base = (self.api_base or "").rstrip("/")
        if self.provider == "azure":
            version = self.api_version or AZURE_DEFAULT_VERSION
            deployment = quote(self.model, safe="")
            return f"{base}/openai/deployments/{deployment}/{path}?api-version={quote(version)}"
        return f"{base}/{path}"

    def auth_headers(self) -> dict[str, str]:
        if not self.api_key:
            return {}
        if self.provider == "azure":
            return {"api-key": self.api_key}
        return {"Authorization": f"Bearer {self.api_key}"}


class Router:
    """Picks a deployment for a model name; several deployments of one name take turns.

    Exact names win over wildcard entries (``*`` or ``prefix/*``); among wildcards the
    longest pattern wins, as in LiteLLM.
    """

    def __init__(self, entries: list[ModelEntry]) -> None:
        grouped: dict[str, list[ModelEntry]] = {}
        for entry in entries:
            grouped.setdefault(entry.model_name, []).append(entry)
        self._exact: dict[str, Iterator[Deployment]] = {}
        self._wildcards: list[tuple[re.Pattern[str], list[ModelEntry]]] = []
        # Names matched by a wildcard, resolved once: this runs on every request.
        self._matched: dict[str, Iterator[Deployment]] = {}
        for name, group in grouped.items():
            if "*" in name:
                self._wildcards.append((_wildcard_regex(name), group))
            else:
                deployments = [deployment_for(entry, name) for entry in group]
                self._exact[name] = itertools.cycle(deployments)
        self._wildcards.sort(key=lambda item: -len(item[0].pattern))
        self.names = list(grouped)
        #: the names a client can ask for as they are: every name that is not a pattern
        self.models = [name for name in grouped if "*" not in name]

    def serves(self, requested: str) -> bool:
        """Whether ``requested`` names a model here, exactly or through a pattern.

        Unlike :meth:`resolve`, it neither remembers the name nor picks a deployment."""
        if requested in self._exact:
            return True
        return any(regex.fullmatch(requested) for regex, _ in self._wildcards)

    def resolve(self, requested: str) -> Deployment | None:
        exact = self._exact.get(requested) or self._matched.get(requested)
        if exact is not None:
            return next(exact)
        for regex, group in self._wildcards:
            match = regex.fullmatch(requested)
            if match:
                deployments = [deployment_for(e, requested, match.group(1)) for e in group]
                cycle = itertools.cycle(deployments)
                if len(requested) <= MATCHED_NAME_CHARS:  # longer ones start at the first
                    if len(self._matched) >= MATCHED_NAMES:
                        self._matched.clear()  # clients inventing names must not grow memory
                    self._matched[requested] = cycle
                return next(cycle)
        return None


def deployment_for(entry: ModelEntry, requested: str, wildcard: str | None = None) -> Deployment:
    """Build the deployment for one ``model_list`` entry (``wildcard``: what ``*`` matched)."""
    params = entry.litellm_params
    target = params.model
    if wildcard is not None and "*" in target:
        target = requested if target == "*" else target.replace("*", wildcard, 1)
    provider, _, model = target.partition("/")
    if not model:
        provider, model = "openai", target  # a bare name is an OpenAI model, as in LiteLLM
    if provider == "azure" and wildcard is not None and params.mock_response is None:
        _check_segment(model, requested)
    if params.mock_response is not None:
        provider = "mock"
    elif provider in OPENAI_COMPATIBLE:
        provider = "openai"
    api_base = params.api_base
    api_key = params.api_key
    if provider == "openai":
        api_base = api_base or os.environ.get("OPENAI_API_BASE") or OPENAI_DEFAULT_BASE
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
    elif provider == "azure":
        api_base = api_base or os.environ.get("AZURE_API_BASE")
        api_key = api_key or os.environ.get("AZURE_API_KEY")
    return Deployment(
        provider=provider,
        model=model,
        api_base=api_base,
        api_key=api_key,
        api_version=params.api_version or os.environ.get("AZURE_API_VERSION"),
        mock_response=params.mock_response,
        timeout=params.timeout,
    )


def _check_segment(deployment: str, requested: str) -> None:
    """Refuse a client-chosen Azure deployment name that is not one plain path segment."""
    if (
        deployment in DOT_SEGMENTS
        or not deployment.isprintable()
        or not UNSAFE_SEGMENT_CHARS.isdisjoint(deployment)
    ):
        shown = requested if len(requested) <= SHOWN_NAME_CHARS else requested[:SHOWN_NAME_CHARS]
        more = "" if shown is requested else f"... ({len(requested)} characters)"
        raise UnsafeModelName(
            f"model {shown!r}{more} does not name an Azure deployment: the part after the"
            " prefix must be a name without '/', '\\', '?', '#', '%' or control characters,"
            " and not '.' or '..'"
        )


def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    head, _, tail = pattern.partition("*")
    return re.compile(re.escape(head) + "(.*)" + re.escape(tail.replace("*", "")), re.DOTALL)
