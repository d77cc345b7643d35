"""The terminal app as a person runs it: the real ``llmcache-tui`` command in a tmux pane.

Keys are typed with ``tmux send-keys`` and the screen is read with ``capture-pane``, so
this covers what Pilot tests cannot: the console script, the real terminal driver, start-up
from a config file and a clean exit that leaves the proxy's port free.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port

CLI = Path(sys.executable).with_name("llmcache-tui")
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class TmuxPane:
    """One detached tmux session running a command."""

    def __init__(self, command: list[str], cwd: Path) -> None:
        self.name = f"llmcache-{uuid.uuid4().hex[:8]}"
        subprocess.run(
            [
                "tmux",
                "new-session",
                "-d",
                "-s",
                self.name,
                "-x",
                "100",
                "-y",
                "30",
                "-c",
                str(cwd),
                *command,
            ],
            check=True,
        )

    def keys(self, *keys: str) -> None:
        """Type keys one at a time: a burst can reach the app as one escape sequence."""
        for key in keys:
            subprocess.run(["tmux", "send-keys", "-t", self.name, key], check=True)
            time.sleep(0.15)

    def screen(self) -> str:
        result = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True
        )
        return result.stdout

    def alive(self) -> bool:
        return subprocess.run(["tmux", "has-session", "-t", self.name]).returncode == 0

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Callable[[list[str]], TmuxPane]]:
    panes: list[TmuxPane] = []

    def start(args: list[str]) -> TmuxPane:
        pane = TmuxPane([str(CLI), *args], tmp_path)
        panes.append(pane)
        return pane

    yield start
    for pane in panes:
        pane.close()


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_start_proxy_from_the_app_cache_a_request_and_quit(
    pane: Callable[[list[str]], TmuxPane], tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: '*'\n"
        "    litellm_params: {model: '*', mock_response: 'hello from the mock'}\n"
        "litellm_settings:\n"
        "  cache: true\n"
        "  cache_params: {type: disk, disk_cache_dir: ./cache}\n"
        "general_settings:\n"
        "  master_key: sk-terminal-secret\n"
    )
    app = pane(["--config", str(config)])
    wait_for(lambda: "Cache backend" in app.screen(), "the overview")
    screen = app.screen()
    assert "connected" in screen
    assert "sk-terminal-secret" not in screen

    port = free_port()
    app.keys("3")
    wait_for(lambda: "Start (s)" in app.screen(), "the proxy screen")
    app.keys("BTab")  # from the Start button back to the port field
    app.keys("C-u", str(port), "Escape")
    app.keys("s")
    wait_for(lambda: f"running on http://127.0.0.1:{port}" in app.screen(), "the proxy")

    body = {"model": "gpt-x", "messages": [{"role": "user", "content": "from tmux"}]}
    auth = {"Authorization": "Bearer sk-terminal-secret"}
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    first = httpx.post(url, json=body, headers=auth, timeout=10)
    second = httpx.post(url, json=body, headers=auth, timeout=10)
    assert first.headers["cache-status"] == "llmcache; fwd=miss; stored"
    assert second.headers["cache-status"] == "llmcache; hit"

    app.keys("2")
    wait_for(lambda: "gpt-x" in app.screen(), "the entry in the browser")
    wait_for(lambda: "from tmux" in app.screen(), "the prompt in the detail pane")

    app.keys("q")
    wait_for(lambda: not app.alive(), "the app to exit")
    wait_for(lambda: port_is_free(port), "the proxy port to be released", timeout=5)
