"""The disk backend: a diskcache directory (SQLite index plus files), called off the loop.

diskcache keeps values of 32 KiB and more in files (``ab/cd/<28 hex>.val``) that it writes
before the SQLite row that refers to them. A process killed between the two, or a write
that fails on a full disk, leaves a file no row refers to, forever. Such orphans are
removed in the background when the backend starts, and again after failed writes (at
most every :data:`ORPHAN_AGE` seconds). ``Cache.check(fix=True)`` would do it too, but it
holds the write lock throughout: about 1 s for 20,000 files, during which no request can
store; the sweep here holds no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import diskcache
import orjson

from llmcache_tui.cache.backends.base import (
    BackendStats,
    CacheBackend,
    CacheBackendError,
    KeyInfo,
    ScanPage,
    glob_matcher,
)

T = TypeVar("T")
log = logging.getLogger("llmcache_tui.cache")

# An unreferenced value file younger than this may belong to a write still under way:
# diskcache writes the file, then waits up to 60 s for the database lock to add its row.
ORPHAN_AGE = 300.0
_HEX_DIR = re.compile(r"[0-9a-f]{2}")
_VALUE_FILE = re.compile(r"[0-9a-f]{28}\.val")
_FILES_SQL = "SELECT filename FROM Cache WHERE filename IS NOT NULL"

# diskcache has no paged, filtered key listing, so scans read its (stable, documented
# in its source) SQLite table directly through a separate read-only connection.
_SCAN_SQL = (
    "SELECT rowid, key, expire_time, CASE WHEN size > 0 THEN size ELSE length(value) END"
    " FROM Cache WHERE rowid > ? AND raw = 1 ORDER BY rowid LIMIT ?"
)
# The start of each value, for a purge to tell cache entries from anything else. diskcache
# keeps a small bytes value in the row (mode raw) and a large one in a file (mode binary).
_HEADS_SQL = (
    "SELECT key, mode, filename, substr(value, 1, ?) FROM Cache WHERE raw = 1 AND key IN ({marks})"
)
MODE_RAW, MODE_BINARY = 1, 2  # diskcache's storage modes (diskcache.core)
HEADS_PER_QUERY = 500  # well under SQLite's limit on bound parameters


class DiskBackend(CacheBackend):
    """Entries persist in a directory shared by every process that opens it."""

    cache_type = "disk"

    def __init__(self, directory: Path, *, default_ttl: float | None = None) -> None:
        super().__init__(default_ttl=default_ttl)
        # diskcache expands "~" itself; the scan connection below must open the same file.
        directory = directory.expanduser()
        self.directory = directory
        if directory.exists() and not directory.is_dir():
            self.errors += 1
            raise CacheBackendError(
                f"disk cache directory {str(directory)!r} cannot be used:"
                " it exists and is not a directory"
            )
        try:
            self._cache = diskcache.Cache(str(directory))
        except (OSError, sqlite3.Error) as exc:
            self.errors += 1
            raise CacheBackendError(
                f"disk cache directory {str(directory)!r} cannot be used: {self._explain(exc)}"
            ) from exc
        # A URI, so quoted: a directory name may hold '?', '#' or '%'.
        self._scan_uri = (directory / "cache.db").absolute().as_uri() + "?mode=ro"
        # diskcache is synchronous; a small pool keeps SQLite work off the event loop.
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="llmcache-disk")
        self._closing = threading.Event()
        self._next_sweep = time.monotonic() + ORPHAN_AGE
        #: the start-up removal of orphaned value files; its result is how many it removed
        self.startup_sweep: Future[int] = self._pool.submit(self._remove_orphans_sync)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _get(self, key: str) -> bytes | None:
        value = await self._run(self._cache.get, key)
        return _as_bytes(value)

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        def read_all() -> list[bytes | None]:
            return [_as_bytes(self._cache.get(key)) for key in keys]

        return await self._run(read_all)

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        try:
            await self._run(self._cache.set, key, value, ttl)
        except Exception:
            # A write that failed may have left its value file behind (a full disk).
            if time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + ORPHAN_AGE
                self._pool.submit(self._remove_orphans_sync)
            raise

    async def remove_orphans(self) -> int:
        """Remove value files that no entry refers to and that are older than
        :data:`ORPHAN_AGE`; return how many were removed."""
        return await self._run(self._remove_orphans_sync)

    def _remove_orphans_sync(self) -> int:
        try:
            return self._sweep()
        except (OSError, sqlite3.Error) as exc:
            log.warning("could not look for orphaned files in the disk cache: %s", exc)
            return 0

    def _sweep(self) -> int:
        cutoff = time.time() - ORPHAN_AGE  # taken before the rows are read: see ORPHAN_AGE
        with contextlib.closing(sqlite3.connect(self._scan_uri, uri=True, timeout=5)) as db:
            referenced = {name for (name,) in db.execute(_FILES_SQL)}
        removed = 0
        for top in _hex_dirs(self.directory):
            for sub in _hex_dirs(Path(top.path)):
                if self._closing.is_set():
                    return removed
                with os.scandir(sub.path) as files:
                    for file in files:
                        name = os.path.join(top.name, sub.name, file.name)
                        if name in referenced or not _VALUE_FILE.fullmatch(file.name):
                            continue
                        info = file.stat(follow_symlinks=False)
                        if file.is_file(follow_symlinks=False) and info.st_mtime < cutoff:
                            with contextlib.suppress(FileNotFoundError):
                                os.remove(file.path)
                                removed += 1
                with contextlib.suppress(OSError):
                    os.rmdir(sub.path)  # only if empty, as diskcache leaves them
            with contextlib.suppress(OSError):
                os.rmdir(top.path)
        if removed:
            log.warning(
                "removed %d orphaned value files from the disk cache %s (left by writes"
                " that never finished)",
                removed,
                self.directory,
            )
        return removed

    async def _delete(self, keys: list[str]) -> int:
        def delete_all() -> int:
            # One transaction per batch: a commit per key made purges about 3x slower.
            with self._cache.transact():
                return sum(1 for key in keys if self._cache.delete(key))

        return await self._run(delete_all)

    async def _value_heads(self, keys: list[str], size: int) -> list[bytes | None]:
        return await self._run(self._value_heads_sync, keys, size)

    def _value_heads_sync(self, keys: list[str], size: int) -> list[bytes | None]:
        # A query per 500 keys, on the read-only connection scans use: a get per
        # key would make a purge much slower than its deletes.
        rows = []
        with contextlib.closing(sqlite3.connect(self._scan_uri, uri=True, timeout=5)) as db:
            for start in range(0, len(keys), HEADS_PER_QUERY):
                chunk = keys[start : start + HEADS_PER_QUERY]
                sql = _HEADS_SQL.format(marks=",".join("?" * len(chunk)))
                rows += db.execute(sql, (size, *chunk)).fetchall()
        found: dict[str, bytes] = {}
        for key, mode, filename, head in rows:
            if mode == MODE_RAW and isinstance(head, bytes):
                found[key] = head
            elif mode == MODE_BINARY and isinstance(filename, str):
                file_head = _file_head(self.directory / filename, size)
                if file_head is not None:
                    found[key] = file_head
        return [found.get(key) for key in keys]

    async def _ping(self) -> bool:
        def probe() -> bool:
            self._cache.get("__llmcache_ping__")
            return True

        return await self._run(probe)

    async def _scan(self, match: str, cursor: str | None, count: int) -> ScanPage:
        return await self._run(self._scan_sync, match, int(cursor or 0), count)

    def _scan_sync(self, match: str, after: int, count: int) -> ScanPage:
        matcher = glob_matcher(match)
        with contextlib.closing(sqlite3.connect(self._scan_uri, uri=True, timeout=5)) as db:
            rows = db.execute(_SCAN_SQL, (after, count)).fetchall()
        now = time.time()
        keys = [
            KeyInfo(key, None if expire is None else expire - now, size)
            for _rowid, key, expire, size in rows
            if isinstance(key, str) and matcher.match(key) and (expire is None or expire > now)
        ]
        next_cursor = str(rows[-1][0]) if len(rows) == count else None
        return ScanPage(keys, next_cursor, scanned=len(rows), total=len(self._cache))

    async def _ttl(self, key: str) -> float | None:
        def read() -> float | None:
            value, expire = self._cache.get(key, default=None, expire_time=True)
            if value is None:
                raise KeyError(key)
            return None if expire is None else max(0.0, expire - time.time())

        return await self._run(read)

    async def _expire(self, key: str, ttl: float | None) -> bool:
        return bool(await self._run(self._cache.touch, key, ttl))

    async def _stats(self) -> BackendStats:
        def read() -> BackendStats:
            return BackendStats(
                entries=len(self._cache),
                bytes_used=self._cache.volume(),
                details={"directory": str(self.directory), "size_limit": self._cache.size_limit},
            )

        return await self._run(read)

    def describe(self) -> dict[str, object]:
        return {"disk_cache_dir": str(self.directory), "default_ttl": self.default_ttl}

    async def close(self) -> None:
        self._closing.set()  # a sweep under way stops at its next directory
        self._pool.shutdown(wait=True)
        self._cache.close()


def _hex_dirs(parent: Path) -> list[os.DirEntry[str]]:
    """The sub-directories diskcache names with two hex digits."""
    with os.scandir(parent) as entries:
        return [
            entry
            for entry in entries
            if _HEX_DIR.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False)
        ]


def _file_head(path: Path, size: int) -> bytes | None:
    """The first ``size`` bytes of a value diskcache keeps in a file; None once it is gone."""
    try:
        with open(path, "rb") as file:
            return file.read(size)
    except OSError:
        return None


def _as_bytes(value: Any) -> bytes | None:
    """A stored value as bytes. LiteLLM's disk cache stores its entry as the dict itself
    (diskcache pickles it): that one is read as the JSON LiteLLM writes everywhere else."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, dict) and "timestamp" in value and "response" in value:
        try:
            return orjson.dumps(value)
        except TypeError:
            return None
    return None
