"""The health probe shared by ``/cache/ping`` and ``--check``: ping, write, read, delete."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from llmcache_tui.cache.backends.base import CacheBackend, CacheBackendError

if TYPE_CHECKING:
    from llmcache_tui.cache.semantic.tier import SemanticTier
    from llmcache_tui.config import Settings

PROBE_NAMESPACE = "__llmcache_check__"
PROBE_TTL = 30.0


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What the probe managed; ``error`` says why it stopped, if it did."""

    ping: bool = False
    ping_ms: float | None = None
    write: bool = False
    read_back: bool = False
    deleted: bool = False
    error: str | None = None
    server: dict[str, Any] = field(default_factory=dict)  # e.g. the Redis version

    @property
    def healthy(self) -> bool:
        return self.ping and self.write and self.read_back and self.deleted


async def probe_backend(backend: CacheBackend) -> ProbeResult:
    """Exercise the backend with a short-lived probe entry in a reserved namespace."""
    key = f"{PROBE_NAMESPACE}:{uuid.uuid4().hex}"
    value = f"probe {time.time()}".encode()
    started = time.perf_counter()
    result = ProbeResult()
    try:
        pinged = await backend.ping()
        result = ProbeResult(ping=pinged, ping_ms=(time.perf_counter() - started) * 1000)
        if not pinged:
            return replace(result, error="ping returned a failure")
        await backend.set(key, value, PROBE_TTL)
        result = replace(result, write=True)
        # get_many goes to the shared store even behind a memory tier: the probe must
        # prove Redis or S3 answers, not the process's own memory.
        (read,) = await backend.get_many([key])
        if read != value:
            return replace(result, error="wrote a probe entry but could not read it back")
        result = replace(result, read_back=True)
        await backend.delete([key])
        return replace(result, deleted=True, server=await backend.server_info())
    except CacheBackendError as exc:
        return replace(result, error=str(exc))


async def semantic_health(tier: SemanticTier | None, problem: str | None) -> dict[str, Any]:
    """The semantic tier's part of a health report; ``healthy`` only if both parts work.

    ``problem`` is why the tier could not be built (then there is nothing to probe).
    """
    if tier is None:
        return {"healthy": False, "problem": problem or "semantic tier not built"}
    report = await tier.health()
    store = report.get("store") or {}
    healthy = bool(report["embedder"].get("ok")) and bool(store.get("reachable"))
    healthy = healthy and not store.get("problem")
    return {"healthy": healthy, **report}


async def probe_semantic(settings: Settings) -> dict[str, Any]:
    """Build the semantic tier ``settings`` describe, probe it, and close it again."""
    from llmcache_tui.cache.semantic.build import build_semantic_or_problem

    tier, problem = build_semantic_or_problem(settings)
    try:
        return await semantic_health(tier, problem)
    finally:
        if tier is not None:
            await tier.aclose()
