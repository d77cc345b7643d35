"""Run the proxy with uvicorn: ``llmcache-tui --headless serve``."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from llmcache_tui.config import BUILTIN_SOURCE, Settings, load_settings
from llmcache_tui.log_redaction import install_log_redaction
from llmcache_tui.proxy.app import ProxyApp
from llmcache_tui.proxy.embedded import bind_socket
from llmcache_tui.proxy.limits import raise_open_file_limit
from llmcache_tui.proxy.protocol import ProxyServerConfig

log = logging.getLogger("llmcache_tui.proxy")

# Worker processes re-read the config from here (uvicorn imports the app by name).
_WORKER_CONFIG_VAR = "LLMCACHE_WORKER_CONFIG"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def app_for_worker() -> ProxyApp:
    """The app factory uvicorn calls in each worker process."""
    path = os.environ.get(_WORKER_CONFIG_VAR) or None
    settings = load_settings(path)
    install_log_redaction(settings.redactor)
    return ProxyApp.from_settings(settings)


def describe(settings: Settings, host: str, port: int) -> str:
    """The one-line start-up summary (no secrets)."""
    cache = settings.cache
    if cache is None:
        cache_text = "off"
    else:
        cache_text = cache.type + (f" (namespace {cache.namespace})" if cache.namespace else "")
        if cache.type == "disk":
            cache_text += f" in {cache.params.disk_cache_dir}"
    auth = "master key required" if settings.master_key else "no auth (no master_key)"
    return (
        f"llmcache-tui proxy on http://{host}:{port} - config: {settings.source};"
        f" cache: {cache_text}; models: {len(settings.model_list)}; {auth}"
    )


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int = 1,
    log_level: str = "info",
    access_log: bool = False,
) -> int:
    """Serve until Ctrl-C or SIGTERM (uvicorn shuts down gracefully on both)."""
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    install_log_redaction(settings.redactor)
    open_files = raise_open_file_limit()
    log.debug("open-file limit: %s", open_files or "none")
    for warning in settings.warnings:
        log.warning("config: %s", warning)
    if settings.cache is not None and settings.cache.type == "local" and workers > 1:
        log.warning("cache type local keeps a separate cache in each of the %d workers", workers)
    log.info("%s", describe(settings, host, port))
    target: ProxyApp | str
    if workers > 1:
        source = "" if settings.source == BUILTIN_SOURCE else os.path.abspath(settings.source)
        os.environ[_WORKER_CONFIG_VAR] = source
        target = "llmcache_tui.proxy.server:app_for_worker"
    else:
        target = ProxyApp.from_settings(settings)
    config = ProxyServerConfig(
        target,
        limits=settings.connection_limits,
        factory=workers > 1,
        workers=workers,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=10,
    )
    with _clean_exit_on_sigterm(single_process=workers == 1):
        return _run(config)


def _run(config: ProxyServerConfig) -> int:
    """What ``uvicorn.run`` does, for a config it cannot build itself."""
    try:
        if config.workers > 1:
            try:
                sock = bind_socket(config.host, config.port)
            except OSError as exc:
                log.error("cannot listen on %s:%d: %s", config.host, config.port, exc.strerror)
                return STARTUP_FAILURE
            try:
                Multiprocess(config, sockets=[sock]).run()
            finally:
                sock.close()
            return 0
        server = uvicorn.Server(config)
        server.run()
    except KeyboardInterrupt:  # uvicorn raises a Ctrl-C again once it has shut down
        return 0
    return 0 if server.started else STARTUP_FAILURE


@contextlib.contextmanager
def _clean_exit_on_sigterm(*, single_process: bool) -> Iterator[None]:
    """Make a SIGTERM-requested stop exit with status 0.

    uvicorn handles SIGTERM itself and shuts down gracefully, then restores the previous
    handler and raises the signal again; with the default handler still in place the
    process would die of the signal (status -15) after a clean shutdown. A SIGINT raised
    again is a KeyboardInterrupt that :func:`_run` swallows.
    """
    if not single_process or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit_zero)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_zero(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
