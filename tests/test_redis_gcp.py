"""GCP IAM authentication plumbing for Memorystore Redis Cluster, on a local cluster.

The cluster's default user has the fake access token as its password, so only a client that
presents the token the credential provider fetched gets in. Google's IAM Credentials API
itself is not called (no Google account in tests): ``fetch_token`` stands in for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from llmcache_tui.cache.backends import CacheBackendError
from llmcache_tui.cache.backends.gcp_iam import (
    REFRESH_MARGIN,
    GcpIamCredentialProvider,
    fetch_google_token,
)
from llmcache_tui.cache.backends.redis import RedisBackend
from llmcache_tui.cache.backends.redis_options import redis_options
from llmcache_tui.cache.health import probe_backend
from tests import redis_servers as rs
from tests.redis_support import build, cache_settings

pytestmark = pytest.mark.usefixtures("no_redis_env")

#: Shared with tests/test_redis_servers.py: the same session cluster serves both.
TOKEN = "ya29.fake-iam-token"
SERVICE_ACCOUNT = "projects/-/serviceAccounts/cache@project.iam.gserviceaccount.com"


def _google_iam_installed() -> bool:
    try:
        from google.cloud import iam_credentials_v1  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


class FakeTokens:
    """Stands in for Google's IAM Credentials API: records who asked, hands out a token."""

    def __init__(self, token: str, lifetime: float = 3600.0) -> None:
        self.token = token
        self.lifetime = lifetime
        self.asked: list[str] = []

    def __call__(self, service_account: str) -> tuple[str, float]:
        self.asked.append(service_account)
        return self.token, time.time() + self.lifetime


@pytest.fixture
def iam_cluster(make_redis_cluster: Callable[..., rs.RedisClusterNodes]) -> rs.RedisClusterNodes:
    return make_redis_cluster(password=TOKEN)


def _gcp_params(cluster: rs.RedisClusterNodes, **extra: Any) -> dict[str, Any]:
    """The docs' GCP config: startup nodes and a service account (no password)."""
    return {
        "redis_startup_nodes": cluster.startup_nodes,
        "gcp_service_account": SERVICE_ACCOUNT,
        **extra,
    }


async def test_the_fetched_token_is_what_authenticates(
    iam_cluster: rs.RedisClusterNodes,
) -> None:
    # A configured password is not used: the provider's token replaces it.
    options = redis_options(cache_settings(_gcp_params(iam_cluster, password="not-the-token")))
    assert options.mode == "cluster"
    assert options.gcp_service_account == SERVICE_ACCOUNT
    tokens = FakeTokens(TOKEN)
    backend = RedisBackend(
        options, credential_provider=GcpIamCredentialProvider(SERVICE_ACCOUNT, tokens)
    )
    try:
        result = await probe_backend(backend)
        assert result.healthy, result.error
        await backend.set("iam", b"v")
        with iam_cluster.client() as raw:
            assert raw.get("iam") == b"v"
    finally:
        await backend.close()
    assert tokens.asked
    assert set(tokens.asked) == {SERVICE_ACCOUNT}
    assert len(tokens.asked) == 1  # fetched once, cached until close to expiry


async def test_a_wrong_token_fails_with_an_auth_error(iam_cluster: rs.RedisClusterNodes) -> None:
    options = redis_options(cache_settings(_gcp_params(iam_cluster)))
    provider = GcpIamCredentialProvider(SERVICE_ACCOUNT, FakeTokens("ya29.expired-token"))
    backend = RedisBackend(options, credential_provider=provider)
    try:
        result = await probe_backend(backend)
    finally:
        await backend.close()
    assert not result.healthy
    assert result.error is not None
    assert "authentication failed at cluster 127.0.0.1:" in result.error
    assert "ya29" not in result.error


def test_a_token_close_to_expiry_is_fetched_again() -> None:
    short = FakeTokens(TOKEN, lifetime=REFRESH_MARGIN / 2)
    provider = GcpIamCredentialProvider(SERVICE_ACCOUNT, short)
    assert provider.get_credentials() == ("default", TOKEN)
    assert provider.get_credentials() == ("default", TOKEN)
    assert len(short.asked) == 2
    long = FakeTokens(TOKEN)
    provider = GcpIamCredentialProvider(SERVICE_ACCOUNT, long)
    provider.get_credentials()
    provider.get_credentials()
    assert len(long.asked) == 1


async def test_without_google_cloud_iam_first_use_says_what_to_install(
    iam_cluster: rs.RedisClusterNodes,
) -> None:
    if _google_iam_installed():
        pytest.skip("google-cloud-iam is installed here")
    with pytest.raises(CacheBackendError, match=r"pip install 'llmcache-tui\[gcp\]'"):
        fetch_google_token(SERVICE_ACCOUNT)

    backend = build(_gcp_params(iam_cluster))  # building works ...
    assert isinstance(backend, RedisBackend)
    try:
        result = await probe_backend(backend)  # ... the first use explains
    finally:
        await backend.close()
    assert not result.healthy
    assert result.error == (
        "redis ping failed: gcp_service_account needs the google-cloud-iam package:"
        " pip install 'llmcache-tui[gcp]'"
    )


def test_gcp_variables_of_the_docs(
    iam_cluster: rs.RedisClusterNodes, no_redis_env: pytest.MonkeyPatch
) -> None:
    nodes = ", ".join(f'{{"host": "127.0.0.1", "port": {port}}}' for port in iam_cluster.ports)
    for name, value in {
        "REDIS_CLUSTER_NODES": f"[{nodes}]",
        "REDIS_GCP_SERVICE_ACCOUNT": SERVICE_ACCOUNT,
        "REDIS_GCP_SSL_CA_CERTS": "./server-ca.pem",
        "REDIS_SSL": "True",
        "REDIS_SSL_CERT_REQS": "None",
        "REDIS_SSL_CHECK_HOSTNAME": "False",
    }.items():
        no_redis_env.setenv(name, value)
    options = redis_options(cache_settings({}))
    assert options.mode == "cluster"
    assert options.startup_nodes == [("127.0.0.1", port) for port in iam_cluster.ports]
    assert options.gcp_service_account == SERVICE_ACCOUNT
    assert options.kwargs["ssl"] is True
    assert options.kwargs["ssl_cert_reqs"] is None
    assert options.kwargs["ssl_check_hostname"] is False
    assert options.kwargs["ssl_ca_certs"] == "./server-ca.pem"
