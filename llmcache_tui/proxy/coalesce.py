"""Identical concurrent misses share one upstream call.

The first cacheable miss for a key leads: it calls upstream and publishes what arrives to
a :class:`Flight`. Identical requests that come while it runs follow: a streaming
follower relays the leader's stream bytes as they arrive; a plain follower waits for the
complete answer. A follower never waits longer than its own upstream call would be
allowed, and if the leader fails before the follower has sent anything, the follower
makes its own call instead of passing on an error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from llmcache_tui.cache.entry import CacheEntry
from llmcache_tui.proxy.upstream import UpstreamReply


@dataclass
class Flight:
    """What the leader of a key has produced so far."""

    streamed: bool  # the leader relays a stream (pieces) rather than one reply
    pieces: list[bytes] = field(default_factory=list)
    reply: UpstreamReply | None = None  # a plain leader's successful reply, as received
    entry: CacheEntry | None = None  # the complete answer, for followers of the other kind
    finished: bool = False
    failed: bool = False
    followers: int = 0  # requests waiting on this one; the leader reads on for them
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def publish(self, piece: bytes) -> None:
        self.pieces.append(piece)
        self._notify()

    def finish(self, *, entry: CacheEntry | None, reply: UpstreamReply | None = None) -> None:
        """The leader is done; without an entry its answer cannot be shared."""
        self.entry = entry
        self.reply = reply
        self.finished = True
        self.failed = entry is None
        self._notify()

    def fail(self) -> None:
        if not self.finished:
            self.finished = True
            self.failed = True
            self._notify()

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
