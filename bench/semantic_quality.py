"""How often does a semantic lookup serve a wrong answer, with plain cosine and with the guards?

Run: ``.venv/bin/python -m bench.semantic_quality [--qqp PATH] [--sample N]
[--stored-cos] [--cos-cache FILE] [--prototype FILE]``.

For each pair ``(a, b)`` of a data set, ``a`` plays the stored prompt and ``b`` the new one.
A pair is a hit when the cosine similarity of their embeddings reaches the threshold
(plain, the baseline: what LiteLLM does) or when it also passes
``llmcache_tui.cache.semantic.guards.judge`` (guarded). Recall is the share of label-1 pairs
(paraphrases: the stored answer serves the new prompt) that hit; the false-hit rate is the
share of label-0 pairs (they need another answer) that hit. Both are printed at the default
threshold and at 0.75, 0.8 (the LiteLLM docs' ``similarity_threshold``) and 0.85, with the
false hits per kind of difference and per batch of the pair file (batch 1 tuned the rules
and fitted the model; batches 2 and 3 were written afterwards as held-out checks; see
``tests/data/README.md``).

Data: ``tests/data/semantic_pairs.jsonl`` (LLM-prompt pairs written for this project) and
``qqp_pairs.jsonl`` (Quora question pairs: general web questions with noisy labels). QQP is
shuffled with a fixed seed and cut in two halves: ``bench.fit_guards`` fits the guards'
model on the tuning half; this report shows the held-out half (or ``--sample N`` pairs of
it) and, with ``--sample 0``, also the whole file.

Embeddings come from the built-in local embedder (all-MiniLM-L6-v2). ``--stored-cos`` uses
the ``cos`` field stored in the pair file instead (no model needed; the QQP part is then
skipped), ``--cos-cache FILE`` keeps the cosines computed in a JSON file and reuses them on
the next run (embedding all of QQP takes minutes), and ``--prototype FILE`` loads another
module exposing ``embed(text)`` returning a normalised vector, to compare an embedder
implementation.

Last, the guard's cost per candidate is printed against a baseline measured in the same run:
the plain threshold comparison.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llmcache_tui.cache.semantic.guards import DEFAULT_THRESHOLD, clear_cache, judge

ROOT = Path(__file__).resolve().parent.parent
PAIRS = ROOT / "tests" / "data" / "semantic_pairs.jsonl"
# shared/ lies beside the main checkout, one level further up from a linked worktree.
QQP = next(
    (
        path
        for path in (
            ROOT.parent / "shared" / "data" / "qqp_pairs.jsonl",
            ROOT.parent.parent / "shared" / "data" / "qqp_pairs.jsonl",
        )
        if path.exists()
    ),
    ROOT.parent / "shared" / "data" / "qqp_pairs.jsonl",
)
QQP_SEED = 20261202

Pair = dict[str, Any]
Embed = Callable[[list[str]], list[list[float]]]


def load_jsonl(path: Path) -> list[Pair]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def local_embedder() -> Embed:
    from llmcache_tui.cache.semantic.local_embedder import LocalEmbedder

    embedder = LocalEmbedder()

    def embed(texts: list[str]) -> list[list[float]]:
        return [list(map(float, row)) for row in embedder.embed_sync(texts)]

    return embed


def prototype_embedder(path: str) -> Embed:
    spec = importlib.util.spec_from_file_location("embed_prototype", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(Path(path).resolve().parent))
    spec.loader.exec_module(module)
    return lambda texts: [list(map(float, module.embed(t))) for t in texts]


def add_similarities(
    pairs: list[Pair], embed: Embed, batch: int = 64, cache: Path | None = None
) -> None:
    """Set every pair's ``cos``; with ``cache``, read and extend a JSON file of cosines."""
    known: dict[str, float] = {}
    if cache is not None and cache.exists():
        known = json.loads(cache.read_text(encoding="utf-8"))
    todo = [p for p in pairs if _pair_key(p) not in known]
    texts = sorted({t for p in todo for t in (p["a"], p["b"])})
    vectors: dict[str, list[float]] = {}
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        vectors.update(zip(chunk, embed(chunk), strict=True))
    for p in todo:
        cos = sum(x * y for x, y in zip(vectors[p["a"]], vectors[p["b"]], strict=True))
        known[_pair_key(p)] = round(cos, 6)
    for p in pairs:
        p["cos"] = known[_pair_key(p)]
    if cache is not None and todo:
        cache.write_text(json.dumps(known), encoding="utf-8")


def _pair_key(p: Pair) -> str:
    return f"{p['a']}\x1f{p['b']}"


def qqp_halves(pairs: list[Pair]) -> tuple[list[Pair], list[Pair]]:
    """The QQP pairs shuffled with the fixed seed: (tuning half, held-out half)."""
    shuffled = list(pairs)
    random.Random(QQP_SEED).shuffle(shuffled)
    cut = len(shuffled) // 2
    return shuffled[:cut], shuffled[cut:]


def rates(pairs: Sequence[Pair], threshold: float, guarded: bool) -> tuple[float, float, int, int]:
    """Recall on label 1, false-hit rate on label 0, and the two counts."""
    pos = [p for p in pairs if p["label"] == 1]
    neg = [p for p in pairs if p["label"] == 0]

    def hit(p: Pair) -> bool:
        if guarded:
            return judge(p["b"], p["a"], p["cos"], threshold).hit
        return bool(p["cos"] >= threshold)

    recall = sum(map(hit, pos)) / len(pos) if pos else float("nan")
    false = sum(map(hit, neg)) / len(neg) if neg else float("nan")
    return recall, false, len(pos), len(neg)


