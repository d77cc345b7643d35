"""``/metrics`` in the Prometheus exposition format, read from the proxy's counters.

One :class:`ProxyCollector` per proxy app, in a registry of its own (several apps may run
in one process, as in the tests). It builds every family when scraped, from
:class:`~llmcache_tui.proxy.stats.ProxyStats`, :class:`~llmcache_tui.proxy.metrics.ProxyMetrics`,
the backend's own operation timings and the semantic tier's counters, so recording stays
out of ``prometheus_client``'s locks and label checks.

The unlabelled counters and ``llmcache_hit_ratio`` (hits over lookups since start) are
the names of earlier versions, kept as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder

from llmcache_tui.cache.timings import LatencyRecorder
from llmcache_tui.proxy.asgi import Scope, header

if TYPE_CHECKING:
    from llmcache_tui.proxy.app import ProxyApp

# name -> (ProxyStats snapshot key, help)
_TOTALS = {
    "llmcache_requests_total": ("requests", "LLM requests answered since start."),
    "llmcache_hits_total": ("hits", "Requests answered from the cache (exact or semantic)."),
    "llmcache_misses_total": (
        "misses",
        "Requests the cache was asked for and did not answer (collapsed followers included).",
    ),
    "llmcache_bypassed_total": ("bypassed", "Requests that did not read the cache."),
    "llmcache_stored_total": ("stored", "Answers written to the cache."),
    "llmcache_coalesced_total": (
        "coalesced",
        "Misses answered by an identical request's upstream call.",
    ),
    "llmcache_tokens_saved_total": (
        "tokens_saved",
        "Total tokens of the answers served from the cache.",
    ),
}
_SEMANTIC = {
    "lookups": "Semantic lookups after an exact miss.",
    "hits": "Semantic lookups that found an entry to serve.",
    "refused": "Semantic lookups whose neighbours every guard refused.",
    "stored": "Vectors stored beside new entries.",
    "skipped": "Semantic lookups or stores skipped while the semantic breaker was open.",
}


class ProxyCollector:
    """Every ``/metrics`` family of one proxy app, built at scrape time."""

    def __init__(self, app: ProxyApp) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        app = self.app
        snapshot = app.stats.snapshot()
        for name, (key, text) in _TOTALS.items():
            yield CounterMetricFamily(name, text, value=snapshot[key])
        yield from self._errors(snapshot)
        semantic = app.cache.semantic if app.cache is not None else None
        if semantic is not None:
            for name, text in _SEMANTIC.items():
                value = getattr(semantic.stats, name)
                yield CounterMetricFamily(f"llmcache_semantic_{name}_total", text, value=value)
        yield GaugeMetricFamily(
            "llmcache_hit_ratio",
            "Hits over hits plus misses since start; for a window, use rate() of"
            " llmcache_hits_total and llmcache_misses_total.",
            value=snapshot["hit_rate"],
        )
        metrics = app.metrics
        if metrics is not None:
            yield _histogram(
                "llmcache_request_duration_seconds",
                "LLM request latency from the first byte received to the response sent,"
                " by route and cache result.",
                ["route", "result"],
                metrics.requests,
            )
            yield _histogram(
                "llmcache_upstream_duration_seconds",
                "Deployment call latency by model group (streams: until the response headers).",
                ["model_group"],
                metrics.upstream,
            )
            yield from self._lookups()
        yield from self._backend()

    def _errors(self, snapshot: dict[str, int]) -> Iterator[Metric]:
        app = self.app
        family = CounterMetricFamily(
            "llmcache_errors_total",
            "Failed requests (client, upstream) and failed cache operations (cache, semantic).",
            labels=["kind"],
        )
        family.add_metric(["client"], snapshot["client_errors"])
        family.add_metric(["upstream"], snapshot["upstream_errors"])
        family.add_metric(["cache"], app.cache.errors if app.cache is not None else 0)
        semantic = app.cache.semantic if app.cache is not None else None
        if semantic is not None:
            family.add_metric(["semantic"], semantic.stats.errors)
        yield family

    def _lookups(self) -> Iterator[Metric]:
        metrics = self.app.metrics
        assert metrics is not None
        lookups = CounterMetricFamily(
            "llmcache_cache_lookups_total",
            "Cache lookups by model, namespace and result (hit, semantic_hit, miss, error).",
            labels=["model", "namespace", "result"],
        )
        tokens = CounterMetricFamily(
            "llmcache_saved_tokens_total",
            "Prompt and completion tokens of the answers served from the cache, from their"
            " stored usage.",
            labels=["model", "type"],
        )
        cost = CounterMetricFamily(
            "llmcache_saved_cost_usd_total",
            "What the answers served from the cache would have cost upstream, in USD"
            " (model_info prices, else the built-in price table).",
            labels=["model"],
        )
        counted: dict[tuple[str, str], list[float]] = {}
        for counts in metrics.lookup_counts():
            row = counted.setdefault((counts.model, counts.namespace), [0, 0, 0, 0])
            row[0] += counts.hits
            row[1] += counts.semantic_hits
            row[2] += counts.misses
            row[3] += counts.errors
        for labels, row in counted.items():
            for result, value in zip(("hit", "semantic_hit", "miss", "error"), row, strict=True):
                lookups.add_metric([*labels, result], value)
        # Namespaces add up per model: a dashboard sums money by model.
        saved: dict[str, list[float]] = {}
        for counts in metrics.lookup_counts():
            per_model = saved.setdefault(counts.model, [0, 0, 0.0])
            per_model[0] += counts.prompt_tokens
            per_model[1] += counts.completion_tokens
            per_model[2] += counts.cost_usd
        for model, (prompt, completion, usd) in saved.items():
            tokens.add_metric([model, "prompt"], prompt)
            tokens.add_metric([model, "completion"], completion)
            cost.add_metric([model], usd)
        yield lookups
        yield tokens
        yield cost

    def _backend(self) -> Iterator[Metric]:
        backend = self.app.backend
        latency = HistogramMetricFamily(
            "llmcache_backend_operation_duration_seconds",
            "Cache backend operation latency by backend type and operation.",
            labels=["backend", "operation"],
        )
        errors = CounterMetricFamily(
            "llmcache_backend_errors_total",
            "Failed cache backend operations by backend type and operation.",
            labels=["backend", "operation"],
        )
        parts = backend.timed_parts() if backend is not None else []
        for part in parts:
            timings = part.timings
            if timings is None:
                continue
            for series in timings.latency.read():
                latency.add_metric(
                    [part.cache_type, str(series.labels)], series.buckets, series.total
                )
            for operation, count in list(timings.errors.items()):
                errors.add_metric([part.cache_type, operation], count)
        yield latency
        yield errors


def _histogram(
    name: str, text: str, labels: list[str], recorder: LatencyRecorder
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, text, labels=labels)
    for series in recorder.read():
        values = series.labels if isinstance(series.labels, tuple) else (series.labels,)
        family.add_metric([str(value) for value in values], series.buckets, series.total)
    return family


def new_registry(app: ProxyApp) -> CollectorRegistry:
    """A registry of the app's own, holding its collector (never the process-global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyCollector(app))
    return registry


def render(registry: CollectorRegistry, scope: Scope) -> tuple[bytes, bytes]:
    """The scrape body and its content type; OpenMetrics when the scraper asks for it."""
    accept = header(scope, b"accept")
    encoder, content_type = choose_encoder(accept.decode("latin-1") if accept else "")
    return encoder(registry), content_type.encode()
