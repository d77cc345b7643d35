"""Working with the entry shown: find in it (Ctrl+F, n/N, a count), copy its answer or
stored JSON, export it or the loaded rows to JSON Lines, the full-screen view, ``$PAGER``,
read-only explanations, the screenshot's directory and the overview's labels.

Entries are written straight into the app's in-memory backend (or a real Redis), in the
stored format the proxy writes.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Input, Label, Static

from llmcache_tui.app import LLMCacheApp
from llmcache_tui.cache.backends.local import LocalBackend
from llmcache_tui.cache.entry import CacheEntry
from llmcache_tui.cache.export import (
    decoded_entry,
    default_export_path,
    export_entries,
    export_line,
    output_directory,
)
from llmcache_tui.config import BUILTIN_SOURCE, parse_settings
from llmcache_tui.pager import PagerError, pager_command, run_pager
from llmcache_tui.screens.confirm import ConfirmScreen
from llmcache_tui.screens.fullscreen import FullEntryScreen
from llmcache_tui.screens.prompt import PromptScreen
from llmcache_tui.session import Session
from llmcache_tui.widgets.entry_detail import CURRENT_MATCH_STYLE, MATCH_STYLE, EntryDetail
from llmcache_tui.widgets.search import TextSearch
from tests import redis_servers as rs
from tests.tui_support import (
    SIZE,
    config_text,
    detail_text,
    footer_text,
    make_app,
    notified,
    open_browser,
    rendered_text,
    screen_text,
    select_row,
    table_keys,
    wait_for_group,
    wait_until,
)

API_BASE = "http://127.0.0.1:9/v1"  # never called: entries are written directly
ANSWER = "A cache keeps answers. A cache hit skips the model; caches expire."
NOW = 1_790_000_000.0


def chat_entry(prompt: str, answer: str = ANSWER) -> CacheEntry:
    usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    response = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }
    return CacheEntry(response, "chat", "gpt-4o-mini", prompt, created_at=NOW - 60, usage=usage)


async def seeded(read_only: bool = False, **entries: CacheEntry) -> LLMCacheApp:
    app = make_app(config_text(API_BASE), read_only=read_only)
    backend = app.session.backend
    assert backend is not None
    for key, entry in entries.items():
        await backend.set(key, entry.encode(), ttl=3600)
    return app


def search_count(app: LLMCacheApp) -> str:
    return str(app.screen.query_one("#entry-search-count", Label).content)


def body_styles(app: LLMCacheApp) -> list[str]:
    """The styles of the body's marked spans (the search's matches), in order."""
    body = app.screen.query_one("#detail-body", Static).content
    assert isinstance(body, Text)
    marks = (MATCH_STYLE, CURRENT_MATCH_STYLE)
    return [str(span.style) for span in body.spans if str(span.style) in marks]


def notification_text(app: LLMCacheApp) -> str:
    return "\n".join(f"{n.title}: {n.message}" for n in app._notifications)


# --------------------------------------------------------------------------- find


def test_text_search_counts_ignores_case_and_wraps() -> None:
    search = TextSearch()
    search.find("cache", "Cache, cache and CACHES")
    assert search.spans == [(0, 5), (7, 12), (17, 22)]
    assert search.describe() == "1 of 3"
    search.step()
    search.step()
    assert search.describe() == "3 of 3"
    search.step()
    assert search.describe() == "1 of 3"
    search.step(forward=False)
    assert search.span == (17, 22)
    search.find("nothing")
    assert search.describe() == "no matches"
    search.find("")
    assert search.describe() == ""


async def test_find_in_the_entry_marks_matches_counts_and_jumps() -> None:
    app = await seeded(**{"k1": chat_entry("what is a cache?")})
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        await select_row(pilot, "k1")
        detail = app.screen.query_one("#detail", EntryDetail)
        expected = detail.body_text().casefold().count("cache")
        assert expected >= 3

        await pilot.press("ctrl+f")
        assert isinstance(app.focused, Input) and app.focused.id == "entry-search-input"
        await pilot.press(*"CACHE")  # case does not matter
        assert search_count(app) == f"1 of {expected}"
        assert body_styles(app) == [CURRENT_MATCH_STYLE] + [MATCH_STYLE] * (expected - 1)
        await pilot.press("enter")
        assert search_count(app) == f"2 of {expected}"
        assert body_styles(app)[1] == CURRENT_MATCH_STYLE
        await pilot.press("shift+enter")
        assert search_count(app) == f"1 of {expected}"

        await pilot.press("escape")  # back to the entry, the matches still marked
        assert app.focused is detail
        await pilot.press("n", "n")
        assert search_count(app) == f"3 of {expected}"
        await pilot.press("N")
        assert search_count(app) == f"2 of {expected}"
        assert "2 of" in screen_text(app)

        await pilot.press("escape")  # ends the search
        assert body_styles(app) == []
        tree = app.screen.query_one("#namespaces")
        shown = tree.display
        await pilot.press("n")  # n is the browser's again: the tree
        assert tree.display is not shown

        await pilot.press("ctrl+f", *"no such text")
        assert search_count(app) == "no matches"


async def test_a_long_entry_scrolls_to_the_current_match() -> None:
    lines = "\n".join(f"line {n}" for n in range(200))
    app = await seeded(**{"long": chat_entry("long", answer=f"{lines}\nneedle at the end")})
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        await select_row(pilot, "long")
        detail = app.screen.query_one("#detail", EntryDetail)
        assert detail.scroll_y == 0
        await pilot.press("ctrl+f", *"needle")
        await pilot.pause()
        assert search_count(app) == "1 of 1"
        assert detail.scroll_y > 0
        assert "needle at the end" in screen_text(app)


# --------------------------------------------------------------------------- copy


async def test_copy_the_answer_and_the_stored_json() -> None:
    entry = chat_entry("what is a cache?")
    app = await seeded(**{"k1": entry})
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        await select_row(pilot, "k1")
        await pilot.press("y")
        assert app.clipboard == ANSWER
        assert notified(app, f"Copied the answer of k1 ({len(ANSWER)} characters)")

        await pilot.press("Y")
        assert orjson.loads(app.clipboard) == orjson.loads(entry.encode())
        assert notified(app, "Copied the stored JSON of k1")

        await pilot.press("c")  # the key, as before
        assert app.clipboard == "k1"


async def test_copy_of_a_value_that_is_not_an_entry_copies_its_bytes() -> None:
    app = await seeded()
    backend = app.session.backend
    assert backend is not None
    await backend.set("other", b"plain text of another app", ttl=3600)
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        await select_row(pilot, "other")
        await pilot.press("y")
        assert app.clipboard == "plain text of another app"
        assert notified(app, "Copied the value of other")


# --------------------------------------------------------------------------- export


async def test_export_the_entry_and_the_loaded_rows_asks_before_replacing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the config source "config.yaml" is not a file: cwd
    entries = {f"team-a:{n}": chat_entry(f"question {n}") for n in range(3)}
    app = await seeded(**entries)
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        await select_row(pilot, "team-a:1")

        await pilot.press("x")
        assert isinstance(app.screen, PromptScreen)
        field = app.screen.query_one("#prompt-input", Input)
        default = Path(field.value)
        assert default.parent == tmp_path.resolve()
        assert re.fullmatch(r"llmcache-export-\d{8}-\d{6}\.jsonl", default.name)
        await pilot.press("enter")
        await wait_until(pilot, lambda: notified(app, "Wrote 1 entry to"), what="the export")
        assert notified(app, str(default))
        (line,) = default.read_bytes().splitlines()
        record = orjson.loads(line)
        assert record["key"] == "team-a:1"
        assert 3500 < record["ttl"] <= 3600
        assert record["entry"]["response"]["choices"][0]["message"]["content"] == ANSWER
        assert record["entry"]["prompt_preview"] == "question 1"
        assert record["entry"]["origin"] == "llmcache"

        # The loaded rows, to the same file: asked first; declining leaves it alone.
        before = default.read_bytes()
        await pilot.press("X")
        assert isinstance(app.screen, PromptScreen)
        assert "3 keys loaded for *" in str(app.screen.query_one(".dialog-question", Label).content)
        app.screen.query_one("#prompt-input", Input).value = str(default)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "exists. Replace it?" in str(app.screen.query_one(".dialog-question", Label).content)
        await pilot.press("escape")
        await wait_until(pilot, lambda: notified(app, "Not exported"))
        assert default.read_bytes() == before

        await pilot.press("X")
        app.screen.query_one("#prompt-input", Input).value = str(default)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: notified(app, "Wrote 3 entries to"), what="the export")
        keys = [orjson.loads(line)["key"] for line in default.read_bytes().splitlines()]
        assert keys == table_keys(app)


async def test_export_entries_writes_lines_and_never_overwrites_unasked(tmp_path: Path) -> None:
    backend = LocalBackend()
    entry = chat_entry("hello")
    await backend.set("a", entry.encode(), ttl=60)
    await backend.set("b", b"not an entry", ttl=None)
    litellm = orjson.dumps({"timestamp": NOW, "response": orjson.dumps(entry.response).decode()})
    await backend.set("c", litellm)
    path = tmp_path / "out.jsonl"
    seen: list[tuple[int, int]] = []

    result = await export_entries(
        backend, ["a", "b", "c", "gone"], path, progress=lambda *p: seen.append(p)
    )
    assert (result.written, result.missing) == (3, 1)
    assert seen == [(4, 4)]
    a, b, c = (orjson.loads(line) for line in path.read_bytes().splitlines())
    assert a["entry"]["response"] == entry.response and 0 < a["ttl"] <= 60
    assert b == {"key": "b", "ttl": None, "entry": None, "raw": "not an entry"}
    assert c["entry"]["origin"] == "litellm"
    assert c["entry"]["response"] == entry.response  # decoded, not a string inside JSON

    with pytest.raises(FileExistsError):
        await export_entries(backend, ["a"], path)
    assert len(path.read_bytes().splitlines()) == 3
    again = await export_entries(backend, ["a"], path, overwrite=True)
    assert again.written == 1 and len(path.read_bytes().splitlines()) == 1


def test_export_line_of_a_damaged_entry_keeps_its_bytes() -> None:
    line = export_line("k", b'{"v": 1, "response": ', None)
    assert line["entry"] is None and "error" in line and line["raw"].startswith('{"v": 1')
    with pytest.raises(ValueError):
        decoded_entry(b"plain")


def test_files_go_next_to_the_config_file_else_in_the_current_directory(tmp_path: Path) -> None:
    config = tmp_path / "conf" / "config.yaml"
    config.parent.mkdir()
    config.write_text("model_list: []\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert output_directory(str(config), elsewhere) == config.parent.resolve()
    assert output_directory("conf/config.yaml", tmp_path) == config.parent.resolve()
    assert output_directory(BUILTIN_SOURCE, elsewhere) == elsewhere.resolve()
    assert output_directory("missing.yaml", elsewhere) == elsewhere.resolve()
    assert default_export_path(elsewhere, now=NOW).suffix == ".jsonl"


# --------------------------------------------------------------------------- full screen, pager


async def test_full_screen_view_shows_the_entry_and_finds_in_it() -> None:
    app = await seeded(**{"k1": chat_entry("what is a cache?")})
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        await select_row(pilot, "k1")
        browser = app.screen
        await pilot.press("z")
        await wait_until(pilot, lambda: isinstance(app.screen, FullEntryScreen))
        await pilot.pause()
        text = detail_text(app)
        assert "k1" in text and ANSWER in text
        footer = footer_text(app)
        for label in ("Close", "Find", "Copy answer", "Copy JSON", "Pager"):
            assert label in footer
        await pilot.press("ctrl+f", *"cache")
        assert search_count(app).startswith("1 of ")
        await pilot.press("escape", "y")
        assert app.clipboard == ANSWER
        await pilot.press("escape", "escape")  # ends the search, then closes
        await wait_until(pilot, lambda: app.screen is browser)


PAGER_SCRIPT = """\
import sys
with open(sys.argv[1], "wb") as out:
    out.write(sys.stdin.buffer.read())
