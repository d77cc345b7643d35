"""Identical concurrent misses: one leads the upstream call, the others follow it.

The rules (who leads, what a follower is sent, when it takes the lead itself) are told in
:mod:`llmcache_tui.proxy.coalesce`, beside the :class:`Flight` they share; this module
answers followers by them.
"""

from __future__ import annotations

import asyncio

from llmcache_tui.proxy.asgi import SSE_CONTENT, Headers, Send, send_json, send_response
from llmcache_tui.proxy.coalesce import MAX_LEADERS, Flight
from llmcache_tui.proxy.errors import ProxyError, error_body
from llmcache_tui.proxy.relay import error_event
from llmcache_tui.proxy.replies import cache_status, send_entry
from llmcache_tui.proxy.request import LLMRequest
from llmcache_tui.proxy.routing import Deployment
from llmcache_tui.proxy.stats import ProxyStats


class Coalescer:
    """The flights in progress, one per cache key, and the followers waiting on them."""

    def __init__(self, request_timeout: float, stats: ProxyStats, stream_replay: str) -> None:
        self.request_timeout = request_timeout
        self.stats = stats
        self.stream_replay = stream_replay
        self._inflight: dict[str, Flight] = {}

    async def join(
        self,
        key: str,
        deployment: Deployment,
        request: LLMRequest,
        send: Send,
        headers: Headers,
        fwd: str,
        detail: str | None,
    ) -> Flight | str:
        """Lead the upstream call for ``key``, or be answered from the one in flight.

        Returns the :class:`Flight` this request now leads (the caller must :meth:`land`
        it), or, once it has been answered from another request's call, the outcome
        (``collapsed`` for a successful answer).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (deployment.timeout or self.request_timeout)
        attempt = 1
        while True:
            flight = self._inflight.get(key)
            if flight is None or flight.failed:  # failed: its leader is on its way out
                flight = Flight(
                    streamed=request.stream,
                    body=request.body,
                    deployment=deployment,
                    attempt=attempt,
                    detail=detail,
                )
                self._inflight[key] = flight
                return flight
            outcome = await self._follow(
                flight, request, deployment, send, headers, fwd, detail, deadline
            )
            if outcome is not None:
                self.stats.coalesced += 1
                return "collapsed" if outcome == "miss" else outcome
            attempt = flight.attempt + 1

    def land(self, key: str, flight: Flight) -> None:
        """The leader is done: free followers still waiting, and let a new call lead."""
        flight.fail()  # no effect once finished; frees followers otherwise
        if self._inflight.get(key) is flight:  # a follower may lead a new one
            del self._inflight[key]

    async def _follow(
        self,
        flight: Flight,
        request: LLMRequest,
        deployment: Deployment,
        send: Send,
        headers: Headers,
        fwd: str,
        detail: str | None,
        deadline: float,
    ) -> str | None:
        """Answer from another request's upstream call and return the outcome; None if
        that call failed before anything was sent here and this request should lead (or
        follow) the next one."""
        # The leader's lookup may have failed where this one's did not: say so as well.
        status = cache_status(fwd, False, detail or flight.detail, collapsed=True)
        headers = [*headers, status]
        flight.followers += 1
        loop = asyncio.get_running_loop()
        if request.stream and flight.streamed:
            outcome = await self._follow_stream(flight, send, [*headers, SSE_CONTENT], deadline)
            if outcome is not None:
                return outcome
        else:
            await flight.wait_finished(max(0.0, deadline - loop.time()))
            if flight.entry is not None:
                if flight.reply is not None and not request.stream:
                    reply = flight.reply
                    await send_response(send, reply.status, reply.body, [*reply.headers, *headers])
                else:
                    await send_entry(send, flight.entry, None, request, headers, self.stream_replay)
                return "miss"
        if not flight.finished:
            # As long as this request's own call would have been allowed: it timed out.
            limit = deployment.timeout or self.request_timeout
            message = (
                f"upstream did not answer in time (limit {limit:g}s) the identical"
                " request this one waited for"
            )
            await send_json(send, 504, error_body(504, message), headers)
            return "upstream_error"
        return await self._after_failure(flight, request, deployment, send, headers, deadline)

    async def _after_failure(
        self,
        flight: Flight,
        request: LLMRequest,
        deployment: Deployment,
        send: Send,
        headers: Headers,
        deadline: float,
    ) -> str | None:
        """Pass on a failed leader's answer where retrying would not help; None: retry."""
        reply = flight.final_reply(request.body, deployment)
        retry = flight.attempt < MAX_LEADERS and asyncio.get_running_loop().time() < deadline
        if reply is None and retry:
            return None
        reply = reply or flight.reply
        if reply is not None and (reply.status >= 400 or flight.asked_as(request.body, deployment)):
            await send_response(send, reply.status, reply.body, [*reply.headers, *headers])
            return "upstream_error" if reply.status >= 400 else "miss"
        error = flight.error or ProxyError(
            502, f"upstream gave no complete answer ({flight.attempt} calls in a row)"
        )
        await send_json(send, error.status, error.body(), headers)
        return "upstream_error"

    async def _follow_stream(
        self, flight: Flight, send: Send, headers: Headers, deadline: float
    ) -> str | None:
        """Relay the leader's stream bytes as they arrive, from the first one.

        None if nothing was sent: the leader failed first, or ``deadline`` passed.
        """
        loop = asyncio.get_running_loop()
        sent = 0
        while True:
            for piece in flight.pieces[sent:]:
                if sent == 0:
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                sent += 1
            if flight.finished:
                if sent == 0:
                    return None
                outcome = "miss"
                if flight.failed:
                    outcome = "upstream_error"
                    event = error_event("the upstream stream this request shared broke off")
                    await send({"type": "http.response.body", "body": event, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return outcome
            # Once under way, the leader's own read timeout bounds the stream.
            timeout = self.request_timeout if sent else deadline - loop.time()
            if not await flight.wait(max(0.0, timeout)) and not (
                sent or flight.pieces or flight.finished  # it may have come meanwhile
            ):
                return None
