"""Values from the cache, the config or the user are shown as the text they are.

Rich and Textual parse a plain ``str`` as markup almost everywhere, so a cached prompt with
``[/INST]`` once crashed the browser, a model named ``[i]x[/i]`` turned italic and the
glob ``[ab]*`` showed as ``*``. Generated markup-like text (brackets, closing tags, links,
``@click`` actions, variables, backslashes, emoji codes, emoji, control characters) goes
through every widget that shows data, on real backends; the cases from the bug report are
here as well. A crash of any kind must end the process non-zero with the reason.

Hypothesis examples are few and batched (one app per example, several values in each), so
the file stays quick; every run draws new inputs and a failure prints the example.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import re
import select
import struct
import subprocess
import sys
import tempfile
import termios
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Label, RichLog, Static, Tree
from textual.widgets.tree import TreeNode

from llmcache_tui.app import LLMCacheApp, exit_status
from llmcache_tui.cache.entry import CacheEntry
from llmcache_tui.config import parse_settings
from llmcache_tui.literal import literal, printable
from llmcache_tui.screens.base import AppScreen
from llmcache_tui.screens.browser import BrowserScreen
from llmcache_tui.screens.confirm import ConfirmScreen
from llmcache_tui.screens.prompt import PromptScreen
from llmcache_tui.session import Session
from llmcache_tui.widgets.key_table import KeyTable
from tests.fake_upstream import FakeUpstreamServer
from tests.servers import DEFAULT_MODELS, litellm_config
from tests.tui_support import (
    CONFIG_SOURCE,
    SIZE,
    STORED,
    cache_key,
    config_text,
    detail_text,
    make_app,
    notifications,
    open_browser,
    rendered_text,
    scan_status,
    screen_text,
    start_proxy,
    table_keys,
    wait_for_group,
    wait_until,
)

NOW = 1_790_000_000.0
API_BASE = "http://127.0.0.1:9/v1"  # never called: entries are written to the backend
LLAMA_PROMPT = "<s>[INST] summarize this [/INST]"
ITALIC_MODEL = "[i]x[/i]"
CLASS_GLOB = "[ab]*"

# --------------------------------------------------------------------------- strategies

MARKUP_PIECES = (
    "[", "]", "[]", "[[", "]]", "[/]", "[INST]", "[/INST]", "<s>", "</s>", "[b]", "[/b]",
    "[i]x[/i]", "[bold red]", "[on red]", "[#ff0000]", "[$accent]", "[$text 50%]",
    "[link=https://example.com]", "[/link]", "[@click=app.quit]", "[@click=app.bell()]",
    "[@click='app.quit']", "[/@click]", "\\", "\\[", "\\\\[b]", "[b]\\", ":smile:",
    ":thumbs_up:", ":", "*", "?", "=", "'", '"', "%s", "{}", "😀", "👍🏽", "漢字", "é",
    "\u200b", " ",
)  # fmt: skip
CONTROL_PIECES = (
    "\x1b[31m", "\x1b]0;title\x07", "\x1b[2J", "\x00", "\x07", "\x08", "\r", "\n", "\t",
    "\x7f", "\x85", "\x9b",
)  # fmt: skip


def markup_text(*, controls: bool = True, exclude: str = "", max_pieces: int = 6) -> Any:
    """Short strings built from markup-like pieces and a little random text."""
    pieces = MARKUP_PIECES + (CONTROL_PIECES if controls else ())
    noise = (
        st.text(max_size=3)
        if controls
        else st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=3)
    )
    strategy = st.lists(
        st.one_of(st.sampled_from(pieces), noise), min_size=1, max_size=max_pieces
    ).map("".join)
    return strategy.filter(lambda s: s.strip() != "" and not any(ch in s for ch in exclude))


# No shrinking: each example runs a whole app, and shrinking one took minutes. A failure
# prints the example as generated.
PROPERTY = settings(
    max_examples=4,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


# --------------------------------------------------------------------------- checks


def squeezed(text: str) -> str:
    """Text without whitespace and box lines: a value wrapped over lines still matches."""
    return "".join(ch for ch in text if not ch.isspace() and ch not in "│")


def shows(shown: str, *values: object) -> bool:
    """Whether every value appears in ``shown`` exactly as ``printable`` writes it."""
    return all(squeezed(printable(value)) in squeezed(shown) for value in values)


def names(shown: str, path: Path) -> bool:
    """Whether a message names ``path``, as it is or quoted as a repr."""
    return shows(shown, path) or shows(shown, repr(str(path)))


def plain_cell(cell: object) -> str:
    """A table cell's text; it must be unstyled Text, never a str parsed as markup."""
    assert isinstance(cell, Text), cell
    assert not cell.spans and not cell.style, cell.spans
    return cell.plain