"""


@pytest.fixture
def pager(tmp_path: Path) -> tuple[str, Path]:
    """A $PAGER that writes its standard input to a file: (the command, the file)."""
    script = tmp_path / "pager.py"
    script.write_text(PAGER_SCRIPT)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    target = tmp_path / "paged.txt"
    return f"{sys.executable} {script} {target}", target


def test_the_pager_command_gets_the_text_on_its_input(pager: tuple[str, Path]) -> None:
    command_line, target = pager
    command = pager_command({"PAGER": command_line})
    assert command is not None and command[-1] == str(target)
    assert run_pager(command, '{"answer": "é"}') == 0
    assert target.read_text("utf-8") == '{"answer": "é"}'
    assert pager_command({}) is None and pager_command({"PAGER": "  "}) is None
    with pytest.raises(PagerError, match="PAGER="):
        pager_command({"PAGER": "less 'unclosed"})
    with pytest.raises(PagerError, match="could not run"):
        run_pager(["/nonexistent/pager"], "x")


async def test_pipe_key_says_why_it_cannot_page(
    pager: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pilot's headless driver cannot suspend the app: the pager itself is tested above.
    app = await seeded(**{"k1": chat_entry("what is a cache?")})
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        await select_row(pilot, "k1")
        monkeypatch.delenv("PAGER", raising=False)
        await pilot.press("vertical_line")
        assert notified(app, "$PAGER is not set")
        monkeypatch.setenv("PAGER", pager[0])
        await pilot.press("vertical_line")
        assert notified(app, "cannot lend the screen to a pager")
        assert not pager[1].exists()


# --------------------------------------------------------------------------- read-only


@pytest.mark.parametrize("how", ["flag", "config"])
async def test_read_only_change_keys_say_why(how: str) -> None:
    llmcache = {"read_only": True} if how == "config" else None
    app = make_app(config_text(API_BASE, llmcache=llmcache), read_only=how == "flag")
    backend = app.session.backend
    assert backend is not None
    await backend.set("k1", chat_entry("q").encode(), ttl=3600)
    why = "started with --read-only" if how == "flag" else "llmcache.read_only is set"
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        await select_row(pilot, "k1")
        for key, what in (("d", "delete"), ("t", "TTL change"), ("P", "purge")):
            await pilot.press(key)
            assert notified(app, f"read-only: {why}; {what} is off"), notification_text(app)
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert not {"Delete", "TTL", "Purge"} & set(titles)
        assert await backend.get("k1") is not None


# --------------------------------------------------------------------------- screenshot


async def test_screenshot_goes_next_to_the_config_and_says_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "conf" / "config.yaml"
    config.parent.mkdir()
    text = config_text(API_BASE)
    config.write_text(text)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    app = LLMCacheApp(Session(parse_settings(text, str(config))))
    async with app.run_test(size=SIZE) as pilot:
        commands = [c for c in app.get_system_commands(app.screen) if c.title == "Screenshot"]
        assert len(commands) == 1  # ours replaces Textual's
        commands[0].callback()
        await wait_until(pilot, lambda: notified(app, "Saved "), what="the screenshot")
        (saved,) = config.parent.glob("*.svg")
        assert notified(app, f"Saved {saved}")
        assert os.path.isabs(str(saved)) and not list(elsewhere.iterdir())


# --------------------------------------------------------------------------- labels


def overview_text(app: LLMCacheApp) -> str:
    return "\n".join(rendered_text(w) for w in app.screen.query(Static))


async def wait_for_overview(pilot: Pilot[Any], app: LLMCacheApp) -> str:
    await wait_until(pilot, lambda: "connected" in overview_text(app), what="the health check")
    await pilot.pause()
    return overview_text(app)


async def test_a_fresh_disk_cache_overview_never_shows_none(tmp_path: Path) -> None:
    params = {"disk_cache_dir": str(tmp_path / "cache")}
    app = make_app(config_text(API_BASE, cache_type="disk", cache_params=params))
    async with app.run_test(size=SIZE) as pilot:
        text = await wait_for_overview(pilot, app)
        assert "None" not in text and "None" not in screen_text(app)
        assert re.search(r"default_ttl +not set", text)
        assert re.search(r"on disk +\d", text)
        assert len(re.findall(r"^\W*cache mode\b", text, re.M)) == 1
        assert not re.search(r"^\W*mode\b", text, re.M)


async def test_redis_overview_and_detail_say_which_size_is_which(
    redis_plain: rs.RedisProcess,
) -> None:
    params = {"url": redis_plain.url}
    app = make_app(config_text(API_BASE, cache_type="redis", cache_params=params))
    backend = app.session.backend
    assert backend is not None
    entry = chat_entry("what is a cache?")
    await backend.set("k1", entry.encode(), ttl=3600)
    async with app.run_test(size=SIZE) as pilot:
        text = await wait_for_overview(pilot, app)
        assert "None" not in text
        assert re.search(r"server memory +\d", text)
        assert re.search(r"redis mode +single", text) and re.search(r"cache mode +default_on", text)
        assert not re.search(r"^\W*mode\b", text, re.M)
        assert not re.search(r"^\W*hit rate\b", text, re.M)

        await open_browser(pilot)
        await select_row(pilot, "k1")
        detail = detail_text(app)
        stored = re.search(r"stored +(\d+) B \(the value's bytes\)", detail)
        assert stored is not None and int(stored.group(1)) == len(entry.encode())
        assert re.search(r"memory +\d+ B \(server memory, overhead included\)", detail)


def footer_fits(app: LLMCacheApp) -> bool:
    """The footer's last binding is drawn whole: "q Quit" ends it."""
    return "q Quit" in footer_text(app)


@pytest.mark.parametrize("read_only", [False, True])
async def test_footers_are_not_cut_at_120_columns(read_only: bool) -> None:
    app = await seeded(read_only=read_only, **{"k1": chat_entry("q")})
    async with app.run_test(size=SIZE) as pilot:
        for screen_key in ("1", "2", "3"):
            await pilot.press(screen_key)
            await pilot.pause()
            assert footer_fits(app), footer_text(app)
        await pilot.press("2")
        await wait_for_group(pilot, "browser-scan")
        await select_row(pilot, "k1")
        app.screen.query_one("#detail", EntryDetail).focus()
        await pilot.pause()
        assert footer_fits(app), footer_text(app)
