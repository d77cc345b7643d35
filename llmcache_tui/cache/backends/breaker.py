"""A circuit breaker for remote backends: stop paying a dead server's timeout per request.

After a failure the backend is skipped for a short cool-down that doubles with each
further failure (up to a cap); when it ends, one request tries again. A success closes
the breaker at once, so the cache is used again within seconds of the server returning.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitOpen(Exception):
    """Raised instead of calling a backend that failed moments ago."""


class CircuitBreaker:
    """Tracks consecutive failures of one backend."""

    def __init__(
        self,
        *,
        base_cooldown: float = 0.5,
        max_cooldown: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_cooldown = base_cooldown
        self.max_cooldown = max_cooldown
        self.clock = clock
        self.failures = 0
        self.retry_at = 0.0
        self.skipped = 0

    @property
    def open(self) -> bool:
        return self.failures > 0

    def before_call(self) -> None:
        """Raise :class:`CircuitOpen` while cooling down; let one trial through after."""
        if self.failures == 0:
            return
        now = self.clock()
        if now < self.retry_at:
            self.skipped += 1
            raise CircuitOpen(f"skipped for {self.retry_at - now:.1f}s more after a failure")
        self.retry_at = now + self.cooldown()  # one trial per window, not a stampede

    def succeeded(self) -> bool:
        """Record a success; True if this closed an open breaker."""
        was_open = self.failures > 0
        self.failures = 0
        return was_open

    def failed(self) -> None:
        self.failures += 1
        self.retry_at = self.clock() + self.cooldown()

    def cooldown(self) -> float:
        doubled: float = self.base_cooldown * 2.0 ** max(0, self.failures - 1)
        return min(self.max_cooldown, doubled)
