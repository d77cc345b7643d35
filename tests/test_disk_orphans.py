"""Value files that no disk cache entry refers to (left by a killed or failed write) are
removed when the disk backend starts; files still in use or possibly being written stay."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import diskcache

from llmcache_tui.cache.backends.disk import ORPHAN_AGE, DiskBackend
from tests.disk_support import fill_up

BIG = 64 * 1024  # diskcache keeps values from 32 KiB on in files

# Stores a value read from stdin: diskcache writes it to its file in 4 MiB pieces as they
# come, and adds the entry's row only once the whole value is there.
WRITER = """
import sys, diskcache
cache = diskcache.Cache(sys.argv[1])
cache.set("half-written", sys.stdin.buffer, read=True)
"""


def _value_files(directory: Path) -> set[Path]:
    return set(directory.glob("*/*/*.val"))


def _age(path: Path) -> None:
    """Make a file look as if written long ago (what a file left by a crash becomes)."""
    then = time.time() - 2 * ORPHAN_AGE
    os.utime(path, (then, then))


def _killed_mid_write(directory: Path) -> Path:
    """Kill -9 a process while it writes a value file; return the file it left."""
    before = _value_files(directory)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(directory)], stdin=subprocess.PIPE)
    try:
        assert writer.stdin is not None
        writer.stdin.write(b"v" * (5 * 1024 * 1024))  # more than one piece, less than two
        writer.stdin.flush()
        deadline = time.monotonic() + 30
        while not any(
            f.stat().st_size >= 4 * 1024 * 1024 for f in _value_files(directory) - before
        ):
            assert writer.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        writer.kill()
        writer.wait()
    (left,) = _value_files(directory) - before
    return left


def test_a_file_left_by_a_killed_write_is_removed_at_start(tmp_path: Path) -> None:
    directory = tmp_path / "disk-cache"
    cache = diskcache.Cache(str(directory))
    cache.set("kept", b"k" * BIG)
    cache.close()
    (kept,) = _value_files(directory)
    orphan = _killed_mid_write(directory)
    for path in (kept, orphan):
        _age(path)
    stranger = directory / "notes.val"  # not diskcache's layout: not ours to remove
    stranger.write_text("mine")
    _age(stranger)

    backend = DiskBackend(directory)
    try:
        assert backend.startup_sweep.result(timeout=60) == 1
        assert _value_files(directory) == {kept}
        assert stranger.exists()
        assert asyncio.run(backend.get("kept")) == b"k" * BIG
        assert asyncio.run(backend.get("half-written")) is None
    finally:
        asyncio.run(backend.close())


def test_a_young_file_may_be_a_write_under_way_and_stays(tmp_path: Path) -> None:
    directory = tmp_path / "disk-cache"
    directory.mkdir()
    orphan = _killed_mid_write(directory)  # just now: another process could still be at it

    backend = DiskBackend(directory)
    try:
        assert backend.startup_sweep.result(timeout=60) == 0
        assert orphan.exists()
        _age(orphan)
        assert asyncio.run(backend.remove_orphans()) == 1
        assert not orphan.exists()
        assert not orphan.parent.exists()  # its emptied directories go too
    finally:
        asyncio.run(backend.close())


def test_a_write_that_failed_on_a_full_disk_leaves_nothing_for_long(tmp_path: Path) -> None:
    directory = tmp_path / "disk-cache"
    fill_up(directory)
    backend = DiskBackend(directory)
    try:
        backend.startup_sweep.result(timeout=60)
        before = _value_files(directory)
        try:
            asyncio.run(backend.set("big", b"b" * BIG))
        except Exception as exc:  # the database is full: the row cannot be added
            assert "full" in str(exc)
        else:
            raise AssertionError("the write should have failed")
        (left,) = _value_files(directory) - before  # the file was written first
        _age(left)
        assert asyncio.run(backend.remove_orphans()) == 1
        assert _value_files(directory) == before
    finally:
        asyncio.run(backend.close())
