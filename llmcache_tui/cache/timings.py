"""Latency histograms cheap enough for the hit path, exported at scrape time.

An observation is one dict lookup, one ``bisect`` and two additions into a plain list:
no lock, no label validation, no cumulative update. Everything that reads them (the
proxy's ``/metrics``) runs on the same event loop as the code that records, so nothing
is shared between threads. Buckets are made cumulative, as Prometheus wants them, only
when they are read.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Hashable, Iterator
from dataclasses import dataclass

# Seconds. A cache hit takes well under a millisecond and an LLM call seconds to minutes,
# so one set of buckets spans both.
REQUEST_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
# A backend operation: microseconds in memory, milliseconds over the network.
BACKEND_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class HistogramSeries:
    """One label set's histogram as Prometheus reads it: cumulative ``(le, count)`` pairs
    ending with ``+Inf``, and the sum of the observed seconds."""

    labels: Hashable
    buckets: list[tuple[str, int]]
    total: float


class LatencyRecorder:
    """Bucketed latencies per label set (a string or a tuple of strings).

    Callers keep the label sets bounded; this class does not look at them.
    """

    __slots__ = ("bounds", "series")

    def __init__(self, bounds: tuple[float, ...] = REQUEST_BUCKETS) -> None:
        self.bounds = bounds
        # labels -> [count per bucket..., count above the last bound, sum of seconds]
        self.series: dict[Hashable, list[float]] = {}

    def observe(self, labels: Hashable, seconds: float) -> None:
        counts = self.series.get(labels)
        if counts is None:
            counts = self.series[labels] = [0] * (len(self.bounds) + 2)
        # bisect_left: a value equal to a bound belongs to that bucket (Prometheus' "le").
        counts[bisect_left(self.bounds, seconds)] += 1
        counts[-1] += seconds

    def read(self) -> Iterator[HistogramSeries]:
        """Every label set's histogram, cumulative."""
        edges = [*(_bound(b) for b in self.bounds), "+Inf"]
        for labels, counts in list(self.series.items()):
            running = 0
            buckets = []
            for edge, count in zip(edges, counts, strict=False):
                running += int(count)
                buckets.append((edge, running))
            yield HistogramSeries(labels, buckets, counts[-1])


class OperationTimings:
    """A backend's own record of its operations: latency and failures by operation."""

    __slots__ = ("errors", "latency")

    def __init__(self) -> None:
        self.latency = LatencyRecorder(BACKEND_BUCKETS)
        # The proxy's own operations start at zero, so a dashboard's rate() of them is 0
        # rather than "no data" until the first failure.
        self.errors: dict[str, int] = {"get": 0, "set": 0}

    def failed(self, operation: str) -> None:
        self.errors[operation] = self.errors.get(operation, 0) + 1


def _bound(value: float) -> str:
    # As prometheus_client writes bucket bounds, so ours and its histograms look alike.
    return repr(float(value))
