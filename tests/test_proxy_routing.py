"""End to end: ``model_list`` routing, wildcards, ``mock_response`` and ``/v1/models``."""

from __future__ import annotations

import tracemalloc
from typing import Any

import httpx
import openai
import pytest

from llmcache_tui.config import ModelEntry, parse_settings
from llmcache_tui.proxy.routing import MATCHED_NAMES, Router, deployment_for
from tests.conftest import ProxyFactory
from tests.fake_upstream import FakeUpstreamServer
from tests.servers import DEFAULT_MODELS

MESSAGES: list[Any] = [{"role": "user", "content": "Hello"}]


def deployment(name: str, model: str, api_base: str, api_key: str = "sk-test") -> dict[str, Any]:
    return {
        "model_name": name,
        "litellm_params": {"model": model, "api_base": api_base, "api_key": api_key},
    }


def test_deployments_of_one_model_take_turns(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    with FakeUpstreamServer() as second:
        proxy = make_proxy(
            cache=False,
            models={},
            extra_models=[
                deployment("gpt-4o-mini", "openai/gpt-4o-mini", upstream.url, "sk-a"),
                deployment("gpt-4o-mini", "openai/gpt-4o-mini", second.url, "sk-b"),
            ],
        )
        with proxy.sdk() as client:
            for _ in range(4):
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        second_keys = [call.headers["authorization"] for call in second.app.calls]

    first_keys = [call.headers["authorization"] for call in upstream.app.calls]
    assert first_keys == ["Bearer sk-a", "Bearer sk-a"]
    assert second_keys == ["Bearer sk-b", "Bearer sk-b"]


def test_cached_answer_is_shared_by_all_deployments(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    proxy = make_proxy(
        models={},
        extra_models=[
            deployment("gpt-4o-mini", "openai/gpt-4o-mini", upstream.url, "sk-a"),
            deployment("gpt-4o-mini", "openai/gpt-4o-mini", upstream.url, "sk-b"),
        ],
    )
    with proxy.sdk() as client:
        ids = {
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).id
            for _ in range(3)
        }

    assert len(ids) == 1
    assert upstream.app.call_count() == 1


def test_star_wildcard_forwards_the_requested_model(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    proxy = make_proxy(models={}, extra_models=[deployment("*", "*", upstream.url)])
    with proxy.sdk() as client:
        chat = client.chat.completions.create(model="any-model-at-all", messages=MESSAGES)
        embedding = client.embeddings.create(model="text-embedding-3-large", input="x")

    assert chat.model == "any-model-at-all"
    assert embedding.model == "text-embedding-3-large"
    assert [call.body["model"] for call in upstream.app.calls] == [
        "any-model-at-all",
        "text-embedding-3-large",
    ]


def test_provider_prefix_wildcard(make_proxy: ProxyFactory, upstream: FakeUpstreamServer) -> None:
    proxy = make_proxy(models={}, extra_models=[deployment("openai/*", "openai/*", upstream.url)])
    with proxy.sdk() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o", messages=MESSAGES
        )
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="anthropic/claude", messages=MESSAGES)

    assert upstream.app.calls[0].body["model"] == "gpt-4o"
    assert raw.headers["cache-status"] == "llmcache; fwd=miss; stored"
    assert caught.value.code == "400"


def test_wildcard_names_do_not_grow_memory() -> None:
    """Clients may send any number of made-up names, of any length, to a wildcard: what
    the router remembers of them stays bounded (a few hundred KB, not their total size)."""
    settings = parse_settings(
        "model_list:\n"
        "  - model_name: 'team/*'\n"
        "    litellm_params: {model: 'openai/*', api_base: 'http://127.0.0.1:9/v1'}\n"
    )
    router = Router(settings.model_list)
    filler = "x" * 4000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for number in range(MATCHED_NAMES + 2000):
            deployment = router.resolve(f"team/{number}-{filler}")
            assert deployment is not None
            assert deployment.model == f"{number}-{filler}"
        del deployment
        long_names = tracemalloc.get_traced_memory()[0] - before
        for number in range(3 * MATCHED_NAMES):
            router.resolve(f"team/{number}")
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert long_names < 200_000  # 6,000 names of 4 KB, each kept twice, would be 48 MB
    assert grown < 4_000_000
    assert router.resolve("team/1") is not None


