"""Every Redis setup of the LiteLLM caching docs, from ``cache_params`` or ``REDIS_*``
variables, connects to a real server; bad settings are config errors naming the key or
variable.

Each backend is built from settings exactly as the proxy builds it, then probed (ping,
write, read back, delete); where a setting has an effect the server can see (the database,
the client name, the TLS handshake), the server is asked. The developer's own ``REDIS_*``
variables are removed for every test (``no_redis_env``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from redis.asyncio import ConnectionPool, Redis

from llmcache_tui.cache.backends import CacheBackend
from llmcache_tui.cache.backends.redis import RedisBackend
from llmcache_tui.cache.health import ProbeResult, probe_backend
from llmcache_tui.config import ConfigError
from tests import redis_servers as rs
from tests.ports import free_port
from tests.redis_support import (
    assert_no_password,
    build,
    cluster_params,
    server_params,
)

pytestmark = pytest.mark.usefixtures("no_redis_env")


async def probe(backend: CacheBackend) -> ProbeResult:
    """Probe ``backend``, then close it."""
    try:
        return await probe_backend(backend)
    finally:
        await backend.close()


async def assert_healthy(backend: CacheBackend) -> dict[str, Any]:
    """Probe ``backend`` (then close it); return its masked connection parameters."""
    shown = backend.describe()
    result = await probe(backend)
    assert result.healthy, result.error
    assert result.server["redis_version"]
    assert_no_password(repr(shown))
    return shown


def redis_backend(backend: CacheBackend) -> RedisBackend:
    assert isinstance(backend, RedisBackend)
    return backend


def pool(backend: RedisBackend) -> ConnectionPool:
    """The connection pool of a single-server backend."""
    assert isinstance(backend.client, Redis)
    return backend.client.connection_pool


# --------------------------------------------------------------------------- one server


async def test_host_port_password(redis_password: rs.RedisProcess) -> None:
    shown = await assert_healthy(build(server_params(redis_password)))
    assert shown["mode"] == "single"
    assert (shown["host"], shown["port"]) == ("127.0.0.1", redis_password.port)
    assert shown["password"] == "********"


async def test_port_as_a_string_like_the_docs(redis_plain: rs.RedisProcess) -> None:
    await assert_healthy(build({"host": "127.0.0.1", "port": str(redis_plain.port)}))


async def test_username_and_password_of_an_acl_user(redis_acl: rs.RedisProcess) -> None:
    shown = await assert_healthy(build(server_params(redis_acl)))
    assert shown["username"] == "alice"


async def test_db_selects_the_database(redis_plain: rs.RedisProcess) -> None:
    backend = build({**server_params(redis_plain), "db": 2})
    await backend.set("in-two", b"v")
    await assert_healthy(backend)
    with redis_plain.client(db=2) as two, redis_plain.client(db=0) as zero:
        assert two.get("in-two") == b"v"
        assert zero.exists("in-two") == 0


async def test_url_with_a_quoted_password(redis_password: rs.RedisProcess) -> None:
    assert "p%40ss%3Aw%2Frd%21" in redis_password.url
    shown = await assert_healthy(build({"url": redis_password.url}))
    assert shown["url"] == f"redis://:********@127.0.0.1:{redis_password.port}/0"


async def test_redis_url_variable_with_an_acl_user(
    redis_acl: rs.RedisProcess, no_redis_env: pytest.MonkeyPatch
) -> None:
    no_redis_env.setenv("REDIS_URL", redis_acl.url)
    shown = await assert_healthy(build({}))
    assert shown["url"] == f"redis://alice:********@127.0.0.1:{redis_acl.port}/0"


async def test_host_port_password_variables(
    redis_password: rs.RedisProcess, no_redis_env: pytest.MonkeyPatch
) -> None:
    no_redis_env.setenv("REDIS_HOST", "127.0.0.1")
    no_redis_env.setenv("REDIS_PORT", str(redis_password.port))
    no_redis_env.setenv("REDIS_PASSWORD", rs.PASSWORD)
    await assert_healthy(build({}))


async def test_any_client_kwarg_variable_reaches_the_client(
    redis_plain: rs.RedisProcess, no_redis_env: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_plain.port),
        "REDIS_DB": "3",
        "REDIS_CLIENT_NAME": "llmcache-under-test",
        "REDIS_SOCKET_TIMEOUT": "2.5",
        "REDIS_MAX_CONNECTIONS": "7",
        "REDIS_VERSION": "7.2.4",  # what the official image sets: not a client kwarg
    }.items():
        no_redis_env.setenv(name, value)
    backend = redis_backend(build({}))
    try:
        await backend.set("k", b"v")
        assert pool(backend).max_connections == 7
        assert pool(backend).connection_kwargs["socket_timeout"] == 2.5
        with redis_plain.client() as raw:
            ours = [c for c in raw.client_list() if c["name"] == "llmcache-under-test"]
            assert [c["db"] for c in ours] == ["3"]
        with redis_plain.client(db=3) as raw:
            assert raw.get("k") == b"v"
    finally:
        await backend.close()


@pytest.mark.parametrize("password", ["007", "1e3", "true", "None"])
async def test_a_password_that_looks_like_a_number_stays_text(
    make_redis_server: Any, no_redis_env: pytest.MonkeyPatch, password: str
) -> None:
    server: rs.RedisProcess = make_redis_server(password=password)
    no_redis_env.setenv("REDIS_HOST", "127.0.0.1")
    no_redis_env.setenv("REDIS_PORT", str(server.port))
    no_redis_env.setenv("REDIS_PASSWORD", password)
    await assert_healthy(build({}))


async def test_cache_params_win_over_variables(
    redis_plain: rs.RedisProcess, no_redis_env: pytest.MonkeyPatch
) -> None:
    no_redis_env.setenv("REDIS_HOST", "127.0.0.1")
    no_redis_env.setenv("REDIS_PORT", str(free_port()))  # nothing listens there
    await assert_healthy(build({"port": redis_plain.port}))


@pytest.mark.parametrize("where", ["cache_params", "url", "variable"])
async def test_max_connections_sizes_the_pool(
    redis_plain: rs.RedisProcess, no_redis_env: pytest.MonkeyPatch, where: str
) -> None:
    if where == "variable":
        no_redis_env.setenv("REDIS_MAX_CONNECTIONS", "100")
        params: dict[str, Any] = server_params(redis_plain)
    elif where == "url":
        params = {"url": redis_plain.url, "max_connections": 100}
    else:
        params = {**server_params(redis_plain), "max_connections": 100}
    backend = redis_backend(build(params))
    assert pool(backend).max_connections == 100
    await assert_healthy(backend)


# --------------------------------------------------------------------------- TLS


async def test_redis_ssl_variable(
    redis_tls: rs.RedisProcess, no_redis_env: pytest.MonkeyPatch
) -> None:
    no_redis_env.setenv("REDIS_HOST", "localhost")  # the certificate's name
    no_redis_env.setenv("REDIS_PORT", str(redis_tls.port))
    no_redis_env.setenv("REDIS_SSL", "True")
    no_redis_env.setenv("REDIS_SSL_CA_CERTS", str(redis_tls.ca_cert))
    await assert_healthy(build({}))


async def test_rediss_url_variable(
    redis_tls: rs.RedisProcess, no_redis_env: pytest.MonkeyPatch
) -> None:
    no_redis_env.setenv("REDIS_URL", redis_tls.url)
    no_redis_env.setenv("REDIS_SSL_CA_CERTS", str(redis_tls.ca_cert))
    no_redis_env.setenv("REDIS_SSL", "True")  # said twice, as users do: still fine
    assert (await assert_healthy(build({})))["url"] == redis_tls.url


async def test_docs_tls_params_without_verification(redis_tls: rs.RedisProcess) -> None:
    """The docs' GCP example: ``ssl: true``, ``ssl_cert_reqs: null``, no hostname check."""
    params = {
        "host": "127.0.0.1",
        "port": redis_tls.port,
        "ssl": True,
        "ssl_cert_reqs": None,
        "ssl_check_hostname": False,
    }
    await assert_healthy(build(params))


