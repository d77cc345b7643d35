"""Repeated identical cache warnings are logged once per window, with a count."""

from __future__ import annotations

import logging

import pytest

from llmcache_tui.cache.log_limit import MESSAGES, RepeatedWarnings

DOWN = "cache unavailable, serving from upstream: disk set failed: database or disk is full"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def warnings(clock: Clock) -> RepeatedWarnings:
    return RepeatedWarnings(logging.getLogger("test.log_limit"), window=60, clock=clock)


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.log_limit"]


def test_the_first_is_logged_then_a_count_once_a_window(
    warnings: RepeatedWarnings, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(500):
        warnings.warning(DOWN)
        clock.now += 0.1  # 50 s in all
    assert _lines(caplog) == [DOWN]

    clock.now += 11
    warnings.warning(DOWN)
    assert _lines(caplog) == [DOWN, f"{DOWN} (repeated 500 times in the last 61 s)"]


def test_different_messages_are_counted_apart(
    warnings: RepeatedWarnings, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(3):
        warnings.warning("redis get failed")
        warnings.warning("redis set failed")
    assert _lines(caplog) == ["redis get failed", "redis set failed"]


def test_flush_tells_the_rest_and_logs_the_next_failure_at_once(
    warnings: RepeatedWarnings, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(4):
        warnings.warning(DOWN)
    clock.now += 5
    assert warnings.pending
    warnings.flush()  # the cache works again
    assert not warnings.pending
    warnings.warning(DOWN)  # and fails again
    assert _lines(caplog) == [DOWN, f"{DOWN} (repeated 3 times more in the last 5 s)", DOWN]


def test_memory_is_bounded_and_nothing_is_lost(
    warnings: RepeatedWarnings, caplog: pytest.LogCaptureFixture
) -> None:
    warnings.warning("first")
    warnings.warning("first")
    for n in range(MESSAGES):
        warnings.warning(f"other {n}")
    lines = _lines(caplog)
    assert len(lines) == MESSAGES + 2
    assert "first (repeated once more in the last 0 s)" in lines