AZURE_KEY = "azure-secret-key"


def _azure_wildcard(make_proxy: ProxyFactory, upstream: FakeUpstreamServer) -> httpx.Client:
    entry = deployment("az/*", "azure/*", upstream.url, AZURE_KEY)
    entry["litellm_params"]["api_version"] = "2024-06-01"
    return make_proxy(cache=False, models={}, extra_models=[entry]).http()


@pytest.mark.parametrize(
    "model",
    [
        "az/../../../v1/secret-admin?x=",
        "az/..",
        "az/.",
        "az/%2e%2e/%2e%2e/v1/secret-admin",
        "az/%2E%2E",
        "az/gpt%2Fadmin",
        "az/gpt/../../admin",
        "az/gpt?x=1",
        "az/gpt#frag",
        "az/gpt\\..\\admin",
        "az/gpt\nHost: evil",
        "az/gpt\x00",
        "az/gpt\x7f",
    ],
)
def test_wildcard_model_cannot_leave_its_azure_url_segment(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer, model: str
) -> None:
    """The part a wildcard matched becomes the deployment in Azure's URL path: anything
    that would move the call elsewhere on the host (with its api-key) is a 400."""
    with _azure_wildcard(make_proxy, upstream) as http:
        reply = http.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == "model"
    assert "does not name an Azure deployment" in error["message"]
    assert upstream.app.call_count() == 0


def test_wildcard_azure_deployment_is_one_encoded_segment(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    with _azure_wildcard(make_proxy, upstream) as http:
        for model in ("az/gpt-4o", "az/my deployment;v2", "az/déploiement", "az/...", "az/a.b"):
            http.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES})
    prefix = "/v1/openai/deployments/"
    assert [(call.path, call.query) for call in upstream.app.calls] == [
        (f"{prefix}{name}/chat/completions", "api-version=2024-06-01")
        for name in ("gpt-4o", "my deployment;v2", "déploiement", "...", "a.b")
    ]
    assert {call.headers["api-key"] for call in upstream.app.calls} == {AZURE_KEY}


def test_configured_azure_deployment_names_are_percent_encoded() -> None:
    """Names from the config are trusted, but still one path segment each."""
    entry = ModelEntry.model_validate(
        {
            "model_name": "odd",
            "litellm_params": {"model": "azure/a b/c?d", "api_base": "https://h.invalid/"},
        }
    )
    url = deployment_for(entry, "odd").url("chat/completions")
    assert url == (
        "https://h.invalid/openai/deployments/a%20b%2Fc%3Fd/chat/completions?api-version=2024-02-01"
    )


