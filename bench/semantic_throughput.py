"""Semantic hits and misses against an exact hit: ``ResponseCache.lookup`` in process.

The proxy's cache object as ``type: qdrant-semantic`` / ``redis-semantic`` builds it: the
built-in local embedder, a ``SemanticTier`` over a vector store (embedded Qdrant, Redis 8
Vector Sets), entries on the disk backend (in the system's temporary directory; the
vectors on /dev/shm, see ``bench/semantic_stores.py``). It stores the first question of
QQP duplicate pairs and as many other questions, all in one scope (one model, no
namespace), then screens the pairs' second questions with the tier itself into hits,
misses its guards refused (a neighbour above the threshold), and misses with nothing near
(every neighbour below it). Each row then calls ``lookup`` one request after another for
about ``seconds`` and reports lookups/s and their ratio to the exact hit of the same run:

* exact hit: a stored question asked again (the semantic tier is never asked);
* semantic hit / miss, vector cached: the question's vector is in the embedder's LRU
  (a retried or repeated paraphrase), so only the search and the guards are paid;
* semantic hit / miss, embedded: a text never seen (the same question followed by a
  unique run of spaces and tabs, which changes no token: the same verdict, the full
  embedding cost);
* exact miss without a semantic query: the disk backend's miss alone, as a floor.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.semantic_stores import StoreSite, StoreUnavailable, scratch
from llmcache_tui.cache.semantic.store import VectorStore

MODEL = "gpt-4o-mini"
STORED_PAIRS = 300  # duplicate pairs whose first question is stored
STORED_OTHERS = 300  # unrelated questions stored beside them
PROBES = 200  # further questions never stored: candidates for "nothing near"
ROW_SECONDS = 1.5
ROW_MAX_OPS = 20_000
KINDS = ("qdrant-embedded", "redis-vectorset")
ROWS = (
    ("exact_hit", "exact hit"),
    ("hit_cached", "semantic hit, vector cached"),
    ("hit_embedded", "semantic hit, embedded"),
    ("refused_cached", "miss (guards refused), vector cached"),
    ("far_cached", "miss (nothing near), vector cached"),
    ("far_embedded", "miss (nothing near), embedded"),
    ("exact_miss", "baseline: exact miss, no semantic"),
)


@dataclass(slots=True)
class Questions:
    stored: list[str] = field(default_factory=list)
    paraphrases: list[str] = field(default_factory=list)  # second questions of the pairs
    probes: list[str] = field(default_factory=list)


def load_questions(path: Path, seed: int = 11) -> Questions:
    """Duplicate pairs and unrelated questions from the QQP file (ValueError without it)."""
    if not path.is_file():
        raise ValueError(f"{path} not found: the throughput part needs QQP question pairs")
    duplicates: list[tuple[str, str]] = []
    others: list[str] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            pair = json.loads(line)
            if pair.get("label") == 1:
                duplicates.append((pair["a"], pair["b"]))
            else:
                others.append(pair["a"])
    rng = random.Random(seed)
    rng.shuffle(duplicates)
    rng.shuffle(others)
    chosen = duplicates[:STORED_PAIRS]
    return Questions(
        stored=[a for a, _ in chosen] + others[:STORED_OTHERS],
        paraphrases=[b for _, b in chosen],
        probes=others[STORED_OTHERS : STORED_OTHERS + PROBES],
    )


def request(text: str) -> tuple[str, Any]:
    """The storage key and the semantic query of a chat request asking ``text``."""
    from llmcache_tui.cache.keys import request_digest, storage_key
    from llmcache_tui.cache.semantic.scope import semantic_query

    body = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
    query = semantic_query("chat", MODEL, body, None)
    if query is None:
        raise ValueError(f"not a semantic request: {text[:80]!r}")
    return storage_key(request_digest("chat", body), None), query


def answer(text: str, created_at: float) -> Any:
    from llmcache_tui.cache.entry import CacheEntry

    response = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"An answer to: {text}"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 40, "total_tokens": 60},
    }
    return CacheEntry(
        response=response,
        route="chat",
        model=MODEL,
        prompt_preview=text[:80],
        created_at=created_at,
    )


_SUFFIXES = itertools.count(1)


def unseen_suffix() -> str:
    """Whitespace never used before in this process: it adds no token, yet makes a text
    that no LRU (the embedder's, the guards') has seen."""
    return " " + format(next(_SUFFIXES), "b").replace("0", " ").replace("1", "\t")


class SharedEmbedder:
    """One local embedder (and its LRU) for every tier of the run, left open by each."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension

    async def embed(self, texts: list[str]) -> Any:
        return await self.inner.embed(texts)

    async def aclose(self) -> None:
        return None


