"""Redis behind Sentinel: the docs' config keys and variables, ``--check``, the proxy, and a
failover during traffic that costs no failed request.

Each test has a sentinel group of its own (a primary, a replica, three sentinels: ~2 s to
start), so there are only two tests here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmcache_tui.cache.backends.redis import RedisBackend
from tests import redis_servers as rs
from tests.conftest import ProxyFactory
from tests.redis_support import (
    DOCS_NAMESPACE,
    HIT,
    MISS_STORED,
    build,
    chat,
    poll,
    run_check,
    sentinel_params,
    write_config,
)

pytestmark = pytest.mark.usefixtures("no_redis_env")

SENTINEL_PASSWORD = "s3nt!nel-secret"


def test_sentinel_with_a_password_from_config_and_variables(
    make_redis_sentinel: Callable[..., rs.RedisSentinelGroup],
    make_proxy: ProxyFactory,
    tmp_path: Path,
) -> None:
    group = make_redis_sentinel(sentinel_password=SENTINEL_PASSWORD)
    env = {
        "REDIS_SENTINEL_NODES": json.dumps(group.sentinel_nodes),
        "REDIS_SERVICE_NAME": group.service_name,
        "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
    }
    run = run_check(write_config(tmp_path, {}), env)
    assert run.code == 0, run.stdout
    params = run.report["params"]
    assert params["mode"] == "sentinel"
    assert params["service_name"] == "mymaster"
    assert params["sentinel_password"] == "********"
    assert params["sentinel_nodes"] == [f"127.0.0.1:{port}" for port in group.sentinel_ports]
    assert SENTINEL_PASSWORD not in run.stdout + run.stderr

    wrong = run_check(write_config(tmp_path, {}), {**env, "REDIS_SENTINEL_PASSWORD": "nope"})
    assert wrong.code == 1
    assert wrong.report["error"] == (
        "redis ping failed: no sentinel named a primary for service 'mymaster' (they answered:"
        " AuthenticationError, AuthenticationError, AuthenticationError);"
        " check sentinel_nodes, service_name and sentinel_password"
    )
    assert SENTINEL_PASSWORD not in wrong.stdout

    proxy = make_proxy({**sentinel_params(group), "namespace": DOCS_NAMESPACE}, cache_type="redis")
    with proxy.http() as http, group.primary.client() as primary:
        first = chat(http, "through sentinel")
        assert first.headers["cache-status"] == MISS_STORED
        assert chat(http, "through sentinel").headers["cache-status"] == HIT
        key = first.headers["x-litellm-cache-key"]
        assert key.startswith(DOCS_NAMESPACE + ":")
        assert primary.exists(key) == 1  # on the primary the sentinels name
        deleted = http.post("/cache/delete", json={"keys": [key]})
        assert deleted.json() == {"status": "success", "deleted": 1}
        assert primary.exists(key) == 0
        ping = http.get("/cache/ping")
        assert ping.status_code == 200
        assert ping.json()["redis_cache_params"]["sentinel_password"] == "********"
        assert SENTINEL_PASSWORD not in ping.text


async def test_failover_during_traffic_costs_no_failed_request(
    redis_sentinel: rs.RedisSentinelGroup, make_proxy: ProxyFactory
) -> None:
    group = redis_sentinel
    params: dict[str, Any] = sentinel_params(group)
    proxy = make_proxy(params, cache_type="redis")
    # A second client of our own, used before and right after the failover: its pooled
    # connection still points at the former primary, now a replica.
    backend = build(params)
    assert isinstance(backend, RedisBackend)
    answers: list[httpx.Response] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        async with httpx.AsyncClient(base_url=proxy.base_url, timeout=10) as client:
            n = 0
            while not stop.is_set():
                n += 1
                body = {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": f"prompt {n % 5}"}],
                }
                answers.append(await client.post("/v1/chat/completions", json=body))

    try:
        await backend.set("before", b"1")
        sender = asyncio.create_task(traffic())
        await asyncio.to_thread(group.failover)  # every sentinel names the new primary
        await backend.set("after", b"2")  # the stale connection costs no error
        assert await backend.get("before") == b"1"
        assert backend.errors == 0

        during = len(answers)
        for _ in range(500):  # some more requests once the failover is over
            if len(answers) >= during + 10 or sender.done():
                break
            await asyncio.sleep(0.01)
        stop.set()
        await sender
    finally:
        await backend.close()

    assert len(answers) >= during + 10
    assert [a.status_code for a in answers] == [200] * len(answers)
    for answer in answers:
        assert answer.json()["choices"][0]["message"]["content"].startswith("echo: prompt ")

    with proxy.http() as http, group.primary.client() as primary:
        assert primary.get("after") == b"2"  # written to the new primary

        def cached() -> bool:
            return "; stored" in chat(http, "after the failover").headers["cache-status"]

        poll(cached, what="a write through the proxy after the failover")
        answer = chat(http, "after the failover")
        assert answer.headers["cache-status"] == HIT
        assert primary.exists(answer.headers["x-litellm-cache-key"]) == 1
