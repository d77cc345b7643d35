"""The terminal app's request log: bounded, tallied per model and namespace and per 10 s."""

from __future__ import annotations

from llmcache_tui.proxy.events import RequestEvent
from llmcache_tui.request_log import (
    BUCKET_SECONDS,
    BUCKETS,
    MAX_GROUPS,
    OTHER_MODELS,
    RequestLog,
    shown_by,
)

NOW = 1_790_000_000.0


def event(
    result: str,
    *,
    at: float = NOW,
    model: str = "gpt-4o-mini",
    namespace: str | None = None,
    status: int = 200,
) -> RequestEvent:
    return RequestEvent(at, "chat", model, namespace, result, status, 1.0, "k")


def test_events_are_bounded_and_read_since_a_count() -> None:
    log = RequestLog(max_events=3)
    for index in range(5):
        log.add(event("hit", at=NOW + index))
    assert log.total == 5
    assert [e.time for e in log.events] == [NOW + 2, NOW + 3, NOW + 4]
    assert [e.time for e in log.since(3)] == [NOW + 3, NOW + 4]
    assert [e.time for e in log.since(0)] == [NOW + 2, NOW + 3, NOW + 4]  # the rest dropped
    assert log.since(5) == []


def test_tallies_per_model_and_namespace_count_lookups_like_the_proxy() -> None:
    log = RequestLog()
    for result in ("hit", "semantic-hit", "stored", "collapsed", "bypass"):
        log.add(event(result))
    log.add(event("stored", status=502))  # an upstream error is no lookup
    log.add(event("miss", namespace="team-a"))
    log.add(event("rejected", model="", status=400))
    groups = {(g.model, g.namespace): g.tally for g in log.groups()}
    default = groups[("gpt-4o-mini", None)]
    assert (default.requests, default.hits, default.lookups) == (6, 2, 4)
    assert default.hit_rate == 0.5
    assert groups[("gpt-4o-mini", "team-a")].hit_rate == 0.0
    assert groups[("", None)].hit_rate is None  # nothing looked up: no rate, not 0%
    assert log.groups()[0].model == "gpt-4o-mini" and log.groups()[0].namespace is None


def test_model_and_namespace_pairs_are_bounded() -> None:
    log = RequestLog()
    for index in range(MAX_GROUPS + 10):
        log.add(event("hit", model=f"model-{index}"))
    groups = log.groups()
    assert len(groups) == MAX_GROUPS + 1
    assert groups[0].model == OTHER_MODELS and groups[0].tally.requests == 10


def test_hit_rates_per_bucket_over_the_last_five_minutes() -> None:
    log = RequestLog()
    start = (NOW // BUCKET_SECONDS) * BUCKET_SECONDS
    log.add(event("hit", at=start - 400))  # older than the window
    log.add(event("hit", at=start - 20))
    log.add(event("stored", at=start - 15))
    log.add(event("hit", at=start + 1))
    log.add(event("bypass", at=start + 2))
    rates = log.hit_rates(start + 5)
    assert len(rates) == BUCKETS
    assert rates[-1] == 1.0  # the bypass is no lookup
    assert rates[-2] is None
    assert rates[-3] == 0.5
    assert rates[: BUCKETS - 3] == [None] * (BUCKETS - 3)
    log.reset_tallies()
    assert log.hit_rates(start + 5) == [None] * BUCKETS
    assert log.groups() == []
    assert len(log.events) == 5  # still there to read


def test_filters() -> None:
    assert shown_by(event("semantic-hit"), "hit")
    assert shown_by(event("collapsed"), "miss") and not shown_by(event("cache-error"), "miss")
    assert shown_by(event("bypass"), "bypass")
    assert shown_by(event("cache-error"), "error")
    assert shown_by(event("stored", status=502), "error")
    assert shown_by(event("rejected", status=400), "error")
    assert not shown_by(event("hit"), "error")
    assert shown_by(event("hit"), "all")
