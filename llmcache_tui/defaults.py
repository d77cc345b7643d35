"""Defaults shared by the command line and the terminal app (importing nothing heavy)."""

from __future__ import annotations

DEFAULT_HOST = "127.0.0.1"  # not 0.0.0.0: exposing the proxy is a choice, with a master key
DEFAULT_PORT = 4000  # LiteLLM's
EXIT_CONFIG_ERROR = 2


def valid_port(port: int) -> bool:
    return 0 < port < 65536
