"""What the proxy records for ``/metrics``: latencies, lookups by model, what hits saved.

Recording runs on every request, hits included, so each hook is a few dict and list
operations (:mod:`llmcache_tui.cache.timings`); turning them into Prometheus families is
left to scrape time (:mod:`llmcache_tui.proxy.exposition`).

Label values are bounded, whatever clients send: a model label is a ``model_list`` name,
or one of the first :data:`EXTRA_MODELS` names a wildcard entry matched, else ``other``;
a namespace label is one of the first :data:`NAMESPACES` namespaces seen, else ``other``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from llmcache_tui.cache.timings import REQUEST_BUCKETS, LatencyRecorder
from llmcache_tui.config import ModelEntry
from llmcache_tui.proxy.prices import Price, price_for

if TYPE_CHECKING:
    from llmcache_tui.cache.service import Lookup

OTHER = "other"
EXTRA_MODELS = 20
NAMESPACES = 20
# Distinct (model, namespace) pairs remembered with their labels and price; beyond this,
# pairs are worked out again on each request rather than kept.
REMEMBERED_PAIRS = 1024
NO_NAMESPACE = ""

#: ``result`` label values of ``llmcache_request_duration_seconds``
RESULTS = (
    "hit",
    "semantic_hit",
    "miss",
    "collapsed",
    "bypass",
    "cache_error",
    "upstream_error",
    "client_error",
)


class BoundedLabel:
    """Label values: the ``fixed`` ones, then the first ``extra`` others seen, then ``other``."""

    def __init__(self, fixed: Iterable[str], extra: int) -> None:
        self.values = dict.fromkeys(fixed)
        self.room = extra

    def __call__(self, value: str) -> str:
        if value in self.values:
            return value
        if self.room > 0:
            self.room -= 1
            self.values[value] = None
            return value
        return OTHER


class LookupSeries:
    """Cache lookups and what the hits saved, for one (model, namespace) label pair."""

    __slots__ = (
        "completion_tokens",
        "cost_usd",
        "errors",
        "hits",
        "misses",
        "model",
        "namespace",
        "prompt_tokens",
        "semantic_hits",
    )

    def __init__(self, model: str, namespace: str) -> None:
        self.model = model
        self.namespace = namespace
        self.hits = self.semantic_hits = self.misses = self.errors = 0
        self.prompt_tokens = self.completion_tokens = 0
        self.cost_usd = 0.0


class ProxyMetrics:
    """The recording side of ``/metrics`` for one proxy app."""

    def __init__(self, model_list: list[ModelEntry], namespace: str | None = None) -> None:
        self.model_list = model_list
        self.requests = LatencyRecorder(REQUEST_BUCKETS)  # (route, result)
        self.upstream = LatencyRecorder(REQUEST_BUCKETS)  # model group
        exact = [entry.model_name for entry in model_list if "*" not in entry.model_name]
        self.models = BoundedLabel(exact, EXTRA_MODELS)
        self.namespaces = BoundedLabel([namespace or NO_NAMESPACE], NAMESPACES)
        self.series: dict[tuple[str, str], LookupSeries] = {}
        self._pairs: dict[tuple[str, str | None], tuple[LookupSeries, Price | None]] = {}
        self._model_labels: dict[str, str] = {}

    def request(self, route: str, result: str, seconds: float) -> None:
        """A finished LLM request (``result``: one of :data:`RESULTS`)."""
        self.requests.observe((route, result), seconds)

    def upstream_call(self, model: str, seconds: float) -> None:
        """One call to a deployment of the model group ``model`` (the name clients send)."""
        label = self._model_labels.get(model)
        if label is None:
            label = self.models(model)
            if len(self._model_labels) < REMEMBERED_PAIRS:
                self._model_labels[model] = label
        self.upstream.observe(label, seconds)

    def looked_up(
        self, model: str, namespace: str | None, found: Lookup, upstream_model: str
    ) -> None:
        """One cache lookup of ``model`` in ``namespace``; a hit also counts what it saved."""
        known = self._pairs.get((model, namespace))
        if known is None:
            known = self._pair(model, namespace, upstream_model)
        series, price = known
        entry = found.entry
        if entry is None:
            if found.failed:
                series.errors += 1
            else:
                series.misses += 1
            return
        if found.similarity is None:
            series.hits += 1
        else:
            series.semantic_hits += 1
        usage = entry.usage
        if not usage:
            return
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        # Counted only when a number: a stored answer's usage is whatever upstream sent.
        if type(prompt) is not int or prompt < 0:
            prompt = 0
        if type(completion) is not int or completion < 0:
            completion = 0
        series.prompt_tokens += prompt
        series.completion_tokens += completion
        if price is not None:
            series.cost_usd += prompt * price.prompt + completion * price.completion

    def _pair(
        self, model: str, namespace: str | None, upstream_model: str
    ) -> tuple[LookupSeries, Price | None]:
        labels = (self.models(model), self.namespaces(namespace or NO_NAMESPACE))
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = LookupSeries(*labels)
        known = (series, price_for(self.model_list, model, upstream_model))
        if len(self._pairs) < REMEMBERED_PAIRS:
            self._pairs[(model, namespace)] = known
        return known
