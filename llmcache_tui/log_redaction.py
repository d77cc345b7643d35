"""A logging filter that keeps secrets and query strings out of every log line.

Access log lines record the request path without its query string: a client may put a
key there (``?key=...``), and the proxy serves no route that reads the query. Every other
record is scrubbed by the settings' :class:`~llmcache_tui.redact.Redactor`, its traceback
too, because a client library's exception may quote a URL or a password.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from llmcache_tui.redact import Redactor

ACCESS_LOGGER = "uvicorn.access"
# uvicorn logs through these two; a filter on the logger itself holds whatever handlers
# uvicorn's own logging config puts on it later.
UVICORN_LOGGERS = ("uvicorn.error", ACCESS_LOGGER)
# uvicorn's access record: (client address, method, path with query, HTTP version, status).
_ACCESS_ARGS = 5
_PATH = 2


class RedactingFilter(logging.Filter):
    """Rewrites records in place (never drops one); ``redactor`` is the one to use, or a
    function giving the current one (the terminal app can open another config)."""

    def __init__(self, redactor: Redactor | Callable[[], Redactor]) -> None:
        super().__init__()
        self._redactor = redactor

    @property
    def redactor(self) -> Redactor:
        redactor = self._redactor
        return redactor if isinstance(redactor, Redactor) else redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = self.redactor
        args = record.args
        if record.name == ACCESS_LOGGER and isinstance(args, tuple) and len(args) == _ACCESS_ARGS:
            # uvicorn's access formatter reads these arguments back: keep their shape.
            path = args[_PATH]
            if isinstance(path, str):
                clean = redactor.scrub(path.partition("?")[0])
                record.args = (*args[:_PATH], clean, *args[_PATH + 1 :])
            return True
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit: the handler reports it, not us
            return True
        scrubbed = redactor.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redactor.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor.scrub(record.stack_info)
        return True


def install_log_redaction(redactor: Redactor) -> RedactingFilter:
    """Filter what this process logs: through the root logger's handlers, uvicorn's
    loggers, and the last-resort handler that prints records no handler took. Calling it
    again replaces the filter it installed before."""
    redacting = RedactingFilter(redactor)
    targets: list[logging.Filterer] = list(logging.getLogger().handlers)
    targets += [logging.getLogger(name) for name in UVICORN_LOGGERS]
    if logging.lastResort is not None:
        targets.append(logging.lastResort)
    for target in targets:
        for old in [f for f in target.filters if isinstance(f, RedactingFilter)]:
            target.removeFilter(old)
        target.addFilter(redacting)
    return redacting
