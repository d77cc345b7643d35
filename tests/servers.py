"""Real servers for end-to-end tests: any ASGI app under uvicorn, and the proxy built from a
LiteLLM ``config.yaml``.

``ThreadedServer`` runs an app in a daemon thread on a free loopback port, with the ASGI
lifespan on, so the proxy opens and closes its upstream client and cache backend exactly as
in production (a ``ProxyApp`` with the proxy's own HTTP protocol and limits, as ``serve``
runs it). ``EmbeddedServer`` runs the proxy as the terminal app does: ``EmbeddedProxy`` on
a plain asyncio loop. ``litellm_config`` writes the config shape users write; ``RunningProxy``
bundles the served app with ready-made clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import openai
import uvicorn
import yaml

from llmcache_tui.config import Settings, load_settings
from llmcache_tui.proxy.app import ProxyApp
from llmcache_tui.proxy.embedded import EmbeddedProxy, ProxyStartError
from llmcache_tui.proxy.protocol import ProxyServerConfig
from tests.ports import free_port

ASGIApp = Callable[..., Any]
T = TypeVar("T")

#: model_name -> litellm_params.model for the default model_list (all on the fake upstream)
DEFAULT_MODELS: dict[str, str] = {
    "gpt-4o-mini": "openai/gpt-4o-mini",
    "gpt-3.5-turbo-instruct": "text-completion-openai/gpt-3.5-turbo-instruct",
    "text-embedding-3-small": "openai/text-embedding-3-small",
    "whisper-1": "openai/whisper-1",
}
UPSTREAM_KEY = "sk-test"
#: Shared by every test client: loading the CA bundle for each new client would cost more
#: than most tests (everything here is plain HTTP on loopback anyway).
CLIENT_TLS = ssl.create_default_context()


class ThreadedServer:
    """Serve an ASGI app with uvicorn in a daemon thread on a free 127.0.0.1 port."""

    def __init__(self, app: ASGIApp, *, lifespan: str = "on", startup_timeout: float = 10.0):
        self.app = app
        self.lifespan = lifespan
        self.startup_timeout = startup_timeout
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        for _ in range(3):
            port = free_port()
            options: dict[str, Any] = {
                "host": "127.0.0.1",
                "port": port,
                "lifespan": self.lifespan,
                "log_level": "warning",
                "timeout_graceful_shutdown": 1,
            }
            # The proxy is served as ``serve`` serves it: its own protocol, with its limits.
            config = (
                ProxyServerConfig(self.app, limits=self.app.settings.connection_limits, **options)
                if isinstance(self.app, ProxyApp)
                else uvicorn.Config(self.app, **options)
            )
            server = uvicorn.Server(config)
            thread = threading.Thread(target=server.run, name=f"test-server-{port}", daemon=True)
            thread.start()
            deadline = time.monotonic() + self.startup_timeout
            while not server.started and thread.is_alive() and time.monotonic() < deadline:
                time.sleep(0.005)
            if server.started:
                self._server, self._thread, self.port = server, thread, port
                return self
            server.should_exit = True
            thread.join(5)
        raise RuntimeError("test server did not start (see the uvicorn log above)")

    def stop(self, *, wait: bool = True) -> None:
        """Ask uvicorn to shut down; with ``wait`` (the default) join its thread.

        Shutting down costs uvicorn a couple of 0.1 s ticks, so fixtures that stop many
        servers pass ``wait=False`` and call :meth:`join` later.
        """
        server = self._server
        if server is None:
            return
        server.should_exit = True
        if wait:
            self.join()

    def join(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        thread.join(5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5)
        self._server = self._thread = None

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedServer:
    """The proxy as the terminal app runs it: ``EmbeddedProxy`` on a plain asyncio loop.

    The loop (``asyncio.run``, never uvloop) runs in a daemon thread; :meth:`call` runs a
    function on it, for looking at the server's own state.
    """

    def __init__(self, app: ProxyApp, *, startup_timeout: float = 10.0) -> None:
        self.app = app
        self.startup_timeout = startup_timeout
        self.port = 0
        self.proxy: EmbeddedProxy | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EmbeddedServer:
        for _ in range(3):
            port = free_port()
            proxy = EmbeddedProxy(self.app, "127.0.0.1", port)
            thread = threading.Thread(
                target=asyncio.run, args=(self._serve(proxy),), name=f"embedded-{port}"
            )
            thread.daemon = True
            thread.start()
            deadline = time.monotonic() + self.startup_timeout
            while not proxy.running and thread.is_alive() and time.monotonic() < deadline:
                time.sleep(0.005)
            if proxy.running:
                self.proxy, self._thread, self.port = proxy, thread, port
                return self
            self._stop(proxy, thread)
        raise RuntimeError("the embedded proxy did not start (see the log above)")

    async def _serve(self, proxy: EmbeddedProxy) -> None:
        self._loop = asyncio.get_running_loop()
        with contextlib.suppress(ProxyStartError):  # a port race: start() tries another
            await proxy.serve()

    def call(self, function: Callable[[], T]) -> T:
        """``function()`` run on the proxy's loop, between its callbacks."""
        assert self._loop is not None

        async def run() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def stop(self) -> None:
        if self.proxy is not None and self._thread is not None:
            self._stop(self.proxy, self._thread)
        self.proxy = self._thread = None

    def _stop(self, proxy: EmbeddedProxy, thread: threading.Thread) -> None:
        if self._loop is not None and thread.is_alive():
            self._loop.call_soon_threadsafe(proxy.stop)
        thread.join(10)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def litellm_config(
    api_base: str,
    *,
    cache_params: dict[str, Any] | None = None,
    cache: bool = True,
    models: dict[str, str] | None = None,
    extra_models: list[dict[str, Any]] | None = None,
    general_settings: dict[str, Any] | None = None,
    llmcache: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A LiteLLM ``config.yaml`` document whose models all point at ``api_base``."""
    model_list: list[dict[str, Any]] = [
        {
            "model_name": name,
            "litellm_params": {"model": target, "api_base": api_base, "api_key": UPSTREAM_KEY},
        }
        for name, target in (DEFAULT_MODELS if models is None else models).items()
    ]
    model_list += extra_models or []
    litellm_settings: dict[str, Any] = {"cache": cache}
    if cache_params is not None:
        litellm_settings["cache_params"] = cache_params
    document: dict[str, Any] = {"model_list": model_list, "litellm_settings": litellm_settings}
    if general_settings:
        document["general_settings"] = general_settings
    if llmcache:
        document["llmcache"] = llmcache
    return document


def write_config(directory: Path, document: dict[str, Any]) -> Path:
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class RunningProxy:
    """A proxy served over real HTTP, and the pieces a test may inspect."""

    app: ProxyApp
    server: ThreadedServer
    config_path: Path

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def url(self) -> str:
        """The OpenAI SDK ``base_url`` (with ``/v1``)."""
        return self.server.base_url + "/v1"

    def sdk(self, api_key: str = "sk-anything") -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.url,
            api_key=api_key,
            max_retries=0,
            timeout=10,
            http_client=openai.DefaultHttpxClient(verify=CLIENT_TLS),
        )

    def http(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=10, verify=CLIENT_TLS, **kwargs)


def start_proxy(
    directory: Path,
    document: dict[str, Any],
    build: Callable[[Settings], ProxyApp] = ProxyApp.from_settings,
) -> RunningProxy:
    """Write ``document`` as ``config.yaml``, load it the way the CLI does, and serve it."""
    path = write_config(directory, document)
    app = build(load_settings(path))
    server = ThreadedServer(app).start()
    return RunningProxy(app, server, path)