async def timed_row(
    op: Callable[[int], Awaitable[bool]], seconds: float, max_ops: int
) -> dict[str, Any]:
    """Call ``op(n)`` for n = 0, 1, ... for ``seconds``; lookups/s, p50 and the share for
    which ``op`` said the lookup went as the row expects."""
    await op(0)  # warm-up
    times: list[float] = []
    good = 0
    started = time.perf_counter()
    n = 1
    while n <= max_ops and time.perf_counter() - started < seconds:
        t = time.perf_counter()
        good += await op(n)
        times.append(time.perf_counter() - t)
        n += 1
    elapsed = time.perf_counter() - started
    times.sort()
    return {
        "ops": len(times),
        "ops_per_s": len(times) / elapsed,
        "p50_us": times[len(times) // 2] * 1e6,
        "as_expected": good / len(times),
    }


async def screen(tier: Any, read: Any, texts: Sequence[str]) -> dict[str, list[str]]:
    """Sort texts by what the tier does with them: hit, refused, far (all below threshold)."""
    found: dict[str, list[str]] = {"hit": [], "refused": [], "far": []}
    for text in texts:
        _, query = request(text)
        outcome = await tier.lookup(query, read)
        if outcome.match is not None:
            found["hit"].append(text)
        elif any(j.neighbour.similarity >= tier.threshold for j in outcome.judged):
            found["refused"].append(text)
        else:
            found["far"].append(text)
    return found


async def measure_kind(
    site: StoreSite, embedder: Any, questions: Questions, directory: Path, seconds: float
) -> dict[str, Any]:
    from llmcache_tui.cache.backends.disk import DiskBackend
    from llmcache_tui.cache.semantic.tier import SemanticTier
    from llmcache_tui.cache.service import ResponseCache

    store_holder: list[VectorStore] = []

    def factory(dimension: int) -> VectorStore:
        store = site.new_store()
        store_holder.append(store)
        return store

    disk = DiskBackend(directory / f"entries-{site.kind}")
    tier = SemanticTier(SharedEmbedder(embedder), factory, sweep_interval=0)
    cache = ResponseCache(disk, semantic=tier)
    try:
        started = time.perf_counter()
        for text in questions.stored:
            key, query = request(text)
            if not await cache.store(key, answer(text, time.time()), 86_400, query):
                raise RuntimeError(f"the disk backend refused to store {key}")
        stored_s = time.perf_counter() - started
        groups = await screen(tier, disk.get, [*questions.paraphrases, *questions.probes])
        result: dict[str, Any] = {
            "stored": len(questions.stored),
            "store_s": stored_s,
            "screened": {name: len(texts) for name, texts in groups.items()},
        }
        result["rows"] = await _rows(cache, questions, groups, seconds)
        return result
    finally:
        await cache.aclose()
        await disk.close()


async def _rows(
    cache: Any, questions: Questions, groups: dict[str, list[str]], seconds: float
) -> dict[str, Any]:
    from llmcache_tui.cache.semantic.scope import SemanticQuery

    prepared = {
        name: [request(text) for text in texts]
        for name, texts in [("stored", questions.stored), *groups.items()]
    }

    def cached(name: str, hit: bool) -> Callable[[int], Awaitable[bool]]:
        asks = prepared[name]

        async def op(n: int) -> bool:
            key, query = asks[n % len(asks)]
            # A new query per request, as the proxy builds one: its vector is not set.
            fresh = SemanticQuery(text=query.text, scope=query.scope)
            found = await cache.lookup(key, "chat", MODEL, None, fresh)
            return (found.entry is not None) == hit

        return op

    def embedded(name: str, hit: bool) -> Callable[[int], Awaitable[bool]]:
        texts = groups[name]

        async def op(n: int) -> bool:
            text = texts[n % len(texts)] + unseen_suffix()
            key, query = request(text)
            found = await cache.lookup(key, "chat", MODEL, None, query)
            return (found.entry is not None) == hit

        return op

    async def exact_miss(n: int) -> bool:
        found = await cache.lookup(f"chat:absent:{n}", "chat", MODEL, None, None)
        return found.entry is None

    ops: dict[str, tuple[str, Callable[[int], Awaitable[bool]]]] = {
        "exact_hit": ("stored", cached("stored", True)),
        "hit_cached": ("hit", cached("hit", True)),
        "hit_embedded": ("hit", embedded("hit", True)),
        "refused_cached": ("refused", cached("refused", False)),
        "far_cached": ("far", cached("far", False)),
        "far_embedded": ("far", embedded("far", False)),
        "exact_miss": ("stored", exact_miss),
    }
    rows: dict[str, Any] = {}
    for name, (group, op) in ops.items():
        if group != "stored" and not groups[group]:
            rows[name] = {"skipped": f"no screened question is a {group}"}
            continue
        # Embedding rows are slow; their ops are few whatever the budget.
        rows[name] = await timed_row(op, seconds, ROW_MAX_OPS)
    return rows


async def run(path: Path, kinds: Sequence[str], seconds: float) -> dict[str, Any]:
    from llmcache_tui.cache.semantic.local_embedder import LocalEmbedder

    questions = load_questions(path)
    embedder = LocalEmbedder(timeout=None)
    started = time.perf_counter()
    everything = [*questions.stored, *questions.paraphrases, *questions.probes]
    for i in range(0, len(everything), 32):
        await embedder.embed(everything[i : i + 32])  # fills the LRU: stored and screened
    print(
        f"  {len(everything)} questions embedded into the LRU in"
        f" {time.perf_counter() - started:.1f} s"
    )
    results: dict[str, Any] = {}
    try:
        with scratch() as directory, scratch(memory=False) as entries:
            for kind in kinds:
                site = StoreSite(kind, directory)
                try:
                    site.start()
                except StoreUnavailable as exc:
                    print(f"  {kind}: skipped: {exc}")
                    results[kind] = {"skipped": str(exc)}
                    continue
                try:
                    results[kind] = await measure_kind(site, embedder, questions, entries, seconds)
                finally:
                    site.stop()
                print_kind(kind, results[kind])
    finally:
        embedder.close()
    return results


def print_kind(kind: str, result: dict[str, Any]) -> None:
    screened = result["screened"]
    print(
        f"  {kind}: {result['stored']} entries stored in {result['store_s']:.1f} s; screened:"
        f" {screened['hit']} hits, {screened['refused']} refused, {screened['far']} nothing near"
    )
    print(f"    {'lookup':<38} {'ops/s':>9} {'p50 us':>9} {'vs exact hit':>13} {'expected':>9}")
    rows = result["rows"]
    exact = rows["exact_hit"]["ops_per_s"]
    for name, label in ROWS:
        row = rows[name]
        if "skipped" in row:
            print(f"    {label:<38} skipped: {row['skipped']}")
            continue
        print(
            f"    {label:<38} {row['ops_per_s']:9.0f} {row['p50_us']:9.0f}"
            f" {row['ops_per_s'] / exact:13.3f} {row['as_expected']:9.0%}"
        )


def throughput(path: Path, kinds: Sequence[str] = KINDS, seconds: float = ROW_SECONDS) -> Any:
    """The whole throughput run, printed; returns it as a JSON-able dict."""
    before = os.getloadavg()
    print("semantic lookups against an exact hit (ResponseCache.lookup in process, disk entries)")
    print(f"  load average before: {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}")
    results = asyncio.run(run(path, kinds, seconds))
    after = os.getloadavg()
    print(
        "  'expected': the share of lookups that hit (hit rows) or missed (miss rows) as screened"
    )
    print(f"  load average after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")
    return {"results": results, "load_average_before": before, "load_average_after": after}
