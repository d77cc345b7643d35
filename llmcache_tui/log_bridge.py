"""Collect log records in memory so the terminal app can show them instead of stderr.

While the terminal app runs, anything written to stderr would corrupt its screen, so the
proxy's and uvicorn's loggers are routed here; the proxy screen reads the recent lines.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from llmcache_tui.log_redaction import ACCESS_LOGGER, RedactingFilter
from llmcache_tui.redact import NO_SECRETS, Redactor

BRIDGED_LOGGERS = ("llmcache_tui", "uvicorn")
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"
MAX_LINES = 2000


class LogBridge(logging.Handler):
    """A bounded buffer of formatted log lines with a running count.

    Lines are scrubbed of secrets and access lines of query strings (``redactor``: the
    settings' redactor, or a function giving the current one).
    """

    def __init__(
        self,
        max_lines: int = MAX_LINES,
        redactor: Redactor | Callable[[], Redactor] = NO_SECRETS,
    ) -> None:
        super().__init__(level=logging.INFO)
        self.setFormatter(logging.Formatter(LOG_FORMAT, "%H:%M:%S"))
        self._redacting = RedactingFilter(redactor)
        self.addFilter(self._redacting)
        self.lines: deque[str] = deque(maxlen=max_lines)
        self.total = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.add(self.format(record))
        except Exception:  # a broken record must not break the app
            self.handleError(record)

    def add(self, line: str) -> None:
        self.lines.append(line)
        self.total += 1

    def since(self, seen: int) -> list[str]:
        """Lines after the first ``seen`` ever added (older ones may have been dropped)."""
        fresh = self.total - seen
        if fresh <= 0:
            return []
        return list(self.lines)[-min(fresh, len(self.lines)) :]

    def install(self) -> None:
        # uvicorn may have configured its child loggers elsewhere in this process; make
        # them hand their records up to the bridged parent.
        for name in ("uvicorn.error", "uvicorn.access"):
            child = logging.getLogger(name)
            child.handlers.clear()
            child.propagate = True
            child.setLevel(logging.NOTSET)
        for name in BRIDGED_LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(self)
            logger.setLevel(logging.INFO)
            logger.propagate = False
        # Also for any handler someone else put on the access logger itself.
        logging.getLogger(ACCESS_LOGGER).addFilter(self._redacting)

    def uninstall(self) -> None:
        for name in BRIDGED_LOGGERS:
            logger = logging.getLogger(name)
            logger.removeHandler(self)
            logger.propagate = True
        logging.getLogger(ACCESS_LOGGER).removeFilter(self._redacting)
