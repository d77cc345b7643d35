"""End to end: what one client connection may hold, over raw sockets.

Header block size and header count (431), idle, slow-header and slow-body connections
(closed, 408 where a request had begun), the connection budget (503), TCP_NODELAY on
the embedded proxy's connections, and the open-file limit of a real ``serve`` process.
Every check runs on the proxy as ``serve`` runs it (uvloop) and as the terminal app runs
it (``EmbeddedProxy`` on a plain asyncio loop).
"""

from __future__ import annotations

import resource
import select
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from llmcache_tui.config import load_settings
from llmcache_tui.proxy.app import ProxyApp
from llmcache_tui.proxy.asgi import TIMING_EXTENSION, received_at
from tests.conftest import ProxyFactory
from tests.fake_upstream import FakeUpstreamServer
from tests.ports import free_port
from tests.servers import CLIENT_TLS, EmbeddedServer, litellm_config, write_config
from tests.test_serve_cli import CLI, EXIT_LIMIT, _wait_until_live

# Generous bounds for "the server closes it": far above the configured timeouts, so a
# loaded machine cannot fail them; they only stop a broken server from hanging the test.
EOF_WAIT = 20.0
SHORT = 0.5  # the timeouts configured for the tests, in seconds
HEALTH = b"GET /health/liveliness HTTP/1.1\r\nHost: proxy\r\n\r\n"
CHAT: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}

Serve = Callable[..., tuple[str, int]]


@pytest.fixture(params=["headless", "embedded"])
def serve(
    request: pytest.FixtureRequest,
    make_proxy: ProxyFactory,
    tmp_path: Path,
    upstream: FakeUpstreamServer,
) -> Iterator[Serve]:
    """``serve(**general_settings)`` -> (host, port) of a proxy with those limits.

    headless: the proxy under uvicorn as ``serve`` runs it (uvloop, the proxy's protocol);
    embedded: ``EmbeddedProxy`` on a plain asyncio loop, as in the terminal app.
    """
    embedded: list[EmbeddedServer] = []

    def start(**general: Any) -> tuple[str, int]:
        if request.param == "headless":
            proxy = make_proxy(cache_type="local", general_settings=general)
            return "127.0.0.1", proxy.server.port
        document = litellm_config(
            upstream.url, cache_params={"type": "local"}, general_settings=general
        )
        directory = tmp_path / f"embedded-{len(embedded)}"
        directory.mkdir()
        settings = load_settings(write_config(directory, document))
        server = EmbeddedServer(ProxyApp.from_settings(settings)).start()
        embedded.append(server)
        return "127.0.0.1", server.port

    yield start
    for server in embedded:
        server.stop()


