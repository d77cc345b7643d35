"""Start the benchmark's servers as pinned subprocesses on loopback, and always stop them.

Four kinds: the fake OpenAI upstream (``tests.fake_upstream``), the proxy
(``llmcache-tui --headless serve``), the embedded proxy as the terminal app runs it
(``bench.embedded_proxy``, a plain asyncio loop) and the floor app (``bench.floor_app``
under uvicorn with the settings the proxy's ``serve`` uses). Every server listens on
127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy")


class ServerError(RuntimeError):
    """A server did not start or answer."""


@dataclass(slots=True)
class Server:
    """One running server process."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        self.log_file.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def free_port() -> int:
    """A loopback port the OS reports free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def server_env() -> dict[str, str]:
    """The environment for servers: repo importable, no HTTP proxy for loopback calls."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env["NO_PROXY"] = env["no_proxy"] = HOST
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def upstream_command(port: int) -> list[str]:
    """The fake OpenAI upstream (uvloop + httptools, access log off)."""
    return [sys.executable, "-m", "tests.fake_upstream", "--host", HOST, "--port", str(port)]


def floor_command(port: int) -> list[str]:
    """The floor app under uvicorn, configured as ``llmcache_tui.proxy.server.serve`` is.

    ``serve`` leaves loop and http on "auto", which picks uvloop and httptools when they
    are installed (they are: ``uvicorn[standard]``); they are named here explicitly.
    """
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.floor_app:app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--no-server-header",
        "--log-level",
        "warning",
        "--lifespan",
        "off",
    ]


def proxy_command(config: Path, port: int) -> list[str]:
    """The proxy exactly as a user runs it, one worker."""
    script = Path(sys.executable).with_name("llmcache-tui")
    entry = [str(script)] if script.exists() else [sys.executable, "-m", "llmcache_tui"]
    return [
        *entry,
        "--headless",
        "serve",
        "--config",
        str(config),
        "--host",
        HOST,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


def embedded_command(config: Path, port: int) -> list[str]:
    """The terminal app's proxy (``EmbeddedProxy`` on a plain asyncio loop), without the UI."""
    return [
        sys.executable,
        "-m",
        "bench.embedded_proxy",
        "--config",
        str(config),
        "--host",
        HOST,
        "--port",
        str(port),
    ]


def start(
    name: str, command: list[str], port: int, ready_path: str, cpu: int | None, log_dir: Path
) -> Server:
    """Start ``command`` (pinned to ``cpu``) and wait until ``ready_path`` answers."""
    log_path = log_dir / f"{name.replace(' ', '_')}.log"
    log_file = log_path.open("wb")
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    process = subprocess.Popen(
        [*pin, *command],
        cwd=REPO_ROOT,
        env=server_env(),
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    server = Server(name, port, process, log_path, log_file)
    try:
        _wait_ready(server, ready_path)
    except BaseException:
        stop(server)
        raise
    return server


def _wait_ready(server: Server, path: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise ServerError(
                    f"{server.name} exited with {server.process.returncode} during start-up:\n"
                    f"{server.log_tail()}"
                )
            with contextlib.suppress(httpx.TransportError):
                client.get(server.base_url + path)
                return
            time.sleep(0.05)
    raise ServerError(f"{server.name} did not answer within {STARTUP_TIMEOUT:g}s")


def stop(server: Server) -> None:
    """SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT`; never raises for a dead process."""
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
    server.log_file.close()
