"""Access logs hold no query strings, and logs no secret: the headless server's stderr
(``--access-log``) and the embedded proxy's log in the terminal app.

A client that sends its key in the query (``GET /health?key=...``) must not find it in the
log; nor may the Redis password of a ``REDIS_URL`` whose server is down, though every
request logs that the cache failed.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from textual.widgets import RichLog

from llmcache_tui.app import LLMCacheApp
from tests.fake_upstream import FakeUpstreamServer
from tests.ports import free_port
from tests.servers import litellm_config, write_config
from tests.test_serve_cli import CHAT, CLI, EXIT_LIMIT, ServeProcess, _wait_until_live
from tests.tui_support import SIZE, make_app, start_proxy, wait_until

MASTER_KEY = "sk-master-QUERY-9f3b"
REDIS_PASSWORD = "redis@Pass:word-77"
# /health needs the master key: the key in the query is not how to send it (401).
ACCESS_LINE = '"GET /health HTTP/1.1" 401'


def _launch(config: Path, env: dict[str, str]) -> ServeProcess:
    """``--headless serve --access-log`` on a free port (retrying a port race)."""
    for _ in range(3):
        port = free_port()
        process = subprocess.Popen(
            [
                CLI,
                "--headless",
                "serve",
                "--access-log",
                "--config",
                str(config),
                "--port",
                str(port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        base_url = f"http://127.0.0.1:{port}"
        if _wait_until_live(process, base_url):
            return ServeProcess(process, base_url)
        process.kill()
        process.communicate(timeout=EXIT_LIMIT)
    raise RuntimeError("llmcache-tui serve did not start")


def test_headless_logs_hold_no_query_and_no_secret(
    tmp_path: Path, upstream: FakeUpstreamServer
) -> None:
    dead_redis = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
    env["REDIS_URL"] = dead_redis
    document = litellm_config(
        upstream.url,
        cache_params={"type": "redis"},
        general_settings={"master_key": MASTER_KEY},
    )
    server = _launch(write_config(tmp_path, document), env)
    try:
        auth = {"Authorization": f"Bearer {MASTER_KEY}"}
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            assert http.get(f"/health?key={MASTER_KEY}").status_code == 401
            assert http.get(f"/health?key={quote(MASTER_KEY)}&x=1").status_code == 401
            served = http.post("/v1/chat/completions", json=CHAT, headers=auth)
            assert served.status_code == 200
            assert http.get("/cache/ping", headers=auth).status_code == 503
    finally:
        server.process.send_signal(signal.SIGTERM)
        stdout, stderr = server.process.communicate(timeout=EXIT_LIMIT)
    assert server.process.returncode == 0, stderr
    logged = stdout + stderr  # uvicorn writes its access lines to stdout
    assert logged.count(ACCESS_LINE) == 2, logged
    assert "cache unavailable" in stderr  # the failure was logged, without the password
    for secret in (MASTER_KEY, REDIS_PASSWORD, quote(REDIS_PASSWORD, safe=""), "word-77"):
        assert secret not in logged, logged


@pytest.mark.usefixtures("uvicorn_logs_to_app")
async def test_the_embedded_proxy_log_holds_no_query(tui_config: Callable[..., str]) -> None:
    app: LLMCacheApp = make_app(tui_config(master_key=MASTER_KEY))
    async with app.run_test(size=SIZE) as pilot:
        url = await start_proxy(pilot)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            reply = await client.get(f"/health?key={MASTER_KEY}")
        assert reply.status_code == 401
        await pilot.press("r")  # the raw log

        def shown() -> str:
            return "\n".join(s.text for s in app.screen.query_one("#proxy-log", RichLog).lines)

        await wait_until(pilot, lambda: ACCESS_LINE in shown(), what="the access line")
        assert MASTER_KEY not in shown()
        assert not any(MASTER_KEY in line for line in app.log_bridge.lines)
        await pilot.press("x")
        await wait_until(pilot, lambda: not app.session.proxy_running, what="the stop")
