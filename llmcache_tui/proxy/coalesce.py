"""Identical concurrent misses share one upstream call.

The first cacheable miss for a key leads: it calls upstream and publishes what arrives to
a :class:`Flight`. Identical requests that come while it runs follow: a streaming
follower relays the leader's stream bytes as they arrive; a plain follower waits for the
complete answer. A follower never waits longer than its own upstream call would be
allowed.

When the leader's call fails before a follower has been sent anything, the answer depends
on the failure. A rejection that any identical call would get again (see
:data:`FINAL_STATUSES`) is passed on to followers that asked exactly the same of the same
deployment. Anything else may be transient (5xx, 429, a timeout, a broken stream, an
answer that is not complete): one follower takes the lead for a new call and the others
follow it, for at most :data:`MAX_LEADERS` calls in a row. After that, followers still
waiting get the last call's error: calling upstream all at once is what hurts an upstream
that is failing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from llmcache_tui.cache.entry import CacheEntry
from llmcache_tui.proxy.errors import ProxyError
from llmcache_tui.proxy.routing import Deployment
from llmcache_tui.proxy.upstream import UpstreamReply

#: upstream calls in a row, one per leader, for requests that wait on one another
MAX_LEADERS = 3
#: statuses that say the request itself is refused (bad parameters, key, model, size):
#: asked again, the same deployment gives the same answer. 408, 409, 425 and 429 are
#: about timing or load and may pass on a second try.
FINAL_STATUSES = frozenset({400, 401, 403, 404, 405, 413, 415, 422})


@dataclass
class Flight:
    """What the leader of a key has produced so far."""

    streamed: bool  # the leader relays a stream (pieces) rather than one reply
    body: dict[str, Any] = field(default_factory=dict)  # what the leader asked for
    deployment: Deployment | None = None  # where it asked
    attempt: int = 1  # 1 for the first leader, 2 for the follower that took over, ...
    detail: str | None = None  # the leader's cache problem (RFC 9211 detail), if any
    pieces: list[bytes] = field(default_factory=list)
    reply: UpstreamReply | None = None  # the leader's reply, when it got one
    entry: CacheEntry | None = None  # the complete answer, for followers of the other kind
    error: ProxyError | None = None  # why the leader got no reply, when known
    finished: bool = False
    failed: bool = False
    followers: int = 0  # requests waiting on this one; the leader reads on for them
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def publish(self, piece: bytes) -> None:
        self.pieces.append(piece)
        self._notify()

    def finish(self, *, entry: CacheEntry | None, reply: UpstreamReply | None = None) -> None:
        """The leader is done; without an entry its answer cannot be shared as a success."""
        self.entry = entry
        self.reply = reply
        self.finished = True
        self.failed = entry is None
        self._notify()

    def fail(self, error: ProxyError | None = None) -> None:
        if not self.finished:
            self.error = error or self.error
            self.finished = True
            self.failed = True
            self._notify()

    def asked_as(self, body: dict[str, Any], deployment: Deployment) -> bool:
        """Whether a request asking ``body`` of ``deployment`` made the very same call."""
        return self.deployment == deployment and (self.body is body or self.body == body)

    def final_reply(self, body: dict[str, Any], deployment: Deployment) -> UpstreamReply | None:
        """The leader's rejection, if an identical call would be rejected the same way."""
        reply = self.reply
        if reply is None or reply.status not in FINAL_STATUSES:
            return None
        return reply if self.asked_as(body, deployment) else None

    async def wait(self, timeout: float) -> bool:
        """Wait for the next change; False if none came within ``timeout`` seconds."""
        changed = self._changed
        try:
            await asyncio.wait_for(changed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def wait_finished(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.finished:
            if not await self.wait(max(0.0, deadline - loop.time())):
                return False
        return True

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
