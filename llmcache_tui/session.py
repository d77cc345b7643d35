"""What the terminal app is connected to: settings, the backend, and the embedded proxy.

The proxy started from the app shares the app's backend object, so with a ``local`` cache
the browser shows the running proxy's own in-memory entries. It shares the semantic tier
too: the session owns it (the probe and the vector browser use it) and embedded Qdrant
opens its directory in one place at a time. Entries deleted through the session's backend
lose their vectors. Records of LiteLLM's own semantic caches are deleted only when the
operator allowed it (``--allow-litellm-writes`` or ``llmcache.allow_litellm_writes``).
Nothing here imports Textual.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from llmcache_tui.cache.backends import CacheBackend, CacheBackendError, build_backend_or_problem
from llmcache_tui.config import Settings, load_settings
from llmcache_tui.proxy.app import ProxyApp, semantic_tier_for
from llmcache_tui.proxy.embedded import EmbeddedProxy

if TYPE_CHECKING:
    from llmcache_tui.cache.semantic.store import VectorStore
    from llmcache_tui.cache.semantic.tier import SemanticTier


class SessionError(Exception):
    """An operation the session refuses, with a reason to show."""


@dataclass(frozen=True, slots=True)
class Health:
    """One look at the backend: reachable or not, how fast, how big."""

    connected: bool
    ping_ms: float | None = None
    entries: int | None = None
    bytes_used: int | None = None
    error: str | None = None
    checked_at: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)  # backend-specific, e.g. Redis INFO


class Session:
    """The settings in use, the backend built from them, and the proxy if it runs."""

    def __init__(
        self, settings: Settings, *, read_only: bool = False, allow_litellm_writes: bool = False
    ) -> None:
        self.settings = settings
        self._read_only_flag = read_only  # --read-only holds whatever config is opened
        self.read_only = read_only or settings.app.read_only
        self._litellm_writes_flag = allow_litellm_writes
        self.allow_litellm_writes = allow_litellm_writes or settings.app.allow_litellm_writes
        self.backend: CacheBackend | None = None
        self.backend_error: str | None = None
        self.proxy: EmbeddedProxy | None = None
        self.proxy_task: asyncio.Task[None] | None = None
        self._semantic: SemanticTier | None = None
        self._semantic_problem: str | None = None
        self._semantic_built = False
        self._build_backend()

    def _build_backend(self) -> None:
        self.backend = None
        self.backend_error = None
        if self.settings.cache is None:
            self.backend_error = "caching is not enabled in this config (litellm_settings.cache)"
            return
        self.backend, self.backend_error = build_backend_or_problem(self.settings.cache)
        if self.backend is not None and self.settings.cache.semantic:
            # Whatever deletes entries (browser, purge, probe), their vectors go with them.
            self.backend.add_delete_listener(self._forget_vectors)

    async def _forget_vectors(self, keys: list[str]) -> None:
        tier, _ = self.semantic_tier()
        if tier is not None:
            await tier.forget_deleted(keys)

    @property
    def semantic_available(self) -> bool:
        """A semantic cache type over a working backend: what the probe needs."""
        cache = self.settings.cache
        return cache is not None and cache.semantic and self.backend is not None

    def semantic_tier(self) -> tuple[SemanticTier | None, str | None]:
        """The session's semantic tier, built on first use, or why there is none.

        Building loads nothing: the embedder loads on its first text, the store opens on
        its first vector.
        """
        if not self._semantic_built:
            self._semantic, self._semantic_problem = semantic_tier_for(self.settings, self.backend)
            self._semantic_built = True
        return self._semantic, self._semantic_problem

    def use_similarity_threshold(self, threshold: float) -> None:
        """Make ``threshold`` the semantic tier's from now on (a value just saved to the
        config): the settings say so, and the tier, shared with the embedded proxy, judges
        its next lookups with it."""
        cache = self.settings.cache
        if cache is None:
            return
        params = cache.params.model_copy(update={"similarity_threshold": threshold})
        raw = dict(self.settings.raw)
        litellm = dict(raw.get("litellm_settings") or {})
        litellm["cache_params"] = {
            **(litellm.get("cache_params") or {}),
            "similarity_threshold": threshold,
        }
        raw["litellm_settings"] = litellm
        self.settings = replace(self.settings, cache=replace(cache, params=params), raw=raw)
        if self._semantic is not None:
            self._semantic.threshold = threshold

    async def vector_store(self) -> VectorStore:
        """The semantic tier's vector store, opened, for browsing; SessionError saying why
        there is none (not a semantic cache type, a missing package, a failing embedder)."""
        from llmcache_tui.cache.semantic.embedder import EmbedderError

        if not self.semantic_available:
            raise SessionError("this cache type keeps no vectors (only the semantic ones do)")
        tier, problem = self.semantic_tier()
        if tier is None:
            raise SessionError(problem or "the semantic cache is not available")
        try:
            return await tier.open_store()
        except (EmbedderError, CacheBackendError) as exc:
            raise SessionError(str(exc)) from None

    @property
    def proxy_running(self) -> bool:
        return self.proxy_task is not None and not self.proxy_task.done()

    def read_only_refusal(self, what: str) -> str:
        """Why ``what`` (``delete``, ``purge``...) is off in read-only mode, for a person."""
        why = "started with --read-only" if self._read_only_flag else "llmcache.read_only is set"
        return f"read-only: {why}; {what} is off"

    async def health(self, *, clock: Callable[[], float] = time.time) -> Health:
        """Ping the backend and read its size; never raises.

        ``clock`` (the app's, injectable for tests) times the ping and stamps the check.
        """
        backend = self.backend
        if backend is None:
            return Health(False, error=self.backend_error, checked_at=clock())
        started = clock()
        try:
            if not await backend.ping():
                return Health(False, error="ping returned a failure", checked_at=clock())
            ping_ms = max(0.0, clock() - started) * 1000
            stats = await backend.stats()
        except CacheBackendError as exc:
            return Health(False, error=str(exc), checked_at=clock())
        return Health(
            True,
            ping_ms,
            stats.entries,
            stats.bytes_used,
            checked_at=clock(),
            details=stats.details,
        )

    async def reconnect(self) -> None:
        """Drop the backend and build it again from the same settings."""
        self._refuse_while_proxy_runs("reconnect")
        await self._close_backend()
        self._build_backend()

    async def open_config(self, path: str) -> None:
        """Switch to another config file; raises ConfigError if it is not usable."""
        self._refuse_while_proxy_runs("open another config")
        settings = load_settings(path)
        await self._close_backend()
        self.settings = settings
        self.read_only = self._read_only_flag or settings.app.read_only
        self.allow_litellm_writes = self._litellm_writes_flag or settings.app.allow_litellm_writes
        self._build_backend()

    def start_proxy(self, host: str, port: int) -> asyncio.Task[None]:
        """Start the proxy over this session's backend on the running loop.

        The returned task ends when the proxy stops, or raises ``ProxyStartError``.
        """
        if self.proxy_running:
            raise SessionError("the proxy is already running")
        semantic, semantic_problem = self.semantic_tier()
        app = ProxyApp(
            self.settings,
            self.backend,
            backend_problem=self.backend_error if self.settings.cache else None,
            semantic=semantic,
            semantic_problem=semantic_problem,
            owns_semantic=False,  # the session's: the probe goes on using it
        )
        self.proxy = EmbeddedProxy(app, host, port)
        self.proxy_task = asyncio.create_task(self.proxy.serve(), name="llmcache-proxy")
        return self.proxy_task

    async def stop_proxy(self) -> None:
        """Stop the proxy and wait for it to finish its open requests."""
        if self.proxy is not None:
            self.proxy.stop()
        task = self.proxy_task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=15)
            except TimeoutError:
                task.cancel()
            except Exception:
                pass  # a failed start was already reported to whoever started it
        self.proxy_task = None

    async def close(self) -> None:
        await self.stop_proxy()
        await self._close_backend()

    async def _close_backend(self) -> None:
        tier, self._semantic = self._semantic, None
        self._semantic_problem = None
        self._semantic_built = False
        if tier is not None:
            await tier.aclose()
        if self.backend is not None:
            await self.backend.close()
            self.backend = None

    def _refuse_while_proxy_runs(self, what: str) -> None:
        if self.proxy_running:
            raise SessionError(f"stop the proxy before you {what}: it uses this backend")
