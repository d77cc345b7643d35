"""A namespace shared with LiteLLM on one real Redis: its rate-limit counters and spend
keys live beside the cache entries, as LiteLLM's proxy writes them when both point at the
same server.

The browser labels them as not cache entries; a purge deletes only cache entries (ours and
LiteLLM's own) unless the person ticks "delete every matching key", and its confirmation
says how many other keys stay.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from textual.widgets import Checkbox

from llmcache_tui.cache.browse import NOT_AN_ENTRY, count_purge, describe_keys, purge
from llmcache_tui.screens.browser import BrowserScreen
from llmcache_tui.screens.purge import EVERYTHING_ID, PurgeConfirmScreen
from tests import redis_servers as rs
from tests.conftest import ProxyFactory
from tests.redis_support import build, scan_all, server_params
from tests.tui_support import (
    SIZE,
    Ask,
    ask_purge,
    make_app,
    notified,
    open_browser,
    seed_served_proxy,
    table_keys,
    table_row,
    wait_for_group,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("no_redis_env")

NAMESPACE = "team"
# LiteLLM's parallel-request limiter and spend tracking: plain integers and strings, keyed
# by the hash of the API key.
HASHED_KEY = "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"
COUNTERS: dict[str, str] = {
    f"team:{{api_key:{HASHED_KEY}}}:tokens": "1843",
    f"team:{{api_key:{HASHED_KEY}}}:requests": "12",
    "team:global_max_parallel_requests": "3",
    "team:litellm:spend:user-1": "0.0042",
}
LITELLM_ENTRY_KEY = "team:8d3b1a0c2f"
OTHER_NAMESPACE_KEY = "elsewhere:session"


def _seed(raw: Any, proxy_keys: list[str]) -> None:
    for key, value in COUNTERS.items():
        raw.set(key, value)
    raw.incrby(next(iter(COUNTERS)), 7)  # a live counter: INCRBY on the integer string
    response = {"object": "chat.completion", "choices": [{"message": {"content": "hi"}}]}
    raw.set(
        LITELLM_ENTRY_KEY, json.dumps({"timestamp": 1764150000.5, "response": json.dumps(response)})
    )
    raw.set(OTHER_NAMESPACE_KEY, "token-abc")
    assert all(key.startswith(f"{NAMESPACE}:") for key in proxy_keys)


def _ours(make_proxy: ProxyFactory, server: rs.RedisProcess) -> list[str]:
    params = {**server_params(server), "namespace": NAMESPACE}
    keys = seed_served_proxy(make_proxy(params, cache_type="redis"), [Ask("hello"), Ask("bye")])
    return list(keys.values())


async def test_counters_are_labelled_and_a_purge_keeps_them(
    redis_plain: rs.RedisProcess, make_proxy: ProxyFactory
) -> None:
    ours = _ours(make_proxy, redis_plain)
    with redis_plain.client() as raw:
        _seed(raw, ours)
        backend = build({**server_params(redis_plain), "namespace": NAMESPACE})
        try:
            pages = await scan_all(backend, f"{NAMESPACE}:*", count=100)
            infos = [info for page in pages for info in page.keys]
            rows = {row.key: row for row in await describe_keys(backend, infos)}
            estimate = await count_purge(backend, f"{NAMESPACE}:*")
            progress = await purge(backend, f"{NAMESPACE}:*")
            left = {key.decode() for key in raw.keys("*")}
            counter_values = {key: raw.get(key).decode() for key in COUNTERS}
            everything = await purge(backend, f"{NAMESPACE}:*", everything=True)
            after_everything = {key.decode() for key in raw.keys("*")}
        finally:
            await backend.close()

    assert set(rows) == {*ours, LITELLM_ENTRY_KEY, *COUNTERS}
    for key in COUNTERS:
        assert rows[key].origin == NOT_AN_ENTRY
        assert not rows[key].is_entry
    assert rows[LITELLM_ENTRY_KEY].origin == "litellm"
    assert {rows[key].origin for key in ours} == {"llmcache"}
    assert (estimate.entries, estimate.others, estimate.complete) == (3, len(COUNTERS), True)
    assert (progress.deleted, progress.skipped, progress.done) == (3, len(COUNTERS), True)
    assert left == {*COUNTERS, OTHER_NAMESPACE_KEY}
    assert counter_values[next(iter(COUNTERS))] == "1850"
    assert everything.deleted == len(COUNTERS)
    assert after_everything == {OTHER_NAMESPACE_KEY}  # outside the pattern: never touched


async def test_the_browser_labels_counters_and_offers_to_delete_them_too(
    redis_plain: rs.RedisProcess, make_proxy: ProxyFactory, tui_config: Callable[..., str]
) -> None:
    ours = _ours(make_proxy, redis_plain)
    params = {**server_params(redis_plain), "namespace": NAMESPACE}
    with redis_plain.client() as raw:
        _seed(raw, ours)
        app = make_app(tui_config(cache_type="redis", cache_params=params))
        async with app.run_test(size=SIZE) as pilot:
            await open_browser(pilot)
            await pilot.press("slash", *f"{NAMESPACE}:*", "enter")
            await wait_for_group(pilot, "browser-scan")
            assert sorted(table_keys(app)) == sorted([*ours, LITELLM_ENTRY_KEY, *COUNTERS])
            for key in COUNTERS:
                assert table_row(app, key)["model"] == "(not an entry)"
            assert table_row(app, LITELLM_ENTRY_KEY)["model"] != "(not an entry)"

            # The default: cache entries only; the question says what stays.
            question = await ask_purge(pilot)
            assert question.startswith(f"Purge 3 cache entries matching '{NAMESPACE}:*'?")
            assert f"{len(COUNTERS)} matching keys are not cache entries: they stay." in question
            dialog = app.screen
            assert isinstance(dialog, PurgeConfirmScreen)
            box = dialog.query_one(f"#{EVERYTHING_ID}", Checkbox)
            assert box.value is False
            assert f"Also delete the {len(COUNTERS)} matching keys" in str(box.label)
            await pilot.press("y")
            await wait_until(
                pilot,
                lambda: notified(app, f"Purged 3 cache entries matching {NAMESPACE}:*; 4 other"),
            )
            await wait_until(pilot, lambda: isinstance(app.screen, BrowserScreen))
            assert {key.decode() for key in raw.keys("*")} == {*COUNTERS, OTHER_NAMESPACE_KEY}

            # Opting in: every matching key goes, whatever it holds.
            _seed(raw, ours)  # a LiteLLM entry again, so there is something to purge
            await pilot.press("f5")
            await wait_for_group(pilot, "browser-scan")
            await ask_purge(pilot)
            assert isinstance(app.screen, PurgeConfirmScreen)
            await pilot.press("a")  # ticks the box
            assert app.screen.query_one(f"#{EVERYTHING_ID}", Checkbox).value is True
            await pilot.press("y")
            await wait_until(pilot, lambda: notified(app, f"Purged 5 keys matching {NAMESPACE}:*"))
            assert {key.decode() for key in raw.keys("*")} == {OTHER_NAMESPACE_KEY}
