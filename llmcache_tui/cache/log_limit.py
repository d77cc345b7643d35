"""Repeated identical warnings, logged once per window with a count instead of each time.

A cache that is down or full fails every request the same way; a line per request would
bury everything else in the log (and fill the disk that is already full).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

WINDOW = 60.0  # seconds between two lines of the same message
MESSAGES = 64  # distinct messages remembered; the oldest is forgotten first


class RepeatedWarnings:
    """Log a message the first time it comes, then at most once per ``window`` seconds,
    saying how many times it came meanwhile.

    ``flush()`` reports what is still untold and forgets everything, so that the next
    failure after a recovery is logged at once.
    """

    def __init__(
        self,
        logger: logging.Logger,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.window = window
        self.clock = clock
        self._seen: dict[str, list[float]] = {}  # message -> [last logged at, untold count]

    def warning(self, message: str) -> None:
        now = self.clock()
        seen = self._seen.get(message)
        if seen is None:
            if len(self._seen) >= MESSAGES:
                oldest = next(iter(self._seen))
                self._tell(oldest, self._seen.pop(oldest), now)
            self._seen[message] = [now, 0]
            self.logger.warning("%s", message)
        elif now - seen[0] < self.window:
            seen[1] += 1
        else:
            count = int(seen[1]) + 1  # this one too
            self.logger.warning(
                "%s (repeated %s in the last %.0f s)", message, _times(count), now - seen[0]
            )
            seen[0], seen[1] = now, 0

    @property
    def pending(self) -> bool:
        """Whether anything was logged since the last ``flush()``."""
        return bool(self._seen)

    def flush(self) -> None:
        now = self.clock()
        for message, seen in self._seen.items():
            self._tell(message, seen, now)
        self._seen.clear()

    def _tell(self, message: str, seen: list[float], now: float) -> None:
        untold = int(seen[1])
        if untold:
            self.logger.warning(
                "%s (repeated %s more in the last %.0f s)", message, _times(untold), now - seen[0]
            )


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"
