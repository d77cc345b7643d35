"""What the proxy records for ``/metrics``: latencies, lookups by model, what hits saved.

Recording runs on every request, hits included, so each hook is a few dict and list
operations (:mod:`llmcache_tui.cache.timings`); turning them into Prometheus families is
left to scrape time (:mod:`llmcache_tui.proxy.exposition`).

Label values are bounded, whatever clients send: a model label is a ``model_list`` name,
or one of the first :data:`EXTRA_MODELS` names a wildcard entry matched, else ``other``;
a namespace label is one of the first :data:`NAMESPACES` namespaces seen, else ``other``.
Names longer than :data:`LABEL_CHARS` are ``other`` too.
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
# Distinct (model, namespace) pairs counted apart, each with its labels and price; beyond
# this, new pairs share counters by label.
REMEMBERED_PAIRS = 1024
NO_NAMESPACE = ""
LABEL_CHARS = 200  # a longer name seen (wildcards take any) is counted as ``other``

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
        if self.room > 0 and len(value) <= LABEL_CHARS:
            self.room -= 1
            self.values[value] = None
            return value
        return OTHER


class LookupCounts:
    """Cache lookups of one (model, namespace) pair as sent, and the tokens its hits saved.

    Pairs whose labels are the same (two names over the cap are both ``other``) are added
    up when scraped; money is worked out then too, from the tokens and the pair's price.
    """

    __slots__ = (
        "completion_tokens",
        "errors",
        "hits",
        "misses",
        "model",
        "namespace",
        "price",
        "prompt_tokens",
        "semantic_hits",
    )

    def __init__(self, model: str, namespace: str, price: Price | None) -> None:
        self.model = model
        self.namespace = namespace
        self.price = price
        self.hits = self.semantic_hits = self.misses = self.errors = 0
        self.prompt_tokens = self.completion_tokens = 0

    @property
    def cost_usd(self) -> float:
        price = self.price
        if price is None:
            return 0.0
        return self.prompt_tokens * price.prompt + self.completion_tokens * price.completion


class ProxyMetrics:
    """The recording side of ``/metrics`` for one proxy app."""

    def __init__(self, model_list: list[ModelEntry], namespace: str | None = None) -> None:
        self.model_list = model_list
        self.requests = LatencyRecorder(REQUEST_BUCKETS)  # (route, result)
        self.upstream = LatencyRecorder(REQUEST_BUCKETS)  # model group
        exact = [entry.model_name for entry in model_list if "*" not in entry.model_name]
        self.models = BoundedLabel(exact, EXTRA_MODELS)
        self.namespaces = BoundedLabel([namespace or NO_NAMESPACE], NAMESPACES)
        self.pairs: dict[tuple[str, str | None], LookupCounts] = {}
        # Once ``pairs`` is full: one set of counters per label pair, priced at scrape by
        # what it was first asked for (only clients inventing names get here).
        self.overflow: dict[tuple[str, str], LookupCounts] = {}
        self._model_labels: dict[str, str] = {}

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
        """One cache lookup of ``model`` in ``namespace``; a hit also counts what it saved.

        The hit path runs this on every hit: keep it to counter additions (the entry
        has its token counts worked out already).
        """
        counts = self.pairs.get((model, namespace))
        if counts is None:
            counts = self._counts(model, namespace, upstream_model)
        entry = found.entry
        if entry is None:
            if found.failed:
                counts.errors += 1
            else:
                counts.misses += 1
            return
        if found.similarity is None:
            counts.hits += 1
        else:
            counts.semantic_hits += 1
        counts.prompt_tokens += entry.prompt_tokens
        counts.completion_tokens += entry.completion_tokens

    def lookup_counts(self) -> list[LookupCounts]:
        """Every pair's counters (some may share labels)."""
        return [*self.pairs.values(), *self.overflow.values()]

    def _counts(self, model: str, namespace: str | None, upstream_model: str) -> LookupCounts:
        labels = (self.models(model), self.namespaces(namespace or NO_NAMESPACE))
        if len(self.pairs) >= REMEMBERED_PAIRS:
            counts = self.overflow.get(labels)
            if counts is None:
                price = price_for(self.model_list, model, upstream_model)
                counts = self.overflow[labels] = LookupCounts(*labels, price)
            return counts
        price = price_for(self.model_list, model, upstream_model)
        counts = self.pairs[(model, namespace)] = LookupCounts(*labels, price)
        return counts
