"""Fit the weights of the guards' last stage and print them for ``guards.py``.

Run: ``.venv/bin/python -m bench.fit_guards [--qqp PATH] [--cos-cache FILE]
[--target 0.04]``.

The last stage of ``llmcache_tui.cache.semantic.guards.judge`` scores a candidate that
passed every rule (numbers, negation, direction, time, format) with a logistic model over
a few symmetric features (``guards.FEATURES``: the similarity and how badly the worst
content words align). This script fits it:

1. the data: batch 1 of ``tests/data/semantic_pairs.jsonl`` (batches 2 and 3 stay held
   out) and the tuning half of ``qqp_pairs.jsonl`` (``bench.semantic_quality.qqp_halves``:
   shuffled with a fixed seed, the other half is held out); only pairs at or above the
   lowest threshold reported (0.75) that the rules let through, since only those reach
   the model. A pair of our own file weighs ``PAIRS_WEIGHT`` QQP pairs: there are 30 times
   fewer of them and they are the prompts the cache serves;
2. weighted logistic regression by Newton's method with a small ridge penalty;
3. the intercept is then moved so that at most ``--target`` of the QQP tuning negatives
   pass the whole judge at the default threshold (the fitted 0.5 point is not the
   operating point we want: false hits cost more than misses).

The printed ``WEIGHTS`` and ``INTERCEPT`` replace those in ``guards.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.semantic_quality import (
    PAIRS,
    QQP,
    Pair,
    add_similarities,
    load_jsonl,
    local_embedder,
    qqp_halves,
)
from llmcache_tui.cache.semantic import guards

PAIRS_WEIGHT = 5.0
MIN_SIMILARITY = 0.75
RIDGE = 1.0


def rule_refusal(p: Pair) -> bool:
    """Whether a rule before the model refuses the pair (the model never sees it)."""
    verdict = guards.judge(p["b"], p["a"], 1.0, 0.0)
    return not verdict.hit and verdict.guard not in guards.MODEL_GUARDS


def features(p: Pair) -> list[float]:
    a, b = guards._analyse(p["b"]), guards._analyse(p["a"])
    return list(guards._features(a, b, float(p["cos"]), guards._gaps(a, b)))


def fit(rows: list[list[float]], labels: list[int], weights: list[float]) -> list[float]:
    """Weighted, ridge-penalised logistic regression; returns [intercept, *weights]."""
    import numpy as np

    x = np.asarray(rows, dtype=np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.c_[np.ones(len(x)), (x - mean) / scale]
    y, w = np.asarray(labels, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    beta = np.zeros(z.shape[1])
    penalty = RIDGE * np.eye(z.shape[1])
    penalty[0, 0] = 0.0  # the intercept is not shrunk
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-z @ beta))
        gradient = z.T @ (w * (p - y)) + penalty @ beta
        hessian = (z * (w * p * (1 - p))[:, None]).T @ z + penalty
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if float(np.abs(step).max()) < 1e-10:
            break
    coefficients = beta[1:] / scale
    intercept = beta[0] - float((beta[1:] * mean / scale).sum())
    return [float(intercept), *map(float, coefficients)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--qqp", type=Path, default=QQP)
    parser.add_argument("--cos-cache", type=Path, help="a JSON file of cosines to reuse")
    parser.add_argument("--target", type=float, default=0.04, help="QQP tuning false hits")
    args = parser.parse_args()

    own = [p for p in load_jsonl(PAIRS) if p.get("batch", 1) == 1]
    tune, _held = qqp_halves(load_jsonl(args.qqp))
    embed = local_embedder()
    add_similarities(own + tune, embed, cache=args.cos_cache)

    rows: list[list[float]] = []
    labels: list[int] = []
    weights: list[float] = []
    for weight, data in ((PAIRS_WEIGHT, own), (1.0, tune)):
        for p in data:
            if p["cos"] >= MIN_SIMILARITY and not rule_refusal(p):
                rows.append(features(p))
                labels.append(int(p["label"]))
                weights.append(weight)
    intercept, *coefficients = fit(rows, labels, weights)

    # Move the intercept: the candidate passes when score >= 0, so the cut is the score
    # of the QQP negative at the target rank among those that reach the model.
    negatives = [p for p in tune if p["label"] == 0]
    reach = [
        intercept + sum(c * f for c, f in zip(coefficients, features(p), strict=True))
        for p in negatives
        if p["cos"] >= guards.DEFAULT_THRESHOLD and not rule_refusal(p)
    ]
    allowed = int(args.target * len(negatives))
    reach.sort(reverse=True)
    cut = reach[allowed] if allowed < len(reach) else min(reach, default=0.0) - 1.0
    intercept -= cut + 1e-6

    print(f"# fitted on {len(rows)} pairs ({len(own)} own, {len(tune)} QQP tuning)")
    print(f"FEATURES = {guards.FEATURES!r}")
    print(f"WEIGHTS = ({', '.join(f'{c:.4g}' for c in coefficients)})")
    print(f"INTERCEPT = {intercept:.4g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
