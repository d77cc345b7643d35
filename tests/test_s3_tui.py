"""The terminal app on S3 (moto's server over HTTP): the overview names the bucket, the
browser lists the objects a served proxy wrote with their sizes, ages and remaining TTLs,
the namespace tree comes from S3's common prefixes (ListObjectsV2 with a ``:`` delimiter,
seen on the app's own boto3 client), the detail pane shows the entry, and delete and purge
change the bucket itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from textual.widgets import Static, Tree

from llmcache_tui import humanize
from llmcache_tui.app import LLMCacheApp
from llmcache_tui.cache.backends.s3 import EXPIRES_AT, S3Backend
from llmcache_tui.screens.browser import BrowserScreen
from llmcache_tui.screens.confirm import ConfirmScreen
from llmcache_tui.screens.purge import PurgeScreen
from tests.conftest import ProxyFactory
from tests.s3_server import BUCKET, SECRETS, ApiCalls, S3Bucket
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
    scan_status,
    screen_text,
    seed_served_proxy,
    select_row,
    table_keys,
    table_row,
    wait_for_group,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("no_aws_env")

ASKS = [
    Ask("hello"),
    Ask("what is a cache?", ttl=300),
    Ask("team question", "team-a"),
    Ask("team follow-up", "team-a"),
    Ask("eu question", "team-b:eu"),
]
FIVE_MINUTES = re.compile(r"4m \d+s|5m 0s")


def _shown(app: LLMCacheApp) -> str:
    parts = [screen_text(app), app.title, app.sub_title]
    parts += [rendered_text(widget) for widget in app.screen.query(Static)]
    return "\n".join(parts)


def _assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret shows in: {text}"


def _client(app: LLMCacheApp) -> Any:
    backend = app.session.backend
    assert isinstance(backend, S3Backend)
    return backend._client


def _delimited_prefixes(calls: ApiCalls) -> list[str]:
    """The prefixes listed with the ``:`` delimiter: namespace listings, not key scans."""
    return [call["Prefix"] for call in calls.of("ListObjectsV2") if call.get("Delimiter") == ":"]


async def test_overview_and_browser_show_objects_with_size_age_ttl_and_prefixes(
    s3_bucket: S3Bucket, make_proxy: ProxyFactory, tui_config: Callable[..., str]
) -> None:
    params = s3_bucket.params()
    keys = seed_served_proxy(make_proxy(params, cache_type="s3"), ASKS)
    app = make_app(tui_config(cache_type="s3", cache_params=params))
    with ApiCalls(_client(app)) as calls:
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: re.search(r"state +connected", screen_text(app)))
            screen = screen_text(app)
            for pattern in [
                r"cache type +s3",
                rf"s3_bucket_name +{BUCKET}",
                r"s3_aws_secret_access_key +\*{8}",
                rf"bucket +{BUCKET}",  # what the backend reports
                r"entries +-",  # S3 keeps no count
            ]:
                assert re.search(pattern, screen), (pattern, screen)
            _assert_no_secret(_shown(app))

            await open_browser(pilot)
            assert sorted(table_keys(app)) == sorted(keys.values())
            assert scan_status(app) == "5 keys shown for * | scanned 5 | all matching keys loaded"
            for text, key in keys.items():
                row = table_row(app, key)
                head = s3_bucket.head(key)
                assert head is not None
                assert (row["model"], row["type"]) == ("gpt-4o-mini", "chat")
                assert row["size"] == humanize.size(head["ContentLength"])
                assert re.fullmatch(r"\d+s", row["age"]), row
                if text == "what is a cache?":
                    assert FIVE_MINUTES.fullmatch(row["TTL"]), row
                    assert EXPIRES_AT in head["Metadata"]
                else:
                    assert row["TTL"] == "no TTL", row
                    assert head["Metadata"] == {}

            tree = app.screen.query_one("#namespaces", Tree)
            assert {node.data for node in tree.root.children} == {"team-a", "team-b"}
            assert _delimited_prefixes(calls) == [""]  # the top level, listed by S3
            team_b = next(node for node in tree.root.children if node.data == "team-b")
            team_b.expand()
            await wait_for_group(pilot, "browser-explore")
            assert _delimited_prefixes(calls) == ["", "team-b:"]
            assert [node.data for node in team_b.children] == ["team-b:eu"]

            key = keys["what is a cache?"]
            await select_row(pilot, key)
            detail = detail_text(app)
            assert re.search(r"prompt +what is a cache\?", detail), detail
            assert "echo: what is a cache?" in detail  # the stored response
            match = re.search(r"expires in +(\S+ ?\S*)", detail)
            assert match is not None
            assert FIVE_MINUTES.fullmatch(match.group(1)), detail
            size = humanize.size(len(s3_bucket.body(key)))
            assert re.search(rf"stored +{re.escape(size)}", detail), detail
            _assert_no_secret(_shown(app))


async def test_delete_and_purge_change_the_bucket(
    s3_bucket: S3Bucket, make_proxy: ProxyFactory, tui_config: Callable[..., str]
) -> None:
    params = s3_bucket.params()
    keys = seed_served_proxy(make_proxy(params, cache_type="s3"), ASKS)
    app = make_app(tui_config(cache_type="s3", cache_params=params))
    with ApiCalls(_client(app)) as calls:
        async with app.run_test(size=SIZE) as pilot:
            await open_browser(pilot)
            key = keys["hello"]
            await select_row(pilot, key)
            await pilot.press("d")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            await wait_for_group(pilot, "browser-change")
            assert notified(app, f"Deleted {key}")
            assert s3_bucket.head(key) is None
            assert key not in table_keys(app)
            assert len(s3_bucket.names()) == 4

            tree = app.screen.query_one("#namespaces", Tree)
            tree.focus()
            team = next(node for node in tree.root.children if node.data == "team-a")
            tree.move_cursor(team)
            await pilot.press("enter")
            await wait_for_group(pilot, "browser-scan")
            assert sorted(table_keys(app)) == sorted(
                [keys["team question"], keys["team follow-up"]]
            )
            calls.clear()
            question = await ask_purge(pilot)
            assert question.startswith("Purge 2 cache entries matching 'team-a:*'?")
            assert "Every key this cache lists is taken for a cache entry." in question
            await pilot.press("y")
            await wait_until(pilot, lambda: not isinstance(app.screen, PurgeScreen | ConfirmScreen))
            await wait_for_group(pilot, "browser-scan")
            assert notified(app, "Purged 2 cache entries matching team-a:*")
            batches = calls.of("DeleteObjects")
            assert [sorted(item["Key"] for item in b["Delete"]["Objects"]) for b in batches] == [
                sorted([keys["team question"], keys["team follow-up"]])
            ]
            assert s3_bucket.head(keys["team question"]) is None
            assert sorted(s3_bucket.names()) == sorted(
                [keys["what is a cache?"], keys["eu question"]]
            )

            await pilot.press("slash", "ctrl+a", "ctrl+k", "*", "enter")
            await wait_for_group(pilot, "browser-scan")
            await purge_whole_cache(pilot)  # everything left
            await wait_until(pilot, lambda: notified(app, "Purged 2 cache entries matching *"))
            assert isinstance(app.screen, BrowserScreen)
            assert s3_bucket.names() == []