class Connection:
    """A raw client connection that reads responses one at a time (pipelining-safe)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=EOF_WAIT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self) -> tuple[int, dict[bytes, bytes], bytes]:
        """The next response, which has a content-length: (status, headers, body)."""
        while b"\r\n\r\n" not in self.buffer:
            self._more("before a response")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.split(b"\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers[b"content-length"])
        while len(self.buffer) < length:
            self._more("in the middle of a response body")
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body

    def status(self) -> int:
        return self.response()[0]

    def rest(self) -> bytes:
        """Everything until the server closes (socket.timeout after EOF_WAIT)."""
        while chunk := self.sock.recv(65536):
            self.buffer += chunk
        rest, self.buffer = self.buffer, b""
        return rest

    def _more(self, where: str) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"connection closed {where}; got {self.buffer!r}"
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def health(address: tuple[str, int]) -> int:
    with Connection(address) as conn:
        conn.send(HEALTH)
        return conn.status()


def error_message(body: bytes) -> str:
    message: str = orjson.loads(body)["error"]["message"]
    return message


# -- header limits -----------------------------------------------------------------------
def test_a_header_block_over_the_limit_gets_431(serve: Serve) -> None:
    address = serve()
    with Connection(address) as conn:
        conn.send(b"GET /health/liveliness HTTP/1.1\r\nHost: proxy\r\n")
        conn.send(b"X-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        status, headers, body = conn.response()
        assert status == 431
        assert headers[b"connection"] == b"close"
        assert "max_request_header_size_kb" in error_message(body)
        assert conn.rest() == b""
    assert health(address) == 200


def test_the_header_size_limit_is_configurable(serve: Serve) -> None:
    address = serve(max_request_header_size_kb=8)
    request = b"GET /health/liveliness HTTP/1.1\r\nHost: proxy\r\nX-Pad: %s\r\n\r\n"
    with Connection(address) as conn:
        conn.send(request % (b"a" * 6_000))
        assert conn.status() == 200
    with Connection(address) as conn:
        conn.send(request % (b"a" * 10_000))
        status, _, body = conn.response()
        assert status == 431
        assert "8 KiB" in error_message(body)


def test_too_many_headers_get_431(serve: Serve) -> None:
    address = serve()
    headers = b"".join(b"X-H%d: v\r\n" % n for n in range(150))
    with Connection(address) as conn:
        conn.send(b"GET /health/liveliness HTTP/1.1\r\nHost: proxy\r\n" + headers + b"\r\n")
        status, _, body = conn.response()
        assert status == 431
        assert "max_request_headers" in error_message(body)
    assert health(address) == 200


def test_a_huge_header_block_does_not_stall_other_clients(serve: Serve) -> None:
    address = serve()
    started = threading.Event()
    outcome: list[bytes | str] = []

    def flood() -> None:
        with Connection(address) as conn:
            try:
                conn.send(b"GET /health/liveliness HTTP/1.1\r\nHost: proxy\r\nX-Big: ")
                started.set()
                for _ in range(1024):  # up to 64 MiB, 64 KiB at a time
                    conn.send(b"a" * 65536)
                outcome.append("the server read 64 MiB of headers")
            except ConnectionError:  # refused, and reset once the lingering budget ran out
                outcome.append(b"closed")

    thread = threading.Thread(target=flood)
    thread.start()
    try:
        assert started.wait(EOF_WAIT)
        assert health(address) == 200
    finally:
        thread.join(EOF_WAIT)
    assert outcome == [b"closed"]


def test_large_bodies_and_pipelined_requests_pass_the_header_accounting(
    serve: Serve, upstream: FakeUpstreamServer
) -> None:
    address = serve()
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 500_000}]}
    body = orjson.dumps(big)
    post = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    ) + body
    with Connection(address) as conn:
        conn.send(post + HEALTH + HEALTH)  # one write: headers, body and more requests
        assert conn.status() == 200
        assert conn.status() == 200
        assert conn.status() == 200
    assert upstream.app.call_count() == 1


# -- slow and idle connections -------------------------------------------------------------
def test_a_silent_connection_is_closed(serve: Serve) -> None:
    address = serve(idle_connection_timeout=SHORT)
    with Connection(address) as conn:
        assert conn.rest() == b""


def test_an_idle_kept_alive_connection_is_closed(serve: Serve) -> None:
    address = serve(idle_connection_timeout=SHORT)
    with Connection(address) as conn:
        conn.send(HEALTH)
        assert conn.status() == 200
        assert conn.rest() == b""


def test_blank_lines_do_not_keep_a_connection_open(serve: Serve) -> None:
    address = serve(idle_connection_timeout=SHORT)
    with Connection(address) as conn:
        conn.send(HEALTH)
        conn.response()
        conn.send(b"\r\n")
        assert conn.rest() == b""


def test_headers_sent_a_byte_at_a_time_get_408_and_a_close(serve: Serve) -> None:
    address = serve(request_header_timeout=SHORT)
    trickle = b"GET /health/liveliness HTTP/1.1\r\nHost: proxy\r\n" + b"X-Slow: loris\r\n" * 1000
    with Connection(address) as conn:
        for byte in trickle:  # until the server answers; never the whole header block
            conn.send(bytes([byte]))
            if select.select([conn.sock], [], [], 0.02)[0]:
                break
        status, headers, body = conn.response()
        assert status == 408
        assert headers[b"connection"] == b"close"
        assert "request_header_timeout" in error_message(body)
        assert conn.rest() == b""
    assert health(address) == 200


def test_a_body_that_does_not_arrive_in_time_gets_408(serve: Serve) -> None:
    address = serve(request_body_timeout=SHORT)
    with Connection(address) as conn:
        conn.send(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\n"
            b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model":'
        )
        status, _, body = conn.response()
        assert status == 408
        assert "request_body_timeout" in error_message(body)
        assert conn.rest() == b""
    assert health(address) == 200


def test_a_slow_upstream_answer_is_not_cut_off(serve: Serve, upstream: FakeUpstreamServer) -> None:
    """The deadlines cover the request's arrival, not the time the proxy takes to answer."""
    address = serve(
        idle_connection_timeout=SHORT, request_header_timeout=SHORT, request_body_timeout=SHORT
    )
    upstream.app.delay = 1.5
    with httpx.Client(base_url=f"http://{address[0]}:{address[1]}", verify=CLIENT_TLS) as http:
        response = http.post("/v1/chat/completions", json=CHAT, timeout=EOF_WAIT)
    assert response.status_code == 200


