"""Helpers for tests of the disk cache: a directory in the state a full disk leaves it."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import diskcache


def fill_up(directory: Path) -> None:
    """Make a disk cache directory whose database is full, as on a full disk.

    SQLite's ``max_page_count`` (kept in the cache's settings, so every later opening uses
    it too) caps the database just above its size; filling it makes every write fail with
    the error a full disk gives. Reads still work.
    """
    cache = diskcache.Cache(str(directory))
    pages = cache._sql("PRAGMA page_count").fetchone()[0]
    cache.close()
    cache = diskcache.Cache(str(directory), sqlite_max_page_count=pages + 2)
    for size in (1000, 100, 10):
        with contextlib.suppress(sqlite3.OperationalError):
            for n in range(10_000):
                cache.set(f"filler-{size}-{n}", b"x" * size)
    cache.close()
