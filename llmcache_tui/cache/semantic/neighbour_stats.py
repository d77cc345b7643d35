"""How close the stored prompts of one namespace are to each other: for the probe's histogram.

For each stored vector of the namespace (a random sample of at most ``limit``), the
similarity of its nearest other vector in its own scope: the pairs a threshold decides
between. Where most entries have a near twin above the threshold, the cache already
answers them from one another; a cluster just below it is what lowering it would merge.
An entry alone in its scope (the usual case: a scope is model, namespace, parameters and
conversation) has no neighbour any threshold could reach, and is counted apart.

Each nearest neighbour is a search of the store, as the proxy's own lookups are (exact
against the whole scope, not only the sample); the work yields to the event loop between
searches, so the terminal app stays responsive while it runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from llmcache_tui.cache.keys import NAMESPACE_SEPARATOR
from llmcache_tui.cache.semantic.tier import SemanticTier

DEFAULT_LIMIT = 500
# The histogram's range: similarities below LOW are one bin (nothing there is near).
LOW = 0.5
HIGH = 1.0
BINS = 10


def namespace_of(key: str) -> str | None:
    """The namespace of a storage key (``ns:digest``), None for a bare digest."""
    namespace, _, _ = key.rpartition(NAMESPACE_SEPARATOR)
    return namespace or None


@dataclass(frozen=True, slots=True)
class NeighbourStats:
    """Nearest-neighbour similarities of a namespace's stored vectors.

    ``similarities`` has one value per sampled vector with another vector in its scope;
    ``alone`` counts those without. ``matched`` is how many vectors of the namespace the
    store's scan found (more than were sampled when ``len(similarities) + alone`` is
    less), ``complete`` whether that scan covered the whole store.
    """

    namespace: str | None
    similarities: tuple[float, ...]
    alone: int
    matched: int
    complete: bool

    @property
    def sampled(self) -> int:
        return len(self.similarities) + self.alone

    def at_or_above(self, threshold: float) -> int:
        """Vectors whose nearest neighbour reaches ``threshold`` (the threshold guard
        would let the pair through; the other guards may still refuse it)."""
        return sum(similarity >= threshold for similarity in self.similarities)

    def below(self, threshold: float) -> int:
        return len(self.similarities) - self.at_or_above(threshold)

    def histogram(self, low: float = LOW, high: float = HIGH, bins: int = BINS) -> list[int]:
        """Counts in ``bins`` equal bins over [low, high], after one bin for below ``low``
        (``bins + 1`` counts; a similarity of ``high`` falls in the last bin)."""
        counts = [0] * (bins + 1)
        width = (high - low) / bins
        for similarity in self.similarities:
            if similarity < low:
                counts[0] += 1
            else:
                counts[1 + min(bins - 1, int((similarity - low) / width))] += 1
        return counts


async def neighbour_stats(
    tier: SemanticTier,
    namespace: str | None,
    *,
    limit: int = DEFAULT_LIMIT,
    clock: Callable[[], float] | None = None,
) -> NeighbourStats:
    """The nearest-neighbour similarities of up to ``limit`` vectors of ``namespace``.

    Raises what the store raises (a CacheBackendError, VectorStoreUnsupported for a
    store that cannot list its vectors) and EmbedderError if the store cannot be opened.
    """
    now = (clock or tier.clock)()
    store = await tier.open_store()
    sample = await store.sample_vectors(
        limit, now=now, keys=lambda key: namespace_of(key) == namespace
    )
    similarities: list[float] = []
    alone = 0
    for record in sample.records:
        found = await store.search(record.vector, record.scope, limit=2, now=now)
        nearest = next((n.similarity for n in found if n.key != record.key), None)
        if nearest is None:
            alone += 1
        else:
            similarities.append(nearest)
        await asyncio.sleep(0)  # an embedded store may answer without ever suspending
    return NeighbourStats(
        namespace=namespace,
        similarities=tuple(similarities),
        alone=alone,
        matched=sample.matched,
        complete=sample.complete,
    )