async def settle(pilot: Pilot[None], *groups: str) -> None:
    for group in groups:
        await wait_for_group(pilot, group)
    await pilot.pause()


def assert_alive(app: LLMCacheApp) -> str:
    """The app still runs and its screen renders; returns the screen's text."""
    text = screen_text(app)
    assert app.is_running and app.return_code is None
    return text


def tree_nodes(app: LLMCacheApp) -> dict[str | None, TreeNode[str | None]]:
    tree = app.screen.query_one("#namespaces", Tree)
    found: dict[str | None, TreeNode[str | None]] = {}
    todo = [tree.root]
    while todo:
        node = todo.pop()
        found[node.data] = node
        todo.extend(node.children)
    return found


# --------------------------------------------------------------------------- the helper


@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(st.text(), markup_text()), st.booleans())
def test_printable_text_has_no_control_characters_and_is_stable(value: str, one_line: bool) -> None:
    shown = printable(value, one_line=one_line)
    allowed = "" if one_line else "\n\t"
    assert all(ch in allowed or not (ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F) for ch in shown)
    assert not any(0xD800 <= ord(ch) <= 0xDFFF for ch in shown)
    assert printable(shown, one_line=one_line) == shown
    assert literal(value, one_line=one_line).plain == shown
    if value.isprintable():
        assert shown == value  # only what cannot be drawn is changed


def test_printable_draws_controls_as_symbols() -> None:
    assert printable("a\x1b[31mb\x00\x7f\x9b\ud800") == "a␛[31mb␀␡\\x9b\ufffd"
    assert printable("two\nlines\tand a tab") == "two\nlines\tand a tab"
    assert printable("two\nlines\tand a tab", one_line=True) == "two␊lines␉and a tab"
    assert printable(12.5) == "12.5"


# --------------------------------------------------------------------------- the browser


@dataclass(frozen=True)
class Stored:
    """One generated entry, written straight to the backend the app browses."""

    namespace: tuple[str, ...]
    prompt: str
    answer: str
    model: str
    route: str
    tokens: str
    streamed: bool
    index: int

    @property
    def key(self) -> str:
        digest = hashlib.sha256(str(self.index).encode()).hexdigest()
        return ":".join((*self.namespace, digest))

    def encoded(self) -> bytes:
        message = {"role": "assistant", "content": self.answer}
        response = {"object": "chat.completion", "choices": [{"index": 0, "message": message}]}
        entry = CacheEntry(
            response,
            self.route,
            self.model,
            self.prompt,
            created_at=NOW - 30,
            usage={"total_tokens": self.tokens},
            chunks=[{"choices": []}] if self.streamed else None,
        )
        return entry.encode()


def stored_entries() -> Any:
    one = st.builds(
        Stored,
        namespace=st.lists(markup_text(exclude=":", max_pieces=3), max_size=2).map(tuple),
        prompt=markup_text(),
        answer=markup_text(),
        model=markup_text(max_pieces=3),
        route=markup_text(max_pieces=2),
        tokens=markup_text(max_pieces=2),
        streamed=st.booleans(),
        index=st.just(0),
    )
    return st.lists(one, min_size=1, max_size=3).map(
        lambda entries: [
            Stored(**{**entry.__dict__, "index": i}) for i, entry in enumerate(entries)
        ]
    )


async def seeded(entries: list[Stored]) -> LLMCacheApp:
    app = make_app(config_text(API_BASE), clock=lambda: NOW)
    backend = app.session.backend
    assert backend is not None
    for entry in entries:
        await backend.set(entry.key, entry.encoded(), ttl=600)
    return app


async def show_entry(pilot: Pilot[None], app: LLMCacheApp, key: str) -> str:
    """Move the table cursor to ``key``; the detail pane's text once it has loaded."""
    table = app.screen.query_one("#keys", DataTable)
    table.focus()
    table.move_cursor(row=table.get_row_index(key))
    await settle(pilot, "browser-detail")
    await wait_until(pilot, lambda: shows(detail_text(app), key), what="the entry's detail")
    return detail_text(app)


async def apply_glob(pilot: Pilot[None], app: LLMCacheApp, glob: str) -> str:
    """Type a glob filter (as Enter in the filter field applies it); the pattern used."""
    field = app.screen.query_one("#filter", Input)
    field.focus()
    field.value = glob
    await pilot.press("enter")
    await settle(pilot, "browser-scan")
    screen = app.screen
    assert isinstance(screen, BrowserScreen)
    return screen.pattern


