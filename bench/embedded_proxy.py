"""The proxy as the terminal app runs it, without the app: ``python -m bench.embedded_proxy``.

``Session.start_proxy`` (``EmbeddedProxy`` over the session's backend) on a plain asyncio
loop, as Textual runs it; never uvloop. SIGTERM or SIGINT stops it gracefully. The app's
log view is not there, so uvicorn's access log costs nothing here.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from llmcache_tui.config import load_settings
from llmcache_tui.proxy.limits import raise_open_file_limit
from llmcache_tui.session import Session


async def serve(config: str, host: str, port: int) -> None:
    session = Session(load_settings(config))
    task = session.start_proxy(host, port)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: asyncio.ensure_future(session.stop_proxy()))
    try:
        await task
    finally:
        await session.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.embedded_proxy")
    parser.add_argument("--config", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    raise_open_file_limit()
    asyncio.run(serve(args.config, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
