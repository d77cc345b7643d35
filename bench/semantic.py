"""Semantic-cache benchmark: ``python -m bench.semantic [--embedding] [--lookup] [--throughput]``.

Three parts, all of them unless some are named: the local embedder's latency (below),
vector-store lookup latency without embedding (``bench/semantic_lookup.py``), and lookups/s
of semantic hits and misses against an exact hit (``bench/semantic_throughput.py``).

The embedding part measures the built-in local embedder (all-MiniLM-L6-v2 in numpy) per
prompt on real questions from ``../shared/data/qqp_pairs.jsonl`` (built-in questions when
that file is absent):

* one prompt per call (``embed_sync([text])``), p50 and p95 over ``--prompts`` prompts;
* the same prompts in batches of ``--batch``, per prompt (batch time / batch size);
* the async path (``await embed([text])``, cache off): the thread hop included.

Against baselines measured in the same run on the same prompts: the tokenizer alone, and
the "matmul floor", i.e. only the forward pass's dense-layer matrix products with the
model's own weights at each prompt's token count. The forward pass over the floor shows
what attention, GELU and LayerNorm add on top of BLAS.

Every number depends on the machine's load, so the load average is printed before and after
(on 2 cores a load above 2 means the embedder was sharing them). The target (under 10 ms a
prompt at p50) is informational; the exit code is 0 unless the embedder is not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.semantic_lookup import (
    BASE_QUESTIONS,
    DEFAULT_SEARCHES,
    DEFAULT_SIZES,
    QDRANT_DEFAULT_MAX,
)
from bench.semantic_stores import KINDS as STORE_KINDS
from llmcache_tui.cache.semantic.local_embedder import EmbedderUnavailable

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "qqp_pairs.jsonl"
DEFAULT_PROMPTS = 200
DEFAULT_BATCH = 16
TARGET_MS = 10.0  # local embedding, per prompt at p50
FALLBACK = [
    "What is the capital of Switzerland?",
    "How do I compress a folder into a tar.gz archive on Linux?",
    "Explain the difference between a list and a tuple in Python.",
    "Write a short email asking my manager for a day off next Friday.",
    "How many kilograms are in 12 pounds?",
    "Why does my React component render twice in development mode?",
    "Summarise the causes of the First World War in under 100 words.",
    "What is a good name for a golden retriever puppy?",
]


def load_prompts(path: Path, count: int, seed: int = 7) -> tuple[list[str], str]:
    """``count`` distinct questions and where they came from."""
    if path.is_file():
        questions: list[str] = []
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                pair = json.loads(line)
                questions.extend((pair["a"], pair["b"]))
        unique = sorted(set(questions))
        random.Random(seed).shuffle(unique)
        return unique[:count], str(path)
    prompts = [f"{FALLBACK[n % len(FALLBACK)]} (variant {n})" for n in range(count)]
    return prompts, "built-in questions (data file not found)"


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(values_ms: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(values_ms, 0.50),
        "p95_ms": percentile(values_ms, 0.95),
        "mean_ms": statistics.fmean(values_ms),
    }


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def measure(prompts: list[str], batch: int) -> dict[str, Any]:
    """Run every measurement once (after one warm-up call each) and return the results."""
    from llmcache_tui.cache.semantic.local_embedder import LocalEmbedder

    embedder = LocalEmbedder(cache_size=0, timeout=None)
    load_ms = timed(embedder.load)
    model = embedder._get_model()
    tokenizer = model.tokenizer
    token_counts = [len(ids) for ids in model.token_ids(prompts)]

    embedder.embed_sync(prompts[:batch])  # warm-up: first-call allocations, BLAS start-up
    results: dict[str, Any] = {}
    results["tokenizer"] = summary([timed(lambda p=p: tokenizer.encode(p)) for p in prompts])
    results["matmul_floor"] = summary([_floor_ms(model, count) for count in token_counts])
    results["single"] = summary([timed(lambda p=p: embedder.embed_sync([p])) for p in prompts])
    per_prompt = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        per_prompt.append(timed(lambda c=chunk: embedder.embed_sync(c)) / len(chunk))
    results[f"batch_{batch}"] = summary(per_prompt)
    results["async_single"] = summary(asyncio.run(_async_times(embedder, prompts)))
    embedder.close()
    return {
        "model_load_ms": load_ms,
        "tokens_p50": percentile(token_counts, 0.5),
        "tokens_max": max(token_counts),
        "results": results,
    }


def _floor_ms(model: Any, tokens: int) -> float:
    """Only the dense layers' matmuls of one forward pass, with the model's own weights."""
    import numpy as np

    x = np.ones((tokens, model.layers[0].qkv_w.shape[0]), dtype=np.float32)
    inner = np.ones((tokens, model.layers[0].up_w.shape[1]), dtype=np.float32)

    def products() -> None:
        for layer in model.layers:
            x @ layer.qkv_w
            x @ layer.out_w
            x @ layer.up_w
            inner @ layer.down_w

    return timed(products)


async def _async_times(embedder: Any, prompts: list[str]) -> list[float]:
    times = []
    for prompt in prompts:
        started = time.perf_counter()
        await embedder.embed([prompt])
        times.append((time.perf_counter() - started) * 1000)
    return times


def report(prompts: int, source: str, batch: int, measured: dict[str, Any]) -> dict[str, Any]:
    results = measured["results"]
    floor = results["matmul_floor"]["p50_ms"]
    print(
        f"  prompts: {prompts} from {source}; tokens p50 {measured['tokens_p50']},"
        f" max {measured['tokens_max']}; model load {measured['model_load_ms']:.0f} ms"
    )
    print(f"  {'per prompt':<28} {'p50 ms':>8} {'p95 ms':>8} {'p50 / matmul floor':>19}")
    labels = {
        "tokenizer": "baseline: tokenizer alone",
        "matmul_floor": "baseline: dense matmuls only",
        "single": "embed_sync, one prompt",
        f"batch_{batch}": f"embed_sync, batches of {batch}",
        "async_single": "await embed, one prompt",
    }
    for key, label in labels.items():
        row = results[key]
        print(
            f"  {label:<28} {row['p50_ms']:8.3f} {row['p95_ms']:8.3f} {row['p50_ms'] / floor:19.2f}"
        )
    single = results["single"]["p50_ms"]
    batched = results[f"batch_{batch}"]["p50_ms"]
    verdicts = [
        {"target": f"one prompt under {TARGET_MS:g} ms at p50", "value": single},
        {"target": f"batched, per prompt under {TARGET_MS:g} ms at p50", "value": batched},
    ]
    print("  targets (informational):")
    for verdict in verdicts:
        verdict["met"] = verdict["value"] < TARGET_MS
        mark = "PASS" if verdict["met"] else "MISS"
        print(f"    [{mark}] {verdict['target']}: {verdict['value']:.2f} ms")
    return {**measured, "prompts": prompts, "source": source, "batch": batch, "targets": verdicts}


def embedding_latency(prompts: int, batch: int, data: Path) -> dict[str, Any]:
    """The whole embedding-latency run, printed; returns it as a JSON-able dict."""
    texts, source = load_prompts(data, prompts)
    before = os.getloadavg()
    print("local embedder latency (all-MiniLM-L6-v2, numpy)")
    print(
        f"  cpus: {os.cpu_count()}; OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; load average before:"
        f" {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}"
    )
    measured = measure(texts, batch)
    after = os.getloadavg()
    result = report(len(texts), source, batch, measured)
    print(f"  load average after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")
    return {**result, "load_average_before": before, "load_average_after": after}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.semantic", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--prompts", type=int, default=DEFAULT_PROMPTS, help="prompts to embed (200)"
    )
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="batch size (16)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="question pairs JSONL")
    parser.add_argument(
        "--blas-threads",
        type=int,
        help="set OPENBLAS_NUM_THREADS (and OMP_NUM_THREADS) before numpy loads",
    )
    parts = parser.add_argument_group("parts (all of them when none is named)")
    parts.add_argument("--embedding", action="store_true", help="local embedder latency")
    parts.add_argument(
        "--lookup", action="store_true", help="vector-store search latency without embedding"
    )
    parts.add_argument(
        "--throughput", action="store_true", help="semantic hits and misses vs an exact hit"
    )
    lookup = parser.add_argument_group("lookup part")
    lookup.add_argument(
        "--sizes",
        type=_sizes,
        default=DEFAULT_SIZES,
        help="entries per store, comma-separated (1000,10000; 100000 takes minutes more)",
    )
    lookup.add_argument(
        "--stores",
        type=_stores,
        default=STORE_KINDS,
        help=f"comma-separated, of {','.join(STORE_KINDS)} (all)",
    )
    lookup.add_argument(
        "--searches", type=int, default=DEFAULT_SEARCHES, help="searches per row at most (200)"
    )
    lookup.add_argument(
        "--qdrant-max",
        type=int,
        default=QDRANT_DEFAULT_MAX,
        help="largest size run on embedded Qdrant (10000): its fill and reopen grow fast",
    )
    lookup.add_argument(
        "--questions",
        type=int,
        default=BASE_QUESTIONS,
        help="real questions embedded for the corpus, queries included (2000)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.prompts < 1 or args.batch < 1 or args.searches < 1:
        parser.error("--prompts, --batch and --searches must be >= 1")
    if args.questions < 400:
        parser.error("--questions must be >= 400 (200 of them are the queries)")
    if not (args.embedding or args.lookup or args.throughput):
        args.embedding = args.lookup = args.throughput = True
    return args


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of sizes: {text!r}") from None
    if not sizes or min(sizes) < 10:
        raise argparse.ArgumentTypeError("sizes must be at least 10 entries")
    return sizes


def _stores(text: str) -> tuple[str, ...]:
    kinds = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [kind for kind in kinds if kind not in STORE_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"stores are {', '.join(STORE_KINDS)}")
    return kinds


def all_parts(args: argparse.Namespace) -> dict[str, Any]:
    """The parts ``args`` names, one after another; their results by part."""
    from bench import semantic_lookup, semantic_throughput

    results: dict[str, Any] = {}
    if args.embedding:
        results["embedding"] = embedding_latency(args.prompts, args.batch, args.data)
    if args.lookup:
        if results:
            print()
        questions, _ = load_prompts(args.data, args.questions)
        results["lookup"] = semantic_lookup.lookup_latency(
            questions, args.sizes, args.stores, args.searches, args.qdrant_max
        )
    if args.throughput:
        if results:
            print()
        try:
            results["throughput"] = semantic_throughput.throughput(args.data)
        except ValueError as exc:
            print(f"semantic throughput skipped: {exc}")
            results["throughput"] = {"skipped": str(exc)}
    return results


def defaults(data: Path = DEFAULT_DATA) -> argparse.Namespace:
    """Every part with its defaults (what ``bench.run --semantic`` runs)."""
    args = parse_args([])
    args.data = data
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.blas_threads is not None:
        if "numpy" in sys.modules:
            print("--blas-threads must be set before numpy loads", file=sys.stderr)
            return 2
        os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(args.blas_threads)
    try:
        result = all_parts(args)
    except EmbedderUnavailable as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