@PROPERTY
@given(entries=stored_entries(), glob=markup_text())
def test_generated_entries_browse_as_text(entries: list[Stored], glob: str) -> None:
    async def scenario() -> None:
        app = await seeded(entries)
        async with app.run_test(size=SIZE) as pilot:
            await open_browser(pilot)
            assert_alive(app)
            assert sorted(table_keys(app)) == sorted(entry.key for entry in entries)
            table = app.screen.query_one("#keys", KeyTable)
            screen = app.screen
            assert isinstance(screen, BrowserScreen)
            nodes = tree_nodes(app)
            for entry in entries:
                key_cell, model_cell, kind_cell, *_ = table.get_row(entry.key)
                key_shown = plain_cell(key_cell)
                assert len(key_shown) <= table.key_width
                if len(printable(entry.key, one_line=True)) <= table.key_width:
                    assert key_shown == printable(entry.key, one_line=True)
                assert plain_cell(model_cell) == printable(entry.model, one_line=True)
                assert plain_cell(kind_cell) == printable(entry.route, one_line=True)
                for depth in range(1, len(entry.namespace) + 1):
                    node = nodes[":".join(entry.namespace[:depth])]
                    namespace = ":".join(entry.namespace[:depth])
                    label = printable(entry.namespace[depth - 1], one_line=True)
                    shown = node.label  # the name as text, then its key count, dimmed
                    assert isinstance(shown, Text) and not shown.style
                    assert shown.plain == f"{label} {screen.counts.describe(namespace)}"
                    assert all(span.start >= len(label) for span in shown.spans)

                detail = await show_entry(pilot, app, entry.key)
                assert shows(detail, entry.key, entry.model, entry.route, entry.prompt)
                assert shows(detail, entry.tokens)
                if entry.streamed:
                    assert shows(detail, entry.answer)
                assert_alive(app)

            pattern = await apply_glob(pilot, app, glob)
            assert f" for {printable(pattern, one_line=True)} | " in scan_status(app)
            assert_alive(app)

    asyncio.run(scenario())


async def test_the_reported_llama_prompt_browses_and_the_browser_opens_again(
    upstream: FakeUpstreamServer,
) -> None:
    models = {**DEFAULT_MODELS, "llama-2": "openai/llama-2"}
    document = litellm_config(upstream.url, cache_params={"type": "local"}, models=models)
    app = make_app(yaml.safe_dump(document, sort_keys=False))
    async with app.run_test(size=SIZE) as pilot:
        url = await start_proxy(pilot)
        body = {"model": "llama-2", "messages": [{"role": "user", "content": LLAMA_PROMPT}]}
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            response = await client.post("/v1/chat/completions", json=body)
        assert response.headers["cache-status"] == STORED
        key = cache_key(response)

        for _ in range(2):  # the entry is the first row: the browser must open every time
            await open_browser(pilot)
            assert table_keys(app) == [key]
            await wait_for_group(pilot, "browser-detail")
            await wait_until(pilot, lambda: LLAMA_PROMPT in detail_text(app), what="prompt")
            assert LLAMA_PROMPT in screen_text(app)
            await pilot.press("1")
            assert_alive(app)


async def test_a_model_named_like_markup_is_not_styled() -> None:
    entry = Stored((), "hi", "hello", ITALIC_MODEL, "chat", "3", streamed=False, index=0)
    app = await seeded([entry])
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        model_cell = app.screen.query_one("#keys", DataTable).get_row(entry.key)[1]
        assert plain_cell(model_cell) == ITALIC_MODEL  # not "x" in italics
        await show_entry(pilot, app, entry.key)
        assert ITALIC_MODEL in screen_text(app)
        assert re.search(rf"^model +{re.escape(ITALIC_MODEL)} *$", detail_text(app), re.M)


async def test_a_character_class_glob_is_shown_as_typed() -> None:
    entries = [
        Stored(("a",), "one", "1", "m", "chat", "1", streamed=False, index=0),
        Stored(("c",), "two", "2", "m", "chat", "1", streamed=False, index=1),
    ]
    app = await seeded(entries)
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        assert await apply_glob(pilot, app, CLASS_GLOB) == CLASS_GLOB
        assert table_keys(app) == [entries[0].key]
        assert scan_status(app).startswith(f"1 key shown for {CLASS_GLOB} | ")
        assert f"for {CLASS_GLOB} |" in screen_text(app)


