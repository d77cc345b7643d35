"""Shared pytest fixtures for the llmcache-tui test suite.

Fixtures are grouped in sections; add new ones under their own section header.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmcache_tui.config import Settings
from llmcache_tui.proxy.app import ProxyApp
from tests.fake_upstream import FakeUpstreamServer
from tests.servers import RunningProxy, ThreadedServer, litellm_config, start_proxy

# --------------------------------------------------------------------------- fake upstream


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstreamServer]:
    """One fake OpenAI-compatible provider, running for the whole test session."""
    with FakeUpstreamServer() as server:
        yield server


@pytest.fixture
def upstream(fake_upstream: FakeUpstreamServer) -> FakeUpstreamServer:
    """The session's fake provider, reset: no recorded calls, no queued behaviour."""
    fake_upstream.app.reset()
    return fake_upstream


# --------------------------------------------------------------------------- proxy under test
# The real proxy served over HTTP on a free port (see tests/servers.py); added for the
# end-to-end tests in tests/test_proxy_*.py.

ProxyFactory = Callable[..., RunningProxy]


@pytest.fixture(scope="session")
def _stopping_servers() -> Iterator[list[ThreadedServer]]:
    """Servers told to stop by function fixtures, joined once at the end of the session."""
    stopping: list[ThreadedServer] = []
    yield stopping
    for server in stopping:
        server.join()


@pytest.fixture
def make_proxy(
    tmp_path: Path, upstream: FakeUpstreamServer, _stopping_servers: list[ThreadedServer]
) -> Iterator[ProxyFactory]:
    """Start proxies from LiteLLM configs pointing at the fake upstream; all stop at teardown.

    ``make_proxy(cache_params=None, *, cache_type="disk", build=..., api_base=None, **kwargs)``:
    ``cache_params`` are merged over ``{"type": cache_type}`` (plus a ``disk_cache_dir`` under
    ``tmp_path`` for the disk type); ``build`` turns the loaded settings into the app;
    ``api_base`` replaces the fake upstream's URL; ``kwargs`` go to ``litellm_config``.
    """
    running: list[RunningProxy] = []

    def make(
        cache_params: dict[str, Any] | None = None,
        *,
        cache_type: str = "disk",
        build: Callable[[Settings], ProxyApp] = ProxyApp.from_settings,
        api_base: str | None = None,
        **config: Any,
    ) -> RunningProxy:
        directory = tmp_path / f"proxy-{len(running)}"
        directory.mkdir()
        params: dict[str, Any] = {"type": cache_type}
        if cache_type == "disk":
            params["disk_cache_dir"] = str(tmp_path / "disk-cache")
        params.update(cache_params or {})
        document = litellm_config(api_base or upstream.url, cache_params=params, **config)
        proxy = start_proxy(directory, document, build)
        running.append(proxy)
        return proxy

    yield make
    for proxy in running:
        proxy.server.stop(wait=False)
        _stopping_servers.append(proxy.server)


@pytest.fixture
def proxy(make_proxy: ProxyFactory) -> RunningProxy:
    """A proxy with the disk cache and default settings."""
    return make_proxy()


@pytest.fixture(params=["disk", "local"])
def any_proxy(request: pytest.FixtureRequest, make_proxy: ProxyFactory) -> RunningProxy:
    """A proxy with default settings, once per cheap backend."""
    return make_proxy(cache_type=request.param)


@pytest.fixture
def proxy_sdk(proxy: RunningProxy) -> Iterator[openai.OpenAI]:
    """An OpenAI SDK client for ``proxy`` (no retries)."""
    with proxy.sdk() as client:
        yield client


@pytest.fixture
def proxy_http(proxy: RunningProxy) -> Iterator[httpx.Client]:
    """A raw HTTP client for ``proxy``."""
    with proxy.http() as client:
        yield client


# --------------------------------------------------------------------------- terminal app
# For tests/test_tui_*.py; their helpers live in tests/tui_support.py.

_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture
def tui_config(upstream: FakeUpstreamServer) -> Callable[..., str]:
    """``tui_config(cache_type="local", **kwargs)``: config.yaml text, models on the fake."""
    from tests.tui_support import config_text

    def make(**kwargs: Any) -> str:
        return config_text(upstream.url, **kwargs)

    return make


@pytest.fixture
def tui_disk_config(tui_config: Callable[..., str], tmp_path: Path) -> str:
    """Config text for the disk cache at ``tmp_path/"disk-cache"``: the directory that
    ``make_proxy(cache_type="disk")`` serves, so the app sees what that proxy stored."""
    directory = str(tmp_path / "disk-cache")
    return tui_config(cache_type="disk", cache_params={"disk_cache_dir": directory})


@pytest.fixture
def uvicorn_logs_to_app() -> Iterator[None]:
    """Let uvicorn's records reach the app's log bridge, as they do in production.

    The in-process test servers (the fake upstream, ``ThreadedServer``) configure uvicorn's
    loggers (WARNING level, their own stderr handlers, no propagation), which hides the
    embedded proxy's lines from the proxy screen. Restored afterwards.
    """
    import logging

    saved = []
    for name in _UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, list(logger.handlers), logger.propagate))
        if name != "uvicorn":
            logger.setLevel(logging.NOTSET)
            logger.handlers = []
            logger.propagate = True
    yield
    for logger, level, handlers, propagate in saved:
        logger.setLevel(level)
        logger.handlers = handlers
        logger.propagate = propagate
