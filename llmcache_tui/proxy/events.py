"""One event per proxied LLM request, for whoever listens (the terminal app's request log).

The event is read off the response as it is sent: its status and the ``Cache-Status`` and
``x-litellm-cache-key`` headers the pipeline already writes say everything the log needs,
so the pipeline itself carries no extra bookkeeping. :class:`ProxyApp` watches responses
only while a listener is registered; with none (``--headless serve``) a request costs one
empty-list test and nothing is kept.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from llmcache_tui.cache.keys import NAMESPACE_SEPARATOR
from llmcache_tui.proxy.asgi import Message, Send

#: the cache results of :attr:`RequestEvent.result`, in the order the terminal app lists them
RESULTS = (
    "hit",
    "semantic-hit",
    "miss",
    "stored",
    "collapsed",
    "bypass",
    "cache-error",
    "rejected",
)
#: ``Cache-Status`` details that say the cache failed this request (it was answered anyway)
CACHE_ERROR_DETAILS = frozenset({"cache-error", "semantic-error", "cache-unavailable"})
#: the status logged when the client went away before any response started (nginx's)
CLIENT_CLOSED = 499


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """What one LLM request was and how it was answered.

    ``result`` is one of :data:`RESULTS`: ``hit`` and ``semantic-hit`` were served from
    the cache; ``miss`` was looked up and not stored, ``stored`` was looked up and stored,
    ``collapsed`` shared an identical request's upstream call; ``bypass`` did not read
    the cache (its controls, its call type, or no cache); ``cache-error`` was
    answered although the cache failed; ``rejected`` never reached the cache (a request
    the proxy refused, such as invalid JSON). ``key`` is the entry served or looked up
    ("" when none), ``model`` the name the client sent ("" when unknown).
    """

    time: float
    route: str
    model: str
    namespace: str | None
    result: str
    status: int
    latency_ms: float
    key: str


RequestListener = Callable[[RequestEvent], None]


class ResponseWatch:
    """Wraps an ASGI ``send`` to note the status and cache headers of the response."""

    __slots__ = ("_send", "cache_status", "key", "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 0
        self.cache_status = b""
        self.key = b""

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            for name, value in message.get("headers", ()):
                if name == b"cache-status":
                    self.cache_status = value
                elif name == b"x-litellm-cache-key":
                    self.key = value
        await self._send(message)

    def event(self, time: float, route: str, model: str, seconds: float) -> RequestEvent:
        """The event of the response seen (status 0 if none started: the caller's to set)."""
        key = self.key.decode("latin-1")
        namespace, separator, _ = key.rpartition(NAMESPACE_SEPARATOR)
        return RequestEvent(
            time=time,
            route=route,
            model=model,
            namespace=namespace if separator else None,
            result=result_of(self.cache_status),
            status=self.status,
            latency_ms=seconds * 1000,
            key=key,
        )


@functools.lru_cache(maxsize=64)  # the proxy writes a handful of distinct values
def result_of(cache_status: bytes) -> str:
    """The :data:`RESULTS` value a ``Cache-Status`` header value stands for."""
    if not cache_status:
        return "rejected"
    params = cache_status.decode("latin-1").split(";")[1:]
    flags = {part.strip() for part in params}
    details = {flag.partition("=")[2] for flag in flags if flag.startswith("detail=")}
    if details & CACHE_ERROR_DETAILS:
        return "cache-error"
    if "hit" in flags:
        return "semantic-hit" if "semantic" in details else "hit"
    if "fwd=miss" not in flags and "fwd=stale" not in flags:
        return "bypass"  # not read (``no-cache`` may still have stored it)
    if "collapsed" in flags:
        return "collapsed"
    return "stored" if "stored" in flags else "miss"