async def test_dialogs_name_a_markup_key_as_it_is() -> None:
    entry = Stored(("[/INST]", "[$accent]"), "q", "a", "m", "chat", "1", streamed=False, index=0)
    app = await seeded([entry])
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        await show_entry(pilot, app, entry.key)
        node = tree_nodes(app)["[/INST]:[$accent]"]
        assert isinstance(node.label, Text)
        assert node.label.plain == "[$accent] 1 · " + node.label.plain.split(" · ")[1]

        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        question = rendered_text(app.screen.query_one(".dialog-question", Label))
        assert entry.key in squeezed(question)
        await pilot.press("n")

        await pilot.press("t")
        assert isinstance(app.screen, PromptScreen)
        question = rendered_text(app.screen.query_one(".dialog-question", Label))
        assert f"New TTL for {entry.key}" in question.replace("\n", "")
        await pilot.press("escape")

        await pilot.press("c")  # copy: the notification names the key
        await wait_until(pilot, lambda: any(entry.key in n.message for n in notifications(app)))
        assert_alive(app)


# --------------------------------------------------------------------------- messages


@PROPERTY
@given(
    messages=st.lists(
        st.tuples(markup_text(), markup_text(max_pieces=3)),
        min_size=2,
        max_size=5,
        unique_by=lambda pair: printable(pair[0]),
    ),
    path=markup_text(),
)
@example(messages=[(LLAMA_PROMPT, "[/INST]"), (ITALIC_MODEL, CLASS_GLOB)], path="[/INST]/x.yaml")
@example(messages=[("one", "a"), ("two", "b")], path="?\x00")
def test_notifications_and_error_messages_are_text(
    messages: list[tuple[str, str]], path: str
) -> None:
    async def fail(message: str) -> None:
        raise RuntimeError(message)

    async def scenario() -> None:
        app = make_app(config_text(API_BASE))
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            for message, title in messages:
                app.notify(message, title=title)
                screen.notify(message, title=title)  # a screen asks for markup by default
                await pilot.pause()
                assert_alive(app)
            for message, title in messages:
                shown = [n for n in notifications(app) if n.message == printable(message)]
                assert len(shown) == 2 and not any(n.markup for n in shown)
                assert {n.title for n in shown} == {printable(title, one_line=True)}

            worker = app.run_worker(fail(messages[0][0]), name=messages[0][1], exit_on_error=False)
            await wait_until(pilot, lambda: worker.is_finished, what="the failing worker")
            await pilot.pause()
            failed = notifications(app)[-1]
            assert failed.message == printable(f"RuntimeError: {messages[0][0]}")
            assert failed.title == printable(f"{messages[0][1]} failed", one_line=True)
            assert_alive(app)

            before = len(notifications(app))
            await pilot.press("ctrl+o")
            assert isinstance(app.screen, PromptScreen)
            app.screen.query_one("#prompt-input", Input).value = path
            await pilot.press("enter")
            await wait_for_group(pilot, "overview-connect")
            await wait_until(pilot, lambda: len(notifications(app)) > before, what="the error")
            error = notifications(app)[-1]
            assert error.severity == "error" and not error.markup
            if error.title == "Config not opened":
                # A path no file system takes (a NUL in it) is named as its repr.
                wanted = path.strip()
                assert shows(error.message, wanted) or shows(error.message, repr(wanted))
            assert app.session.settings.source == CONFIG_SOURCE  # the config in use stays
            assert_alive(app)

    asyncio.run(scenario())


def proxy_log(app: LLMCacheApp) -> str:
    return "\n".join(strip.text for strip in app.screen.query_one("#proxy-log", RichLog).lines)


@PROPERTY
@given(lines=st.lists(markup_text(), min_size=1, max_size=6))
@example(lines=[LLAMA_PROMPT, ITALIC_MODEL, CLASS_GLOB, '"GET /v1/[/x] HTTP/1.1" 404'])
def test_proxy_log_lines_are_text(lines: list[str]) -> None:
    async def scenario() -> None:
        app = make_app(config_text(API_BASE))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("3", "r")  # the raw log
            logger = logging.getLogger("llmcache_tui.proxy.markup_test")
            for line in lines:
                logger.warning("%s", line)  # through the app's log bridge, as the proxy logs
            await wait_until(pilot, lambda: shows(proxy_log(app), *lines), what="the log lines")
            assert_alive(app)

    asyncio.run(scenario())


# --------------------------------------------------------------------------- overview


def overview_text(app: LLMCacheApp) -> str:
    return "\n".join(
        rendered_text(app.screen.query_one(selector, Static))
        for selector in ("#overview-config", "#overview-health")
    )


