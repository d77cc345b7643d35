"""The backend interface shared by the proxy and the terminal app.

Public methods do the shared work once (default TTL, error translation, operation
counters and latencies); each backend implements the underscore primitives. Optional abilities are
class flags that the terminal app reads to decide what to offer.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from time import perf_counter
from typing import Any, ClassVar

from llmcache_tui.cache.backends.breaker import CircuitBreaker, CircuitOpen
from llmcache_tui.cache.timings import OperationTimings
from llmcache_tui.config import MAX_TTL_SECONDS, MAX_TTL_TEXT
from llmcache_tui.redact import NO_SECRETS, Redactor

log = logging.getLogger("llmcache_tui.cache")

#: Called with keys just deleted (perhaps with some that held nothing); must not raise.
DeleteListener = Callable[[list[str]], Awaitable[None]]


class CacheBackendError(Exception):
    """A cache operation failed; the message is safe to show (no secrets)."""


class UnsupportedCacheType(CacheBackendError):
    """The config asks for a cache type this version cannot run."""


class CacheSkipped(CacheBackendError):
    """Not attempted: the backend failed moments ago and its circuit breaker is open."""


class CacheDataError(CacheBackendError):
    """The backend refused this one call (its key, value or expiry) but is itself working.

    Never opens the circuit breaker: one request's input must not turn the cache off for
    every other request.
    """


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One key as listed by ``scan``: remaining TTL in seconds (None: no expiry) and size."""

    key: str
    ttl: float | None = None
    size: int | None = None


@dataclass(frozen=True, slots=True)
class ScanPage:
    """A page of keys; ``cursor`` is where the next page starts, ``None`` when done.

    ``scanned`` counts the entries examined for this page (matches or not), so a filtered
    scan can say honestly how far it got; ``total`` is the backend's count, if cheap.
    """

    keys: list[KeyInfo]
    cursor: str | None
    scanned: int
    total: int | None = None


@dataclass(frozen=True, slots=True)
class ValueShape:
    """What a key holds when it is not a plain value (a Redis list, hash, set...).

    ``type`` is the store's name for it; ``items`` its length, where the store can say."""

    type: str
    items: int | None = None


@dataclass(frozen=True, slots=True)
class BackendStats:
    """What a backend can say about itself cheaply."""

    entries: int | None = None
    bytes_used: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