# -- connection budget ----------------------------------------------------------------------
def test_connections_over_the_budget_get_503_not_an_empty_reply(serve: Serve) -> None:
    address = serve(max_connections=2)
    first, second = Connection(address), Connection(address)
    try:
        for conn in (first, second):  # both accepted, kept open
            conn.send(HEALTH)
            assert conn.status() == 200
        with Connection(address) as third:
            third.send(HEALTH)
            assert third.status() == 503
    finally:
        first.close()
        second.close()


# -- TCP_NODELAY and stats timing -----------------------------------------------------------
def test_embedded_proxy_connections_have_tcp_nodelay(
    tmp_path: Path, upstream: FakeUpstreamServer
) -> None:
    """On asyncio's own loop, a listening socket made with proto 0 gives connections
    without TCP_NODELAY, and every response on a reused connection waits ~40 ms."""
    settings = load_settings(write_config(tmp_path, litellm_config(upstream.url)))
    with (
        EmbeddedServer(ProxyApp.from_settings(settings)) as server,
        Connection(("127.0.0.1", server.port)) as conn,
    ):
        conn.send(HEALTH)
        assert conn.status() == 200
        assert server.proxy is not None
        state = server.proxy._server.server_state

        def nodelay() -> list[int]:
            sockets = [proto.transport.get_extra_info("socket") for proto in state.connections]
            return [s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets]

        flags = server.call(nodelay)
        assert flags and all(flags)


def test_latency_is_timed_from_the_first_byte_the_server_saw() -> None:
    scope: dict[str, Any] = {"extensions": {TIMING_EXTENSION: {"received_at": 12.5}}}
    assert received_at(scope) == 12.5
    assert received_at({"extensions": {}}) > 0  # another server: from now


def test_the_server_tells_the_app_when_a_request_arrived(
    make_proxy: ProxyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = make_proxy(cache_type="local")
    seen: list[float] = []
    original = proxy.app.handle_llm

    async def spy(route: str, scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["extensions"][TIMING_EXTENSION]["received_at"])
        await original(route, scope, receive, send)

    monkeypatch.setattr(proxy.app, "handle_llm", spy)
    with proxy.http() as http:
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert len(seen) == 1


# -- the real CLI ------------------------------------------------------------------------------
def test_serve_raises_the_open_file_limit_and_enforces_the_limits(
    tmp_path: Path, upstream: FakeUpstreamServer
) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip(f"needs a finite hard open-file limit above 256 (hard limit: {hard})")
    document = litellm_config(
        upstream.url,
        cache_params={"type": "local"},
        general_settings={"idle_connection_timeout": SHORT},
    )
    config = write_config(tmp_path, document)
    port = free_port()

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    process = subprocess.Popen(
        [CLI, "--headless", "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=low_limit,
    )
    try:
        assert _wait_until_live(process, f"http://127.0.0.1:{port}")
        limits = Path(f"/proc/{process.pid}/limits").read_text()
        line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        assert line.split()[3:5] == [str(hard), str(hard)]
        address = ("127.0.0.1", port)
        with Connection(address) as conn:
            conn.send(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
            assert conn.status() == 431
        with Connection(address) as conn:
            assert conn.rest() == b""
    finally:
        process.terminate()
        process.communicate(timeout=EXIT_LIMIT)
