"""Shared pytest fixtures for the llmcache-tui test suite.

Fixtures are grouped in sections; add new ones under their own section header.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_upstream import FakeUpstreamServer

# --------------------------------------------------------------------------- fake upstream


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstreamServer]:
    """One fake OpenAI-compatible provider, running for the whole test session."""
    with FakeUpstreamServer() as server:
        yield server


@pytest.fixture
def upstream(fake_upstream: FakeUpstreamServer) -> FakeUpstreamServer:
    """The session's fake provider, reset: no recorded calls, no queued behaviour."""
    fake_upstream.app.reset()
    return fake_upstream
