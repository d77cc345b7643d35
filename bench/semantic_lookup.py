"""Semantic lookup latency without embedding: ``VectorStore.search`` with a ready vector.

For each size and each store (embedded Qdrant, Redis 8 with the query engine, Redis 8
Vector Sets), the store is filled with the corpus of ``bench/semantic_stores.py`` (90% of
the entries in 10 scopes, the rest over 1,000) and searched as the tier searches it: limit
4, the query's scope, unexpired at now. Queries are real questions never stored, once in a
big scope and once in a small one. Baselines from the same run: an exact numpy search of
the same scope's vectors (what an in-process store cannot beat), and for Redis a PING
round trip over the store's own connection (what any Redis command costs). recall@4 is the
share of the exact top 4 that the store returned.

Searches stop after ``searches`` calls or ``budget`` seconds, whichever comes first, so a
store that takes seconds a search still finishes (with fewer samples, printed).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bench.semantic_stores import (
    KINDS,
    Corpus,
    StoreSite,
    StoreUnavailable,
    corpus,
    fill,
    real_vectors,
    scratch,
)
from llmcache_tui.cache.semantic.store import VectorStore, VectorStoreError

if TYPE_CHECKING:
    from pathlib import Path

DEFAULT_SIZES = (1_000, 10_000)
DEFAULT_SEARCHES = 200
SEARCH_BUDGET = 10.0  # seconds of searching per row at most
BASE_QUESTIONS = 2_000
QUERY_QUESTIONS = 200
LIMIT = 4
TARGET_MS = 5.0  # p50 at 10k entries, on Redis
TARGET_SIZE = 10_000
FIRST_SEARCH_PATIENCE = 300.0  # seconds of retrying a failing first search
# Filling embedded Qdrant beyond this many points costs minutes (its reopen alone loads
# every point through pickle); larger sizes run only when asked with --qdrant-max.
QDRANT_DEFAULT_MAX = 10_000


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def exact_top(data: Corpus, query: Any, scope: str, limit: int) -> tuple[list[str], float]:
    """The exact ``limit`` nearest keys in ``scope`` and the time a numpy scan took (ms)."""
    import numpy as np

    rows = _scope_rows(data, scope)
    started = time.perf_counter()
    scores = data.vectors[rows] @ query
    best = np.argsort(-scores)[:limit]
    elapsed = (time.perf_counter() - started) * 1000
    return [f"chat:{int(rows[i]):08x}" for i in best], elapsed


_ROWS: dict[int, dict[str, Any]] = {}


def _scope_rows(data: Corpus, scope: str) -> Any:
    """The corpus rows in ``scope`` (grouped once per corpus)."""
    import numpy as np

    groups = _ROWS.get(id(data))
    if groups is None:
        lists: dict[str, list[int]] = {}
        for i, name in enumerate(data.scopes):
            lists.setdefault(name, []).append(i)
        groups = {name: np.array(rows, dtype=np.int64) for name, rows in lists.items()}
        _ROWS.clear()  # one corpus at a time
        _ROWS[id(data)] = groups
    return groups[scope]


async def search_row(
    store: VectorStore, data: Corpus, scopes: Sequence[str], searches: int, budget: float
) -> dict[str, Any]:
    """Time ``store.search`` over the queries, each in the next of ``scopes``."""
    times: list[float] = []
    floors: list[float] = []
    errors: list[str] = []
    found = expected = returned = 0
    started = time.perf_counter()
    for n in range(-1, searches):  # -1: a warm-up search, not counted
        query, scope = data.queries[n % len(data.queries)], scopes[n % len(scopes)]
        t = time.perf_counter()
        try:
            neighbours = await store.search(query, scope, limit=LIMIT, now=time.time())
        except VectorStoreError as exc:  # a deadline missed: the tier would fail open
            errors.append(str(exc))
            if time.perf_counter() - started > budget:
                break
            continue
        if n < 0:
            continue
        times.append((time.perf_counter() - t) * 1000)
        exact, floor_ms = exact_top(data, query, scope, LIMIT)
        floors.append(floor_ms)
        found += len({n.key for n in neighbours} & set(exact))
        expected += len(exact)
        returned += len(neighbours)
        if time.perf_counter() - started > budget:
            break
    if not times:
        return {"searches": 0, "errors": errors}
    return {
        "searches": len(times),
        "errors": errors,
        "p50_ms": percentile(times, 0.5),
        "p95_ms": percentile(times, 0.95),
        "numpy_p50_ms": percentile(floors, 0.5),
        "recall_at_4": found / expected if expected else 1.0,
        "returned_mean": returned / len(times),
    }


async def first_search(store: VectorStore, data: Corpus) -> tuple[float, list[str]]:
    """Seconds until a first search succeeds, and the errors before it.

    The proxy never opens a store ahead of its first request, so whatever a store loads
    on first use (embedded Qdrant: every point) happens under the call deadline; a call
    that times out leaves the load running, and the next one may find it done.
    """
    errors: list[str] = []
    started = time.perf_counter()
    while True:
        try:
            await store.search(data.queries[0], data.big_scopes[0], limit=LIMIT, now=time.time())
            return time.perf_counter() - started, errors
        except VectorStoreError as exc:
            errors.append(str(exc))
            if time.perf_counter() - started > FIRST_SEARCH_PATIENCE:
                raise
            await asyncio.sleep(1.0)


async def ping_p50(store: VectorStore, count: int = 200) -> float:
    client = store.client  # type: ignore[attr-defined]
    times = []
    for _ in range(count):
        t = time.perf_counter()
        await client.ping()
        times.append((time.perf_counter() - t) * 1000)
    return percentile(times, 0.5)


async def measure_store(
    site: StoreSite, data: Corpus, searches: int, budget: float
) -> dict[str, Any]:
    store = site.new_store()
    started = time.perf_counter()
    store = await fill(store, data, time.time())
    filled = time.perf_counter() - started
    try:
        result: dict[str, Any] = {"fill_s": filled}
        result["first_search_s"], result["first_search_errors"] = await first_search(store, data)
        result["big"] = await search_row(store, data, data.big_scopes, searches, budget)
        result["small"] = await search_row(store, data, data.small_scopes, searches, budget)
        if site.kind != "qdrant-embedded":
            result["ping_p50_ms"] = await ping_p50(store)
        return result
    finally:
        await store.close()


def load_base(questions: Sequence[str]) -> tuple[Any, list[str], Any]:
    """Real vectors of the base questions and of the held-out queries."""
    base_texts = list(questions[:-QUERY_QUESTIONS])
    vectors = real_vectors(questions)
    return vectors[: len(base_texts)], base_texts, vectors[len(base_texts) :]


async def run(
    questions: Sequence[str],
    sizes: Sequence[int],
    kinds: Sequence[str],
    searches: int,
    qdrant_max: int,
    budget: float = SEARCH_BUDGET,
) -> dict[str, Any]:
    started = time.perf_counter()
    base, base_texts, queries = load_base(questions)
    print(
        f"  corpus: {len(base)} real question vectors (+ perturbed copies beyond that),"
        f" {len(queries)} held-out queries; embedded in {time.perf_counter() - started:.1f} s"
    )
    print(HEADER)
    results: dict[str, Any] = {}
    with scratch() as directory:
        for kind in kinds:
            results[kind] = await _run_kind(
                kind, directory, base, base_texts, queries, sizes, searches, qdrant_max, budget
            )
    return results


async def _run_kind(
    kind: str,
    directory: Path,
    base: Any,
    base_texts: list[str],
    queries: Any,
    sizes: Sequence[int],
    searches: int,
    qdrant_max: int,
    budget: float,
) -> dict[str, Any]:
    site = StoreSite(kind, directory)
    try:
        site.start()
    except StoreUnavailable as exc:
        print(f"  {kind}: skipped: {exc}")
        return {"skipped": str(exc)}
    by_size: dict[str, Any] = {}
    try:
        for size in sizes:
            if kind == "qdrant-embedded" and size > qdrant_max:
                reason = (
                    f"above --qdrant-max {qdrant_max:,}: filling and reopening embedded"
                    " Qdrant at this size takes minutes (see the fill time at smaller sizes)"
                )
                print(f"  {kind} {size:>7,}: skipped: {reason}")
                by_size[str(size)] = {"skipped": reason}
                continue
            data = corpus(base, base_texts, queries, size)
            row = await measure_store(site, data, searches, budget)
            by_size[str(size)] = row
            print_row(kind, size, row)
    finally:
        site.stop()
    return by_size


HEADER = (
    f"  {'store':<16} {'entries':>8} {'scope':<6} {'p50 ms':>8} {'p95 ms':>8} {'n':>4}"
    f" {'recall@4':>8} {'vs numpy':>9} {'vs PING':>8}   fill / first search"
)


def print_row(kind: str, size: int, row: dict[str, Any]) -> None:
    timing = f"{row['fill_s']:.1f} s / {row['first_search_s'] * 1000:.0f} ms"
    if row["first_search_errors"]:
        timing += f" after {len(row['first_search_errors'])} failed"
    for scope in ("big", "small"):
        r = row[scope]
        if not r["searches"]:
            print(f"  {kind:<16} {size:>8,} {scope:<6} every search failed ({timing})")
            print(f"  {'':<16} {'':>8} {scope:<6} {r['errors'][0]}")
            continue
        ping = row.get("ping_p50_ms")
        vs_ping = f"{r['p50_ms'] / ping:8.1f}" if ping else f"{'-':>8}"
        print(
            f"  {kind:<16} {size:>8,} {scope:<6} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f}"
            f" {r['searches']:>4} {r['recall_at_4']:8.2f}"
            f" {r['p50_ms'] / max(r['numpy_p50_ms'], 1e-6):9.1f} {vs_ping}"
            f"   {timing if scope == 'big' else ''}"
        )
        if r["errors"]:
            print(f"  {'':<16} {'':>8} {scope:<6} also {len(r['errors'])} failed: {r['errors'][0]}")


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for kind in ("redis-search", "redis-vectorset"):
        row = results.get(kind, {}).get(str(TARGET_SIZE))
        if not row or "skipped" in row:
            continue
        for scope in ("big", "small"):
            value = row[scope].get("p50_ms", float("inf"))
            found.append(
                {
                    "target": f"{kind}, {scope} scope: lookup under {TARGET_MS:g} ms p50"
                    f" at {TARGET_SIZE:,}",
                    "value": value,
                    "met": value < TARGET_MS,
                }
            )
    return found


def lookup_latency(
    questions: Sequence[str],
    sizes: Sequence[int] = DEFAULT_SIZES,
    kinds: Sequence[str] = KINDS,
    searches: int = DEFAULT_SEARCHES,
    qdrant_max: int = QDRANT_DEFAULT_MAX,
) -> dict[str, Any]:
    """The whole lookup-latency run, printed; returns it as a JSON-able dict."""
    before = os.getloadavg()
    print("semantic lookup latency without embedding (VectorStore.search, limit 4)")
    print(f"  load average before: {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}")
    results = asyncio.run(run(questions, sizes, kinds, searches, qdrant_max))
    after = os.getloadavg()
    print(
        "  'vs numpy': p50 over an exact numpy scan of the same scope's vectors;"
        " 'vs PING': over a Redis PING on the same connection (both this run)"
    )
    for kind, by_size in results.items():
        for size, row in by_size.items():
            if isinstance(row, dict) and row.get("first_search_errors"):
                print(
                    f"  {kind} {int(size):,}: first search failed: {row['first_search_errors'][0]}"
                )
    found = verdicts(results)
    if found:
        print("  targets (informational):")
    for verdict in found:
        mark = "PASS" if verdict["met"] else "MISS"
        print(f"    [{mark}] {verdict['target']}: {verdict['value']:.2f} ms")
    print(f"  load average after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")
    return {
        "results": results,
        "targets": found,
        "load_average_before": before,
        "load_average_after": after,
    }
