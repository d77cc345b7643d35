"""No Redis password in any output, whichever way the URL carries it.

``REDIS_URL`` with the password in the query (``?password=...``, percent-encoded) and in
the userinfo with a raw ``@`` (``redis://:sec@ret@host``), against real password-protected
servers, a dead one and a wrong password: the password shows in none of ``--check``,
``--check --json``, ``/cache/ping``, the ``/cache/delete`` 503, the health document and the
logs. A URL the parser cannot read is a config error that does not quote any of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from llmcache_tui.redact import MASK
from tests import redis_servers as rs
from tests.conftest import ProxyFactory
from tests.ports import free_port
from tests.redis_support import CACHE_ERROR, chat, run_check, write_config

pytestmark = pytest.mark.usefixtures("no_redis_env")

#: A password redis-py reads from a URL unquoted: a raw "@" and ":" (no "/", "?", "#").
RAW_AT_PASSWORD = "sec@ret:Pass-7Q"


@dataclass(frozen=True)
class Secret:
    """A ``REDIS_URL`` and the password it carries, in every form it could be printed."""

    url: str
    password: str

    @property
    def forms(self) -> tuple[str, ...]:
        # Each part around an "@" too: a mask that stopped at the first "@" showed the rest.
        parts = [part for part in self.password.split("@") if len(part) >= 4]
        return (self.password, quote(self.password, safe=""), quote(self.password), *parts)

    def assert_absent(self, *texts: str) -> None:
        for text in texts:
            for form in self.forms:
                assert form not in text, f"the password ({form}) shows in: {text}"


def in_query(port: int, password: str) -> Secret:
    return Secret(f"redis://127.0.0.1:{port}/0?password={quote(password, safe='')}", password)


def raw_at(port: int, password: str) -> Secret:
    return Secret(f"redis://:{password}@127.0.0.1:{port}/0", password)


URL_SHAPES: dict[str, Callable[[int, str], Secret]] = {"query": in_query, "raw-at": raw_at}


@pytest.fixture(params=list(URL_SHAPES))
def shape(request: pytest.FixtureRequest) -> Callable[[int, str], Secret]:
    return URL_SHAPES[request.param]


@pytest.fixture
def live(
    shape: Callable[[int, str], Secret],
    request: pytest.FixtureRequest,
    make_redis_server: Callable[..., rs.RedisProcess],
) -> Secret:
    """A URL with the right password of a running server: the shared one (``p@ss:w/rd!``,
    which only a query can carry) or, for a raw "@" in the userinfo, one of this test's."""
    if shape is in_query:
        server: rs.RedisProcess = request.getfixturevalue("redis_password")
        return shape(server.port, server.password or "")
    return shape(make_redis_server(password=RAW_AT_PASSWORD).port, RAW_AT_PASSWORD)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO)
    yield caplog


def test_a_live_server_through_check_and_ping(
    live: Secret,
    tmp_path: Path,
    make_proxy: ProxyFactory,
    no_redis_env: pytest.MonkeyPatch,
    logs: pytest.LogCaptureFixture,
) -> None:
    config = write_config(tmp_path, None)  # cache: true, type redis: REDIS_URL says where
    run = run_check(config, {"REDIS_URL": live.url})
    assert run.code == 0, run.stdout
    assert run.report["status"] == "healthy"
    assert run.report["params"]["url"].count(MASK) == 1
    text = run_check(config, {"REDIS_URL": live.url}, as_json=False)
    assert text.code == 0, text.stdout
    live.assert_absent(run.stdout, run.stderr, text.stdout, text.stderr)

    no_redis_env.setenv("REDIS_URL", live.url)
    proxy = make_proxy(cache_type="redis")
    with proxy.http() as http:
        ping = http.get("/cache/ping")
        stored = chat(http, "a question for a guarded cache")
    assert ping.status_code == 200, ping.text
    assert ping.json()["redis_cache_params"]["url"].count(MASK) == 1
    assert CACHE_ERROR not in stored.headers["cache-status"]
    live.assert_absent(ping.text, logs.text)


@pytest.mark.parametrize("dead", ["dead", "wrong-password"])
def test_a_failing_server_everywhere(
    shape: Callable[[int, str], Secret],
    dead: str,
    redis_password: rs.RedisProcess,
    tmp_path: Path,
    make_proxy: ProxyFactory,
    no_redis_env: pytest.MonkeyPatch,
    logs: pytest.LogCaptureFixture,
) -> None:
    """Errors quote the URL (``authentication failed at redis://...``): masked."""
    port = free_port() if dead == "dead" else redis_password.port
    secret = shape(port, "wr0ng@pass:Word-X9")
    config = write_config(tmp_path, None)
    run = run_check(config, {"REDIS_URL": secret.url})
    assert run.code == 1, run.stdout
    assert "127.0.0.1" in run.report["error"]
    text = run_check(config, {"REDIS_URL": secret.url}, as_json=False)
    assert text.code == 1
    secret.assert_absent(run.stdout, run.stderr, text.stdout, text.stderr)

    no_redis_env.setenv("REDIS_URL", secret.url)
    proxy = make_proxy(cache_type="redis")
    with proxy.http() as http:
        ping = http.get("/cache/ping")
        served = chat(http, "served from upstream while the cache fails")
        deleted = http.post("/cache/delete", json={"keys": ["some-key"]})
        health = http.get("/health")
    assert ping.status_code == 503
    assert CACHE_ERROR in served.headers["cache-status"]
    assert deleted.status_code == 503
    assert "127.0.0.1" in deleted.json()["error"]["message"]
    assert "cache unavailable" in logs.text  # the warning was logged, masked
    secret.assert_absent(ping.text, deleted.text, health.text, logs.text)


@pytest.mark.parametrize("password", ["Sl4sh/Part#Two", "Qu3ry?Part#Two"])
def test_a_url_the_parser_cannot_read_is_a_config_error_that_quotes_none_of_it(
    password: str, tmp_path: Path
) -> None:
    # A raw "/", "?" or "#" ends the host part: the parser would take "Sl4sh" for a port.
    url = f"redis://:{password}@127.0.0.1:6379/0"
    for as_json in (True, False):
        run = run_check(write_config(tmp_path, None), {"REDIS_URL": url}, as_json=as_json)
        assert run.code == 2, run.stdout
        assert "REDIS_URL: not a usable URL" in run.stdout
        assert "percent-encoded" in run.stdout
        for part in ("Sl4sh", "Qu3ry", "Part", "Two"):
            assert part not in run.stdout + run.stderr