async def test_tls_variables_without_verification(
    redis_tls: rs.RedisProcess, no_redis_env: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_tls.port),
        "REDIS_SSL": "True",
        "REDIS_SSL_CERT_REQS": "None",
        "REDIS_SSL_CHECK_HOSTNAME": "False",
    }.items():
        no_redis_env.setenv(name, value)
    await assert_healthy(build({}))


@pytest.mark.parametrize(
    "extra",
    [
        {"ssl": True},
        {"ssl_cert_reqs": "required", "ssl_check_hostname": True},
    ],
)
async def test_url_and_tls_params_combine(
    redis_tls: rs.RedisProcess, extra: dict[str, Any]
) -> None:
    params = {"url": redis_tls.url, "ssl_ca_certs": str(redis_tls.ca_cert), **extra}
    await assert_healthy(build(params))


async def test_ssl_true_upgrades_a_redis_url(redis_tls: rs.RedisProcess) -> None:
    url = f"redis://127.0.0.1:{redis_tls.port}/0"
    params = {"url": url, "ssl": True, "ssl_ca_certs": str(redis_tls.ca_cert)}
    shown = await assert_healthy(build(params))
    assert shown["url"] == redis_tls.url


async def test_tls_params_are_ignored_by_a_plain_url(redis_plain: rs.RedisProcess) -> None:
    params = {"url": redis_plain.url, "ssl": False, "ssl_cert_reqs": None}
    await assert_healthy(build(params))


