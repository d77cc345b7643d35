"""Embedded Qdrant as the semantic tier uses it: ``python -m bench.qdrant_embedded``.

For each size in ``--points`` (default 1,000, 10,000 and 20,000) and each scope count in
``--scopes`` (default 1 and 100), fills an embedded store with 384-dimensional random
unit vectors spread evenly over the scopes (each with a short text and a 2 KiB entry,
like a cached chat answer; half of them expiring), then measures:

* opening the store: qdrant-client loading the directory, then the store loading its
  in-memory mirror of the collection (scrolling every point), each timed;
* ``QdrantStore.search`` (scope and expiry filtered, limit 5, answered from the mirror):
  p50 and p95 over ``--searches`` calls;
* how long the event loop stalls meanwhile: a 1 ms ticker runs beside the searches and
  the longest gap between its ticks is reported (the mirror is searched on the loop);
* for comparison, ``--direct-searches`` searches through ``AsyncQdrantClient(path=...)``
  itself, the scan the mirror replaces (it blocks the loop for the whole search).

Filling goes through qdrant-client's batch upload into ``--dir`` (default: a temporary
directory on /dev/shm where it exists, since every embedded write is an SQLite commit
and 10,000 of them on a real disk take minutes; search times do not depend on the disk,
as embedded Qdrant searches in memory). ``--writes`` single ``add`` calls (a commit to
the collection, then the mirror) are then timed in a directory on the disk of the system's
temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from llmcache_tui.cache.semantic.qdrant_store import NEVER, QdrantStore, point_id, search_filter
from llmcache_tui.cache.semantic.store import VectorRecord

DIMENSION = 384
ENTRY = b"x" * 2048
NOW = 1_000_000.0


def unit_vectors(count: int, seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        row = [rng.gauss(0.0, 1.0) for _ in range(DIMENSION)]
        norm = sum(x * x for x in row) ** 0.5
        rows.append([x / norm for x in row])
    return rows


async def fill(path: Path, count: int, scopes: int) -> None:
    """Write ``count`` points as QdrantStore writes them, in batches."""
    import base64

    from qdrant_client import AsyncQdrantClient, models

    client = AsyncQdrantClient(path=str(path))
    await client.create_collection(
        "llmcache",
        vectors_config=models.VectorParams(size=DIMENSION, distance=models.Distance.COSINE),
    )
    entry = base64.b64encode(ENTRY).decode("ascii")
    vectors = unit_vectors(count, seed=count)
    batch = 500
    for start in range(0, count, batch):
        points = [
            models.PointStruct(
                id=point_id(f"key-{i}"),
                vector=vectors[i],
                payload={
                    "key": f"key-{i}",
                    "scope": f"scope-{i % scopes}",
                    "text": f"question number {i} about something or other " * 3,
                    "created_at": NOW - 100,
                    "expires_at": NOW + 3600 if i % 2 else NEVER,
                    "entry": entry,
                },
            )
            for i in range(start, min(count, start + batch))
        ]
        await client.upsert("llmcache", points=points)
    await client.close()


async def with_ticker(
    work: Callable[[], Awaitable[list[float]]],
) -> tuple[list[float], list[float]]:
    """Run ``work`` beside a 1 ms ticker; the work's timings and every gap between ticks
    beyond the 1 ms asked for (how long the loop could not run anything else)."""
    gaps: list[float] = []
    done = False

    async def tick() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(max(0.0, now - last - 0.001))
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)  # let the ticker start
    try:
        timings = await work()
    finally:
        await asyncio.sleep(0.01)  # let it measure the gap the last call left
        done = True
        await ticker
    return timings, gaps


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f}"


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(
    path: Path, count: int, scopes: int, searches: int, direct_searches: int
) -> dict[str, Any]:
    from qdrant_client import AsyncQdrantClient

    queries = unit_vectors(max(searches, direct_searches), seed=7)
    started = time.perf_counter()
    store = QdrantStore(DIMENSION, path=path)
    await store.open()
    opened = time.perf_counter() - started
    health = await store.health()
    load = float(health.details.get("mirror_load_seconds", math.nan))
    await store.search(queries[0], "scope-0", limit=5, now=NOW)  # warm

    async def via_store() -> list[float]:
        timings = []
        for i, query in enumerate(queries[:searches]):
            t = time.perf_counter()
            await store.search(query, f"scope-{i % scopes}", limit=5, now=NOW)
            timings.append(time.perf_counter() - t)
            await asyncio.sleep(0.002)  # requests arrive apart, as they do in the proxy
        return timings

    store_times, store_gaps = await with_ticker(via_store)
    await store.close()
    row: dict[str, Any] = {
        "points": count,
        "scopes": scopes,
        "client_open": opened - load,
        "mirror_load": load,
        "p50": statistics.median(store_times),
        "p95": percentile(store_times, 0.95),
        "stall_p99": percentile(store_gaps, 0.99),
        "stall_max": max(store_gaps),
        "direct_p50": math.nan,
        "direct_p95": math.nan,
    }
    if not direct_searches:
        return row

    client = AsyncQdrantClient(path=str(path))
    direct_times = []
    for i, query in enumerate(queries[:direct_searches]):
        t = time.perf_counter()
        await client.query_points(
            "llmcache",
            query=query,
            query_filter=search_filter(f"scope-{i % scopes}", NOW, None),
            limit=5,
        )
        direct_times.append(time.perf_counter() - t)
    await client.close()
    row["direct_p50"] = statistics.median(direct_times)
    row["direct_p95"] = percentile(direct_times, 0.95)
    return row


async def time_writes(writes: int) -> tuple[float, float]:
    vectors = unit_vectors(writes, seed=3)
    with tempfile.TemporaryDirectory(prefix="qdrant-writes-") as directory:
        store = QdrantStore(DIMENSION, path=directory)
        await store.add(VectorRecord("warm", vectors[0], "s", "t", NOW, None, ENTRY))
        await store.search(vectors[0], "s", limit=1, now=NOW)  # loads the mirror
        timings = []
        for i, vector in enumerate(vectors):
            t = time.perf_counter()
            await store.add(VectorRecord(f"k{i}", vector, "s", "t", NOW, None, ENTRY))
            timings.append(time.perf_counter() - t)
        await store.close()
    return statistics.median(timings), percentile(timings, 0.95)


async def run(args: argparse.Namespace) -> int:
    base = args.dir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    print(f"load average before: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})")
    print(
        f"{'points':>8} {'scopes':>6} {'client open':>11} {'mirror load':>11} {'p50 ms':>8}"
        f" {'p95 ms':>8} {'stall p99':>9} {'stall max':>9} {'direct p50':>10}"
        f" {'direct p95':>10}"
    )
    for scopes in args.scopes:
        for count in args.points:
            with tempfile.TemporaryDirectory(prefix="qdrant-bench-", dir=base) as directory:
                await fill(Path(directory), count, scopes)
                row = await measure(
                    Path(directory), count, scopes, args.searches, args.direct_searches
                )
            print(
                f"{row['points']:>8} {row['scopes']:>6} {ms(row['client_open']):>11}"
                f" {ms(row['mirror_load']):>11} {ms(row['p50'])} {ms(row['p95'])}"
                f" {ms(row['stall_p99']):>9} {ms(row['stall_max']):>9}"
                f" {ms(row['direct_p50']):>10} {ms(row['direct_p95']):>10}",
                flush=True,
            )
    if args.writes:
        p50, p95 = await time_writes(args.writes)
        print(
            f"add (one SQLite commit each, {tempfile.gettempdir()}): p50 {ms(p50)} ms,"
            f" p95 {ms(p95)} ms"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.qdrant_embedded")
    parser.add_argument("--points", type=int, nargs="+", default=[1000, 10_000, 20_000])
    parser.add_argument("--scopes", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument(
        "--direct-searches",
        type=int,
        default=10,
        help="searches through qdrant-client itself, for comparison (0: none)",
    )
    parser.add_argument("--writes", type=int, default=50)
    parser.add_argument("--dir", help="where to build the stores (default /dev/shm)")
    args = parser.parse_args(argv)
    try:
        import qdrant_client  # noqa: F401
    except ImportError:
        print("qdrant-client is not installed: pip install 'llmcache-tui[semantic]'")
        return 0
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
