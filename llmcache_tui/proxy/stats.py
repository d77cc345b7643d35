"""Live request counters for the terminal app and ``/metrics``; cheap on the hot path."""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

LATENCY_WINDOW = 2048


@dataclass
class ProxyStats:
    """Counts since start; latency percentiles over the most recent requests."""

    requests: int = 0
    hits: int = 0
    misses: int = 0
    bypassed: int = 0
    stored: int = 0
    coalesced: int = 0  # misses answered by another identical request's upstream call
    client_errors: int = 0
    upstream_errors: int = 0
    tokens_saved: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def record(self, outcome: str, seconds: float) -> None:
        """Count a finished request.

        ``outcome`` is hit, semantic_hit, miss, collapsed (a miss answered by another
        request's upstream call), cache_error (a miss the cache failed on), bypass,
        client_error or upstream_error.
        """
        self.requests += 1
        if outcome == "hit" or outcome == "semantic_hit":
            self.hits += 1
        elif outcome == "miss" or outcome == "collapsed" or outcome == "cache_error":
            self.misses += 1
        elif outcome == "bypass":
            self.bypassed += 1
        elif outcome == "client_error":
            self.client_errors += 1
        else:
            self.upstream_errors += 1
        self.latencies_ms.append(seconds * 1000)

    @property
    def hit_rate(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0

    def snapshot(self) -> dict[str, Any]:
        latencies = list(self.latencies_ms)
        p50 = statistics.median(latencies) if latencies else None
        p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) >= 2 else p50
        return {
            "requests": self.requests,
            "hits": self.hits,
            "misses": self.misses,
            "bypassed": self.bypassed,
            "stored": self.stored,
            "coalesced": self.coalesced,
            "client_errors": self.client_errors,
            "upstream_errors": self.upstream_errors,
            "hit_rate": round(self.hit_rate, 4),
            "tokens_saved": self.tokens_saved,
            "latency_p50_ms": p50,
            "latency_p99_ms": p99,
        }