async def test_tls_verification_uses_the_given_ca(redis_tls: rs.RedisProcess) -> None:
    params = {
        "url": redis_tls.url,
        "ssl_ca_certs": str(redis_tls.other_ca_cert),
        "ssl_cert_reqs": "required",
    }
    result = await probe(build(params))
    assert not result.healthy
    assert result.error is not None
    assert "TLS failed" in result.error
    assert "certificate verify failed" in result.error


# --------------------------------------------------------------------------- cluster


async def test_cluster_nodes_variable(
    redis_cluster: rs.RedisClusterNodes, no_redis_env: pytest.MonkeyPatch
) -> None:
    nodes = [{"host": n["host"], "port": str(n["port"])} for n in redis_cluster.startup_nodes]
    no_redis_env.setenv("REDIS_CLUSTER_NODES", json.dumps(nodes))
    backend = redis_backend(build({"db": 0}))
    assert backend.options.mode == "cluster"
    shown = await assert_healthy(backend)
    assert shown["mode"] == "cluster"
    assert shown["startup_nodes"] == [f"127.0.0.1:{port}" for port in redis_cluster.ports]


async def test_cluster_startup_nodes_with_a_password(
    make_redis_cluster: Any,
) -> None:
    cluster: rs.RedisClusterNodes = make_redis_cluster(password="ya29.fake-iam-token")
    await assert_healthy(build(cluster_params(cluster)))
    result = await probe(build({**cluster_params(cluster), "password": "wrong"}))
    assert result.error is not None
    assert "authentication failed" in result.error


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("params", "env", "message"),
    [
        ({}, {"REDIS_CLUSTER_NODES": "not json"}, "REDIS_CLUSTER_NODES: not valid JSON"),
        ({}, {"REDIS_CLUSTER_NODES": '{"host": "h"}'}, "REDIS_CLUSTER_NODES: expected a non"),
        (
            {"redis_startup_nodes": [{"host": "h"}]},
            {},
            "cache_params.redis_startup_nodes[0]: port must be a number",
        ),
        ({"port": "abc"}, {}, "litellm_settings.cache_params.port: expected a port number"),
        ({}, {"REDIS_PORT": "abc"}, "REDIS_PORT: expected a port number, got 'abc'"),
        ({"db": "one"}, {}, "cache_params.db: expected a whole number"),
        ({}, {"REDIS_MAX_CONNECTIONS": "lots"}, "REDIS_MAX_CONNECTIONS: expected a whole"),
        (
            {"sentinel_nodes": [["127.0.0.1", 26379]]},
            {},
            "cache_params.service_name: required with sentinel_nodes",
        ),
        ({}, {"REDIS_SENTINEL_NODES": '[["h", 1]]'}, "service_name: required"),
        ({}, {"REDIS_SENTINEL_NODES": "[[1, 2"}, "REDIS_SENTINEL_NODES: not valid JSON"),
        ({"sentinel_nodes": [["h"]]}, {}, "cache_params.sentinel_nodes[0]: expected"),
        (
            {"gcp_service_account": "projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com"},
            {},
            "gcp_service_account: GCP IAM authentication needs a Redis Cluster",
        ),
        ({}, {"REDIS_URL": "localhost:6379"}, "REDIS_URL: expected a URL starting with"),
        ({"url": "http://u:secret@h"}, {}, "cache_params.url: expected a URL starting with"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_key(
    no_redis_env: pytest.MonkeyPatch,
    params: dict[str, Any],
    env: dict[str, str],
    message: str,
) -> None:
    for name, value in env.items():
        no_redis_env.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        build(params)
    assert message in str(raised.value)
    assert "secret" not in str(raised.value)