def test_credentials_in_an_api_base_from_the_environment_are_a_502_without_them(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the config they are a config error; from OPENAI_API_BASE they reach the HTTP
    client, which refuses them beside the key: a 502 that repeats neither."""
    monkeypatch.setenv("OPENAI_API_BASE", f"http://bob:base-pw-leak@127.0.0.1:{upstream.port}/v1")
    entry = {"model_name": "env-base", "litellm_params": {"model": "openai/x", "api_key": "sk-e"}}
    with make_proxy(cache=False, models={}, extra_models=[entry]).http() as http:
        reply = http.post("/v1/chat/completions", json={"model": "env-base", "messages": MESSAGES})
    assert reply.status_code == 502, reply.text
    assert "not a usable URL" in reply.json()["error"]["message"]
    assert "leak" not in reply.text
    assert "bob" not in reply.text
    assert upstream.app.call_count() == 0


def test_a_long_refused_model_name_is_not_echoed_whole(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    with _azure_wildcard(make_proxy, upstream) as http:
        model = "az/" + "x" * 100_000 + "/.."
        reply = http.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES})
    assert reply.status_code == 400
    message = reply.json()["error"]["message"]
    assert len(message) < 400
    assert "100006 characters" in message


def test_exact_name_wins_over_a_wildcard(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    proxy = make_proxy(
        cache=False,
        models={},
        extra_models=[
            deployment("*", "*", upstream.url, "sk-wildcard"),
            deployment("gpt-4o-mini", "openai/gpt-4o-mini", upstream.url, "sk-exact"),
        ],
    )
    with proxy.sdk() as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    keys = [call.headers["authorization"] for call in upstream.app.calls]
    assert keys == ["Bearer sk-exact", "Bearer sk-wildcard"]


def test_docs_fake_openai_endpoint_with_trailing_slash(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    entry = {
        "model_name": "fake-openai-endpoint",
        "litellm_params": {
            "model": "openai/fake",
            "api_key": "fake-key",
            "api_base": upstream.base_url + "/",
        },
    }
    proxy = make_proxy(models={}, extra_models=[entry])
    with proxy.http() as http:
        reply = http.post(
            "/v1/chat/completions",
            json={"model": "fake-openai-endpoint", "messages": MESSAGES},
            headers={"Authorization": "Bearer sk-1234"},
        )

    assert reply.status_code == 200
    call = upstream.app.calls[0]
    assert call.path == "/chat/completions"
    assert call.body["model"] == "fake"
    assert call.headers["authorization"] == "Bearer fake-key"


def test_mock_response_answers_without_upstream(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    entries = [
        {
            "model_name": "mock-chat",
            "litellm_params": {"model": "openai/mock", "mock_response": "Hi from the mock"},
        },
        {
            "model_name": "mock-embed",
            "litellm_params": {"model": "openai/mock-embed", "mock_response": "unused"},
        },
    ]
    proxy = make_proxy(models={}, extra_models=entries)
    with proxy.sdk() as client:
        first = client.chat.completions.with_raw_response.create(
            model="mock-chat", messages=MESSAGES
        )
        second = client.chat.completions.with_raw_response.create(
            model="mock-chat", messages=MESSAGES
        )
        stream = client.chat.completions.create(model="mock-chat", messages=MESSAGES, stream=True)
        streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        vectors = client.embeddings.create(model="mock-embed", input=["a", "b"])

    assert first.parse().choices[0].message.content == "Hi from the mock"
    assert second.headers["cache-status"] == "llmcache; hit"
    assert second.parse().id == first.parse().id
    assert streamed == "Hi from the mock"
    assert len(vectors.data) == 2
    assert vectors.data[0].embedding != vectors.data[1].embedding
    assert upstream.app.call_count() == 0


def test_unknown_model_is_a_400_naming_the_known_ones(proxy_http: httpx.Client) -> None:
    reply = proxy_http.post(
        "/v1/chat/completions", json={"model": "gpt-9-ultra", "messages": MESSAGES}
    )

    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "400"
    assert error["param"] == "model"
    assert "'gpt-9-ultra'" in error["message"]
    assert "gpt-4o-mini" in error["message"]


def test_unsupported_provider_is_a_400(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    entry = {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-3-5-sonnet"}}
    proxy = make_proxy(models={}, extra_models=[entry])
    with proxy.http() as http:
        reply = http.post("/v1/chat/completions", json={"model": "claude", "messages": MESSAGES})

    assert reply.status_code == 400
    assert "'anthropic'" in reply.json()["error"]["message"]
    assert upstream.app.call_count() == 0


def test_openai_api_base_from_the_environment(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_BASE", upstream.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    entry = {"model_name": "gpt-3.5-turbo", "litellm_params": {"model": "gpt-3.5-turbo"}}
    proxy = make_proxy(models={}, extra_models=[entry])
    with proxy.sdk() as client:
        client.chat.completions.create(model="gpt-3.5-turbo", messages=MESSAGES)

    call = upstream.app.calls[0]
    assert call.headers["authorization"] == "Bearer sk-from-env"
    assert call.body["model"] == "gpt-3.5-turbo"


def test_models_lists_the_configured_names(proxy_sdk: openai.OpenAI) -> None:
    assert [model.id for model in proxy_sdk.models.list()] == list(DEFAULT_MODELS)


def test_models_without_v1_prefix(proxy_http: httpx.Client) -> None:
    document = proxy_http.get("/models").json()
    assert document["object"] == "list"
    assert {item["id"] for item in document["data"]} == set(DEFAULT_MODELS)