def pct(x: float) -> str:
    return "   -  " if x != x else f"{100 * x:5.1f}%"


def row(label: str, pairs: Sequence[Pair], thresholds: Sequence[float], metric: int) -> str:
    cells = (
        f"| {pct(rates(pairs, t, False)[metric])}  {pct(rates(pairs, t, True)[metric])}    "
        for t in thresholds
    )
    return f"{label:34}" + "".join(cells)


def report(
    title: str, pairs: list[Pair], thresholds: Sequence[float], groups: dict[str, list[Pair]]
) -> None:
    n_pos = sum(p["label"] == 1 for p in pairs)
    print(f"\n== {title} ({n_pos} paraphrases, {len(pairs) - n_pos} needing another answer)")
    print(" " * 34 + "".join(f"| t={t:<4} plain   guarded " for t in thresholds))
    print(row("recall (paraphrases hit)", pairs, thresholds, 0))
    print(row("false hits (all)", pairs, thresholds, 1))
    for name, group in groups.items():
        metric = 0 if all(p["label"] == 1 for p in group) else 1
        print(row(f"  {name} (n={len(group)})", group, thresholds, metric))


def by_kind(pairs: list[Pair]) -> dict[str, list[Pair]]:
    groups: dict[str, list[Pair]] = defaultdict(list)
    for p in pairs:
        if p["label"] == 0:
            groups[f"false hits: {p['kind']}"].append(p)
    return dict(sorted(groups.items()))


def guard_cost(pairs: list[Pair], rounds: int = 20) -> None:
    work = [(p["b"], p["a"], max(p["cos"], DEFAULT_THRESHOLD)) for p in pairs]
    t0 = time.perf_counter()
    for _ in range(rounds):
        for _b, _a, s in work:
            _ = s >= DEFAULT_THRESHOLD
    base = (time.perf_counter() - t0) / (rounds * len(work))
    clear_cache()
    t0 = time.perf_counter()
    for b, a, s in work:
        judge(b, a, s, DEFAULT_THRESHOLD)
    cold = (time.perf_counter() - t0) / len(work)
    t0 = time.perf_counter()
    for _ in range(rounds):
        for b, a, s in work:
            judge(b, a, s, DEFAULT_THRESHOLD)
    warm = (time.perf_counter() - t0) / (rounds * len(work))
    print(
        f"\n== cost per candidate: plain comparison {base * 1e6:.3f} us; "
        f"judge {warm * 1e6:.1f} us with both texts analysed before ({warm / base:.0f}x), "
        f"{cold * 1e6:.1f} us analysing both texts ({cold / base:.0f}x)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pairs", type=Path, default=PAIRS)
    parser.add_argument("--qqp", type=Path, default=QQP)
    parser.add_argument(
        "--sample", type=int, default=0, help="QQP held-out pairs used (0: all, and the full file)"
    )
    parser.add_argument("--stored-cos", action="store_true", help="use the pair file's cos field")
    parser.add_argument("--cos-cache", type=Path, help="a JSON file of cosines to reuse")
    parser.add_argument("--prototype", help="a module file with embed(text) -> normalised vector")
    args = parser.parse_args()
    thresholds = sorted({DEFAULT_THRESHOLD, 0.75, 0.8, 0.85})

    pairs = load_jsonl(args.pairs)
    embed: Embed | None = None
    if not args.stored_cos:
        embed = prototype_embedder(args.prototype) if args.prototype else local_embedder()
        t0 = time.perf_counter()
        add_similarities(pairs, embed, cache=args.cos_cache)
        print(f"embedded the pair file in {time.perf_counter() - t0:.1f} s")
    print(f"default threshold {DEFAULT_THRESHOLD}; each pair's first prompt is stored")

    paraphrases = [p for p in pairs if p["label"] == 1]
    report("semantic_pairs.jsonl, all", pairs, thresholds, by_kind(pairs))
    for batch in sorted({p.get("batch", 1) for p in pairs}):
        group = [p for p in pairs if p.get("batch", 1) == batch]
        report(f"semantic_pairs.jsonl, batch {batch}", group, thresholds, {})
    held_batches = [p for p in pairs if p.get("batch", 1) != 1]
    report("semantic_pairs.jsonl, held-out batches 2 and 3", held_batches, thresholds, {})

    if embed is not None and args.qqp.exists():
        every = load_jsonl(args.qqp)
        tune, held = qqp_halves(every)
        if args.sample:
            held = random.Random(QQP_SEED).sample(held, min(args.sample, len(held)))
        t0 = time.perf_counter()
        add_similarities(every if not args.sample else held, embed, cache=args.cos_cache)
        print(f"\nembedded the QQP pairs in {time.perf_counter() - t0:.1f} s")
        report(
            f"qqp_pairs.jsonl, held-out half: {len(held)} pairs (seed {QQP_SEED})",
            held,
            thresholds,
            {},
        )
        if not args.sample:
            report(
                "qqp_pairs.jsonl, tuning half (the model was fitted on it)", tune, thresholds, {}
            )
            report(f"qqp_pairs.jsonl, all {len(every)} pairs", every, thresholds, {})
    elif embed is not None:
        print(f"\n(no QQP file at {args.qqp}; pass --qqp)")

    guard_cost(paraphrases + [p for p in pairs if p["label"] == 0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
