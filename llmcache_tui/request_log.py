"""The embedded proxy's recent requests, tallied per model and namespace and per 10 s.

The proxy tells :meth:`RequestLog.add` of every request on the event loop; the proxy
screen reads what is new on its next refresh, as it does with the log bridge. Everything
here is bounded: the last :data:`MAX_EVENTS` events, :data:`MAX_GROUPS` model and
namespace pairs, :data:`BUCKETS` time buckets. Nothing here imports Textual.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from llmcache_tui.proxy.events import RequestEvent

MAX_EVENTS = 1000
MAX_GROUPS = 100  # model and namespace pairs tallied; more are counted as "other"
OTHER_MODELS = "other models"
BUCKET_SECONDS = 10
BUCKETS = 30  # five minutes of 10 s buckets

HIT_RESULTS = frozenset({"hit", "semantic-hit"})
#: looked up and not answered from the cache: the misses of the hit rate
MISS_RESULTS = frozenset({"miss", "stored", "collapsed", "cache-error"})
#: what the screen's result filter shows, in the order its key cycles through them
FILTERS = ("all", "hit", "miss", "bypass", "error")


def shown_by(event: RequestEvent, name: str) -> bool:
    """Whether the filter ``name`` (one of :data:`FILTERS`) shows ``event``."""
    if name == "hit":
        return event.result in HIT_RESULTS
    if name == "miss":
        return event.result in MISS_RESULTS and event.result != "cache-error"
    if name == "bypass":
        return event.result == "bypass"
    if name == "error":
        return event.result in ("cache-error", "rejected") or event.status >= 400
    return True


@dataclass
class Tally:
    """Requests, hits and lookups of a group of requests.

    Lookups are hits plus answered misses, as the proxy's own counters count them, so a
    hit rate here agrees with the screen's total.
    """

    requests: int = 0
    hits: int = 0
    lookups: int = 0

    def add(self, event: RequestEvent) -> None:
        self.requests += 1
        if event.result in HIT_RESULTS:
            self.hits += 1
            self.lookups += 1
        elif event.result in MISS_RESULTS and event.status < 400:
            self.lookups += 1

    @property
    def hit_rate(self) -> float | None:
        """None when nothing was looked up (a rate of nothing is not 0%)."""
        return self.hits / self.lookups if self.lookups else None


@dataclass(frozen=True, slots=True)
class Group:
    """One model and namespace pair and its tally."""

    model: str
    namespace: str | None
    tally: Tally


class RequestLog:
    """Recent request events, with live tallies per model and namespace and over time."""

    def __init__(self, max_events: int = MAX_EVENTS) -> None:
        self.events: deque[RequestEvent] = deque(maxlen=max_events)
        self.total = 0  # events ever added
        self._groups: dict[tuple[str, str | None], Tally] = {}
        self._buckets: deque[tuple[int, Tally]] = deque(maxlen=BUCKETS)

    def add(self, event: RequestEvent) -> None:
        self.events.append(event)
        self.total += 1
        group = (event.model, event.namespace)
        tally = self._groups.get(group)
        if tally is None:
            if len(self._groups) >= MAX_GROUPS:
                group = (OTHER_MODELS, None)
            tally = self._groups.setdefault(group, Tally())
        tally.add(event)
        bucket = int(event.time // BUCKET_SECONDS)
        if not self._buckets or self._buckets[-1][0] < bucket:
            self._buckets.append((bucket, Tally()))
        for number, counts in reversed(self._buckets):  # the last one, but for a late event
            if number <= bucket:
                if number == bucket:
                    counts.add(event)
                break

    def since(self, seen: int) -> list[RequestEvent]:
        """Events after the first ``seen`` ever added (older ones may have been dropped)."""
        fresh = self.total - seen
        if fresh <= 0:
            return []
        fresh = min(fresh, len(self.events))
        return [self.events[i] for i in range(len(self.events) - fresh, len(self.events))]

    def clear_events(self) -> None:
        """Forget the events (the log's "clear"); the tallies go on counting."""
        self.events.clear()

    def reset_tallies(self) -> None:
        """Start the tallies over (a new proxy run); the events stay for reading."""
        self._groups.clear()
        self._buckets.clear()

    def groups(self) -> list[Group]:
        """Every model and namespace pair, the busiest first."""
        groups = [Group(model, ns, tally) for (model, ns), tally in self._groups.items()]
        groups.sort(key=lambda g: (-g.tally.requests, g.model, g.namespace or ""))
        return groups

    def hit_rates(self, now: float) -> list[float | None]:
        """The hit rate of each of the last :data:`BUCKETS` buckets up to ``now``, oldest
        first; None for a bucket with no lookups."""
        current = int(now // BUCKET_SECONDS)
        by_number = {number: tally for number, tally in self._buckets}
        rates: list[float | None] = []
        for number in range(current - BUCKETS + 1, current + 1):
            tally = by_number.get(number)
            rates.append(None if tally is None else tally.hit_rate)
        return rates
