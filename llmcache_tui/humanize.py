"""Short human-readable forms of sizes, durations and times, for the terminal app."""

from __future__ import annotations

import time


def size(num_bytes: int | None) -> str:
    if num_bytes is None:
        return "-"
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def duration(seconds: float | None, *, none: str = "no expiry") -> str:
    """``3d 4h``, ``12m 5s``, ``42s``; ``none`` for no value."""
    if seconds is None:
        return none
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def timestamp(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def plural(value: int, word: str, words: str | None = None) -> str:
    """``1 request``, ``2 requests``, ``1,204 entries`` (``words``: an irregular plural)."""
    return f"{value:,} {word if value == 1 else words or word + 's'}"