@PROPERTY
@given(
    source=markup_text(),
    namespace=markup_text(controls=False, max_pieces=3),
    models=st.lists(markup_text(controls=False, max_pieces=3), min_size=1, max_size=2),
    unknown=markup_text(controls=False, max_pieces=2),
    folder=markup_text(exclude="/\x00", max_pieces=3),
    usable=st.booleans(),
)
def test_overview_shows_config_values_as_text(
    source: str, namespace: str, models: list[str], unknown: str, folder: str, usable: bool
) -> None:
    async def scenario(root: Path) -> None:
        directory = root / folder.strip().replace(".", "_")
        if usable:
            directory.mkdir()
        else:
            directory.write_text("", encoding="utf-8")  # a file: the backend cannot use it
        params = {"disk_cache_dir": str(directory), "namespace": namespace, unknown: 1}
        document = litellm_config(
            API_BASE,
            cache_params={"type": "disk", **params},
            models={model: "openai/gpt-4o-mini" for model in models},
        )
        settings = parse_settings(yaml.safe_dump(document), source)
        assert any(unknown in warning for warning in settings.warnings)
        app = LLMCacheApp(Session(settings))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, "overview-health")
            await wait_until(pilot, lambda: "checked" in overview_text(app), what="health")
            shown = overview_text(app)
            assert shows(shown, source, namespace, *models, unknown)
            if usable:
                assert shows(shown, directory)
            else:
                assert "not connected" in shown and names(shown, directory)
            assert printable(source, one_line=True) in app.sub_title
            assert_alive(app)

            await pilot.press("2")  # the browser says why it has nothing to show
            await settle(pilot, "browser-scan", "browser-explore")
            if not usable:
                assert names(scan_status(app), directory)
            assert_alive(app)

    with tempfile.TemporaryDirectory() as root:
        asyncio.run(scenario(Path(root)))


async def test_help_shows_remapped_keys_from_the_config_as_text() -> None:
    keymap = {"browser.filter": "[b]", "app.proxy": "[/INST]"}
    app = make_app(config_text(API_BASE, llmcache={"keymap": keymap}))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        text = assert_alive(app)
        assert "[/INST]" in text and "[b]" in text


# --------------------------------------------------------------------------- crashes

CRASH_REASON = "injected fault [/INST] \x1b[31m"


class BrokenScreen(AppScreen):
    """A screen whose handler raises: stands for any bug the app does not catch."""

    def on_mount(self) -> None:
        raise RuntimeError(CRASH_REASON)


async def test_a_crash_gives_a_non_zero_exit_status_and_the_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = make_app(config_text(API_BASE))
    with pytest.raises(RuntimeError, match="injected fault"):
        async with app.run_test(size=SIZE) as pilot:
            await pilot.app.push_screen(BrokenScreen())
            await pilot.pause()
    assert app.return_code == 1
    capsys.readouterr()
    assert exit_status(app) == 1
    reason = capsys.readouterr().err.strip().splitlines()[-1]
    assert reason == (
        "llmcache-tui: the terminal app stopped on an error: "
        "RuntimeError: injected fault [/INST] ␛[31m"
    )


async def test_a_clean_quit_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    app = make_app(config_text(API_BASE))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
    assert exit_status(app) == 0
    assert capsys.readouterr().err == ""


# Runs the real command in a terminal, with one screen's handler broken.
CRASHING_CLI = textwrap.dedent(
    f"""
    import sys
    from llmcache_tui import cli
    from llmcache_tui.screens.overview import OverviewScreen

    def broken(self):
        raise RuntimeError({CRASH_REASON!r})

    OverviewScreen.on_mount = broken
    sys.exit(cli.main(sys.argv[1:]))
    """
)


def run_in_terminal(args: list[str], cwd: Path, stderr: Path, timeout: float = 60) -> int:
    """Run a command with a pseudo-terminal as its screen; its exit status."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    with stderr.open("wb") as errors:
        process = subprocess.Popen(
            args, stdin=follower, stdout=follower, stderr=errors, cwd=cwd, start_new_session=True
        )
    os.close(follower)
    try:
        for _ in range(int(timeout / 0.1)):  # drain the screen so the app never blocks
            if process.poll() is not None:
                break
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    os.read(leader, 65536)
                except OSError:
                    break
        return process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)


def test_the_command_exits_non_zero_with_the_reason_after_a_crash(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_text(API_BASE), encoding="utf-8")
    stderr = tmp_path / "stderr.txt"
    args = [sys.executable, "-c", CRASHING_CLI, "--config", str(config)]
    status = run_in_terminal(args, tmp_path, stderr)
    errors = stderr.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    assert status == 1, errors
    assert errors[-1] == (
        "llmcache-tui: the terminal app stopped on an error: "
        "RuntimeError: injected fault [/INST] ␛[31m"
    )
