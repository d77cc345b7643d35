"""The browser screen (2): keys written by the real proxy, the lazy namespace tree, the glob
filter, paging with "load more" and the entry pane.

Entries come from the proxy started inside the app over its ``local`` backend (so the
browser shows the running proxy's own memory), or from a proxy served separately over the
same ``disk`` directory the app opens.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import orjson
import pytest
from textual.widgets import Input, Tree
from textual.widgets.tree import TreeNode

from llmcache_tui.screens import browser
from tests.conftest import ProxyFactory
from tests.tui_support import (
    HIT,
    SIZE,
    Ask,
    chat_body,
    detail_text,
    make_app,
    open_browser,
    scan_status,
    screen_text,
    seed_served_proxy,
    seed_through_proxy,
    select_row,
    table_keys,
    table_row,
    wait_for_group,
    wait_until,
)

ASKS = [
    Ask("hello"),
    Ask("what is a cache?"),
    Ask("team question", "team-a", ttl=300),
    Ask("team follow-up", "team-a"),
    Ask("eu question", "team-b:eu"),
]
LOCAL_TTL = re.compile(r"9m \d+s|10m 0s")  # the local backend keeps entries 600 s by default


def tree_node(tree: Tree[str | None], namespace: str) -> TreeNode[str | None]:
    found = [node for node in _walk(tree.root) if node.data == namespace]
    assert found, f"no tree node for {namespace}"
    return found[0]


def _walk(node: TreeNode[str | None]) -> list[TreeNode[str | None]]:
    nodes = [node]
    for child in node.children:
        nodes += _walk(child)
    return nodes


def line(label: str, value: str) -> re.Pattern[str]:
    """A ``label   value`` row of the detail pane."""
    return re.compile(rf"^{label} +{value} *$", re.M)


async def test_keys_written_by_the_app_proxy_are_listed_from_its_memory(
    tui_config: Callable[..., str],
) -> None:
    app = make_app(tui_config())
    async with app.run_test(size=SIZE) as pilot:
        keys = await seed_through_proxy(pilot, [Ask("hello"), Ask("team question", "team-a")])
        proxy = app.session.proxy
        assert proxy is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{proxy.port}") as client:
            again = await client.post("/v1/chat/completions", json=chat_body("hello"))
        assert again.headers["cache-status"] == HIT
        await open_browser(pilot)

        assert app.session.backend is proxy.app.backend  # one memory, seen from both sides
        assert sorted(table_keys(app)) == sorted(keys.values())
        assert keys["team question"].startswith("team-a:")
        for key in keys.values():
            row = table_row(app, key)
            assert (row["model"], row["type"]) == ("gpt-4o-mini", "chat")
            assert LOCAL_TTL.fullmatch(row["TTL"]), row
            assert row["size"].endswith(" B")
        assert scan_status(app) == (
            "2 keys shown for * | scanned 2 of about 2 | all matching keys loaded"
        )
        assert "In-memory cache: only this process's entries" in screen_text(app)


async def test_namespace_tree_expands_and_filters(
    make_proxy: ProxyFactory, tui_disk_config: str
) -> None:
    keys = seed_served_proxy(make_proxy(cache_type="disk"), ASKS)
    app = make_app(tui_disk_config)
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        assert sorted(table_keys(app)) == sorted(keys.values())
        tree = app.screen.query_one("#namespaces", Tree)
        assert tree.display
        # Whole names, with the keys counted under each (exact: every key was scanned).
        labels = [str(node.label) for node in tree.root.children]
        assert re.fullmatch(r"team-a 2 · \d+(\.\d)? (B|KiB)", labels[0]), labels
        assert re.fullmatch(r"team-b 1 · \d+ B", labels[1]), labels

        team_b = tree_node(tree, "team-b")
        tree.focus()
        tree.move_cursor(team_b)
        await pilot.press("space")  # expand: a worker lists the sub-namespaces
        await wait_for_group(pilot, "browser-explore")
        assert team_b.is_expanded
        assert [node.data for node in team_b.children] == ["team-b:eu"]
        assert str(team_b.children[0].label).startswith("eu 1 · ")
        team_a = tree_node(tree, "team-a")
        tree.move_cursor(team_a)
        await pilot.press("space")
        await wait_for_group(pilot, "browser-explore")
        assert team_a.is_expanded
        assert list(team_a.children) == []  # the "loading..." placeholder is gone
        assert "loading..." not in screen_text(app)

        await pilot.press("enter")  # select team-a: only its keys
        await wait_for_group(pilot, "browser-scan")
        assert sorted(table_keys(app)) == sorted([keys["team question"], keys["team follow-up"]])
        assert app.screen.query_one("#filter", Input).value == "team-a:*"
        assert scan_status(app).startswith("2 keys shown for team-a:* | scanned 5 of about 5")

        tree.move_cursor(team_b)  # a parent includes its sub-namespaces
        await pilot.press("enter")
        await wait_for_group(pilot, "browser-scan")
        assert table_keys(app) == [keys["eu question"]]

        tree.move_cursor(tree.root)  # "all keys"
        await pilot.press("enter")
        await wait_for_group(pilot, "browser-scan")
        assert len(table_keys(app)) == 5
        assert app.screen.query_one("#filter", Input).value == ""

        await pilot.press("n")  # hide the tree, and show it again
        assert not tree.display
        await pilot.press("n")
        assert tree.display


async def test_glob_filter(make_proxy: ProxyFactory, tui_disk_config: str) -> None:
    keys = seed_served_proxy(make_proxy(cache_type="disk"), ASKS)
    app = make_app(tui_disk_config)
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        await pilot.press("slash")
        assert app.focused is app.screen.query_one("#filter", Input)
        await pilot.press(*"t*:e?:*", "enter")
        await wait_for_group(pilot, "browser-scan")
        assert table_keys(app) == [keys["eu question"]]
        assert app.focused is app.screen.query_one("#keys")  # back to the table
        assert scan_status(app).startswith("1 key shown for t*:e?:* | scanned 5 of about 5")

        await pilot.press("slash", "ctrl+a", "ctrl+k", *"x:*", "enter")
        await wait_for_group(pilot, "browser-scan")
        assert table_keys(app) == []
        assert scan_status(app) == (
            "0 keys shown for x:* | scanned 5 of about 5 | all matching keys loaded"
        )

        await pilot.press("slash", "ctrl+a", "ctrl+k", "enter")  # an empty filter is "*"
        await wait_for_group(pilot, "browser-scan")
        assert len(table_keys(app)) == 5


async def test_load_more_pages_through_keys_and_says_how_far_it_got(
    make_proxy: ProxyFactory, tui_disk_config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(browser, "ROWS_PER_LOAD", 10)
    monkeypatch.setattr(browser, "SCAN_COUNT", 10)
    keys = seed_served_proxy(make_proxy(cache_type="disk"), [Ask(f"q{n}") for n in range(30)])
    app = make_app(tui_disk_config)
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        assert len(table_keys(app)) == 10
        assert scan_status(app) == (
            "10 keys shown for * | scanned 10 of about 30 | more may match: l loads more"
        )
        assert "l loads more" in screen_text(app)

        presses = 0
        while "all matching keys loaded" not in scan_status(app):
            assert presses < 5, scan_status(app)
            await pilot.press("l")
            await wait_for_group(pilot, "browser-scan")
            presses += 1
        assert presses >= 2
        assert sorted(table_keys(app)) == sorted(keys.values())
        assert scan_status(app).startswith("30 keys shown for * | scanned 30 of about 30")

        await pilot.press("l")  # nothing more to load: the table stays as it is
        await wait_for_group(pilot, "browser-scan")
        assert len(table_keys(app)) == 30


async def test_detail_pane_shows_what_was_asked_and_answered(
    make_proxy: ProxyFactory, tui_disk_config: str
) -> None:
    keys = seed_served_proxy(make_proxy(cache_type="disk"), ASKS)
    app = make_app(tui_disk_config)
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        await select_row(pilot, keys["team question"])

        detail = detail_text(app)
        assert line("key", re.escape(keys["team question"])).search(detail)
        assert line("model", "gpt-4o-mini").search(detail)
        assert line("call type", "chat").search(detail)
        assert line("origin", "llmcache-tui").search(detail)
        assert line("prompt", "team question").search(detail)
        assert line("created", r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d").search(detail)
        assert line("age", r"\d+s").search(detail)
        assert line("expires in", r"4m \d+s|5m 0s").search(detail)  # "cache": {"ttl": 300}
        assert '"content": "echo: team question"' in detail  # the response, pretty-printed
        assert '"object": "chat.completion"' in detail
        assert "team question" in screen_text(app)
        assert table_row(app, keys["hello"])["TTL"] == "no TTL"  # none on disk by default

        await select_row(pilot, keys["hello"])  # the pane follows the cursor
        detail = detail_text(app)
        assert '"content": "echo: hello"' in detail
        assert line("expires in", "no expiry").search(detail)

        backend = app.session.backend
        assert backend is not None
        await backend.delete([keys["eu question"]])  # behind the browser's back
        await select_row(pilot, keys["eu question"])
        await wait_until(pilot, lambda: "no longer exists (expired or deleted)" in detail_text(app))


async def test_entries_written_by_litellm_are_shown_as_such(
    make_proxy: ProxyFactory, tui_disk_config: str
) -> None:
    keys = seed_served_proxy(make_proxy(cache_type="disk"), [Ask("ours")])
    response = {
        "id": "chatcmpl-litellm-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "stored by litellm"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7},
    }
    litellm_raw = orjson.dumps(
        {"timestamp": 1_700_000_000.0, "response": orjson.dumps(response).decode()}
    )
    app = make_app(tui_disk_config)
    async with app.run_test(size=SIZE) as pilot:
        backend = app.session.backend
        assert backend is not None
        await backend.set("litellm-key-1", litellm_raw, ttl=3600)
        await backend.set("garbage-key", b"\x00not json")
        await backend.set("damaged-key", b'{"v":1,"response":{"id":')  # cut short
        await open_browser(pilot, refresh=True)

        assert sorted(table_keys(app)) == sorted(
            ["litellm-key-1", "garbage-key", "damaged-key", keys["ours"]]
        )
        row = table_row(app, "litellm-key-1")
        assert (row["model"], row["type"]) == ("gpt-4o", "chat")
        assert table_row(app, "garbage-key")["model"] == "(not an entry)"
        assert table_row(app, "damaged-key")["model"] == "(unreadable)"

        await select_row(pilot, "litellm-key-1")
        detail = detail_text(app)
        assert line("origin", "written by LiteLLM").search(detail)
        assert line("model", "gpt-4o").search(detail)
        assert line("tokens", "7").search(detail)
        assert line("created", "2023-11-1[45] ..:..:..").search(detail)  # local time zone
        assert line("expires in", r"59m \d+s|1h 0m").search(detail)
        assert '"content": "stored by litellm"' in detail

        await select_row(pilot, keys["ours"])
        assert line("origin", "llmcache-tui").search(detail_text(app))

        await select_row(pilot, "garbage-key")
        assert line("kind", "not a cache entry").search(detail_text(app))
        assert "Not a cache entry; raw bytes:" in detail_text(app)
        await select_row(pilot, "damaged-key")
        assert "A damaged cache entry (not JSON" in detail_text(app)


async def test_streamed_entries_show_their_answer_and_chunk_count(
    make_proxy: ProxyFactory, tui_disk_config: str
) -> None:
    proxy = make_proxy(cache_type="disk")
    with proxy.sdk() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "tell me a streamed story"}],
            stream=True,
        )
        key = raw.headers["x-litellm-cache-key"]
        chunks = list(raw.parse())
    app = make_app(tui_disk_config)
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot, refresh=True)
        await select_row(pilot, key)
        detail = detail_text(app)
        assert line("streamed", f"{len(chunks)} chunks, replayed as a stream").search(detail)
        assert line("answer", "echo: tell me a streamed story").search(detail)
