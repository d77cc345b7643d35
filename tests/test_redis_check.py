"""``llmcache-tui --check`` (the real CLI, in a subprocess) and ``/cache/ping`` on Redis.

Healthy: the Redis version, ping, a write read back and deleted, the connection parameters
with every password masked. Unhealthy (``--check`` exits 1, ``/cache/ping`` answers 503)
with the reason: connection refused, a wrong password, a wrong ACL user, TLS with the wrong
CA, a cluster that lost a primary. Bad Redis settings are config errors (exit 2) naming the
key or variable; the proxy then serves without a cache and says why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import redis_servers as rs
from tests.conftest import ProxyFactory
from tests.ports import free_port
from tests.redis_support import (
    CACHE_ERROR,
    DOCS_NAMESPACE,
    MISS_STORED,
    assert_no_password,
    chat,
    cluster_params,
    run_check,
    server_params,
    write_config,
)

pytestmark = pytest.mark.usefixtures("no_redis_env")


def _version(server: rs.RedisProcess) -> str:
    with server.client() as client:
        return str(client.info("server")["redis_version"])


def _ping(http: httpx.Client) -> tuple[int, dict[str, Any], str]:
    reply = http.get("/cache/ping")
    return reply.status_code, reply.json(), reply.text


# --------------------------------------------------------------------------- healthy


def test_check_and_ping_report_version_write_and_masked_params(
    redis_password: rs.RedisProcess, tmp_path: Path, make_proxy: ProxyFactory
) -> None:
    params = {"url": redis_password.url, "namespace": DOCS_NAMESPACE, "ttl": 600}
    version = _version(redis_password)
    run = run_check(write_config(tmp_path, params))
    assert run.code == 0, run.stdout
    report = run.report
    assert report["status"] == "healthy"
    assert report["cache_type"] == "redis"
    assert (report["ping"], report["write"], report["read_back"], report["delete"]) == (
        True,
        True,
        True,
        True,
    )
    assert report["redis_version"] == version
    assert report["params"]["mode"] == "single"
    assert report["params"]["url"] == f"redis://:********@127.0.0.1:{redis_password.port}/0"
    assert_no_password(run.stdout, run.stderr)
    text = run_check(write_config(tmp_path, params), as_json=False)
    assert text.code == 0
    assert text.stdout.startswith("healthy: cache redis")
    assert re.search(r"write +ok", text.stdout)
    assert_no_password(text.stdout, text.stderr)

    proxy = make_proxy(params, cache_type="redis")
    with proxy.http() as http:
        status, document, raw = _ping(http)
    assert status == 200
    assert document["status"] == "healthy"
    assert document["ping_response"] is True
    assert document["set_cache_response"] == "success"
    assert document["litellm_cache_params"]["namespace"] == DOCS_NAMESPACE
    shown = document["redis_cache_params"]
    assert shown["redis_version"] == version
    assert shown["url"] == report["params"]["url"]
    assert_no_password(raw)
    with redis_password.client() as raw_client:
        assert raw_client.dbsize() == 0  # the probe cleaned up after itself


def test_check_with_redis_variables(redis_password: rs.RedisProcess, tmp_path: Path) -> None:
    env = {
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_password.port),
        "REDIS_PASSWORD": rs.PASSWORD,
    }
    run = run_check(write_config(tmp_path, None), env)  # cache: true, type defaults to redis
    assert run.code == 0, run.stdout
    assert run.report["params"]["password"] == "********"
    assert_no_password(run.stdout, run.stderr)


def test_check_with_environment_variables_in_the_config(
    redis_password: rs.RedisProcess, tmp_path: Path
) -> None:
    """LiteLLM's ``environment_variables`` section sets REDIS_* variables from the file."""
    config = tmp_path / "env.yaml"
    config.write_text(
        json.dumps(
            {
                "environment_variables": {"REDIS_URL": redis_password.url},
                "litellm_settings": {"cache": True, "cache_params": {"type": "redis"}},
            }
        )
    )
    run = run_check(config)
    assert run.code == 0, run.stdout
    assert_no_password(run.stdout, run.stderr)


# --------------------------------------------------------------------------- unhealthy


