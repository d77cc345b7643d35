"""The proxy's HTTP/1.1 connections: uvicorn's httptools protocol, with limits per client.

uvicorn's own protocol takes a header block of any size (httptools joins the pieces of a
long header as they arrive, which stalls every other connection on the loop), any number
of headers, and connections that never send a request or send it a byte at a time. Here:

* a header block over ``max_header_bytes`` is refused with 431 before the parser holds
  more than that: a read that could cross the limit is fed in slices;
* more than ``max_headers`` headers are refused with 431;
* a connection that sends no request within ``idle_timeout`` is closed; one whose headers
  take longer than ``header_timeout``, or whose body takes longer than ``body_timeout``
  after them, is answered 408 and closed;
* a refusal shuts our side and drops what the client still sends for a moment (a
  lingering close), so the client reads the answer rather than a connection reset.

A request that arrives in one read, the usual case, costs a few attribute updates and
no timer. Both servers (``serve`` and the embedded proxy) run it through
:class:`ProxyServerConfig`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from llmcache_tui.config import ConnectionLimits
from llmcache_tui.proxy.asgi import TIMING_EXTENSION
from llmcache_tui.proxy.errors import error_body
from llmcache_tui.proxy.limits import connection_budget, open_file_limit

log = logging.getLogger("llmcache_tui.proxy")

# After a refusal: how long, and how many bytes, to keep reading before a hard close.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1 << 20


class ProxyServerConfig(uvicorn.Config):
    """uvicorn's settings for the proxy, with its connection limits.

    Module-level and holding only plain data, so it pickles into worker processes.
    """

    def __init__(self, app: Any, *, limits: ConnectionLimits, **options: Any) -> None:
        budget = connection_budget(limits.max_connections, open_file_limit())
        super().__init__(
            app,
            http=ProxyHttpProtocol,
            ws="none",  # the proxy serves no WebSockets: no upgrades
            server_header=False,
            # uvicorn answers 503 once open connections (this one included) reach this.
            limit_concurrency=None if budget is None else budget + 1,
            **options,
        )
        self.connection_limits = limits


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request we refuse."""


class ProxyHttpProtocol(HttpToolsProtocol):
    """One client connection under :class:`~llmcache_tui.config.ConnectionLimits`."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits: ConnectionLimits = getattr(config, "connection_limits", ConnectionLimits())
        self.limits = limits
        self._max_header_bytes = limits.max_header_bytes
        # uvicorn's timer after each response; it reads this per connection (an int there).
        self.timeout_keep_alive = limits.idle_timeout  # type: ignore[assignment]
        self._header_bytes = 0  # of the header block being read
        self._in_headers = True  # the next bytes belong to a header block
        self._in_message = False  # a request has begun and not ended
        self._crossed = False  # the current read passed the end of a header block or body
        self._deadline: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str] | None = None
        self._lingering = False
        self._linger_left = 0

    # -- connection --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline = self.loop.call_later(self.limits.idle_timeout, self._expire)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._linger_left -= len(data)
            if self._linger_left < 0:
                self.transport.close()
            return
        if self._in_headers and self._header_bytes + len(data) > self._max_header_bytes:
            self._feed_bounded(data)
        else:  # _feed, inlined: this is every request's path
            self._crossed = False
            super().data_received(data)
            if self._in_headers and not self._crossed:
                self._header_bytes += len(data)
        if self._deadline is None and not self._lingering and not self.transport.is_closing():
            self._arm()

    def _feed(self, data: bytes | memoryview) -> None:
        self._crossed = False
        super().data_received(data)  # type: ignore[arg-type]  # httptools reads any buffer
        if self._in_headers and not self._crossed:
            self._header_bytes += len(data)

    def _feed_bounded(self, data: bytes) -> None:
        """Feed a read that may take the header block over its limit, one slice at a time."""
        view = memoryview(data)
        while view and not self._lingering and not self.transport.is_closing():
            if self._in_headers:
                # One byte past the limit at most: enough to know it was crossed.
                piece = view[: self._max_header_bytes - self._header_bytes + 1]
            else:
                piece = view
            view = view[len(piece) :]
            self._feed(piece)
            if self._header_bytes > self._max_header_bytes:
                limit = self._max_header_bytes / 1024
                self._refuse_request(
                    431,
                    f"request headers are larger than the {limit:g} KiB limit"
                    " (general_settings.max_request_header_size_kb)",
                )

    # -- parser callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_message = True
        self.scope["extensions"] = {TIMING_EXTENSION: {"received_at": time.perf_counter()}}
        self._cancel_deadline()  # the idle timer of a new connection

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._crossed = True
        self._cancel_deadline()
        if len(self.headers) > self.limits.max_headers:
            self._refusal = (
                431,
                f"request has {len(self.headers)} headers, more than the limit of"
                f" {self.limits.max_headers} (general_settings.max_request_headers)",
            )
            raise _Refused
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_message = False
        self._in_headers = True
        self._header_bytes = 0
        self._crossed = True
        self._cancel_deadline()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to a parser error, which is how a callback's refusal surfaces.
        refusal, self._refusal = self._refusal, None
        if refusal is None:
            super().send_400_response(msg)
        else:
            self._refuse_request(*refusal)

    # -- deadlines -----------------------------------------------------------------------
    def _arm(self) -> None:
        """Start the one deadline that applies after this read, if any."""
        if self._in_message:  # a request is arriving in pieces
            limits = self.limits
            timeout = limits.header_timeout if self._in_headers else limits.body_timeout
            self._deadline = self.loop.call_later(timeout, self._expire)
        elif self.timeout_keep_alive_task is None and (
            self.cycle is None or self.cycle.response_complete
        ):
            # Bytes that began no request (blank lines) stopped uvicorn's keep-alive timer.
            self._deadline = self.loop.call_later(self.limits.idle_timeout, self._expire)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._lingering:
            return
        if not self._in_message:
            self.transport.close()  # idle: nothing was asked, nothing to answer
        elif self._in_headers:
            self._refuse_request(
                408,
                f"request headers not received within {self.limits.header_timeout:g}s"
                " (general_settings.request_header_timeout)",
            )
        else:
            cycle = self.cycle
            if cycle is None or cycle.response_started:
                self.transport.close()  # answered already: the rest of the body is moot
                return
            # The app waits for the body: tell it the client is gone, then answer for it.
            cycle.disconnected = True
            cycle.message_event.set()
            self._answer_and_close(
                408,
                f"request body not received within {self.limits.body_timeout:g}s"
                " (general_settings.request_body_timeout)",
            )

    # -- refusals ------------------------------------------------------------------------
    def _refuse_request(self, status: int, message: str) -> None:
        """Refuse the request whose header block is being read."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # An earlier pipelined request is still being answered: an answer now would
            # read as its answer.
            self.transport.close()
            return
        self._answer_and_close(status, message)

    def _answer_and_close(self, status: int, message: str) -> None:
        level = logging.WARNING if status == 431 else logging.INFO
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "client"
        log.log(level, "%s: %d %s", client, status, message)
        body = orjson.dumps(error_body(status, message))
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content += [name, b": ", value, b"\r\n"]
        content.append(
            b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % len(body)
        )
        content.append(body)
        self.transport.write(b"".join(content))
        self._cancel_deadline()
        self._unset_keepalive_if_required()
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._lingering = True
        self._linger_left = LINGER_BYTES
        self.flow.resume_reading()
        self._deadline = self.loop.call_later(LINGER_SECONDS, self.transport.close)
