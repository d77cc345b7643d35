"""What the browser, the entry dialog and the full-screen view do with an entry beyond
showing it: export to a JSON Lines file (asked for a path; an existing file is replaced
only when confirmed) and hand it to ``$PAGER``.

The export itself is headless (:mod:`llmcache_tui.cache.export`); this module asks, runs it
in a worker, and says where and how many.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App, SuspendNotSupported
from textual.dom import DOMNode

from llmcache_tui import humanize
from llmcache_tui.cache.backends import CacheBackend, CacheBackendError
from llmcache_tui.cache.export import default_export_path, export_entries, output_directory
from llmcache_tui.pager import PagerError, pager_command, run_pager
from llmcache_tui.screens.confirm import ConfirmScreen
from llmcache_tui.screens.prompt import PromptScreen

if TYPE_CHECKING:
    from llmcache_tui.app import LLMCacheApp

EXPORT_GROUP = "entry-export"


def export_directory(app: LLMCacheApp) -> Path:
    """The config file's directory, else the current one."""
    return output_directory(app.session.settings.source)


def ask_export(
    owner: DOMNode, app: LLMCacheApp, backend: CacheBackend, keys: list[str], what: str
) -> None:
    """Ask where to write ``keys`` (``what`` names them: "the entry team-a:1f..", "12 keys
    shown"), confirm before replacing a file, then export in a worker of ``owner``."""
    if not keys:
        app.notify("Nothing to export: no keys shown", severity="warning")
        return
    default = default_export_path(export_directory(app), now=app.clock())

    def start(path: Path, overwrite: bool) -> None:
        owner.run_worker(
            _export(app, backend, keys, path, overwrite=overwrite),
            name="export",
            group=EXPORT_GROUP,
            exit_on_error=False,
        )

    def chosen(text: str | None) -> None:
        if not text or not text.strip():
            return
        path = Path(text.strip()).expanduser().resolve()
        if path.is_dir():
            app.notify(f"{path} is a directory: name a file", severity="error")
            return
        if not path.exists():
            start(path, overwrite=False)
            return

        def answered(replace: bool | None) -> None:
            if replace:
                start(path, overwrite=True)
            else:
                app.notify(f"Not exported: {path} left as it was")

        app.push_screen(
            ConfirmScreen(f"{path} exists. Replace it?", confirm_label="Replace"), answered
        )

    app.push_screen(
        PromptScreen(
            f"Export {what} to a JSON Lines file (one entry per line)",
            placeholder="path/to/file.jsonl",
            validate=_path_problem,
            value=str(default),
        ),
        chosen,
    )


def _path_problem(text: str) -> str | None:
    if not text.strip():
        return "Enter a file path"
    parent = Path(text.strip()).expanduser().resolve().parent
    if not parent.is_dir():
        return f"No such directory: {parent}"
    return None


async def _export(
    app: LLMCacheApp, backend: CacheBackend, keys: list[str], path: Path, *, overwrite: bool
) -> None:
    try:
        result = await export_entries(backend, keys, path, overwrite=overwrite)
    except FileExistsError:
        app.notify(f"Not exported: {path} appeared meanwhile", severity="error", timeout=8)
        return
    except (OSError, CacheBackendError) as exc:
        app.notify(f"Export to {path} failed: {exc}", severity="error", timeout=8)
        return
    gone = f"; {humanize.plural(result.missing, 'key')} gone since listed" if result.missing else ""
    app.notify(
        f"Wrote {humanize.plural(result.written, 'entry', 'entries')} to {result.path}{gone}",
        title="Exported",
        timeout=8,
    )


def page_text(app: App[object], text: str) -> None:
    """Show ``text`` in ``$PAGER``, the app suspended meanwhile; say why when it cannot."""
    try:
        command = pager_command()
    except PagerError as exc:
        app.notify(str(exc), severity="error")
        return
    if command is None:
        app.notify(
            "$PAGER is not set: set it (e.g. PAGER=less) to page entries; z shows one full-screen",
            severity="warning",
        )
        return
    try:
        with app.suspend():
            run_pager(command, text)
    except SuspendNotSupported:
        app.notify(
            "This terminal cannot lend the screen to a pager; z shows the entry full-screen",
            severity="warning",
        )
    except PagerError as exc:
        app.notify(str(exc), title="Pager failed", severity="error")
