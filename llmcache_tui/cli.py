"""Command-line entry point: argument parsing and dispatch only.

``llmcache-tui`` opens the terminal app; ``--headless serve`` runs the proxy alone;
``--check`` probes the configured cache. Heavy modules load only for the mode chosen.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from llmcache_tui import __version__
from llmcache_tui.defaults import DEFAULT_HOST, DEFAULT_PORT, EXIT_CONFIG_ERROR, valid_port

if TYPE_CHECKING:
    from llmcache_tui.config import Settings

EXAMPLES = """\
examples:
  llmcache-tui --headless serve                      proxy on the built-in offline default
  llmcache-tui --headless serve --config config.yaml --port 4000
  llmcache-tui --check --config config.yaml --json   health probe (exit 0, 1 or 2)
  llmcache-tui --config config.yaml                  the terminal app

config lookup: --config, then $LLMCACHE_CONFIG, then ./config.yaml, then the built-in default
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmcache-tui",
        description="A caching proxy for OpenAI-compatible LLM APIs, and a terminal app for it.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", nargs="?", choices=["serve"], help="serve: run the proxy")
    parser.add_argument("--config", metavar="PATH", help="a LiteLLM config.yaml")
    parser.add_argument("--headless", action="store_true", help="no terminal UI (with serve)")
    parser.add_argument("--check", action="store_true", help="probe the cache and exit")
    parser.add_argument("--json", action="store_true", help="with --check: JSON output")
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST})"
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level (default info)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument("--read-only", action="store_true", help="terminal app: no changes")
    parser.add_argument(
        "--allow-litellm-writes",
        action="store_true",
        help="terminal app: may delete records of LiteLLM's own semantic caches",
    )
    parser.add_argument("--version", action="version", version=f"llmcache-tui {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if not valid_port(args.port):
        parser.error("--port must be between 1 and 65535")
    if args.json and not args.check:
        parser.error("--json only applies to --check: llmcache-tui --check --json")
    if args.check and args.command:
        parser.error("--check runs on its own; drop 'serve'")
    if args.check:
        from llmcache_tui.check import run_check

        return run_check(args.config, as_json=args.json)
    if args.command == "serve" or args.headless:
        if args.command != "serve":
            parser.error("--headless needs a command: llmcache-tui --headless serve")
        return _serve(args)
    return _tui(args)


def _load(args: argparse.Namespace) -> Settings | None:
    """The settings for ``--config`` (or the usual lookup); None after saying why not."""
    from llmcache_tui.config import ConfigError, load_settings, resolve_config_path

    try:
        return load_settings(resolve_config_path(args.config))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    from llmcache_tui.proxy.server import serve

    settings = _load(args)
    if settings is None:
        return EXIT_CONFIG_ERROR
    return serve(
        settings,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=args.access_log,
    )


def _tui(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return EXIT_CONFIG_ERROR
    from llmcache_tui.app import run_tui
    from llmcache_tui.proxy.limits import raise_open_file_limit
    from llmcache_tui.session import Session

    raise_open_file_limit()  # the embedded proxy's connections are this process's files
    session = Session(
        settings, read_only=args.read_only, allow_litellm_writes=args.allow_litellm_writes
    )
    return run_tui(session)


if __name__ == "__main__":
    sys.exit(main())
