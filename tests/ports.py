"""Port helpers for tests that start real servers."""

from __future__ import annotations

import socket


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free at the time of the call.

    The OS picks the port; the socket is closed before returning, so there is a small
    window in which another process could take it. Callers that bind later should be
    ready to retry with a new port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
