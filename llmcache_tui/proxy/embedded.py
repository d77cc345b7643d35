"""Run the proxy on an existing event loop (the terminal app's) and stop it cleanly.

The host application owns signals, so uvicorn's signal capture is switched off; the
listening socket is bound here first so that a port in use is a clear error rather than
uvicorn's ``sys.exit``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import uvicorn

from llmcache_tui.proxy.app import ProxyApp
from llmcache_tui.proxy.protocol import ProxyServerConfig


class ProxyStartError(Exception):
    """The proxy could not start (for example, the port is in use)."""


class _GuestServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class EmbeddedProxy:
    """One run of the proxy inside another asyncio program."""

    def __init__(self, app: ProxyApp, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        config = ProxyServerConfig(
            app,
            limits=app.settings.connection_limits,
            host=host,
            port=port,
            log_config=None,
            access_log=True,
        )
        self._server = _GuestServer(config)

    @property
    def running(self) -> bool:
        return self._server.started and not self._server.should_exit

    async def serve(self) -> None:
        """Serve until :meth:`stop`; raise :class:`ProxyStartError` if it cannot start."""
        try:
            sock = bind_socket(self.host, self.port)
        except OSError as exc:
            raise ProxyStartError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from exc
        try:
            await self._server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits when start-up fails
            raise ProxyStartError("the proxy failed to start; see the log") from exc
        finally:
            sock.close()

    def stop(self) -> None:
        """Ask the server to finish its requests and return from :meth:`serve`."""
        self._server.should_exit = True


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 if the host is an IPv6 address).

    The protocol is named, not left 0: asyncio's own loop sets TCP_NODELAY on accepted
    connections only for IPPROTO_TCP sockets, and without it Nagle's algorithm holds a
    response's body back until the client's delayed ACK of its headers (about 40 ms).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
