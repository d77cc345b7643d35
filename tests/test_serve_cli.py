"""End to end: ``llmcache-tui --headless serve`` as a real process, stopped by a signal."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import diskcache
import httpx
import pytest

from tests.fake_upstream import FakeUpstreamServer
from tests.ports import free_port
from tests.servers import CLIENT_TLS, litellm_config, write_config

CLI = str(Path(sys.executable).parent / "llmcache-tui")
CHAT: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
STARTUP_LIMIT = 30.0
EXIT_LIMIT = 10.0


class ServeProcess:
    """A running ``--headless serve`` process and the URL it answers on."""

    def __init__(self, process: subprocess.Popen[str], base_url: str) -> None:
        self.process = process
        self.base_url = base_url

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str]:
        """Send ``signum``; return the exit code and what the process logged."""
        self.process.send_signal(signum)
        _, stderr = self.process.communicate(timeout=EXIT_LIMIT)
        return self.process.returncode, stderr


def launch(config: Path) -> ServeProcess:
    """Start the CLI on a free port and wait until it answers (retrying a port race)."""
    for _ in range(3):
        port = free_port()
        process = subprocess.Popen(
            [CLI, "--headless", "serve", "--config", str(config), "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        base_url = f"http://127.0.0.1:{port}"
        if _wait_until_live(process, base_url):
            return ServeProcess(process, base_url)
        process.kill()
        process.communicate(timeout=EXIT_LIMIT)
    raise RuntimeError("llmcache-tui serve did not start")


def _wait_until_live(process: subprocess.Popen[str], base_url: str) -> bool:
    deadline = time.monotonic() + STARTUP_LIMIT
    with httpx.Client(base_url=base_url, timeout=1, verify=CLIENT_TLS) as http:
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if http.get("/health/liveliness").status_code == 200:
                    return True
            except httpx.TransportError:
                time.sleep(0.05)
    return False


@pytest.fixture
def served(tmp_path: Path, upstream: FakeUpstreamServer) -> Iterator[ServeProcess]:
    document = litellm_config(
        upstream.url,
        cache_params={"type": "disk", "disk_cache_dir": str(tmp_path / "cache")},
        general_settings={"master_key": "sk-1234"},
    )
    server = launch(write_config(tmp_path, document))
    yield server
    if server.process.poll() is None:
        server.process.kill()
        server.process.communicate(timeout=EXIT_LIMIT)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_caches_and_exits_cleanly_on_a_stop_signal(
    served: ServeProcess, upstream: FakeUpstreamServer, tmp_path: Path, signum: int
) -> None:
    auth = {"Authorization": "Bearer sk-1234"}
    with httpx.Client(
        base_url=served.base_url, headers=auth, timeout=10, verify=CLIENT_TLS
    ) as http:
        first = http.post("/v1/chat/completions", json=CHAT)
        second = http.post("/chat/completions", json=CHAT)
        refused = http.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "x"})
        ping = http.get("/cache/ping")

    assert first.status_code == second.status_code == 200
    assert first.headers["cache-status"] == "llmcache; fwd=miss; stored"
    assert second.headers["cache-status"] == "llmcache; hit"
    assert second.json()["id"] == first.json()["id"]
    assert refused.status_code == 401
    assert ping.json()["status"] == "healthy"
    assert upstream.app.call_count() == 1

    code, log = served.stop(signum)
    assert code == 0
    assert "Traceback" not in log
    assert "sk-1234" not in log
    assert "sk-test" not in log
    with diskcache.Cache(str(tmp_path / "cache")) as store:
        assert first.headers["x-litellm-cache-key"] in store


def test_sigterm_lets_an_in_flight_request_finish(
    served: ServeProcess, upstream: FakeUpstreamServer
) -> None:
    upstream.app.delay = 0.5
    auth = {"Authorization": "Bearer sk-1234"}
    with (
        httpx.Client(base_url=served.base_url, headers=auth, timeout=10, verify=CLIENT_TLS) as http,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        pending = pool.submit(http.post, "/v1/chat/completions", json=CHAT)
        while upstream.app.call_count() == 0 and not pending.done():
            time.sleep(0.01)
        code, log = served.stop(signal.SIGTERM)
        reply = pending.result()

    assert reply.status_code == 200
    assert reply.json()["choices"][0]["message"]["content"] == "echo: hi"
    assert code == 0, log


def test_serve_with_a_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("litellm_settings:\n  cache: true\n  cache_params:\n    type: memcached\n")
    result = subprocess.run(
        [CLI, "--headless", "serve", "--config", str(config), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "litellm_settings.cache_params.type" in result.stderr
    assert "'memcached'" in result.stderr