class CacheBackend(ABC):
    """A key-value store of encoded cache entries, with browsing."""

    cache_type: ClassVar[str]
    #: entries live in this process only (the TUI must say so)
    process_local: ClassVar[bool] = False
    can_edit_ttl: ClassVar[bool] = True
    #: keys a purge lists and deletes at a time (None: the purge's own default)
    purge_batch: ClassVar[int | None] = None
    #: a purge reads the start of every value it lists (``value_heads``) and deletes only
    #: cache entries; False where that costs a request per key and the store holds only ours
    purge_reads_values: ClassVar[bool] = True

    @property
    def sizes_are_memory(self) -> bool:
        """Whether ``KeyInfo.size`` and ``BackendStats.bytes_used`` measure the server's
        memory (overhead included, and for every key) rather than the values' bytes."""
        return False

    def __init__(self, *, default_ttl: float | None = None) -> None:
        self.default_ttl = default_ttl
        self.errors = 0
        #: remote backends set one, so a dead server is skipped instead of waited for
        self.breaker: CircuitBreaker | None = None
        #: knows the settings' secrets (set by build_backend): client errors may quote them
        self.redactor: Redactor = NO_SECRETS
        self._delete_listeners: list[DeleteListener] = []
        #: latency and failures per operation, for ``/metrics``; None records nothing
        self.timings: OperationTimings | None = OperationTimings()

    # -- required core -------------------------------------------------------------
    async def get(self, key: str) -> bytes | None:
        self._guard()
        started = perf_counter()
        try:
            value = await self._get(key)
        except Exception as exc:
            raise self._failure("get", exc, started) from exc
        self._took("get", started)
        self._healthy()
        return value

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """Read several keys at once (for a page of the browser), in order."""
        if not keys:
            return []
        started = perf_counter()
        try:
            values = await self._get_many(keys)
        except Exception as exc:
            raise self._failure("get", exc, started, timed_as="get_many") from exc
        self._took("get_many", started)
        return values

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        ttl = self.default_ttl if ttl is None else ttl
        if ttl is not None and not 0 < ttl <= MAX_TTL_SECONDS:  # also refuses NaN
            self.errors += 1
            raise CacheDataError(
                f"{self.cache_type} set refused: ttl {ttl!r} is not a number of seconds"
                f" above 0 and at most {MAX_TTL_TEXT}"
            )
        self._guard()
        started = perf_counter()
        try:
            await self._set(key, value, ttl)
        except Exception as exc:
            raise self._failure("set", exc, started) from exc
        self._took("set", started)
        self._healthy()

    async def delete(self, keys: Iterable[str]) -> int:
        """Delete keys; return how many existed."""
        keys = list(keys)
        if not keys:
            return 0
        started = perf_counter()
        try:
            deleted = await self._delete(keys)
        except Exception as exc:
            raise self._failure("delete", exc, started) from exc
        self._took("delete", started)
        if deleted:
            await self._deleted(keys)
        return deleted

    def add_delete_listener(self, listener: DeleteListener) -> None:
        """Have ``listener`` told the keys of every later deletion, once it succeeded."""
        self._delete_listeners.append(listener)

    async def _deleted(self, keys: list[str]) -> None:
        for listener in self._delete_listeners:
            try:
                await listener(keys)
            except Exception:  # the entries are gone: a listener must not undo that report
                log.exception("a listener of deleted cache keys failed")

    async def ping(self) -> bool:
        """Always tries, breaker or not: this is how a person checks the server."""
        started = perf_counter()
        try:
            answer = await self._ping()
        except Exception as exc:
            raise self._failure("ping", exc, started) from exc
        self._took("ping", started)
        self._healthy()
        return answer

    async def server_info(self) -> dict[str, Any]:
        """Facts about the server for health output (e.g. its version); may be empty."""
        return {}

    async def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release connections and files; safe to call twice."""

    # -- browsing --------------------------------------------------------------------
    async def scan(
        self,
        match: str = "*",
        cursor: str | None = None,
        count: int = 500,
        *,
        details: bool = True,
    ) -> ScanPage:
        """Examine about ``count`` entries from ``cursor`` and return those matching ``match``.

        ``details=False`` asks only for names (TTL and size may be left out), which is
        cheaper where they cost a round trip: purges and namespace discovery need no more.
        """
        pattern, count = match or "*", max(1, count)
        started = perf_counter()
        try:
            if details:
                page = await self._scan(pattern, cursor, count)
            else:
                page = await self._scan_names(pattern, cursor, count)
        except Exception as exc:
            raise self._failure("scan", exc, started) from exc
        self._took("scan", started)
        return page

    async def value_heads(self, keys: list[str], size: int) -> list[bytes | None]:
        """The first ``size`` bytes of each key's value, in order, read in one batch where
        the store allows; ``None`` for a key that is gone or holds no plain value."""
        if not keys:
            return []
        try:
            return await self._value_heads(keys, size)
        except Exception as exc:
            raise self._failure("read", exc) from exc

    async def sweep_entries(
        self, keys: list[str], patterns: tuple[str, ...], head_size: int, *, delete: bool
    ) -> tuple[int, int] | None:
        """Find the cache entries among ``keys`` on the server itself, and delete them unless
        ``delete`` is False, in one call: (entries found, entries deleted). An entry is a plain
        value whose first ``head_size`` bytes match one of the Lua ``patterns``.

        ``None``: this store cannot (the default); the caller reads ``value_heads`` instead."""
        if not keys:
            return 0, 0
        try:
            swept = await self._sweep_entries(keys, patterns, head_size, delete)
        except Exception as exc:
            raise self._failure("delete" if delete else "read", exc) from exc
        if swept is not None and swept[1]:
            # The server does not say which keys held entries; forgetting the others is a no-op.
            await self._deleted(keys)
        return swept

    async def value_shapes(self, keys: list[str]) -> list[ValueShape | None]:
        """What each key holds, for keys that ``get_many`` found no plain value for; ``None``
        for a key that is gone. Only a store with other kinds of value (Redis) finds any."""
        if not keys:
            return []
        try:
            return await self._value_shapes(keys)
        except Exception as exc:
            raise self._failure("read", exc) from exc

    async def list_namespaces(self, parent: str | None) -> list[str] | None:
        """The namespaces directly under ``parent``, where the store can list them (S3's
        common prefixes); ``None`` means: discover them by scanning keys."""
        try:
            return await self._list_namespaces(parent)
        except Exception as exc:
            raise self._failure("list", exc) from exc

    async def _list_namespaces(self, parent: str | None) -> list[str] | None:
        return None

    async def ttl(self, key: str) -> float | None:
        """Remaining seconds to live; ``None`` for no expiry. Raises KeyError if absent."""
        try:
            return await self._ttl(key)
        except KeyError:
            raise
        except Exception as exc:
            raise self._failure("ttl", exc) from exc

    async def expire(self, key: str, ttl: float | None) -> bool:
        """Set a new TTL (``None``: never expire); False if the key does not exist."""
        if ttl is not None and not 0 < ttl <= MAX_TTL_SECONDS:  # also refuses NaN
            raise ValueError(f"ttl must be positive and at most {MAX_TTL_TEXT}, or None")
        try:
            return await self._expire(key, ttl)
        except Exception as exc:
            raise self._failure("expire", exc) from exc

    async def stats(self) -> BackendStats:
        try:
            return await self._stats()
        except Exception as exc:
            raise self._failure("stats", exc) from exc

    def describe(self) -> dict[str, Any]:
        """Connection parameters for display; implementations must mask secrets."""
        return {}

    # -- primitives ------------------------------------------------------------------
    @abstractmethod
    async def _get(self, key: str) -> bytes | None: ...

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        # Backends with a batch read (MGET, a pipeline) override this.
        return [await self._get(key) for key in keys]

    async def _value_heads(self, keys: list[str], size: int) -> list[bytes | None]:
        # Backends that can read part of a value, or many values in one call, override this.
        return [None if value is None else value[:size] for value in await self._get_many(keys)]

    async def _value_shapes(self, keys: list[str]) -> list[ValueShape | None]:
        return [None] * len(keys)  # every value is a plain one: a key without one is gone

    async def _sweep_entries(
        self, keys: list[str], patterns: tuple[str, ...], head_size: int, delete: bool
    ) -> tuple[int, int] | None:
        return None

    @abstractmethod
    async def _set(self, key: str, value: bytes, ttl: float | None) -> None: ...

    @abstractmethod
    async def _delete(self, keys: list[str]) -> int: ...

    @abstractmethod
    async def _ping(self) -> bool: ...

    @abstractmethod
    async def _scan(self, match: str, cursor: str | None, count: int) -> ScanPage: ...

    async def _scan_names(self, match: str, cursor: str | None, count: int) -> ScanPage:
        # Backends whose TTL and size cost extra requests override this.
        return await self._scan(match, cursor, count)

    @abstractmethod
    async def _ttl(self, key: str) -> float | None: ...

    @abstractmethod
    async def _expire(self, key: str, ttl: float | None) -> bool: ...

    @abstractmethod
    async def _stats(self) -> BackendStats: ...

    def _guard(self) -> None:
        breaker = self.breaker
        if breaker is not None and breaker.failures:
            try:
                breaker.before_call()
            except CircuitOpen as exc:
                raise CacheSkipped(f"{self.cache_type} unavailable ({exc})") from None

    def _healthy(self) -> None:
        breaker = self.breaker
        if breaker is not None and breaker.failures and breaker.succeeded():
            log.warning("%s cache is reachable again", self.cache_type)

    def timed_parts(self) -> list[CacheBackend]:
        """The backends whose ``timings`` tell what this one did (itself; a tier's parts)."""
        return [self]

    def _took(self, operation: str, started: float) -> None:
        timings = self.timings
        if timings is not None:
            timings.latency.observe(operation, perf_counter() - started)

    def _failure(
        self,
        operation: str,
        exc: Exception,
        started: float | None = None,
        *,
        timed_as: str | None = None,
    ) -> CacheBackendError:
        self.errors += 1
        timings = self.timings
        if timings is not None:
            timed_as = timed_as or operation
            timings.failed(timed_as)
            if started is not None:
                timings.latency.observe(timed_as, perf_counter() - started)
        outage = self._outage(exc)
        # Only the proxy's own reads and writes open the breaker; a person's scan or
        # delete failing in the terminal app should not keep requests off the cache.
        if outage and self.breaker is not None and operation in ("get", "set"):
            self.breaker.failed()
        if isinstance(exc, CacheBackendError):
            return exc
        reason = self.redactor.scrub(self._explain(exc))
        message = f"{self.cache_type} {operation} failed: {reason}"
        return CacheBackendError(message) if outage else CacheDataError(message)

    def _outage(self, exc: Exception) -> bool:
        """Whether ``exc`` means the backend itself is failing (down, unreachable, too
        slow, refusing everyone), rather than refusing this one call's data.

        Only an outage opens the circuit breaker. Every failure counts as one here;
        backends with a breaker override this with what their client raises.
        """
        return True

    def _explain(self, exc: Exception) -> str:
        """A short, secret-free reason; backends refine this for their client's errors."""
        return f"{type(exc).__name__}: {exc}"


def compact(value: bytes) -> bytes:
    """An exactly sized copy of ``value``, for bytes that are kept in memory.

    ``orjson.dumps`` over-allocates its output and never shrinks it (20 KB of JSON can
    sit in a 256 KiB block), so whatever keeps such bytes keeps a copy. ``bytes(value)``
    and ``value[:]`` return the very same object; a copy through a memoryview allocates
    just ``len(value)`` bytes.
    """
    return bytes(memoryview(value))


@lru_cache(maxsize=256)
def glob_matcher(pattern: str) -> re.Pattern[str]:
    """Compile a Redis-style glob, case-sensitive, matching the whole key.

    As Redis ``SCAN MATCH``: ``*``, ``?``, ``[abc]``, ``[a-z]``, ``[^a]`` (negated) and
    ``\\x`` for a literal ``x``; so every backend filters exactly as Redis would.
    (``fnmatch`` differs: ``[^a]`` is not a negation there and ``\\`` is not an escape.)
    """
    return re.compile(_glob_regex(pattern), re.DOTALL)


def _glob_regex(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        i += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "\\" and i < n:
            out.append(re.escape(pattern[i]))
            i += 1
        elif char == "[":
            end, cls = _glob_class(pattern, i)
            if end is None:  # no closing bracket: a literal '['
                out.append(re.escape(char))
            else:
                out.append(cls)
                i = end
        else:
            out.append(re.escape(char))
    return "".join(out) + r"\Z"


def _glob_class(pattern: str, start: int) -> tuple[int | None, str]:
    """Translate ``[...]`` opening just before ``start``; return (index after ``]``, regex)."""
    i, n = start, len(pattern)
    negate = i < n and pattern[i] == "^"
    if negate:
        i += 1
    items: list[str] = []
    while i < n and pattern[i] != "]":
        if pattern[i] == "\\" and i + 1 < n:
            items.append(re.escape(pattern[i + 1]))
            i += 2
        elif i + 2 < n and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            low, high = sorted((pattern[i], pattern[i + 2]))  # Redis accepts [z-a] too
            items.append(f"{re.escape(low)}-{re.escape(high)}")
            i += 3
        else:
            items.append(re.escape(pattern[i]))
            i += 1
    if i >= n:
        return None, ""
    body = "".join(items)
    if not body:
        return i + 1, r"[\s\S]" if negate else r"[^\s\S]"  # [^] is any char, [] is none
    return i + 1, f"[{'^' if negate else ''}{body}]"