def _refused(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": free_port()}


def _wrong_password(request: pytest.FixtureRequest) -> dict[str, Any]:
    server: rs.RedisProcess = request.getfixturevalue("redis_password")
    return {**server_params(server), "password": "not-the-password"}


def _wrong_url_password(request: pytest.FixtureRequest) -> dict[str, Any]:
    server: rs.RedisProcess = request.getfixturevalue("redis_password")
    return {"url": f"redis://:not-the-password@127.0.0.1:{server.port}/0"}


def _wrong_acl_user(request: pytest.FixtureRequest) -> dict[str, Any]:
    server: rs.RedisProcess = request.getfixturevalue("redis_acl")
    return {**server_params(server), "username": "mallory"}


def _wrong_ca(request: pytest.FixtureRequest) -> dict[str, Any]:
    server: rs.RedisProcess = request.getfixturevalue("redis_tls")
    return {"url": server.url, "ssl_ca_certs": str(server.other_ca_cert)}


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (_refused, r"redis ping failed: cannot connect to 127\.0\.0\.1:\d+: .*(111|refused)"),
        (_wrong_password, r"authentication failed at 127\.0\.0\.1:\d+ \(check username"),
        (_wrong_url_password, r"authentication failed at redis://:\*{8}@127\.0\.0\.1:\d+/0"),
        (_wrong_acl_user, r"authentication failed at 127\.0\.0\.1:\d+"),
        (_wrong_ca, r"TLS failed with rediss://127\.0\.0\.1:\d+/0: .*certificate verify failed"),
    ],
    ids=["refused", "wrong-password", "wrong-url-password", "wrong-acl-user", "wrong-ca"],
)
def test_unhealthy_check_exits_1_and_ping_answers_503_with_the_reason(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    make_proxy: ProxyFactory,
    setup: Callable[[pytest.FixtureRequest], dict[str, Any]],
    reason: str,
) -> None:
    params = setup(request)
    run = run_check(write_config(tmp_path, params))
    assert run.code == 1, run.stdout
    assert run.report["status"] == "unhealthy"
    assert run.report["ping"] is False
    assert re.search(reason, run.report["error"]), run.report["error"]
    for output in (run.stdout, run.stderr):
        assert_no_password(output)
        assert "not-the-password" not in output
        assert "Traceback" not in output

    proxy = make_proxy(params, cache_type="redis")
    with proxy.http() as http:
        status, document, raw = _ping(http)
        answered = chat(http, "still answered")  # and requests never fail
    assert status == 503
    assert document["status"] == "unhealthy"
    assert document["ping_response"] is False
    assert re.search(reason, document["error"]), document["error"]
    assert "not-the-password" not in raw
    assert CACHE_ERROR in answered.headers["cache-status"]


def test_a_cluster_that_lost_a_primary_is_down(
    make_redis_cluster: Callable[..., rs.RedisClusterNodes],
    make_proxy: ProxyFactory,
    tmp_path: Path,
) -> None:
    """A cluster of this test's own (its password is used nowhere else): stop one of the
    three primaries (there are no replicas), wait until the others call the cluster failed."""
    cluster = make_redis_cluster(password="llmcache-cluster-down-test")
    params = cluster_params(cluster)
    proxy = make_proxy(params, cache_type="redis")
    with proxy.http() as http:
        assert _ping(http)[0] == 200
        assert chat(http, "before").headers["cache-status"] == MISS_STORED

        survivors, stopped = cluster.nodes[:2], cluster.nodes[2]
        for node in survivors:  # notice the loss in 0.5 s rather than the fixture's 2 s
            with node.probe() as probe:
                probe.config_set("cluster-node-timeout", 500)
        stopped.stop()

        def failed() -> bool:
            for node in survivors:
                with node.probe() as probe:
                    if probe.execute_command("CLUSTER INFO")["cluster_state"] != "fail":
                        return False
            return True

        rs.wait_until(failed, what="the surviving nodes to see cluster_state:fail", timeout=20)
        down = r"(the cluster at|cannot connect to) cluster 127\.0\.0\.1:\d+,127\.0\.0\.1:\d+"
        status, document, raw = _ping(http)
        assert status == 503
        assert re.search(down, document["error"]), document["error"]
        assert "llmcache-cluster-down-test" not in raw
        assert CACHE_ERROR in chat(http, "during").headers["cache-status"]

    run = run_check(write_config(tmp_path, params))
    assert run.code == 1, run.stdout
    assert re.search(down, run.report["error"]), run.report["error"]
    assert "llmcache-cluster-down-test" not in run.stdout


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("params", "env", "named"),
    [
        ({}, {"REDIS_CLUSTER_NODES": "not json"}, "REDIS_CLUSTER_NODES: not valid JSON"),
        ({"port": "abc"}, {}, "litellm_settings.cache_params.port: expected a port number"),
        (
            {"sentinel_nodes": [["127.0.0.1", 26379]]},
            {},
            "litellm_settings.cache_params.service_name: required with sentinel_nodes",
        ),
        ({}, {"REDIS_SENTINEL_NODES": '[["127.0.0.1", 26379]]'}, "service_name: required"),
    ],
    ids=["cluster-nodes-not-json", "port-abc", "sentinel-without-service", "sentinel-env"],
)
def test_bad_redis_settings_are_config_errors(
    tmp_path: Path,
    make_proxy: ProxyFactory,
    params: dict[str, Any],
    env: dict[str, str],
    named: str,
) -> None:
    run = run_check(write_config(tmp_path, params), env)
    assert run.code == 2, run.stdout
    assert run.report["status"] == "config_error"
    assert named in run.report["error"]
    if env:
        text = run_check(write_config(tmp_path, params), env, as_json=False)
        assert text.code == 2
        assert text.stdout.startswith("config error: ")
        assert named in text.stdout
        return  # the proxy would read this process's environment: the others cover it
    proxy = make_proxy(params, cache_type="redis")
    with proxy.http() as http:
        status, document, _ = _ping(http)
        answered = chat(http, "served without a cache")
    assert status == 503
    assert named in document["error"]
    assert "detail=cache-unavailable" in answered.headers["cache-status"]
