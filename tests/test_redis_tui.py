"""The terminal app on Redis (one server reached by a URL with a password, and a cluster):
the overview shows what Redis's INFO says, the browser lists the keys a served proxy wrote
with their Redis TTLs, and delete and purge change Redis itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
import redis
from textual.widgets import Static, Tree

from llmcache_tui.app import LLMCacheApp
from llmcache_tui.screens.browser import BrowserScreen
from llmcache_tui.screens.confirm import ConfirmScreen, TypedConfirmScreen
from llmcache_tui.screens.purge import PurgeScreen
from tests import redis_servers as rs
from tests.conftest import ProxyFactory
from tests.redis_support import assert_no_password, cluster_params
from tests.tui_support import (
    SIZE,
    Ask,
    ask_purge,
    detail_text,
    make_app,
    notified,
    open_browser,
    purge_whole_cache,
    rendered_text,
    running,
    scan_status,
    screen_text,
    seed_served_proxy,
    select_row,
    table_keys,
    table_row,
    wait_for_group,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("no_redis_env")

ASKS = [
    Ask("hello"),
    Ask("what is a cache?", ttl=300),
    Ask("team question", "team-a"),
    Ask("team follow-up", "team-a"),
    Ask("eu question", "team-b:eu"),
]
FIVE_MINUTES = re.compile(r"4m \d+s|5m 0s")
RawClient = redis.Redis | redis.RedisCluster


def _redis(request: pytest.FixtureRequest, kind: str) -> tuple[dict[str, Any], RawClient, int]:
    """``cache_params``, a raw client and the number of primaries for ``kind``."""
    if kind == "single":
        server: rs.RedisProcess = request.getfixturevalue("redis_password")
        return {"url": server.url}, server.client(), 1
    cluster: rs.RedisClusterNodes = request.getfixturevalue("redis_cluster")
    return cluster_params(cluster), cluster.client(), 3


def _shown(app: LLMCacheApp) -> str:
    parts = [screen_text(app), app.title, app.sub_title]
    parts += [rendered_text(widget) for widget in app.screen.query(Static)]
    return "\n".join(parts)


def _dbsize(raw: RawClient) -> int:
    if isinstance(raw, redis.RedisCluster):
        return int(raw.dbsize(target_nodes=redis.RedisCluster.PRIMARIES))
    return int(raw.dbsize())


@pytest.mark.parametrize("kind", ["single", "cluster"])
async def test_overview_shows_info_and_browser_lists_keys_with_ttls(
    request: pytest.FixtureRequest,
    kind: str,
    make_proxy: ProxyFactory,
    tui_config: Callable[..., str],
) -> None:
    params, raw, primaries = _redis(request, kind)
    with raw:
        keys = seed_served_proxy(make_proxy(params, cache_type="redis"), ASKS)
        version = raw.info("server")
        if "redis_version" not in version:
            version = next(iter(version.values()))
        app = make_app(tui_config(cache_type="redis", cache_params=params))
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: re.search(r"state +connected", screen_text(app)))
            screen = screen_text(app)
            for pattern in [
                r"cache type +redis",
                rf"redis version +{re.escape(version['redis_version'])}",
                rf"nodes +{primaries}\b",
                r"entries +5\b",
                r"server memory +\d+(\.\d+)? [KMG]i?B",  # used_memory
                r"keyspace hits +\d",
                r"keyspace misses +\d",
            ]:
                assert re.search(pattern, screen), (pattern, screen)
            assert_no_password(_shown(app))
            if kind == "single":
                assert "redis://:********@127.0.0.1:" in _shown(app)

            await open_browser(pilot)
            assert sorted(table_keys(app)) == sorted(keys.values())
            assert scan_status(app) == (
                "5 keys shown for * | scanned 5 of about 5 | all matching keys loaded"
            )
            for text, key in keys.items():
                row = table_row(app, key)
                assert (row["model"], row["type"]) == ("gpt-4o-mini", "chat")
                if text == "what is a cache?":
                    assert FIVE_MINUTES.fullmatch(row["TTL"]), row
                    assert 0 < raw.pttl(key) <= 300_000
                else:
                    assert row["TTL"] == "no TTL", row
                    assert raw.pttl(key) == -1
            await select_row(pilot, keys["team question"])
            assert_no_password(_shown(app))


@pytest.mark.parametrize("kind", ["single", "cluster"])
async def test_delete_and_purge_change_redis(
    request: pytest.FixtureRequest,
    kind: str,
    make_proxy: ProxyFactory,
    tui_config: Callable[..., str],
) -> None:
    params, raw, _ = _redis(request, kind)
    with raw:
        keys = seed_served_proxy(make_proxy(params, cache_type="redis"), ASKS)
        app = make_app(tui_config(cache_type="redis", cache_params=params))
        async with app.run_test(size=SIZE) as pilot:
            await open_browser(pilot)
            key = keys["hello"]
            await select_row(pilot, key)
            await pilot.press("d")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            await wait_for_group(pilot, "browser-change")
            assert notified(app, f"Deleted {key}")
            assert raw.exists(key) == 0
            assert key not in table_keys(app)
            assert _dbsize(raw) == 4

            tree = app.screen.query_one("#namespaces", Tree)
            tree.focus()
            team = next(node for node in tree.root.children if node.data == "team-a")
            tree.move_cursor(team)
            await pilot.press("enter")
            await wait_for_group(pilot, "browser-scan")
            question = await ask_purge(pilot)
            assert question.startswith("Purge 2 cache entries matching 'team-a:*'?")
            await pilot.press("y")
            await wait_until(pilot, lambda: not isinstance(app.screen, PurgeScreen | ConfirmScreen))
            await wait_for_group(pilot, "browser-scan")
            assert notified(app, "Purged 2 cache entries matching team-a:*")
            assert raw.exists(keys["team question"], keys["team follow-up"]) == 0
            assert _dbsize(raw) == 2

            await pilot.press("slash", "ctrl+a", "ctrl+k", "*", "enter")
            await wait_for_group(pilot, "browser-scan")
            await purge_whole_cache(pilot)  # everything left
            await wait_until(pilot, lambda: notified(app, "Purged 2 cache entries matching *"))
            assert isinstance(app.screen, BrowserScreen)
            assert _dbsize(raw) == 0


def _other_applications_keys(raw: RawClient) -> dict[str, str]:
    """Write keys another application on the same Redis might have; key -> Redis type."""
    raw.set("myapp:session:1", "token-abc")
    raw.lpush("myapp:queue", "a", "b", "c")
    raw.sadd("myapp:tags", "x", "y")
    raw.set("team-a:config", json.dumps({"user": "ada", "response": "ok"}))  # JSON, no entry
    raw.hset("team-a:profile", mapping={"name": "ada", "lang": "en"})
    return {
        "myapp:session:1": "string",
        "myapp:queue": "list",
        "myapp:tags": "set",
        "team-a:config": "string",
        "team-a:profile": "hash",
    }


def _values(raw: RawClient) -> dict[str, Any]:
    return {
        "myapp:session:1": raw.get("myapp:session:1"),
        "myapp:queue": raw.lrange("myapp:queue", 0, -1),
        "myapp:tags": raw.smembers("myapp:tags"),
        "team-a:config": raw.get("team-a:config"),
        "team-a:profile": raw.hgetall("team-a:profile"),
    }


@pytest.mark.parametrize("kind", ["single", "cluster"])
async def test_purge_deletes_cache_entries_and_never_other_applications_keys(
    request: pytest.FixtureRequest,
    kind: str,
    make_proxy: ProxyFactory,
    tui_config: Callable[..., str],
) -> None:
    params, raw, _ = _redis(request, kind)
    with raw:
        keys = seed_served_proxy(make_proxy(params, cache_type="redis"), ASKS)
        litellm = {"timestamp": 1764150000.5, "response": json.dumps({"object": "chat.completion"})}
        raw.set("litellm-entry", json.dumps(litellm))  # as LiteLLM's own cache writes it
        others = _other_applications_keys(raw)
        before = _values(raw)
        app = make_app(tui_config(cache_type="redis", cache_params=params))
        async with app.run_test(size=SIZE) as pilot:
            await open_browser(pilot)
            assert sorted(table_keys(app)) == sorted([*keys.values(), "litellm-entry", *others])
            queue = table_row(app, "myapp:queue")
            assert (queue["model"], queue["type"], queue["memory"]) == (
                "(not an entry)",
                "list",
                "3 items",
            )
            assert table_row(app, "myapp:session:1")["type"] == "str"
            assert table_row(app, "litellm-entry")["model"] == "—"  # LiteLLM's: an entry
            await select_row(pilot, "myapp:queue")
            detail = detail_text(app)
            assert re.search(r"holds +list, 3 items", detail), detail
            assert re.search(r"kind +not a cache entry", detail), detail
            assert "A purge leaves it alone." in detail

            # A namespace: its two entries go, the two keys of another app in it stay.
            tree = app.screen.query_one("#namespaces", Tree)
            tree.focus()
            tree.move_cursor(next(node for node in tree.root.children if node.data == "team-a"))
            await pilot.press("enter")
            await wait_for_group(pilot, "browser-scan")
            question = await ask_purge(pilot)
            assert isinstance(app.screen, ConfirmScreen)
            assert question.startswith("Purge 2 cache entries matching 'team-a:*'?"), question
            assert "2 matching keys are not cache entries: they stay." in question
            await pilot.press("y")
            await wait_until(pilot, lambda: not isinstance(app.screen, PurgeScreen | ConfirmScreen))
            await wait_for_group(pilot, "browser-scan")
            assert notified(app, "Purged 2 cache entries matching team-a:*; 2 other keys left")
            assert raw.exists(keys["team question"], keys["team follow-up"]) == 0
            assert _values(raw) == before

            # Everything: only the typed word confirms it.
            await pilot.press("slash", "ctrl+a", "ctrl+k", "enter")  # an empty filter
            await wait_for_group(pilot, "browser-scan")
            question = await ask_purge(pilot)
            assert isinstance(app.screen, TypedConfirmScreen)
            assert question.startswith("Purge 4 cache entries: every cache entry in the cache?")
            assert "5 matching keys are not cache entries: they stay." in question
            assert "Type purge and press Enter to confirm." in question
            for wrong in ("", "y", "yes", "PURGE", "purge now", "purg"):
                await pilot.press(*wrong, "enter")
                assert isinstance(app.screen, TypedConfirmScreen), wrong
                assert "Type purge exactly to confirm" in screen_text(app)
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, BrowserScreen))
            assert _dbsize(raw) == 4 + len(others)  # refused and cancelled: nothing deleted

            await purge_whole_cache(pilot)
            await wait_until(
                pilot, lambda: notified(app, "Purged 4 cache entries matching *; 5 other keys")
            )
            await wait_for_group(pilot, "browser-scan")
            assert _dbsize(raw) == len(others)
            assert _values(raw) == before
            assert sorted(table_keys(app)) == sorted(others)

            # Nothing left to purge: said so, no question asked.
            await pilot.press("P")
            await wait_until(pilot, lambda: notified(app, "Nothing to purge"))
            assert isinstance(app.screen, BrowserScreen)


async def test_read_only_refuses_a_purge_on_redis(
    redis_password: rs.RedisProcess, make_proxy: ProxyFactory, tui_config: Callable[..., str]
) -> None:
    params = {"url": redis_password.url}
    with redis_password.client() as raw:
        seed_served_proxy(make_proxy(params, cache_type="redis"), ASKS)
        app = make_app(tui_config(cache_type="redis", cache_params=params), read_only=True)
        async with app.run_test(size=SIZE) as pilot:
            await open_browser(pilot)
            screen = app.screen
            await pilot.press("P")
            assert await app.run_action("purge", screen) is False
            screen.action_purge()  # even called directly
            await wait_until(pilot, lambda: notified(app, "read-only: started with --read-only"))
            await pilot.pause()
            assert app.screen is screen
            assert not running(app, "browser-purge-count")
            assert _dbsize(raw) == len(ASKS)
